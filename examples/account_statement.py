"""An account statement, read page by page, with the running balance after every line.

- `get_account_transfers` lists an account's transfers in timestamp order. A page holds at most
  `limit` transfers; the next page starts just after the last timestamp seen
  (`timestamp_min = last.timestamp + 1`), so no line is read twice or skipped.
- `get_account_balances`, with the same filter, gives the balances after each of those
  transfers. It needs the account flagged HISTORY.
- `balances_at` gives any account's balances at any past instant (no flag needed): here, the
  balance at the end of a day.
- `trial_balance` gives a ledger's totals, which balance: every debit has its credit.

The ledger's clock is moved by hand so that the transfers fall on three days.
Run it with `python examples/account_statement.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import fastledger
from fastledger import (
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Ledger,
    Transfer,
)
from fastledger.money import currency

USD = currency("USD")
LEDGER_USD = 1
CODE_BANK = 100
CODE_CUSTOMER = 200
CODE_MERCHANT = 300

CODE_SALARY = 1
CODE_CARD = 2
CODE_RENT = 3
DESCRIPTIONS = {CODE_SALARY: "salary", CODE_CARD: "card payment", CODE_RENT: "rent"}

BANK = 1
ALICE = 2
SHOP = 3

PAGE_SIZE = 5
PAGES_MAX = 100
FIRST_DAY = datetime(2025, 3, 3, tzinfo=UTC)
DAYS = 3


class ManualClock:
    """A clock in nanoseconds since the epoch, set by hand."""

    def __init__(self, start: datetime) -> None:
        self.now_ns = ns(start)

    def __call__(self) -> int:
        return self.now_ns

    def set(self, when: datetime) -> None:
        self.now_ns = ns(when)


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1_000


def when_of(timestamp_ns: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ns // 1_000_000_000, UTC)


# The last nanosecond of the first day: a balance "at" a timestamp includes its events.
END_OF_FIRST_DAY = ns(FIRST_DAY + timedelta(days=1)) - 1


def open_accounts(ledger: Ledger) -> None:
    statement_account = AccountFlags.HISTORY | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    results = ledger.create_accounts(
        [
            Account(id=BANK, ledger=LEDGER_USD, code=CODE_BANK),
            Account(id=ALICE, ledger=LEDGER_USD, code=CODE_CUSTOMER, flags=statement_account),
            Account(id=SHOP, ledger=LEDGER_USD, code=CODE_MERCHANT),
        ]
    )
    assert all(r.status == CreateAccountStatus.CREATED for r in results), results


def activity() -> Iterator[tuple[datetime, int, int, int, int]]:
    """(when, code, debit account, credit account, amount) of each transfer, in time order."""
    yield FIRST_DAY + timedelta(hours=8), CODE_SALARY, BANK, ALICE, USD.to_minor("3200.00")
    yield FIRST_DAY + timedelta(hours=9), CODE_RENT, ALICE, BANK, USD.to_minor("1450.00")
    prices = ["3.40", "12.99", "56.78", "7.25", "24.10", "4.05"]
    for day in range(DAYS):
        for i, price in enumerate(prices):
            when = FIRST_DAY + timedelta(days=day, hours=10 + 2 * i, minutes=7 * day)
            yield when, CODE_CARD, ALICE, SHOP, USD.to_minor(price)


def post_activity(ledger: Ledger, clock: ManualClock) -> int:
    """Posts the activity, each transfer at its own time; returns Alice's expected balance."""
    balance = 0
    for when, code, debit, credit, amount in activity():
        clock.set(when)
        transfer = Transfer(
            id=fastledger.id(),
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            ledger=LEDGER_USD,
            code=code,
        )
        (result,) = ledger.create_transfers([transfer])
        assert result.status == CreateTransferStatus.CREATED, result
        balance += amount if credit == ALICE else -amount
    return balance


def statement_pages(
    ledger: Ledger, account_id: int
) -> Iterator[list[tuple[Transfer, AccountBalance]]]:
    """The account's transfers with the balance after each, a page of PAGE_SIZE at a time."""
    timestamp_min = 0
    for _ in range(PAGES_MAX):
        page = AccountFilter(account_id=account_id, timestamp_min=timestamp_min, limit=PAGE_SIZE)
        transfers = ledger.get_account_transfers(page)
        if not transfers:
            return
        balances = ledger.get_account_balances(page)
        assert [b.timestamp for b in balances] == [t.timestamp for t in transfers]
        yield list(zip(transfers, balances, strict=True))
        timestamp_min = transfers[-1].timestamp + 1
    raise AssertionError(f"the statement has more than {PAGES_MAX} pages")


def print_statement(ledger: Ledger) -> tuple[int, int]:
    """Prints Alice's statement; returns the number of lines and the closing balance."""
    lines = 0
    balance = 0
    for number, page in enumerate(statement_pages(ledger, ALICE), start=1):
        assert len(page) <= PAGE_SIZE
        print(f"  -- page {number} --")
        for transfer, after in page:
            signed = transfer.amount if transfer.credit_account_id == ALICE else -transfer.amount
            balance += signed
            assert after.credits_posted - after.debits_posted == balance
            amount = ("+" if signed > 0 else "-") + USD.format(abs(signed))
            print(
                f"  {when_of(transfer.timestamp):%Y-%m-%d %H:%M}  "
                f"{DESCRIPTIONS[transfer.code]:<12} {amount:>13}  "
                f"balance {USD.format(balance):>12}"
            )
            lines += 1
    return lines, balance


def print_latest(ledger: Ledger) -> None:
    """The newest lines first: the same filter, REVERSED."""
    newest_first = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS
    newest_first |= AccountFilterFlags.REVERSED
    latest = ledger.get_account_transfers(
        AccountFilter(account_id=ALICE, limit=3, flags=newest_first)
    )
    oldest_first = ledger.get_account_transfers(AccountFilter(account_id=ALICE))
    assert latest == oldest_first[::-1][:3]
    amounts = ", ".join(USD.format(t.amount) for t in latest)
    print(f"Latest {len(latest)} lines, newest first: {amounts}")


def print_end_of_first_day(ledger: Ledger) -> None:
    """The balance at the end of the first day, two ways: as of that instant, and as left by
    the last transfer of that day in the account's history."""
    at_end = ledger.balances_at(END_OF_FIRST_DAY, [ALICE])[ALICE]
    history = ledger.get_account_balances(
        AccountFilter(account_id=ALICE, timestamp_max=END_OF_FIRST_DAY)
    )
    last = history[-1]
    assert (at_end.debits_posted, at_end.credits_posted) == (
        last.debits_posted,
        last.credits_posted,
    )
    balance = at_end.credits_posted - at_end.debits_posted
    assert balance == USD.to_minor("1641.43"), balance
    print(f"Balance at the end of {FIRST_DAY:%Y-%m-%d}: {USD.format(balance)}")


def print_trial_balances(ledger: Ledger) -> None:
    """The ledger's totals now and at the end of the first day: debits equal credits."""
    trial = ledger.trial_balance(LEDGER_USD)
    assert trial.balanced
    print(
        f"Trial balance of the USD ledger: {len(trial.accounts)} accounts, "
        f"{USD.format(trial.debits_posted)} debits = credits, balanced"
    )
    first_day = ledger.trial_balance(LEDGER_USD, at=END_OF_FIRST_DAY)
    assert first_day.balanced
    assert first_day.debits_posted < trial.debits_posted
    print(
        f"  at the end of {FIRST_DAY:%Y-%m-%d}: "
        f"{USD.format(first_day.debits_posted)} debits = credits, balanced"
    )


def main() -> None:
    clock = ManualClock(FIRST_DAY)
    ledger = Ledger(clock=clock)
    open_accounts(ledger)
    expected_balance = post_activity(ledger, clock)

    print(f"Statement of Alice's account, {PAGE_SIZE} lines a page")
    lines, balance = print_statement(ledger)
    assert lines == 2 + 6 * DAYS, lines
    assert balance == expected_balance
    print(f"  {lines} lines, closing balance {USD.format(balance)}")

    print_latest(ledger)
    print_end_of_first_day(ledger)
    print_trial_balances(ledger)


if __name__ == "__main__":
    main()
