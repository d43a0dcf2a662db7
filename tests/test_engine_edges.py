"""Edge cases of the engines' own bookkeeping, found by reading both engines side by side."""

from __future__ import annotations

import fastledger
from fastledger import Account, Transfer, TransferFlags

from .conftest import FakeClock


def test_a_rolled_back_pending_transfer_never_expires_its_reimported_id(
    ledger: fastledger.Ledger, clock: FakeClock
) -> None:
    """A chain that fails leaves its pending transfer's expiry behind; an imported pending
    transfer that takes the same id and timestamp (with no timeout) must not expire by it."""
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    clock.advance(ns=100)
    pending = Transfer(
        id=5,
        debit_account_id=1,
        credit_account_id=2,
        amount=7,
        ledger=1,
        code=1,
        timeout=1,
        flags=TransferFlags.PENDING | TransferFlags.LINKED,
    )
    same_account = Transfer(
        id=6, debit_account_id=1, credit_account_id=1, amount=1, ledger=1, code=1
    )
    rolled_back = ledger.create_transfers([pending, same_account])
    assert [r.status.name for r in rolled_back] == [
        "LINKED_EVENT_FAILED",
        "ACCOUNTS_MUST_BE_DIFFERENT",
    ]
    clock.advance(ns=100)
    reimported = Transfer(
        id=5,
        debit_account_id=1,
        credit_account_id=2,
        amount=7,
        ledger=1,
        code=1,
        flags=TransferFlags.PENDING | TransferFlags.IMPORTED,
        timestamp=rolled_back[0].timestamp,
    )
    assert ledger.create_transfers([reimported])[0].status.name == "CREATED"
    clock.advance(seconds=5)
    assert ledger.lookup_accounts([1])[0].debits_pending == 7


def test_balances_at_answers_each_account_once_however_often_asked(
    ledger: fastledger.Ledger, clock: FakeClock
) -> None:
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    transfer = Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=3, ledger=1, code=1)
    ledger.create_transfers([transfer])
    balances = ledger.balances_at(clock.now_ns + 10**9, [2, 1, 2, 1])
    assert list(balances) == [2, 1]
    assert balances.column("debits_posted") == [0, 3]
    assert balances.column("credits_posted") == [3, 0]


def test_a_read_shows_the_balances_of_the_last_event_even_when_the_clock_is_behind_it(
    ledger: fastledger.Ledger, clock: FakeClock
) -> None:
    """A pending transfer that expires between the first and the last event of a batch is
    expired once the batch has happened, however far the clock falls behind: a read shows
    what `balances_at` and `trial_balance` show for that time."""
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    clock.advance(ns=10)
    hold = Transfer(
        id=1,
        debit_account_id=1,
        credit_account_id=2,
        amount=7,
        ledger=1,
        code=1,
        timeout=1,
        flags=TransferFlags.PENDING,
    )
    (created,) = ledger.create_transfers([hold])
    expires_at = created.timestamp + 10**9
    clock.now_ns = expires_at + 2
    batch = [
        Transfer(id=i, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)
        for i in range(2, 8)
    ]
    results = ledger.create_transfers(batch)
    assert results[0].timestamp < expires_at <= results[-1].timestamp
    clock.now_ns = expires_at - 5  # The clock goes back, behind the events.
    accounts = ledger.lookup_accounts([1, 2])
    assert [a.debits_pending for a in accounts] == [0, 0]
    trial = ledger.trial_balance(1)
    assert trial.debits_pending == trial.credits_pending == 0
    assert trial.debits_posted == sum(a.debits_posted for a in accounts) == 6
