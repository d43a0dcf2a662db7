"""The `Ledger` facade: the clock, the argument checks and the lock, over one engine.

Both engines are deterministic state machines that never read a clock. The facade reads the
clock once per call, turns it into strictly increasing timestamps (never going backwards, even
when the clock does), checks the input at the edge, and serialises calls with a lock so that a
ledger can be shared between threads.

A ledger opened on a directory (`Ledger.open`) also journals every batch the engine applies:
the records exactly as submitted and the batch timestamp, which with the facade's expiry rule
are all that a deterministic engine needs to rebuild its state on the next open. Nothing in the
journal depends on the engine's answer, so a batch is queued for the journal just before the
engine applies it, under the lock (journal order is apply order), and the journal's writer
thread writes it while the engine works. The write and fsync never hold the lock, so callers
that arrive together share one (group commit), and no call returns, nor shows another's batch,
before that batch is durable. An engine that fails on a batch already queued leaves the journal
ahead of memory: the ledger then refuses every call until it is opened again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast, overload

from . import _check, packed
from ._balances import Balances, TrialBalance
from ._engine import PythonEngine
from ._journal import KIND_ACCOUNTS, KIND_EXPIRY, KIND_TRANSFERS, Batch, JournalWriter
from ._records import RECORD_SIZE, pack_accounts, pack_transfers
from ._store import Directory, Snapshot
from ._types import (
    ACCOUNT_FILTER_FIELD_BITS,
    BATCH_MAX,
    QUERY_FILTER_FIELD_BITS,
    TIMESTAMP_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    QueryFilter,
    Transfer,
)
from .errors import (
    EngineUnavailableError,
    InvalidArgumentError,
    JournalCorruptError,
    JournalWriteError,
    LedgerClosedError,
    RecordTypeError,
)
from .packed import PackedAccounts, PackedBatch, PackedResults, PackedTransfers

__all__ = ["ENGINES", "Ledger"]

ENGINES = ("auto", "rust", "python")

log = logging.getLogger("fastledger")


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between creating accounts and creating transfers."""

    name: str
    # Checks a list of records for the Python engine (the Rust engine checks as it converts).
    check: Callable[[Sequence[Any], str], None]
    result: type
    status_enum: type[CreateAccountStatus] | type[CreateTransferStatus]
    create: str
    create_packed: str
    # The Rust engine's create of packed records with the results of `create`.
    create_from_packed: str
    journal_kind: int
    pack: Callable[[Any], bytes]


_ACCOUNTS = _Kind(
    "accounts",
    _check.check_accounts,
    CreateAccountResult,
    CreateAccountStatus,
    "create_accounts",
    "create_accounts_packed",
    "create_accounts_from_packed",
    KIND_ACCOUNTS,
    pack_accounts,
)
_TRANSFERS = _Kind(
    "transfers",
    _check.check_transfers,
    CreateTransferResult,
    CreateTransferStatus,
    "create_transfers",
    "create_transfers_packed",
    "create_transfers_from_packed",
    KIND_TRANSFERS,
    pack_transfers,
)
_KINDS = {KIND_ACCOUNTS: _ACCOUNTS, KIND_TRANSFERS: _TRANSFERS}

# A durable ledger on the Python engine snapshots it after at least this many batches by
# default (and only once the journal written since the last snapshot is as large as that
# snapshot, so that snapshots never cost more than the journal they let the next open skip).
# The Rust engine replays its journal faster than it imports a snapshot: see `Ledger.open`.
SNAPSHOT_EVERY = 128

R = TypeVar("R")


class Engine(Protocol):
    """What the facade needs of an engine; `PythonEngine` and `_native.Engine` provide it."""

    name: str

    def create_accounts(
        self, accounts: Sequence[Account], timestamp: int
    ) -> list[CreateAccountResult]: ...

    def create_transfers(
        self, transfers: Sequence[Transfer], timestamp: int
    ) -> list[CreateTransferResult]: ...

    def create_accounts_packed(
        self, records: memoryview, timestamp: int
    ) -> tuple[bytes, bytes]: ...

    def create_transfers_packed(
        self, records: memoryview, timestamp: int
    ) -> tuple[bytes, bytes]: ...

    def expire_pending_transfers(self, timestamp: int) -> int: ...

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]: ...

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]: ...

    def lookup_accounts_packed(self, ids: Sequence[int]) -> bytes: ...

    def lookup_transfers_packed(self, ids: Sequence[int]) -> bytes: ...

    def get_account_transfers(self, f: AccountFilter) -> list[Transfer]: ...

    def get_account_balances(self, f: AccountFilter) -> list[AccountBalance]: ...

    def query_accounts(self, f: QueryFilter) -> list[Account]: ...

    def query_transfers(self, f: QueryFilter) -> list[Transfer]: ...

    def balances_at(
        self, timestamp: int, account_ids: Sequence[int] | None, ledger: int
    ) -> tuple[tuple[bytes, bytes, bytes, bytes, bytes], tuple[int, int, int, int]]: ...


class SnapshotEngine(Protocol):
    """What snapshots need of an engine; an engine without it replays the whole journal."""

    def export_state(self) -> bytes: ...

    def import_state(self, state: bytes) -> None: ...


def _snapshot_engine(engine: Engine) -> SnapshotEngine | None:
    if hasattr(engine, "export_state") and hasattr(engine, "import_state"):
        return cast(SnapshotEngine, engine)
    return None


def _immutable(records: memoryview) -> bytes:
    """The records as bytes for the journal and the engine to read, so that a caller changing
    its buffer meanwhile cannot make them differ: a whole bytes object as it is, anything
    else copied."""
    owner = records.obj
    if type(owner) is bytes and len(owner) == records.nbytes:
        return owner
    return records.tobytes()


def rust_engine_available() -> bool:
    try:
        from . import _native  # noqa: F401
    except ImportError:
        return False
    return True


def _make_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise InvalidArgumentError(f"engine must be one of {ENGINES}, not {name!r}")
    if name == "python":
        return PythonEngine()
    try:
        from . import _native
    except ImportError as error:
        if name == "auto":
            return PythonEngine()
        raise EngineUnavailableError(
            f"the Rust engine cannot be imported ({error}); install a wheel built for this "
            'platform or choose engine="python"'
        ) from error
    engine: Engine = _native.Engine()
    return engine


class Ledger:
    """An in-memory ledger of accounts and immutable transfers.

    `engine` chooses the state machine: "rust" (the default whenever the native extension can
    be imported), "python", or "auto". `clock` returns nanoseconds since the epoch and can be
    injected by tests. `batch_max` bounds the events of one call.
    """

    def __init__(
        self,
        engine: str = "auto",
        *,
        clock: Callable[[], int] | None = None,
        batch_max: int = BATCH_MAX,
    ) -> None:
        if type(batch_max) is not int or not 1 <= batch_max <= BATCH_MAX:
            raise InvalidArgumentError(f"batch_max must be an int in 1..{BATCH_MAX}")
        self._engine = _make_engine(engine)
        self._clock = clock if clock is not None else time.time_ns
        self._batch_max = batch_max
        self._lock = threading.Lock()
        # The last timestamp given to an event, and the time through which pending
        # transfers have been expired: every later event is stamped after both.
        self._timestamp = 0
        self._expired_through = 0
        # Set by `open`: the directory and its journal. None for an in-memory ledger.
        self._directory: Directory | None = None
        self._journal: JournalWriter | None = None
        self._closed = False
        # Held across a whole snapshot, so that two never write at once, and by `close`.
        self._snapshot_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        engine: str = "auto",
        clock: Callable[[], int] | None = None,
        durability: str = "fsync",
        snapshot_every: int | Literal["auto"] | None = "auto",
        batch_max: int = BATCH_MAX,
    ) -> Ledger:
        """Opens (or creates) the ledger kept in the directory `path`.

        The state is the newest valid snapshot plus the journal after it. A torn last write,
        never acknowledged, is cut off; damage anywhere else raises `JournalCorruptError`.
        Another open ledger on the same directory raises `LedgerLockedError`.

        `durability="fsync"` (the default) returns from a create only once its batch is on
        disk. `"unsafe_no_fsync"` hands the batch to the operating system without waiting for
        the disk: it survives the process being killed, not a power cut or a kernel crash, and
        after one the directory may refuse to open. `snapshot_every` is the fewest batches
        between two automatic snapshots; None turns them off (`snapshot()` still works).

        `"auto"` (the default) means 128 with the Python engine and None with the Rust engine.
        The Rust engine replays the journal faster than it imports a snapshot (opening reads
        and checksums the whole journal either way), so its snapshots would only cost: the
        export holds the ledger's lock, stalling every caller, and writing the file competes
        with the journal for the disk.
        """
        if not (
            snapshot_every is None
            or snapshot_every == "auto"
            or (type(snapshot_every) is int and snapshot_every >= 1)
        ):
            raise InvalidArgumentError('snapshot_every must be a positive int, None or "auto"')
        ledger = cls(engine, clock=clock, batch_max=batch_max)
        if snapshot_every == "auto":
            snapshot_every = None if ledger.engine == "rust" else SNAPSHOT_EVERY
        directory = Directory.lock(path, durability)
        try:
            ledger._recover(directory)
        except BaseException:
            directory.close()
            raise
        if _snapshot_engine(ledger._engine) is None:
            snapshot_every = None
        directory.snapshot_every = snapshot_every
        ledger._directory = directory
        weakref.finalize(ledger, directory.close)
        return ledger

    def close(self) -> None:
        """Writes what is queued and releases the directory. Later calls raise
        `LedgerClosedError`. Closing again, or closing an in-memory ledger, does nothing."""
        directory = self._directory
        if directory is None:
            return
        with self._snapshot_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                # A failed journal was reported to its callers already; close still releases.
                with contextlib.suppress(JournalWriteError):
                    if self._journal is not None:
                        self._journal.flush()
            finally:
                directory.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> str | None:
        """The directory of a durable ledger; None in memory."""
        return None if self._directory is None else self._directory.path

    @property
    def durability(self) -> str | None:
        """ "fsync" or "unsafe_no_fsync" for a durable ledger; None in memory."""
        return None if self._directory is None else self._directory.durability

    @property
    def engine(self) -> str:
        """The engine in use: "rust" or "python"."""
        return self._engine.name

    @property
    def batch_max(self) -> int:
        return self._batch_max

    # -- creates ---------------------------------------------------------------------------

    @overload
    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]: ...
    @overload
    def create_accounts(self, accounts: PackedBatch) -> PackedResults[CreateAccountResult]: ...
    def create_accounts(
        self, accounts: Sequence[Account] | PackedBatch
    ) -> list[CreateAccountResult] | PackedResults[CreateAccountResult]:
        """Creates accounts; returns one result per event, in order.

        `accounts` is a list of `Account` records, or a packed batch (see `fastledger.packed`)
        whose results then come back packed too.
        """
        return self._create(_ACCOUNTS, accounts)

    @overload
    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]: ...
    @overload
    def create_transfers(self, transfers: PackedBatch) -> PackedResults[CreateTransferResult]: ...
    def create_transfers(
        self, transfers: Sequence[Transfer] | PackedBatch
    ) -> list[CreateTransferResult] | PackedResults[CreateTransferResult]:
        """Creates transfers; returns one result per event, in order.

        `transfers` is a list of `Transfer` records, or a packed batch (see
        `fastledger.packed`) whose results then come back packed too.
        """
        return self._create(_TRANSFERS, transfers)

    def _create(self, kind: _Kind, events: object) -> list[Any] | PackedResults[Any]:
        # A list, the common case, skips the abstract base class checks, which took about as
        # long as the Rust engine's work on one transfer.
        if type(events) is list:
            _check.check_count(len(events), kind.name, self._batch_max)
        elif isinstance(events, Sequence) and not isinstance(
            events, (bytes, bytearray, memoryview)
        ):
            events = _check.check_batch(events, kind.name, self._batch_max)
        else:
            return self._create_packed(kind, events)
        if not events:
            return []
        rust = self._engine.name == "rust"
        if not rust:
            kind.check(events, kind.name)
        body = None if self._journal is None else self._pack(kind, events)
        with self._lock:
            timestamp = self._begin_batch(kind, len(events))
            raw: list[Any]
            if body is None:
                raw = getattr(self._engine, kind.create)(events, timestamp)
                sequence = 0
            elif rust:
                # The Rust engine reads the records packed for the journal: converted once.
                create, records = kind.create_from_packed, memoryview(body)
                sequence, raw = self._apply_journaled(kind, timestamp, body, create, records)
            else:
                sequence, raw = self._apply_journaled(kind, timestamp, body, kind.create, events)
        if sequence:
            self._settle(sequence)
        # Each engine makes the result records itself, the cheapest place to make them.
        return raw

    def _apply_journaled(
        self, kind: _Kind, timestamp: int, body: bytes, create: str, records: object
    ) -> tuple[int, Any]:
        """Queues a batch for the journal, then has the engine apply it with its method
        `create` on `records`, the events of `body`; returns the batch's sequence and the
        engine's answer. Called under the lock.

        From the moment the batch is queued, an exception leaves the journal holding a batch
        that memory may lack, and fails the ledger (see `_fail_applying`)."""
        assert self._journal is not None
        queued = self._journal.appended + 1
        try:
            sequence = self._log_batch(kind, timestamp, body)
            return sequence, getattr(self._engine, create)(records, timestamp)
        except BaseException as error:
            if self._journal.appended == queued:
                self._fail_applying(queued, error)
            raise

    def _create_packed(self, kind: _Kind, events: object) -> PackedResults[Any]:
        records = packed.as_records(events, kind.name)
        count = len(records) // RECORD_SIZE
        _check.check_count(count, kind.name, self._batch_max)
        if count == 0:
            return PackedResults(b"", b"", kind.result, kind.status_enum)
        body = None if self._journal is None else _immutable(records)
        if body is not None:
            records = memoryview(body)
        with self._lock:
            timestamp = self._begin_batch(kind, count)
            if body is None:
                statuses, timestamps = getattr(self._engine, kind.create_packed)(records, timestamp)
                sequence = 0
            else:
                create = kind.create_packed
                sequence, answer = self._apply_journaled(kind, timestamp, body, create, records)
                statuses, timestamps = answer
        self._settle(sequence)
        return PackedResults(statuses, timestamps, kind.result, kind.status_enum)

    def _begin_batch(self, kind: _Kind, count: int, journaled: int | None = None) -> int:
        """Stamps a batch (on replay, with its `journaled` stamp); before transfers, releases
        the pending transfers that expired."""
        self._check_usable()
        if journaled is None:
            timestamp = self._batch_timestamp(count)
        else:
            timestamp = self._advance(journaled, count)
        if kind is _TRANSFERS:
            self._engine.expire_pending_transfers(timestamp - count + 1)
        return timestamp

    # -- lookups ---------------------------------------------------------------------------

    @overload
    def lookup_accounts(
        self, ids: Sequence[int], *, packed: Literal[False] = False
    ) -> list[Account]: ...
    @overload
    def lookup_accounts(self, ids: Sequence[int], *, packed: Literal[True]) -> PackedAccounts: ...
    def lookup_accounts(
        self, ids: Sequence[int], *, packed: bool = False
    ) -> list[Account] | PackedAccounts:
        """The accounts with these ids, in the order asked; missing ids are left out.

        With `packed=True`, as packed 128-byte records (`.to_numpy()` views them), with no
        Python object per account.
        """
        ids = _check.check_ids(ids, "ids", self._batch_max)
        if packed:
            return PackedAccounts(self._read(lambda: self._engine.lookup_accounts_packed(ids)))
        return self._read(lambda: self._engine.lookup_accounts(ids))

    @overload
    def lookup_transfers(
        self, ids: Sequence[int], *, packed: Literal[False] = False
    ) -> list[Transfer]: ...
    @overload
    def lookup_transfers(self, ids: Sequence[int], *, packed: Literal[True]) -> PackedTransfers: ...
    def lookup_transfers(
        self, ids: Sequence[int], *, packed: bool = False
    ) -> list[Transfer] | PackedTransfers:
        """The transfers with these ids, in the order asked; missing ids are left out.

        With `packed=True`, as packed 128-byte records (`.to_numpy()` views them), with no
        Python object per transfer.
        """
        ids = _check.check_ids(ids, "ids", self._batch_max)
        if packed:
            return PackedTransfers(self._read(lambda: self._engine.lookup_transfers_packed(ids)))
        return self._read(lambda: self._engine.lookup_transfers(ids))

    # -- queries ---------------------------------------------------------------------------

    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]:
        """The transfers of one account that match the filter, as TigerBeetle answers it."""
        self._check_account_filter(account_filter)
        return self._read(lambda: self._engine.get_account_transfers(account_filter))

    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]:
        """The balances after each matching transfer of an account flagged `HISTORY`."""
        self._check_account_filter(account_filter)
        return self._read(lambda: self._engine.get_account_balances(account_filter))

    def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        """The accounts whose fields match the filter, by timestamp."""
        self._check_query_filter(query_filter)
        return self._read(lambda: self._engine.query_accounts(query_filter))

    def query_transfers(self, query_filter: QueryFilter) -> list[Transfer]:
        """The transfers whose fields match the filter, by timestamp."""
        self._check_query_filter(query_filter)
        return self._read(lambda: self._engine.query_transfers(query_filter))

    def balances_at(self, timestamp: int, account_ids: Sequence[int] | None = None) -> Balances:
        """The balances of accounts as they were at `timestamp`, events at that timestamp
        included: a read-only mapping from account id to `AccountBalance`.

        With `account_ids` None, every account that existed at `timestamp`; otherwise those
        of the given ids that existed then. No flag is needed on the accounts.
        """
        timestamp = _check.check_u64(timestamp, "timestamp")
        if account_ids is not None:
            account_ids = _check.check_ids(account_ids, "account_ids", 2**32)
        columns, _ = self._read(lambda: self._engine.balances_at(timestamp, account_ids, 0))
        return Balances(timestamp, columns)

    def trial_balance(self, ledger: int, at: int | None = None) -> TrialBalance:
        """Per-account totals of one ledger as of `at` (default: now) and their sums."""
        if at is not None:
            at = _check.check_u64(at, "at")
        ledger = _check.check_u64(ledger, "ledger")
        if not 0 < ledger < 2**32:
            raise InvalidArgumentError(f"ledger must be in 1..{2**32 - 1}, not {ledger}")

        def read() -> tuple[int, tuple[bytes, bytes, bytes, bytes, bytes], tuple[int, ...]]:
            timestamp = max(self._timestamp, self._expired_through) if at is None else at
            return (timestamp, *self._engine.balances_at(timestamp, None, ledger))

        timestamp, columns, totals = self._read(read)
        debits_pending, debits_posted, credits_pending, credits_posted = totals
        return TrialBalance(
            ledger=ledger,
            timestamp=timestamp,
            accounts=Balances(timestamp, columns),
            debits_pending=debits_pending,
            debits_posted=debits_posted,
            credits_pending=credits_pending,
            credits_posted=credits_posted,
        )

    def _check_account_filter(self, account_filter: object) -> None:
        _check.check_filter(
            account_filter, AccountFilter, ACCOUNT_FILTER_FIELD_BITS, self._batch_max
        )

    def _check_query_filter(self, query_filter: object) -> None:
        _check.check_filter(query_filter, QueryFilter, QUERY_FILTER_FIELD_BITS, self._batch_max)

    # -- time ------------------------------------------------------------------------------

    def _read_clock(self) -> int:
        now: Any = self._clock()
        if type(now) is not int:
            raise RecordTypeError(f"the clock must return an int of nanoseconds, not {now!r}")
        # Comparisons rather than min and max: the clock is read on every call, and these
        # calls of builtins took about as long as the Rust engine's work on one transfer.
        if 0 <= now <= TIMESTAMP_MAX:
            return now
        return 0 if now < 0 else TIMESTAMP_MAX

    def _batch_timestamp(self, count: int) -> int:
        """The timestamp of the last event of a batch of `count`; event i of the batch takes
        `timestamp - count + i + 1`, so every event gets its own, after all earlier ones.

        The first event may take the very time through which a read expired pending transfers:
        a transfer that expires at or before its timestamp is expired for it either way.
        """
        now = self._read_clock()
        after_last = self._timestamp + count
        after_expiry = self._expired_through + count - 1
        # The latest of the three, by comparisons (see `_read_clock`).
        timestamp = now if now >= after_last else after_last
        if timestamp < after_expiry:
            timestamp = after_expiry
        assert timestamp <= TIMESTAMP_MAX, "the ledger has run out of timestamps"
        return self._advance(timestamp, count)

    def _advance(self, timestamp: int, count: int) -> int:
        self._timestamp = timestamp
        self._expired_through = timestamp - count + 1
        return timestamp

    def _expire_now(self) -> None:
        """Before a read, releases what expired by now: by the clock, or by the last event's
        timestamp when the clock is behind it, since that event has already happened. The
        current balances a read shows are then `balances_at` of that time.

        On a durable ledger, a read that released a reservation journals the time it expired
        through: replaying the batches alone would release it only at the next batch, so a
        ledger reopened while its clock is behind that time (set back, or another machine's)
        would show the reservation again, and let it be posted, after a reader saw it gone."""
        now = max(self._read_clock(), self._expired_through, self._timestamp)
        expired = self._engine.expire_pending_transfers(now)
        if expired and self._journal is not None:
            self._journal.append(KIND_EXPIRY, now, b"")
        self._expired_through = now

    # -- durability ------------------------------------------------------------------------

    def _read(self, read: Callable[[], R]) -> R:
        """Runs a read under the lock; on a durable ledger, returns only once every batch the
        read could see is on disk, so that nothing a caller saw can vanish in a crash."""
        with self._lock:
            self._check_usable()
            self._expire_now()
            result = read()
            seen = 0 if self._journal is None else self._journal.appended
        self._settle(seen)
        return result

    def _check_usable(self) -> None:
        if self._closed:
            raise LedgerClosedError(f"the ledger of {self.path} is closed: open it again")
        if self._journal is not None:
            self._journal.raise_if_failed()

    def _pack(self, kind: _Kind, events: Sequence[Any]) -> bytes | None:
        """The records of a batch as the journal keeps them; None in memory. Packing refuses
        what the engines refuse, with their messages."""
        if self._journal is None:
            return None
        return kind.pack(events)

    def _log_batch(self, kind: _Kind, timestamp: int, body: bytes) -> int:
        """Queues a batch for the journal, just before the engine applies it; returns its
        sequence."""
        assert self._journal is not None and self._directory is not None
        self._directory.note_batch(len(body))
        return self._journal.append(kind.journal_kind, timestamp, body)

    def _fail_applying(self, sequence: int, error: BaseException) -> None:
        """The engine (or an interrupt) raised on batch `sequence`, which the journal holds:
        memory may lack it, so the ledger refuses every further call until it is opened again
        and the journal replayed. An Exception becomes the error that says so; anything else,
        such as KeyboardInterrupt, goes on as it is. Called under the lock."""
        assert self._journal is not None
        failure = self._journal.fail_applying(sequence, error)
        if isinstance(error, Exception):
            raise failure from error

    def _settle(self, sequence: int) -> None:
        """Waits, outside the lock, until batch `sequence` is on disk; then takes a snapshot
        if one is due."""
        if self._journal is None or sequence == 0:
            return
        self._journal.wait(sequence)
        assert self._directory is not None
        if self._directory.snapshot_due and self._snapshot_lock.acquire(blocking=False):
            try:
                self._snapshot()
            except LedgerClosedError:
                pass  # Closed meanwhile: the next open replays a little more journal.
            except OSError as error:
                # The caller's batch is durable already; a snapshot only saves replay time,
                # so its failure must not fail the call; a later one is tried as usual.
                log.warning("fastledger: a snapshot of %s failed: %s", self.path, error)
            finally:
                self._snapshot_lock.release()

    def snapshot(self) -> bool:
        """Writes a snapshot of the engine now, so that the next open replays less journal.

        Returns False, writing nothing, for an in-memory ledger or an engine that cannot
        export its state.
        """
        if self._directory is None or _snapshot_engine(self._engine) is None:
            return False
        with self._snapshot_lock:
            self._snapshot()
        return True

    def _snapshot(self) -> None:
        """Exports the engine under the lock; outside it, waits until every batch the state
        holds is durable and writes the file. Called with the snapshot lock held.

        Waiting for the journal under the lock stalled every caller for a write and an fsync
        at each snapshot; the state is a copy, so later batches cannot change it meanwhile.
        """
        engine = _snapshot_engine(self._engine)
        assert self._directory is not None and self._journal is not None and engine is not None
        with self._lock:
            self._check_usable()
            # The snapshot records the time through which pending transfers expired; after
            # an accounts batch the engine can lag behind it, so it catches up first (as the
            # next read or transfers batch would) and the state matches what it records.
            self._engine.expire_pending_transfers(self._expired_through)
            state = engine.export_state()
            sequence = self._journal.mark()
            timestamp, expired_through = self._timestamp, self._expired_through
            self._directory.note_snapshot(len(state))
        tip = self._journal.marked_tip(sequence)
        self._directory.write_snapshot(Snapshot("", tip, timestamp, expired_through, state))

    def _recover(self, directory: Directory) -> None:
        """Loads the newest snapshot the engine can import, replays the journal after it and
        opens the journal for appending."""
        engine = _snapshot_engine(self._engine)
        snapshot = None if engine is None else directory.newest_snapshot()
        if snapshot is not None and engine is not None:
            try:
                engine.import_state(snapshot.state)
            except ValueError as error:
                raise JournalCorruptError(str(error), path=snapshot.path, offset=0) from error
            self._timestamp = snapshot.timestamp
            self._expired_through = snapshot.expired_through
        self._journal = directory.recover(snapshot, self._replay)

    def _replay(self, batch: Batch) -> None:
        """Applies a journaled batch exactly as it was applied the first time: the same
        stamp, the same expiry before transfers, the same records; or, for an expiry that a
        read journaled, the same release of what expired through its time."""
        if batch.kind == KIND_EXPIRY:
            self._engine.expire_pending_transfers(batch.timestamp)
            self._expired_through = batch.timestamp
            return
        kind = _KINDS[batch.kind]
        timestamp = self._begin_batch(kind, batch.count, batch.timestamp)
        getattr(self._engine, kind.create_packed)(memoryview(batch.body), timestamp)
