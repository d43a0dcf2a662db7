"""The rules of the Python engine: the creates, their guards and effects, the batch loop with its
linked chains and their undo, and the expiry of pending transfers.

This file and `rust/core/src/engine.rs` implement one deterministic state machine with the same
rule order and the same helper names; read them side by side. Each create is one function with
one guard per status, in TigerBeetle 0.17's precedence order (`_statuses.py` lists it); effects
are applied only after every guard has passed.

Each entry point checks its input as the Rust engine's binding does, with the checks and
messages of `_check.py`, and refuses a bad batch whole, changing nothing; the rules then trust
what the checks handed on, which holds plain ints only. The facade hands over the batch
timestamp: the engine never reads a clock. Before a batch of transfers, the engine releases the
pending transfers that expired by its first timestamp, as a rule of its own.
"""

from __future__ import annotations

import array
import bisect
import gc
import heapq
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from .. import _check
from .._records import (
    RECORD_SIZE,
    iter_transfer_fields,
    pack_transfer_fields,
    pack_transfer_with,
    unpack_accounts,
)
from .._statuses import TRANSIENT_ACCOUNT_STATUSES, TRANSIENT_TRANSFER_STATUSES
from .._types import (
    ACCOUNT_FLAGS_KNOWN,
    AMOUNT_MAX,
    BATCH_MAX,
    TIMESTAMP_MAX,
    TRANSFER_FLAGS_KNOWN,
    U128_MAX,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    Transfer,
    TransferFlags,
)
from ..errors import InvalidArgumentError
from ..packed import CREATED, as_records
from .storage import (
    AMOUNT,
    CODE,
    CREDIT_ACCOUNT_ID,
    DEBIT_ACCOUNT_ID,
    EXPIRED,
    FLAGS,
    ID,
    LEDGER,
    NS_PER_S,
    PENDING,
    PENDING_ID,
    POSTED,
    TIMEOUT,
    TIMESTAMP,
    USER_DATA_32,
    USER_DATA_64,
    USER_DATA_128,
    VOIDED,
    AccountState,
    Storage,
    StoredTransfer,
    Undo,
    account_timestamp,
    expires_at,
    transfer_record,
)

A = CreateAccountStatus
T = CreateTransferStatus
# The status of most events. Each read of an enum member goes through `EnumType.__getattr__`,
# which costs as much as a few guards, so a create that succeeds returns these instead.
ACCOUNT_CREATED = A.CREATED
TRANSFER_CREATED = T.CREATED

_LINKED = TransferFlags.LINKED.value
_PENDING = TransferFlags.PENDING.value
_POST = TransferFlags.POST_PENDING_TRANSFER.value
_VOID = TransferFlags.VOID_PENDING_TRANSFER.value
_BALANCING_DEBIT = TransferFlags.BALANCING_DEBIT.value
_BALANCING_CREDIT = TransferFlags.BALANCING_CREDIT.value
_CLOSING_DEBIT = TransferFlags.CLOSING_DEBIT.value
_CLOSING_CREDIT = TransferFlags.CLOSING_CREDIT.value
_CLOSING = _CLOSING_DEBIT | _CLOSING_CREDIT
_IMPORTED = TransferFlags.IMPORTED.value
# Flags that the guards test together, combined once here: the compiler folds no module
# constants, so `~TRANSFER_FLAGS_KNOWN` written in a guard was computed again per event.
_UNKNOWN_TRANSFER_FLAGS = ~TRANSFER_FLAGS_KNOWN
_POST_OR_VOID = _POST | _VOID
_BALANCING = _BALANCING_DEBIT | _BALANCING_CREDIT
assert AccountFlags.LINKED.value == _LINKED
assert AccountFlags.IMPORTED.value == 1 << 4

_DEBITS_MUST_NOT_EXCEED_CREDITS = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS.value
_CREDITS_MUST_NOT_EXCEED_DEBITS = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS.value
_ACCOUNT_IMPORTED = AccountFlags.IMPORTED.value
_CLOSED = AccountFlags.CLOSED.value

# Calls, events, and results other than CREATED by status code (see `Rules.counts`).
Counts = tuple[int, int, dict[int, int]]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector for a batch. A batch allocates a result (and a
    record) per event and no reference cycle, yet its allocations set off collections that
    scanned every object the program held: a batch of 8189 transfers took 125 ms instead of 35
    in a program holding 300,000 `Transfer` objects, and the Python engine posted 186,000
    transfers/s instead of 261,000. Reference counting still frees whatever the batch drops. A
    collector paused already, by the program or by a batch on another thread, is left as it is.

    The entry points pause it around reading their input too: the check copies each event
    whose fields hold int subclasses, as a `TransferFlags` in `flags` makes them, and a packed
    batch is unpacked into objects. With the check outside the pause, the benchmark's
    two-phase load posted 116,000 transfers/s instead of 153,000.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Rules(Storage):
    """The rules of the engine contract's creates and expiry, over the engine's storage."""

    def __init__(self) -> None:
        super().__init__()
        # What `create_accounts` and `create_transfers` applied, for `counts`: calls, events
        # and the results other than CREATED by status code, for accounts, then transfers.
        self._calls = [0, 0]
        self._events = [0, 0]
        self._failed: tuple[dict[int, int], dict[int, int]] = ({}, {})

    def counts(self) -> tuple[Counts, Counts]:
        """For accounts, then transfers: the calls, events, and results other than CREATED by
        status code, of the batches applied through `create_accounts` and `create_transfers`."""
        accounts, transfers = (
            (self._calls[i], self._events[i], dict(self._failed[i])) for i in (0, 1)
        )
        return accounts, transfers

    def _count(self, index: int, results: list[Any]) -> None:
        """Counts a batch applied through `create_accounts` or `create_transfers`. A batch
        whose every event was created, as most are, is counted by C loops alone."""
        self._calls[index] += 1
        self._events[index] += len(results)
        statuses = list(map(itemgetter(0), results))
        if statuses.count(CREATED) == len(statuses):
            return
        failed = self._failed[index]
        for status in statuses:
            if status != CREATED:
                failed[int(status)] = failed.get(int(status), 0) + 1

    # -- create_accounts -------------------------------------------------------------------

    def create_accounts(
        self, accounts: Sequence[Account], timestamp: int
    ) -> list[CreateAccountResult]:
        """Applies a batch whose last event takes `timestamp`; returns a `CreateAccountResult`
        per event."""
        batch = _check.check_batch(accounts, "accounts", BATCH_MAX)
        with _collector_paused():
            results = self._create_accounts(_check.checked_accounts(batch, "accounts"), timestamp)
        self._count(0, results)
        return results

    def _create_accounts(
        self, accounts: Sequence[Account], timestamp: int
    ) -> list[CreateAccountResult]:
        _check_batch_timestamp(len(accounts), timestamp, self._newest_timestamp())
        if not accounts:
            return []
        return self._execute(accounts, timestamp, self._create_account, A, CreateAccountResult)

    def _create_account(self, a: Account, timestamp: int) -> int:
        if a.reserved != 0:
            return A.RESERVED_FIELD
        if a.flags & ~ACCOUNT_FLAGS_KNOWN:
            return A.RESERVED_FLAG
        if a.id == 0:
            return A.ID_MUST_NOT_BE_ZERO
        if a.id == U128_MAX:
            return A.ID_MUST_NOT_BE_INT_MAX
        e = self._accounts.get(a.id)
        if e is not None:
            return _create_account_exists(a, e)
        if (a.flags & _DEBITS_MUST_NOT_EXCEED_CREDITS) and (
            a.flags & _CREDITS_MUST_NOT_EXCEED_DEBITS
        ):
            return A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if a.debits_pending != 0:
            return A.DEBITS_PENDING_MUST_BE_ZERO
        if a.debits_posted != 0:
            return A.DEBITS_POSTED_MUST_BE_ZERO
        if a.credits_pending != 0:
            return A.CREDITS_PENDING_MUST_BE_ZERO
        if a.credits_posted != 0:
            return A.CREDITS_POSTED_MUST_BE_ZERO
        if a.ledger == 0:
            return A.LEDGER_MUST_NOT_BE_ZERO
        if a.code == 0:
            return A.CODE_MUST_NOT_BE_ZERO
        if a.flags & _ACCOUNT_IMPORTED:
            if self._account_log and timestamp <= self._account_log[-1].timestamp:
                return A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
            if _logged_at(range(self._transfer_count()), timestamp, self._transfer_timestamp):
                return A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS

        account = AccountState(a, timestamp)
        self._accounts[a.id] = account
        self._account_log.append(account)
        if self._undo is not None:
            self._undo.accounts_created.append(a.id)
        return ACCOUNT_CREATED

    # -- create_transfers ------------------------------------------------------------------

    def create_transfers(
        self, transfers: Sequence[Transfer], timestamp: int
    ) -> list[CreateTransferResult]:
        """Applies a batch whose last event takes `timestamp`; returns a `CreateTransferResult`
        per event."""
        batch = _check.check_batch(transfers, "transfers", BATCH_MAX)
        with _collector_paused():
            checked = _check.checked_transfers(batch, "transfers")
            results = self._create_transfers(checked, timestamp)
        self._count(1, results)
        return results

    def _create_transfers(
        self, transfers: Sequence[Transfer], timestamp: int
    ) -> list[CreateTransferResult]:
        _check_batch_timestamp(len(transfers), timestamp, self._newest_timestamp())
        if not transfers:
            return []
        self._expire_before_batch(len(transfers), timestamp)
        return self._execute(transfers, timestamp, self._create_transfer, T, CreateTransferResult)

    def _create_transfer(self, t: Transfer, timestamp: int) -> int:
        flags = t.flags
        if flags & _UNKNOWN_TRANSFER_FLAGS:
            return T.RESERVED_FLAG
        if t.id == 0:
            return T.ID_MUST_NOT_BE_ZERO
        if t.id == U128_MAX:
            return T.ID_MUST_NOT_BE_INT_MAX
        position = self._transfer_index.get(t.id)
        if position is not None:
            return self._create_transfer_exists(t, self._transfer_at(position))
        if t.id in self._failed_ids:
            return T.ID_ALREADY_FAILED
        if flags & _POST_OR_VOID:
            return self._post_or_void_pending_transfer(t, timestamp)

        if t.debit_account_id == 0:
            return T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if t.debit_account_id == U128_MAX:
            return T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if t.credit_account_id == 0:
            return T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if t.credit_account_id == U128_MAX:
            return T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if t.credit_account_id == t.debit_account_id:
            return T.ACCOUNTS_MUST_BE_DIFFERENT
        if t.pending_id != 0:
            return T.PENDING_ID_MUST_BE_ZERO
        if not flags & _PENDING:
            if t.timeout != 0:
                return T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            if flags & _CLOSING:
                return T.CLOSING_TRANSFER_MUST_BE_PENDING
        if t.ledger == 0:
            return T.LEDGER_MUST_NOT_BE_ZERO
        if t.code == 0:
            return T.CODE_MUST_NOT_BE_ZERO

        dr = self._accounts.get(t.debit_account_id)
        if dr is None:
            return T.DEBIT_ACCOUNT_NOT_FOUND
        cr = self._accounts.get(t.credit_account_id)
        if cr is None:
            return T.CREDIT_ACCOUNT_NOT_FOUND
        if dr.ledger != cr.ledger:
            return T.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if t.ledger != dr.ledger:
            return T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if flags & _IMPORTED:
            status = self._imported_transfer_regresses(timestamp)
            if status is not None:
                return status
            if timestamp <= dr.timestamp:
                return T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT
            if timestamp <= cr.timestamp:
                return T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
            if t.timeout != 0:
                return T.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO
        assert timestamp > dr.timestamp and timestamp > cr.timestamp
        if dr.flags & _CLOSED:
            return T.DEBIT_ACCOUNT_ALREADY_CLOSED
        if cr.flags & _CLOSED:
            return T.CREDIT_ACCOUNT_ALREADY_CLOSED

        # A transfer that balances neither account moves its amount, so the most common
        # transfer makes no call for it.
        amount = _balancing_amount(t, dr, cr) if flags & _BALANCING else t.amount

        if flags & _PENDING:
            if amount + dr.debits_pending > U128_MAX:
                return T.OVERFLOWS_DEBITS_PENDING
            if amount + cr.credits_pending > U128_MAX:
                return T.OVERFLOWS_CREDITS_PENDING
        if amount + dr.debits_posted > U128_MAX:
            return T.OVERFLOWS_DEBITS_POSTED
        if amount + cr.credits_posted > U128_MAX:
            return T.OVERFLOWS_CREDITS_POSTED
        if amount + dr.debits_pending + dr.debits_posted > U128_MAX:
            return T.OVERFLOWS_DEBITS
        if amount + cr.credits_pending + cr.credits_posted > U128_MAX:
            return T.OVERFLOWS_CREDITS
        # No timeout, no overflow: the timestamp itself is at most TIMESTAMP_MAX.
        if t.timeout and timestamp + t.timeout * NS_PER_S > TIMESTAMP_MAX:
            return T.OVERFLOWS_TIMEOUT
        # An account without the limit's flag cannot exceed it: its sums are not needed.
        if dr.flags & _DEBITS_MUST_NOT_EXCEED_CREDITS and dr.debits_exceed_credits(amount):
            return T.EXCEEDS_CREDITS
        if cr.flags & _CREDITS_MUST_NOT_EXCEED_DEBITS and cr.credits_exceed_debits(amount):
            return T.EXCEEDS_DEBITS

        self._create_transfer_effects(t, amount, timestamp, dr, cr)
        return TRANSFER_CREATED

    def _create_transfer_effects(
        self, t: Transfer, amount: int, timestamp: int, dr: AccountState, cr: AccountState
    ) -> None:
        """The effects of a created transfer that is not a post or a void; every guard has
        passed. It is stored as `t` with the amount it moved, no pending id and its timestamp.

        The stored record is packed from `t` itself: a tuple of its fields, made to be packed,
        took longer to make and pass along than the packing."""
        flags = t.flags
        self._save_accounts(dr, cr)
        if flags & _PENDING:
            dr.debits_pending += amount
            cr.credits_pending += amount
        else:
            dr.debits_posted += amount
            cr.credits_posted += amount
        if flags & _CLOSING_DEBIT:
            dr.flags |= _CLOSED
        if flags & _CLOSING_CREDIT:
            cr.flags |= _CLOSED
        if flags & _PENDING:
            self._set_pending_status(t.id, PENDING)
            if t.timeout:
                expires = timestamp + t.timeout * NS_PER_S
                heapq.heappush(self._expiry, (expires, timestamp, t.id))
        record = pack_transfer_with(t, amount, 0, timestamp)
        self._insert_transfer(t.id, record, timestamp, dr, cr)

    def _post_or_void_pending_transfer(self, t: Transfer, timestamp: int) -> int:
        flags = t.flags
        if (flags & _POST) and (flags & _VOID):
            return T.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if flags & (_PENDING | _BALANCING_DEBIT | _BALANCING_CREDIT | _CLOSING):
            return T.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if t.pending_id == 0:
            return T.PENDING_ID_MUST_NOT_BE_ZERO
        if t.pending_id == U128_MAX:
            return T.PENDING_ID_MUST_NOT_BE_INT_MAX
        if t.pending_id == t.id:
            return T.PENDING_ID_MUST_BE_DIFFERENT
        if t.timeout != 0:
            return T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER

        p = self._transfer(t.pending_id)
        if p is None:
            return T.PENDING_TRANSFER_NOT_FOUND
        if not p[FLAGS] & _PENDING:
            return T.PENDING_TRANSFER_NOT_PENDING
        dr = self._accounts[p[DEBIT_ACCOUNT_ID]]
        cr = self._accounts[p[CREDIT_ACCOUNT_ID]]
        if t.debit_account_id != 0 and t.debit_account_id != p[DEBIT_ACCOUNT_ID]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if t.credit_account_id != 0 and t.credit_account_id != p[CREDIT_ACCOUNT_ID]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if t.ledger != 0 and t.ledger != p[LEDGER]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if t.code != 0 and t.code != p[CODE]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_CODE

        amount = _post_or_void_amount(t, p)
        if amount > p[AMOUNT]:
            return T.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if (flags & _VOID) and amount < p[AMOUNT]:
            return T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        status = self._pending_status[p[ID]]
        if status == POSTED:
            return T.PENDING_TRANSFER_ALREADY_POSTED
        if status == VOIDED:
            return T.PENDING_TRANSFER_ALREADY_VOIDED
        if status == EXPIRED:
            return T.PENDING_TRANSFER_EXPIRED
        assert status == PENDING
        if p[TIMEOUT] and expires_at(p) <= timestamp:
            return T.PENDING_TRANSFER_EXPIRED
        if flags & _IMPORTED:
            regressed = self._imported_transfer_regresses(timestamp)
            if regressed is not None:
                return regressed
        assert timestamp > dr.timestamp and timestamp > cr.timestamp
        # The only movement allowed in a closed account is voiding a pending transfer.
        if (dr.flags & _CLOSED) and not flags & _VOID:
            return T.DEBIT_ACCOUNT_ALREADY_CLOSED
        if (cr.flags & _CLOSED) and not flags & _VOID:
            return T.CREDIT_ACCOUNT_ALREADY_CLOSED

        stored = (
            t.id,
            p[DEBIT_ACCOUNT_ID],
            p[CREDIT_ACCOUNT_ID],
            amount,
            t.pending_id,
            t.user_data_128 or p[USER_DATA_128],
            t.user_data_64 or p[USER_DATA_64],
            t.user_data_32 or p[USER_DATA_32],
            0,  # timeout
            p[LEDGER],
            p[CODE],
            flags,
            timestamp,
        )
        self._post_or_void_effects(stored, p, dr, cr)
        return TRANSFER_CREATED

    def _post_or_void_effects(
        self, stored: StoredTransfer, p: StoredTransfer, dr: AccountState, cr: AccountState
    ) -> None:
        """The effects of a created post or void of the pending transfer `p`."""
        flags = stored[FLAGS]
        self._save_accounts(dr, cr)
        self._set_pending_status(p[ID], POSTED if flags & _POST else VOIDED)
        dr.debits_pending -= p[AMOUNT]
        cr.credits_pending -= p[AMOUNT]
        if flags & _POST:
            assert not p[FLAGS] & _CLOSING, "a closing transfer can only be voided"
            dr.debits_posted += stored[AMOUNT]
            cr.credits_posted += stored[AMOUNT]
        else:
            _reopen_closed_by(p, dr, cr)
        record = pack_transfer_fields(stored)
        self._insert_transfer(stored[ID], record, stored[TIMESTAMP], dr, cr)

    def _create_transfer_exists(self, t: Transfer, e: StoredTransfer) -> int:
        if t.flags != e[FLAGS]:
            return T.EXISTS_WITH_DIFFERENT_FLAGS
        if t.pending_id != e[PENDING_ID]:
            return T.EXISTS_WITH_DIFFERENT_PENDING_ID
        if t.timeout != e[TIMEOUT]:
            return T.EXISTS_WITH_DIFFERENT_TIMEOUT
        if t.flags & _POST_OR_VOID:
            return _post_or_void_pending_transfer_exists(
                t, e, self._transfer_at(self._transfer_index[t.pending_id])
            )
        if t.debit_account_id != e[DEBIT_ACCOUNT_ID]:
            return T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
        if t.credit_account_id != e[CREDIT_ACCOUNT_ID]:
            return T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
        # A balancing transfer's amount is an upper limit: a retry whose limit still covers
        # the amount that was actually moved is the same transfer.
        if t.flags & _BALANCING:
            if t.amount < e[AMOUNT]:
                return T.EXISTS_WITH_DIFFERENT_AMOUNT
        elif t.amount != e[AMOUNT]:
            return T.EXISTS_WITH_DIFFERENT_AMOUNT
        if t.user_data_128 != e[USER_DATA_128]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_128
        if t.user_data_64 != e[USER_DATA_64]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_64
        if t.user_data_32 != e[USER_DATA_32]:
            return T.EXISTS_WITH_DIFFERENT_USER_DATA_32
        if t.ledger != e[LEDGER]:
            return T.EXISTS_WITH_DIFFERENT_LEDGER
        if t.code != e[CODE]:
            return T.EXISTS_WITH_DIFFERENT_CODE
        return T.EXISTS

    def _newest_timestamp(self) -> int:
        """The timestamp of the newest account or transfer, 0 for an empty engine: every event
        of a later batch must be stamped after it, which the engine's asserts rely on."""
        account = self._account_log[-1].timestamp if self._account_log else 0
        count = self._transfer_count()
        return max(account, self._transfer_timestamp(count - 1) if count else 0)

    def _imported_transfer_regresses(self, timestamp: int) -> int | None:
        last = self._transfer_count() - 1
        if last >= 0 and timestamp <= self._transfer_timestamp(last):
            return T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
        if _logged_at(self._account_log, timestamp, account_timestamp):
            return T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
        return None

    # -- packed batches --------------------------------------------------------------------

    def create_accounts_packed(self, records: memoryview, timestamp: int) -> tuple[bytes, bytes]:
        """A packed batch of accounts: whole 128-byte records; returns the packed status (u32)
        and timestamp (u64) columns."""
        return _pack_results(self.create_accounts_from_packed(records, timestamp))

    def create_transfers_packed(self, records: memoryview, timestamp: int) -> tuple[bytes, bytes]:
        """A packed batch of transfers, as `create_accounts_packed`."""
        return _pack_results(self.create_transfers_from_packed(records, timestamp))

    def create_accounts_from_packed(
        self, records: memoryview, timestamp: int
    ) -> list[CreateAccountResult]:
        """A packed batch of accounts with the results of `create_accounts`: the records the
        facade packed once, for the journal and the engine alike. The reference engine reads
        them as objects; a record holds plain ints only, so they need no check of their own."""
        view = _packed_records(records, "accounts")
        with _collector_paused():
            return self._create_accounts(list(unpack_accounts(view)), timestamp)

    def create_transfers_from_packed(
        self, records: memoryview, timestamp: int
    ) -> list[CreateTransferResult]:
        """A packed batch of transfers with the results of `create_transfers`."""
        view = _packed_records(records, "transfers")
        with _collector_paused():
            transfers = list(map(transfer_record, iter_transfer_fields(view)))
            return self._create_transfers(transfers, timestamp)

    # -- expiry ----------------------------------------------------------------------------

    def _expire_before_batch(self, count: int, timestamp: int) -> None:
        """Before a batch of transfers whose last event takes `timestamp`, releases what
        expired by the batch's first timestamp: a pending transfer that expires at or before
        an event's timestamp is expired for that event, and for every event after it."""
        self.expire_pending_transfers(timestamp - count + 1)

    def expiry_due(self, now_ns: int) -> bool:
        """Whether an expiry is due by `now_ns`: then `expire_pending_transfers` has work, if
        only to drop the entry of a transfer that was posted or voided meanwhile."""
        return bool(self._expiry) and self._expiry[0][0] <= now_ns

    def expire_pending_transfers(self, timestamp: int) -> int:
        """Releases every pending transfer whose timeout has passed by `timestamp`.

        Costs nothing when none is due: the earliest expiry is at the top of a heap.
        Returns how many expired.
        """
        assert self._undo is None
        expired = 0
        while self.expiry_due(timestamp):
            expires, pending_timestamp, pending_id = heapq.heappop(self._expiry)
            p = self._transfer(pending_id)
            if p is None or p[TIMESTAMP] != pending_timestamp or not p[TIMEOUT]:
                continue  # Its chain was rolled back, and the id perhaps used again.
            assert expires_at(p) == expires
            if self._pending_status[pending_id] != PENDING:
                continue  # Posted or voided before it expired.
            dr = self._accounts[p[DEBIT_ACCOUNT_ID]]
            cr = self._accounts[p[CREDIT_ACCOUNT_ID]]
            dr.debits_pending -= p[AMOUNT]
            cr.credits_pending -= p[AMOUNT]
            _reopen_closed_by(p, dr, cr)
            self._pending_status[pending_id] = EXPIRED
            expired += 1
        return expired

    # -- the batch loop: linked chains and imported batches ----------------------------------

    def _execute(
        self,
        events: Sequence[Any],
        timestamp: int,
        create: Callable[[Any, int], int],
        statuses: type[CreateAccountStatus] | type[CreateTransferStatus],
        result: type[CreateAccountResult] | type[CreateTransferResult],
    ) -> list[Any]:
        """Runs `create` over a batch whose last event takes `timestamp`; returns a `result`
        record per event, made here once, as the Rust engine makes them.

        Linked events form a chain that succeeds or fails as a whole; the first event decides
        whether the batch imports user timestamps. The statuses decided here precede every
        status of `create`, in the order TigerBeetle checks them.
        """
        count = len(events)
        assert 0 < count <= timestamp <= TIMESTAMP_MAX
        imported_bit = _ACCOUNT_IMPORTED if statuses is A else _IMPORTED
        transient = TRANSIENT_ACCOUNT_STATUSES if statuses is A else TRANSIENT_TRANSFER_STATUSES
        linked_or_imported = _LINKED | imported_bit
        batch_imported = events[0].flags & imported_bit
        created = statuses.CREATED
        # A result record is a named tuple of (status, timestamp): `tuple.__new__` makes one
        # without the named tuple's own `__new__`, a Python function around this same call.
        new = tuple.__new__
        first_timestamp = timestamp - count + 1
        results: list[Any] = []
        append = results.append
        chain: int | None = None
        chain_broken = False
        for index, event in enumerate(events):
            event_timestamp = first_timestamp + index
            if chain is None and not (
                event.flags & linked_or_imported or batch_imported or event.timestamp
            ):
                # The common case: an event on its own, neither linked nor imported nor
                # stamped, earns no status of the batch loop, so its create alone decides.
                status = create(event, event_timestamp)
                if status is created:
                    append(new(result, (created, event_timestamp)))
                    continue
                linked = 0
            else:
                imported = event.flags & imported_bit
                linked = event.flags & _LINKED
                if imported:
                    event_timestamp = event.timestamp
                if linked and chain is None:
                    chain = index
                    self._undo = Undo([], [], [], [])
                if linked and index == count - 1:
                    status = statuses.LINKED_EVENT_CHAIN_OPEN
                elif chain_broken:
                    status = statuses.LINKED_EVENT_FAILED
                else:
                    batch_status = _batch_status(event, statuses, batch_imported, timestamp)
                    if batch_status is not None:
                        status = batch_status
                    else:
                        status = create(event, event_timestamp)
            if status != created:
                event_timestamp = self._failed_timestamp(
                    statuses, status, event, first_timestamp + index
                )
                if chain is not None and not chain_broken:
                    chain_broken = True
                    self._rollback()
                    for chained in range(chain, index):
                        failed = (statuses.LINKED_EVENT_FAILED, results[chained][1])
                        results[chained] = new(result, failed)
                if status in transient:
                    self._failed_ids.add(event.id)
            append(new(result, (status, event_timestamp)))
            if chain is not None and (not linked or status == statuses.LINKED_EVENT_CHAIN_OPEN):
                chain = None
                chain_broken = False
                self._undo = None
        assert chain is None and self._undo is None
        return results

    def _failed_timestamp(
        self,
        statuses: type[CreateAccountStatus] | type[CreateTransferStatus],
        status: int,
        event: Any,
        assigned: int,
    ) -> int:
        """The timestamp in the result of an event that failed with `status`, as TigerBeetle
        gives it: the original's for `EXISTS`, else the timestamp `assigned` to the event's
        place in the batch, which an imported event's own does not replace. (The events that a
        failed chain created before it failed keep the timestamps they were created with.)"""
        if status == statuses.EXISTS:
            if statuses is A:
                return self._accounts[event.id].timestamp
            return self._transfer_timestamp(self._transfer_index[event.id])
        return assigned

    # -- effects and their undo ------------------------------------------------------------

    def _insert_transfer(
        self, id_: int, record: bytes, timestamp: int, dr: AccountState, cr: AccountState
    ) -> None:
        """Logs the record of a created transfer after its effects, so that the history of its
        accounts records their balances after it."""
        position = len(self._transfer_log) // RECORD_SIZE
        self._transfer_index[id_] = position
        self._transfer_log += record
        dr.transfers.append(position)
        cr.transfers.append(position)
        if dr.history is not None:
            dr.history.append(dr.balance(timestamp))
        if cr.history is not None:
            cr.history.append(cr.balance(timestamp))
        if self._undo is not None:
            self._undo.transfers_created.append(id_)

    def _save_accounts(self, dr: AccountState, cr: AccountState) -> None:
        if self._undo is not None:
            self._undo.accounts_saved.append((dr, dr.saved()))
            self._undo.accounts_saved.append((cr, cr.saved()))

    def _set_pending_status(self, pending_id: int, status: int) -> None:
        if self._undo is not None:
            self._undo.pending_saved.append((pending_id, self._pending_status.get(pending_id, 0)))
        self._pending_status[pending_id] = status

    def _rollback(self) -> None:
        """Undoes a broken chain, newest effect first. Expiry heap entries of rolled-back
        pending transfers stay behind and are skipped when popped: their status is gone."""
        undo = self._undo
        assert undo is not None
        for account, saved in reversed(undo.accounts_saved):
            account.restore(saved)
        for pending_id, status in reversed(undo.pending_saved):
            if status == 0:
                del self._pending_status[pending_id]
            else:
                self._pending_status[pending_id] = status
        for transfer_id in reversed(undo.transfers_created):
            position = self._transfer_index.pop(transfer_id)
            t = self._transfer_at(position)
            assert position == self._transfer_count() - 1 and t[ID] == transfer_id
            del self._transfer_log[-RECORD_SIZE:]
            for account_id in (t[DEBIT_ACCOUNT_ID], t[CREDIT_ACCOUNT_ID]):
                account = self._accounts[account_id]
                assert account.transfers[-1] == position
                account.transfers.pop()
                if account.history is not None:
                    account.history.pop()
        for account_id in reversed(undo.accounts_created):
            account = self._accounts.pop(account_id)
            popped_account = self._account_log.pop()
            assert popped_account is account
        self._undo = Undo([], [], [], [])


def _batch_status(
    event: Any,
    statuses: type[CreateAccountStatus] | type[CreateTransferStatus],
    batch_imported: int,
    timestamp: int,
) -> int | None:
    """The status of the batch loop that an event earns before its create runs: an event that
    breaks the batch's import mode, or whose user timestamp is out of bounds."""
    imported = event.flags & (_ACCOUNT_IMPORTED if statuses is A else _IMPORTED)
    if imported != batch_imported:
        return (
            statuses.IMPORTED_EVENT_NOT_EXPECTED if imported else statuses.IMPORTED_EVENT_EXPECTED
        )
    if imported and not 1 <= event.timestamp <= TIMESTAMP_MAX:
        return statuses.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE
    if imported and event.timestamp >= timestamp:
        return statuses.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE
    if not imported and event.timestamp != 0:
        return statuses.TIMESTAMP_MUST_BE_ZERO
    return None


def _create_account_exists(a: Account, e: AccountState) -> int:
    if a.flags != e.flags:
        return A.EXISTS_WITH_DIFFERENT_FLAGS
    if a.user_data_128 != e.user_data_128:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if a.user_data_64 != e.user_data_64:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if a.user_data_32 != e.user_data_32:
        return A.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if a.ledger != e.ledger:
        return A.EXISTS_WITH_DIFFERENT_LEDGER
    if a.code != e.code:
        return A.EXISTS_WITH_DIFFERENT_CODE
    return A.EXISTS


def _balancing_amount(t: Transfer, dr: AccountState, cr: AccountState) -> int:
    """A balancing transfer moves at most what its account's limit allows: for a balancing
    debit, what the debit account's posted credits leave over its debits, and the mirror for
    a balancing credit; never less than zero."""
    amount = t.amount
    if t.flags & _BALANCING_DEBIT:
        amount = min(amount, max(0, dr.credits_posted - dr.debits_posted - dr.debits_pending))
    if t.flags & _BALANCING_CREDIT:
        amount = min(amount, max(0, cr.debits_posted - cr.credits_posted - cr.credits_pending))
    return amount


def _post_or_void_amount(t: Transfer, p: StoredTransfer) -> int:
    """The amount a post or void moves: a void of 0, or a post of AMOUNT_MAX, means all."""
    if t.flags & _VOID:
        return t.amount if t.amount > 0 else p[AMOUNT]
    return p[AMOUNT] if t.amount == AMOUNT_MAX else t.amount


def _post_or_void_pending_transfer_exists(t: Transfer, e: StoredTransfer, p: StoredTransfer) -> int:
    """Compares a retried post or void with the one that exists; zero fields were inherited
    from the pending transfer, so they compare through it."""
    if t.debit_account_id != 0 and t.debit_account_id != e[DEBIT_ACCOUNT_ID]:
        return T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id != 0 and t.credit_account_id != e[CREDIT_ACCOUNT_ID]:
        return T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if _post_or_void_amount(t, p) != e[AMOUNT]:
        return T.EXISTS_WITH_DIFFERENT_AMOUNT
    if (t.user_data_128 or p[USER_DATA_128]) != e[USER_DATA_128]:
        return T.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if (t.user_data_64 or p[USER_DATA_64]) != e[USER_DATA_64]:
        return T.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if (t.user_data_32 or p[USER_DATA_32]) != e[USER_DATA_32]:
        return T.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.ledger != 0 and t.ledger != e[LEDGER]:
        return T.EXISTS_WITH_DIFFERENT_LEDGER
    if t.code != 0 and t.code != e[CODE]:
        return T.EXISTS_WITH_DIFFERENT_CODE
    return T.EXISTS


def _reopen_closed_by(p: StoredTransfer, dr: AccountState, cr: AccountState) -> None:
    """A closing transfer that is voided or expires reopens the accounts it closed."""
    if p[FLAGS] & _CLOSING_DEBIT:
        dr.flags &= ~_CLOSED
    if p[FLAGS] & _CLOSING_CREDIT:
        cr.flags &= ~_CLOSED


def _logged_at(log: Sequence[Any], timestamp: int, timestamp_of: Callable[[Any], int]) -> bool:
    """Whether a record of `log`, which is sorted by timestamp, has `timestamp`."""
    i = bisect.bisect_left(log, timestamp, key=timestamp_of)
    return i < len(log) and timestamp_of(log[i]) == timestamp


def _check_batch_timestamp(count: int, timestamp: int, newest: int) -> None:
    """Refuses a batch timestamp that the engine cannot take: every event of a batch of
    `count` needs its own timestamp in `1..=TIMESTAMP_MAX`, after the `newest` that the engine
    holds, the last being `timestamp`."""
    low = newest + count
    if not low <= timestamp <= TIMESTAMP_MAX:
        raise InvalidArgumentError(
            f"timestamp must be in {low}..={TIMESTAMP_MAX} for a batch of {count} after the "
            f"newest event, at {newest}, not {timestamp}"
        )


def _packed_records(records: memoryview, kind: str) -> memoryview:
    """The bytes of a packed batch, checked: whole 128-byte records, at most `BATCH_MAX`."""
    view = as_records(records, kind)
    _check.check_count(len(view) // RECORD_SIZE, kind, BATCH_MAX)
    return view


def _pack_results(results: Sequence[tuple[int, int]]) -> tuple[bytes, bytes]:
    statuses = array.array("I", (status for status, _ in results))
    timestamps = array.array("Q", (timestamp for _, timestamp in results))
    return statuses.tobytes(), timestamps.tobytes()
