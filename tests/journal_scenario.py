"""A scenario that touches every part of the state a journal must rebuild, and a probe that
reads all of that state back, shared by the durability tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastledger import (
    Account,
    AccountFilter,
    AccountFlags,
    CreateTransferStatus,
    Ledger,
    QueryFilter,
    Transfer,
    TransferFlags,
)

from .conftest import FakeClock
from .helpers import account, pending, post, transfer, void

T = CreateTransferStatus
Step = Callable[[Ledger, FakeClock], Any]

HISTORY = AccountFlags.HISTORY
LIMIT_DEBITS = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
LIMIT_CREDITS = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS


def statuses(ledger: Ledger, *transfers: Transfer) -> list[CreateTransferStatus]:
    return [r.status for r in ledger.create_transfers(list(transfers))]


def open_accounts(ledger: Ledger, clock: FakeClock) -> object:
    return ledger.create_accounts(
        [
            account(1),
            account(2, flags=HISTORY),
            account(3, flags=LIMIT_DEBITS),
            account(4, flags=LIMIT_CREDITS | HISTORY),
            account(5),
            account(6),
            account(7, ledger=2),
            account(8, ledger=2, flags=HISTORY),
        ]
    )


def post_and_fail(ledger: Ledger, clock: FakeClock) -> object:
    clock.advance(ns=10)
    return statuses(
        ledger,
        transfer(100, 1, 2, 50),
        transfer(101, 2, 3, 30),
        transfer(102, 3, 1, 1000),  # EXCEEDS_CREDITS: a transient failure, remembered
        transfer(103, 999, 1, 1),  # DEBIT_ACCOUNT_NOT_FOUND, remembered too
        transfer(104, 7, 8, 9, ledger=2),
    )


def linked_chains(ledger: Ledger, clock: FakeClock) -> object:
    linked = TransferFlags.LINKED
    return statuses(
        ledger,
        transfer(110, 1, 5, 10, flags=linked),
        transfer(111, 5, 2, 5),
        transfer(120, 1, 5, 10, flags=linked),
        transfer(121, 3, 1, 10_000),  # breaks the chain: 120 is rolled back
        transfer(122, 8, 7, 3, ledger=2, flags=linked),  # a chain left open
    )


def two_phase(ledger: Ledger, clock: FakeClock) -> object:
    clock.advance(ns=10)
    first = statuses(
        ledger,
        pending(130, 1, 2, 40, timeout=1),
        pending(131, 1, 2, 20),
        pending(132, 4, 1, 15, timeout=100),
        pending(133, 1, 5, 7, timeout=2),
    )
    second = statuses(ledger, post(140, 131, 5), void(141, 132))
    return first, second


def expire_by_the_clock(ledger: Ledger, clock: FakeClock) -> object:
    clock.advance(seconds=1.5)
    seen = ledger.lookup_transfers([130])  # a read expires 130 by the clock
    clock.advance(seconds=1)
    # 133 expires only through the expiry before this batch, not through a read.
    return seen, statuses(ledger, post(150, 130), post(151, 133))


def balancing_and_closing(ledger: Ledger, clock: FakeClock) -> object:
    closing = TransferFlags.PENDING | TransferFlags.CLOSING_DEBIT
    return statuses(
        ledger,
        transfer(160, 3, 1, 1000, flags=TransferFlags.BALANCING_DEBIT),
        transfer(170, 6, 5, 1, flags=closing),
        transfer(171, 6, 5, 1),  # DEBIT_ACCOUNT_ALREADY_CLOSED
    )


def imported(ledger: Ledger, clock: FakeClock) -> object:
    last = ledger.query_transfers(QueryFilter(limit=1, flags=1))[0].timestamp
    clock.advance(seconds=1)
    return statuses(
        ledger,
        transfer(180, 1, 2, 1, flags=TransferFlags.IMPORTED, timestamp=last + 1000),
        transfer(181, 2, 1, 1, flags=TransferFlags.IMPORTED, timestamp=last + 2000),
    )


def retries(ledger: Ledger, clock: FakeClock) -> object:
    return statuses(
        ledger,
        transfer(100, 1, 2, 50),  # EXISTS
        transfer(102, 3, 1, 1),  # ID_ALREADY_FAILED, even though it would fit now
        transfer(171, 6, 5, 1),  # ID_ALREADY_FAILED
        void(190, 170),  # reopens account 6
        transfer(191, 6, 5, 1),
    )


STEPS: tuple[Step, ...] = (
    open_accounts,
    post_and_fail,
    linked_chains,
    two_phase,
    expire_by_the_clock,
    balancing_and_closing,
    imported,
    retries,
)


def probe(ledger: Ledger) -> dict[str, Any]:
    """Everything a reader can see of the ledger: every account and transfer by lookup,
    balances at every transfer's timestamp, histories, and per-account transfer lists."""
    accounts = ledger.query_accounts(QueryFilter())
    transfers = ledger.query_transfers(QueryFilter())
    account_ids = [a.id for a in accounts]
    stamps = sorted({t.timestamp for t in transfers} | {0, 2**63 - 1})
    return {
        "accounts": ledger.lookup_accounts(account_ids),
        "transfers": ledger.lookup_transfers([t.id for t in transfers]),
        "balances_at": [dict(ledger.balances_at(stamp)) for stamp in stamps],
        "history": [ledger.get_account_balances(AccountFilter(account_id=i)) for i in account_ids],
        "by_account": [
            ledger.get_account_transfers(AccountFilter(account_id=i)) for i in account_ids
        ],
        "trial": [ledger.trial_balance(n) for n in (1, 2)],
    }


def accounts_of(ledger: Ledger) -> list[Account]:
    return ledger.query_accounts(QueryFilter())
