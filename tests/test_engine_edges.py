"""Edge cases of the engines' own bookkeeping, found by reading both engines side by side and
by the differential test."""

from __future__ import annotations

import gc
import os
import signal
import time

import pytest

import fastledger
from fastledger import BATCH_MAX, TransferFlags
from fastledger._records import pack_transfers

from .conftest import FakeClock
from .helpers import account, pending, transfer


def test_a_rolled_back_pending_transfer_never_expires_its_reimported_id(
    ledger: fastledger.Ledger, clock: FakeClock
) -> None:
    """A chain that fails leaves its pending transfer's expiry behind; an imported pending
    transfer that takes the same id and timestamp (with no timeout) must not expire by it."""
    ledger.create_accounts([account(1), account(2)])
    clock.advance(ns=100)
    chained = pending(5, 1, 2, 7, timeout=1, flags=TransferFlags.LINKED)
    same_account = transfer(6, 1, 1, 1)
    rolled_back = ledger.create_transfers([chained, same_account])
    assert [r.status.name for r in rolled_back] == [
        "LINKED_EVENT_FAILED",
        "ACCOUNTS_MUST_BE_DIFFERENT",
    ]
    clock.advance(ns=100)
    reimported = pending(
        5, 1, 2, 7, flags=TransferFlags.IMPORTED, timestamp=rolled_back[0].timestamp
    )
    assert ledger.create_transfers([reimported])[0].status.name == "CREATED"
    clock.advance(seconds=5)
    assert ledger.lookup_accounts([1])[0].debits_pending == 7


def test_balances_at_answers_each_account_once_however_often_asked(
    ledger: fastledger.Ledger, clock: FakeClock
) -> None:
    ledger.create_accounts([account(1), account(2)])
    ledger.create_transfers([transfer(1, 1, 2, 3)])
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
    ledger.create_accounts([account(1), account(2)])
    clock.advance(ns=10)
    (created,) = ledger.create_transfers([pending(1, 1, 2, 7, timeout=1)])
    expires_at = created.timestamp + 10**9
    clock.now_ns = expires_at + 2
    results = ledger.create_transfers([transfer(i, 1, 2, 1) for i in range(2, 8)])
    assert results[0].timestamp < expires_at <= results[-1].timestamp
    clock.now_ns = expires_at - 5  # The clock goes back, behind the events.
    accounts = ledger.lookup_accounts([1, 2])
    assert [a.debits_pending for a in accounts] == [0, 0]
    trial = ledger.trial_balance(1)
    assert trial.debits_pending == trial.credits_pending == 0
    assert trial.debits_posted == sum(a.debits_posted for a in accounts) == 6


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_the_engine_makes_memory_ahead_keeps_posting(
    ledger: fastledger.Ledger,
) -> None:
    """Past half of its first 32,768 transfers the Rust engine has another thread make the next
    stretch of its log; a child forked meanwhile has no such thread and must not wait for it."""
    ledger.create_accounts([account(1), account(2)])

    def post(first: int, count: int) -> bool:
        for start in range(first, first + count, BATCH_MAX):
            ids = range(start, min(start + BATCH_MAX, first + count))
            batch = pack_transfers([transfer(i, 1, 2, 1) for i in ids])
            if not ledger.create_transfers(batch).all_created():
                return False
        return True

    assert post(1, 16_400)
    child = os.fork()
    if child == 0:
        posted = False
        try:
            posted = post(16_401, 50_000) and len(ledger.lookup_transfers([66_400])) == 1
        finally:
            os._exit(0 if posted else 1)
    assert _exit_code_of(child) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_drops_a_ledger_of_its_parent_keeps_posting_to_its_own(
    engine: str,
) -> None:
    """A ledger of 1,024 accounts or more has other threads make the first stretches of its log
    ahead. A child forked from its process has none of those threads: dropping the parent's
    ledger there must leave the threads that the child's own ledger started alone."""

    def ledger_of_many_accounts() -> fastledger.Ledger:
        ledger = fastledger.Ledger(engine=engine)
        ledger.create_accounts([account(i) for i in range(1, 1_101)])
        return ledger

    parents = ledger_of_many_accounts()
    time.sleep(0.3)  # Its threads are done, and not yet joined.
    child = os.fork()
    if child == 0:
        posted = False
        try:
            own = ledger_of_many_accounts()
            time.sleep(0.3)
            del parents
            gc.collect()
            posted = own.create_transfers([transfer(1, 1, 2, 1)])[0].status.name == "CREATED"
        finally:
            os._exit(0 if posted else 1)
    assert _exit_code_of(child) == 0


def _exit_code_of(child: int) -> int:
    """Waits for a forked child, at most a minute; fails the test if it hangs."""
    deadline = time.monotonic() + 60
    while (ended := os.waitpid(child, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    return os.waitstatus_to_exitcode(ended[1])
