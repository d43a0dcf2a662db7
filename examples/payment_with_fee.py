"""A payment with a platform fee, posted as one journal entry of linked transfers.

A transfer debits one account and credits one account. An entry with more legs is a chain of
transfers flagged LINKED (every leg but the last): the chain is applied whole or not at all, and
each leg sees the effects of the legs before it. The legs share a `user_data_128`, the entry's
id, so the entry can be found again with `query_transfers`.

    leg 1: customer -> merchant   the price
    leg 2: merchant -> platform   the fee, 2.9% of the price + 0.30, rounded half-even to a cent

The second entry adds a referral leg to an account that does not exist: that leg fails with
CREDIT_ACCOUNT_NOT_FOUND, every other leg with LINKED_EVENT_FAILED, and nothing moves.

Run it with `python examples/payment_with_fee.py`.
"""

from __future__ import annotations

import decimal
from dataclasses import replace
from decimal import Decimal

import fastledger
from fastledger import (
    Account,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Ledger,
    QueryFilter,
    Transfer,
    TransferFlags,
)
from fastledger.money import currency

USD = currency("USD")
LEDGER_USD = 1
CODE_BANK = 100
CODE_CUSTOMER = 200
CODE_MERCHANT = 300
CODE_PLATFORM_REVENUE = 400
CODE_FUNDING = 1
CODE_PURCHASE = 2
CODE_FEE = 3
CODE_REFERRAL = 4

FEE_RATE = Decimal("0.029")
FEE_FIXED = Decimal("0.30")

BANK = 1
CUSTOMER = 2
MERCHANT = 3
PLATFORM = 4
NO_SUCH_PARTNER = 99


def open_accounts(ledger: Ledger) -> None:
    no_overdraft = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    results = ledger.create_accounts(
        [
            Account(id=BANK, ledger=LEDGER_USD, code=CODE_BANK),
            Account(id=CUSTOMER, ledger=LEDGER_USD, code=CODE_CUSTOMER, flags=no_overdraft),
            Account(id=MERCHANT, ledger=LEDGER_USD, code=CODE_MERCHANT, flags=no_overdraft),
            Account(id=PLATFORM, ledger=LEDGER_USD, code=CODE_PLATFORM_REVENUE),
        ]
    )
    assert all(r.status == CreateAccountStatus.CREATED for r in results), results
    funding = leg(BANK, CUSTOMER, USD.to_minor("100.00"), CODE_FUNDING, entry_id=0)
    (result,) = ledger.create_transfers([funding])
    assert result.status == CreateTransferStatus.CREATED, result


def fee_of(price: int) -> int:
    """The platform fee on `price` minor units, rounded half-even to a whole minor unit."""
    # Enough digits that the arithmetic is exact; only the conversion to cents rounds.
    with decimal.localcontext(prec=80):
        fee = USD.to_decimal(price) * FEE_RATE + FEE_FIXED
    return USD.to_minor(fee, rounding=decimal.ROUND_HALF_EVEN)


def leg(debit: int, credit: int, amount: int, code: int, entry_id: int) -> Transfer:
    return Transfer(
        id=fastledger.id(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        user_data_128=entry_id,
        ledger=LEDGER_USD,
        code=code,
    )


def linked(legs: list[Transfer]) -> list[Transfer]:
    """The legs as one chain: LINKED on every leg but the last, which closes the chain."""
    return [replace(t, flags=t.flags | TransferFlags.LINKED) for t in legs[:-1]] + legs[-1:]


def balances(ledger: Ledger) -> dict[int, int]:
    """Each account's net balance in minor units, credits less debits (posted)."""
    ids = [BANK, CUSTOMER, MERCHANT, PLATFORM]
    return {a.id: a.credits_posted - a.debits_posted for a in ledger.lookup_accounts(ids)}


def show(ledger: Ledger) -> None:
    net = balances(ledger)
    print(
        f"  customer {USD.format(net[CUSTOMER])}, merchant {USD.format(net[MERCHANT])}, "
        f"platform {USD.format(net[PLATFORM])}"
    )


def pay_with_fee(ledger: Ledger) -> None:
    price = USD.to_minor("57.99")
    fee = fee_of(price)
    assert fee == USD.to_minor("1.98"), fee
    entry_id = fastledger.id()
    entry = linked(
        [
            leg(CUSTOMER, MERCHANT, price, CODE_PURCHASE, entry_id),
            leg(MERCHANT, PLATFORM, fee, CODE_FEE, entry_id),
        ]
    )
    results = ledger.create_transfers(entry)
    statuses = [r.status for r in results]
    assert statuses == [CreateTransferStatus.CREATED] * 2, statuses
    print(f"Customer pays {USD.format(price)}, the platform keeps {USD.format(fee)}:")
    print(f"  legs: {', '.join(s.name for s in statuses)}")
    show(ledger)

    found = ledger.query_transfers(QueryFilter(user_data_128=entry_id))
    assert [t.id for t in found] == [t.id for t in entry]
    assert sum(t.amount for t in found) == price + fee
    print(f"  the entry's {len(found)} legs are found again by their entry id")


def pay_with_a_broken_leg(ledger: Ledger) -> None:
    before = ledger.lookup_accounts([BANK, CUSTOMER, MERCHANT, PLATFORM])
    price = USD.to_minor("20.00")
    fee = fee_of(price)
    entry_id = fastledger.id()
    entry = linked(
        [
            leg(CUSTOMER, MERCHANT, price, CODE_PURCHASE, entry_id),
            leg(MERCHANT, PLATFORM, fee, CODE_FEE, entry_id),
            leg(MERCHANT, NO_SUCH_PARTNER, USD.to_minor("1.00"), CODE_REFERRAL, entry_id),
        ]
    )
    statuses = [r.status for r in ledger.create_transfers(entry)]
    print(f"Customer pays {USD.format(price)}, with a referral leg to an unknown account:")
    print(f"  legs: {', '.join(s.name for s in statuses)}")
    assert statuses == [
        CreateTransferStatus.LINKED_EVENT_FAILED,
        CreateTransferStatus.LINKED_EVENT_FAILED,
        CreateTransferStatus.CREDIT_ACCOUNT_NOT_FOUND,
    ], statuses
    after = ledger.lookup_accounts([BANK, CUSTOMER, MERCHANT, PLATFORM])
    assert after == before, "a failed chain moved money"
    assert ledger.lookup_transfers([t.id for t in entry]) == []
    assert ledger.query_transfers(QueryFilter(user_data_128=entry_id)) == []
    show(ledger)
    print("  nothing moved and no leg was stored")


def main() -> None:
    ledger = Ledger()
    open_accounts(ledger)
    print("A customer with 100.00 USD, a merchant and a platform")
    show(ledger)
    pay_with_fee(ledger)
    pay_with_a_broken_leg(ledger)

    net = balances(ledger)
    assert net[CUSTOMER] == USD.to_minor("42.01")
    assert net[MERCHANT] == USD.to_minor("56.01")
    assert net[PLATFORM] == USD.to_minor("1.98")
    assert ledger.trial_balance(LEDGER_USD).balanced


if __name__ == "__main__":
    main()
