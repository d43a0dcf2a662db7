"""A wallet top-up and a peer-to-peer payment, and an overdraft that the ledger refuses.

The operator holds customers' money at a bank. The bank account is the operator's asset (a debit
balance); each customer wallet is the operator's liability to that customer (a credit balance),
so a wallet is flagged DEBITS_MUST_NOT_EXCEED_CREDITS: it can never be spent below zero.

    top-up:  debit settlement, credit alice's wallet
    p2p:     debit alice's wallet, credit bob's wallet

Run it with `python examples/wallet_topup_and_p2p.py`.
"""

from __future__ import annotations

import fastledger
from fastledger import (
    Account,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Ledger,
    Transfer,
)
from fastledger.money import currency

USD = currency("USD")
LEDGER_USD = 1

# Account codes say what kind of account it is; transfer codes say why money moved.
CODE_SETTLEMENT = 100
CODE_WALLET = 200
CODE_TOP_UP = 1
CODE_P2P = 2

SETTLEMENT = 1
ALICE = 2
BOB = 3


def open_accounts(ledger: Ledger) -> None:
    wallet = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    results = ledger.create_accounts(
        [
            Account(id=SETTLEMENT, ledger=LEDGER_USD, code=CODE_SETTLEMENT),
            Account(id=ALICE, ledger=LEDGER_USD, code=CODE_WALLET, flags=wallet),
            Account(id=BOB, ledger=LEDGER_USD, code=CODE_WALLET, flags=wallet),
        ]
    )
    assert all(r.status == CreateAccountStatus.CREATED for r in results), results


def wallet_balance(ledger: Ledger, account_id: int) -> int:
    """A wallet's spendable balance in minor units: credits less debits, pending included."""
    (account,) = ledger.lookup_accounts([account_id])
    return account.credits_posted - account.debits_posted - account.debits_pending


def show_wallets(ledger: Ledger, when: str) -> None:
    alice = USD.format(wallet_balance(ledger, ALICE))
    bob = USD.format(wallet_balance(ledger, BOB))
    print(f"  {when}: alice {alice}, bob {bob}")


def move(
    ledger: Ledger, transfer_id: int, debit: int, credit: int, amount: str, code: int
) -> CreateTransferStatus:
    """Moves `amount` USD (a decimal string) and returns the status the ledger gave it."""
    transfer = Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=USD.to_minor(amount),
        ledger=LEDGER_USD,
        code=code,
    )
    (result,) = ledger.create_transfers([transfer])
    return result.status


def main() -> None:
    ledger = Ledger()
    open_accounts(ledger)
    print("Wallets on the USD ledger")
    show_wallets(ledger, "opened")

    top_up_id = fastledger.id()
    status = move(ledger, top_up_id, SETTLEMENT, ALICE, "100.00", CODE_TOP_UP)
    assert status == CreateTransferStatus.CREATED, status
    print(f"Alice tops up 100.00 USD from her bank: {status.name}")
    show_wallets(ledger, "after top-up")

    # A retry with the same id (say, after a lost reply) is recognised, not applied twice.
    status = move(ledger, top_up_id, SETTLEMENT, ALICE, "100.00", CODE_TOP_UP)
    assert status == CreateTransferStatus.EXISTS, status
    assert wallet_balance(ledger, ALICE) == USD.to_minor("100.00")
    print(f"The top-up is retried with the same id: {status.name}, applied once")

    status = move(ledger, fastledger.id(), ALICE, BOB, "30.00", CODE_P2P)
    assert status == CreateTransferStatus.CREATED, status
    print(f"Alice pays Bob 30.00 USD: {status.name}")
    show_wallets(ledger, "after payment")
    assert wallet_balance(ledger, ALICE) == USD.to_minor("70.00")
    assert wallet_balance(ledger, BOB) == USD.to_minor("30.00")

    before = ledger.lookup_accounts([SETTLEMENT, ALICE, BOB])
    overdraft_id = fastledger.id()
    status = move(ledger, overdraft_id, ALICE, BOB, "80.00", CODE_P2P)
    assert status == CreateTransferStatus.EXCEEDS_CREDITS, status
    print(f"Alice tries to pay Bob 80.00 USD with 70.00 USD: {status.name}")
    assert ledger.lookup_accounts([SETTLEMENT, ALICE, BOB]) == before, "a refusal moved money"
    assert ledger.lookup_transfers([overdraft_id]) == [], "a refused transfer was stored"
    show_wallets(ledger, "after refusal")

    # The refused id is burnt: sending it again cannot succeed later by accident.
    status = move(ledger, overdraft_id, ALICE, BOB, "80.00", CODE_P2P)
    assert status == CreateTransferStatus.ID_ALREADY_FAILED, status
    print(f"The refused payment is sent again with the same id: {status.name}")

    trial = ledger.trial_balance(LEDGER_USD)
    assert trial.balanced
    assert trial.debits_posted == USD.to_minor("130.00")
    print(f"Trial balance: {USD.format(trial.debits_posted)} debited and credited, balanced")


if __name__ == "__main__":
    main()
