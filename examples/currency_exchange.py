"""A currency exchange between a USD ledger and a EUR ledger, through liquidity accounts.

Money never crosses ledgers: a transfer between accounts of different ledgers is refused with
ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER. An exchange is instead two linked transfers, one per
ledger, between the customer's accounts and the liquidity provider's:

    USD ledger: alice (USD) -> liquidity (USD)   the USD sold, and a separate spread fee leg
    EUR ledger: liquidity (EUR) -> alice (EUR)   the EUR bought, at the rate

The two legs are applied together or not at all. The EUR amount is computed with `Decimal`
and converted to minor units exactly; a fraction of a cent is rounded down, in the liquidity
provider's favour. Charging the spread as its own leg (rather than hiding it in the rate)
records both the rate and the fee.

Run it with `python examples/currency_exchange.py`.
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
    Transfer,
    TransferFlags,
)
from fastledger.money import Asset, currency

USD = currency("USD")
EUR = currency("EUR")
LEDGER_USD = 1
LEDGER_EUR = 2
LEDGERS = {LEDGER_USD: USD, LEDGER_EUR: EUR}

CODE_BANK = 100
CODE_CUSTOMER = 200
CODE_LIQUIDITY = 300
CODE_FUNDING = 1
CODE_EXCHANGE = 2
CODE_SPREAD = 3

# Euros for one US dollar: a quote, kept as an exact decimal.
RATE_EUR_PER_USD = Decimal("0.9183")
SPREAD = Decimal("0.50")

BANK_USD = 1
ALICE_USD = 2
LIQUIDITY_USD = 3
BANK_EUR = 11
ALICE_EUR = 12
LIQUIDITY_EUR = 13

NAMES = {
    ALICE_USD: "alice USD",
    LIQUIDITY_USD: "liquidity USD",
    ALICE_EUR: "alice EUR",
    LIQUIDITY_EUR: "liquidity EUR",
}


def open_accounts(ledger: Ledger) -> None:
    no_overdraft = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    accounts = [
        Account(id=BANK_USD, ledger=LEDGER_USD, code=CODE_BANK),
        Account(id=ALICE_USD, ledger=LEDGER_USD, code=CODE_CUSTOMER, flags=no_overdraft),
        Account(id=LIQUIDITY_USD, ledger=LEDGER_USD, code=CODE_LIQUIDITY, flags=no_overdraft),
        Account(id=BANK_EUR, ledger=LEDGER_EUR, code=CODE_BANK),
        Account(id=ALICE_EUR, ledger=LEDGER_EUR, code=CODE_CUSTOMER, flags=no_overdraft),
        Account(id=LIQUIDITY_EUR, ledger=LEDGER_EUR, code=CODE_LIQUIDITY, flags=no_overdraft),
    ]
    results = ledger.create_accounts(accounts)
    assert all(r.status == CreateAccountStatus.CREATED for r in results), results
    # Alice holds dollars; the liquidity provider holds a float of euros to sell.
    funding = [
        transfer(BANK_USD, ALICE_USD, USD.to_minor("500.00"), LEDGER_USD, CODE_FUNDING),
        transfer(BANK_EUR, LIQUIDITY_EUR, EUR.to_minor("250.00"), LEDGER_EUR, CODE_FUNDING),
    ]
    results_t = ledger.create_transfers(funding)
    assert all(r.status == CreateTransferStatus.CREATED for r in results_t), results_t


def transfer(debit: int, credit: int, amount: int, ledger_id: int, code: int) -> Transfer:
    return Transfer(
        id=fastledger.id(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=ledger_id,
        code=code,
    )


def exchange(sold: int) -> list[Transfer]:
    """The linked legs of selling `sold` US cents for euros, with the spread as its own leg."""
    # Enough digits that the product is exact; only the conversion to cents rounds.
    with decimal.localcontext(prec=80):
        eur = USD.to_decimal(sold) * RATE_EUR_PER_USD
    bought = EUR.to_minor(eur, rounding=decimal.ROUND_DOWN)
    legs = [
        transfer(ALICE_USD, LIQUIDITY_USD, sold, LEDGER_USD, CODE_EXCHANGE),
        transfer(ALICE_USD, LIQUIDITY_USD, USD.to_minor(SPREAD), LEDGER_USD, CODE_SPREAD),
        transfer(LIQUIDITY_EUR, ALICE_EUR, bought, LEDGER_EUR, CODE_EXCHANGE),
    ]
    return [replace(t, flags=TransferFlags.LINKED) for t in legs[:-1]] + legs[-1:]


def show(ledger: Ledger, when: str) -> dict[int, int]:
    """Prints and returns the net credit balance of each named account, in minor units."""
    accounts = ledger.lookup_accounts(list(NAMES))
    net = {a.id: a.credits_posted - a.debits_posted for a in accounts}
    print(f"  {when}:")
    for a in accounts:
        asset: Asset = LEDGERS[a.ledger]
        print(f"    {NAMES[a.id]:<14} {asset.format(net[a.id]):>13}")
    return net


def main() -> None:
    ledger = Ledger()
    open_accounts(ledger)
    print(f"Alice buys euros at {RATE_EUR_PER_USD} EUR per USD, with a {SPREAD} USD spread")
    before = show(ledger, "before")

    direct = transfer(ALICE_USD, ALICE_EUR, 100, LEDGER_USD, CODE_EXCHANGE)
    (result,) = ledger.create_transfers([direct])
    assert result.status == CreateTransferStatus.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER, result
    print(f"A transfer straight from USD to EUR: {result.status.name}")

    sold = USD.to_minor("123.45")
    sold_leg, spread_leg, bought_leg = exchange(sold)
    assert bought_leg.amount == EUR.to_minor("113.36")  # 113.364135 EUR, rounded down
    statuses = [r.status for r in ledger.create_transfers([sold_leg, spread_leg, bought_leg])]
    assert statuses == [CreateTransferStatus.CREATED] * 3, statuses
    print(
        f"Alice sells {USD.format(sold)} (+ {USD.format(spread_leg.amount)} spread) "
        f"for {EUR.format(bought_leg.amount)}: {', '.join(s.name for s in statuses)}"
    )
    after = show(ledger, "after")
    assert after[ALICE_USD] == before[ALICE_USD] - sold - spread_leg.amount
    assert after[LIQUIDITY_USD] == before[LIQUIDITY_USD] + sold + spread_leg.amount
    assert after[ALICE_EUR] == before[ALICE_EUR] + bought_leg.amount
    assert after[LIQUIDITY_EUR] == before[LIQUIDITY_EUR] - bought_leg.amount

    # The provider's euro float is too small for this one: the EUR leg fails, so the USD legs
    # fail with it, and Alice keeps her dollars.
    sold = USD.to_minor("200.00")
    legs = exchange(sold)
    statuses = [r.status for r in ledger.create_transfers(legs)]
    print(
        f"Alice sells {USD.format(sold)} for {EUR.format(legs[-1].amount)}, more euros than "
        f"the provider holds: {', '.join(s.name for s in statuses)}"
    )
    assert statuses == [
        CreateTransferStatus.LINKED_EVENT_FAILED,
        CreateTransferStatus.LINKED_EVENT_FAILED,
        CreateTransferStatus.EXCEEDS_CREDITS,
    ], statuses
    assert show(ledger, "after the refused exchange") == after

    for ledger_id, asset in LEDGERS.items():
        trial = ledger.trial_balance(ledger_id)
        assert trial.balanced, trial
        print(f"  {asset.code} ledger balanced: {asset.format(trial.debits_posted)} each side")


if __name__ == "__main__":
    main()
