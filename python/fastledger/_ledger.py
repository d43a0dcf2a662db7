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

This module holds the API and what every call does on its way to the engine: the checks, the
lock, the clock, the queueing of a batch, the fail-stop rules and the metrics. Reading the
journal back, on open, from other processes, after a failed append, and snapshots, lives in
`_durable`, which the facade calls before a read or an append and after the lock is released.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from _thread import allocate_lock
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from . import _check, _metrics, packed
from ._balances import Balances, TrialBalance
from ._contract import Engine
from ._durable import Durable, _close_journal
from ._progress import ProgressCallback
from ._records import FLAGS_OFFSET, RECORD_SIZE, pack_accounts, pack_transfers
from ._types import (
    ACCOUNT_FILTER_FIELD_BITS,
    BATCH_MAX,
    QUERY_FILTER_FIELD_BITS,
    TIMESTAMP_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    AccountFlags,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    QueryFilter,
    Transfer,
    TransferFlags,
)
from .engine import PythonEngine
from .errors import (
    EngineUnavailableError,
    InvalidArgumentError,
    LedgerClosedError,
    LedgerForkedError,
    ReadOnlyLedgerError,
    RecordTypeError,
)
from .journal import Journal
from .journal.committer import Committer
from .journal.directory import DirectoryJournal
from .journal.format import KIND_ACCOUNTS, KIND_EXPIRY, KIND_TRANSFERS, Batch
from .packed import CREATED, PackedAccounts, PackedBatch, PackedResults, PackedTransfers

__all__ = ["ENGINES", "Ledger"]

ENGINES = ("auto", "rust", "python")

# An engine's create of object records, and of packed records with packed or object results.
_Create = Callable[[Engine, Any, int], list[Any]]
_CreatePacked = Callable[[Engine, memoryview, int], tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between creating accounts and creating transfers."""

    name: str
    result: type
    status_enum: type[CreateAccountStatus] | type[CreateTransferStatus]
    create: _Create
    create_packed: _CreatePacked
    create_from_packed: _Create
    journal_kind: int
    pack: Callable[[Any], bytes]
    # Where `Ledger._counts` keeps this kind's calls and events.
    index: int
    # The flag that imports an event (LINKED is bit 0 in both kinds), as a plain int: a
    # flag enum's `&` costs a microsecond, twice per batch of every caller of a hold.
    imported: int


_ACCOUNTS = _Kind(
    "accounts",
    CreateAccountResult,
    CreateAccountStatus,
    lambda engine, events, timestamp: engine.create_accounts(events, timestamp),
    lambda engine, records, timestamp: engine.create_accounts_packed(records, timestamp),
    lambda engine, records, timestamp: engine.create_accounts_from_packed(records, timestamp),
    KIND_ACCOUNTS,
    pack_accounts,
    0,
    int(AccountFlags.IMPORTED),
)
_TRANSFERS = _Kind(
    "transfers",
    CreateTransferResult,
    CreateTransferStatus,
    lambda engine, events, timestamp: engine.create_transfers(events, timestamp),
    lambda engine, records, timestamp: engine.create_transfers_packed(records, timestamp),
    lambda engine, records, timestamp: engine.create_transfers_from_packed(records, timestamp),
    KIND_TRANSFERS,
    pack_transfers,
    1,
    int(TransferFlags.IMPORTED),
)
_KINDS = {KIND_ACCOUNTS: _ACCOUNTS, KIND_TRANSFERS: _TRANSFERS}
_LINKED = int(AccountFlags.LINKED)

DURABILITY = ("fsync", "unsafe_no_fsync")
# The most transfers a ledger holds, and so the most `reserve_transfers` maps.
TRANSFERS_RESERVED_MAX = 3 << 30

R = TypeVar("R")

_status_of = itemgetter(0)
# A create in memory of at least this many events, by which the Rust engine works without the
# GIL, lets in a caller that waits for the lock before it takes it again; the pause it makes
# for that, and how often a waiting caller says again that it waits.
_LARGE_BATCH_EVENTS = 64
_LOCK_HANDOVER_S = 0.0001
_LOCK_WANTED_EVERY_S = 0.001


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


# What became of a caller's batch (`_Request.state`): applied, or this caller leads the next
# hold of the append lock; None while it waits, or when the leader stopped before applying it.
_DONE = "done"
_LEAD = "lead"


class _Request:
    """One caller's batch, waiting for the thread that leads the next hold of the append lock
    (see `Ledger._lead`)."""

    __slots__ = (
        "answer",
        "body",
        "checksum",
        "committer",
        "create",
        "kind",
        "sequence",
        "state",
        "woken",
    )

    def __init__(
        self, kind: _Kind, body: bytes, checksum: bytes, create: _Create | _CreatePacked
    ) -> None:
        self.kind = kind
        self.body = body
        self.checksum = checksum
        self.create = create
        self.sequence = 0
        self.answer: Any = None
        # The committer that queued the batch, which tells when it is durable: a rebuild
        # after a failed write makes another, which may give the same sequence to another
        # batch.
        self.committer: Committer | None = None
        self.state: str | None = None
        self.woken = allocate_lock()

    def answered(self, committer: Committer | None, sequence: int, answer: Any) -> None:
        """Records that the batch was queued by `committer` as `sequence` and applied."""
        self.committer, self.sequence, self.answer = committer, sequence, answer
        self.state = _DONE

    def arm(self) -> None:
        """Makes `woken` block until the leader releases it; the state is reset."""
        self.state = None
        self.woken = allocate_lock()
        self.woken.acquire()


# The most events of callers' batches that one batch of the journal carries: the leader checksums
# their bytes again under the append lock, about 0.2 ms for 1024 events.
SHARED_EVENTS_MAX = 1024


def _shared_batches(requests: list[_Request], events_max: int) -> list[list[_Request]]:
    """Splits the batches of one hold into runs that each become one batch of the journal.

    A batch of the journal costs every process a read, a checksum and an engine call, so the
    small batches of callers that waited for the same hold go out as one, and each caller gets
    the results of its own events. The events of each caller judge alike alone or shared:
    those of one kind share; a batch whose last event is linked ends its run, so that its open
    chain ends where it would alone; a batch that imports (its first event is imported, which
    makes the whole batch an import) never shares, and neither does a batch with more events
    than a shared one holds."""
    runs: list[list[_Request]] = []
    events = 0
    joinable = False
    for request in requests:
        body = request.body
        count = len(body) // RECORD_SIZE
        first_flags = int.from_bytes(body[FLAGS_OFFSET : FLAGS_OFFSET + 2], "little")
        last_flags = int.from_bytes(body[-RECORD_SIZE + FLAGS_OFFSET :][:2], "little")
        shares = not first_flags & request.kind.imported and count <= events_max
        joins = joinable and runs[-1][0].kind is request.kind and events + count <= events_max
        if shares and joins:
            runs[-1].append(request)
            events += count
        else:
            runs.append([request])
            events = count
        joinable = shares and not last_flags & _LINKED
    return runs


def _result_records(kind: _Kind, answer: tuple[bytes, bytes]) -> list[Any]:
    """The result records of packed status and timestamp columns."""
    statuses = memoryview(answer[0]).cast("I")
    timestamps = memoryview(answer[1]).cast("Q")
    return [kind.result(kind.status_enum(s), t) for s, t in zip(statuses, timestamps, strict=True)]


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
        self._engine_name = engine
        self._clock = clock if clock is not None else time.time_ns
        self._batch_max = batch_max
        self._lock = threading.Lock()
        # The batches of durable creates waiting for a thread to lead the next hold of the
        # append lock, and whether one does (see `_lead`).
        self._waiting_lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._leading = False
        # The last timestamp given to an event, and the time through which pending
        # transfers have been expired: every later event is stamped after both.
        self._timestamp = 0
        self._expired_through = 0
        # Set by `open`: the journal and its committer, None for an in-memory ledger; and the
        # durable part, which recovers, follows, rebuilds and snapshots (see `_durable`).
        self._journal: Journal | None = None
        self._committer: Committer | None = None
        self._durable = Durable()
        self._read_only = False
        self._pid = os.getpid()
        self._forked = False
        self._closed = False
        # Whether a create in memory waits for the lock (see `_let_a_waiter_in`).
        self._lock_wanted = False
        # For `metrics()`, counted under the lock: per kind of create, its calls and events
        # and the results of every status but CREATED by code, beside what the engine counted
        # of the creates in memory of objects (`Engine.counts`); [calls, events] of lookups
        # and of queries; how long catching up with other processes took.
        self._calls = [0, 0]
        self._events = [0, 0]
        self._failed_statuses: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self._lookups = [0, 0]
        self._queries = [0, 0]
        self._catch_up_ns = _metrics.Histogram()

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
        read_only: bool = False,
        key: bytes | None = None,
        max_staleness_s: float | None = None,
        cut_damaged_tail: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Ledger:
        """Opens (or creates) the ledger whose journal is the directory `path`, or the
        PostgreSQL database of a `postgresql://` URL.

        Any number of processes may open one ledger, all of them writers: every create first
        applies what the others appended, then appends its own batch, under the journal's
        append lock. A read first applies what others appended, so it reflects every batch
        acknowledged to anyone before it began; `max_staleness_s` lets a read skip that look
        when the last one is more recent than that. `read_only=True` follows the journal and
        never writes, nor takes the append lock.

        The state is the newest valid snapshot plus the journal after it. The torn tail of a
        write that was never acknowledged is cut off; any other damage raises
        `JournalCorruptError` naming the place. `cut_damaged_tail=True` instead cuts the
        journal at the first damaged batch, logging what it drops: a recovery to choose
        knowingly, for a journal whose damaged end has no copy anywhere.

        `durability="fsync"` (the default) returns from a create only once its batch is on
        disk. `"unsafe_no_fsync"` hands the batch to the operating system without waiting for
        the disk: it survives the process being killed, not a power cut or a kernel crash, and
        after one the directory may refuse to open. On PostgreSQL a batch is durable once
        committed, as the server's settings define it.

        `key` (16 to 64 bytes) keys every checksum of the journal and its snapshots, so that a
        party without it cannot rewrite history and recompute the hash chain; a keyed journal
        opens only with its key. `snapshot_every` is the fewest batches between two automatic
        snapshots of a directory ledger; None turns them off (`snapshot()` still works);
        `"auto"` (the default) means 128 with the Python engine and None with the Rust engine,
        which replays its journal faster than it imports a snapshot.

        `progress`, a callable, is called with a `fastledger.Progress` while the journal is
        read: once a snapshot is loaded, as batches are replayed (on the first one, then at
        most every 0.2 s), and once with stage `"done"` when the ledger is ready. An
        exception it raises closes the journal again and propagates out of `open`.
        """
        if progress is not None and not callable(progress):
            raise InvalidArgumentError("progress must be a callable or None")
        if not (
            snapshot_every is None
            or snapshot_every == "auto"
            or (type(snapshot_every) is int and snapshot_every >= 1)
        ):
            raise InvalidArgumentError('snapshot_every must be a positive int, None or "auto"')
        if durability not in DURABILITY:
            raise InvalidArgumentError(
                f"durability must be one of {DURABILITY}, not {durability!r}"
            )
        if max_staleness_s is not None and not max_staleness_s >= 0:
            raise InvalidArgumentError("max_staleness_s must be a number of seconds >= 0, or None")
        ledger = cls(engine, clock=clock, batch_max=batch_max)
        ledger._durable = Durable.open(
            ledger,
            path,
            key=key,
            read_only=read_only,
            durability=durability,
            snapshot_every=snapshot_every,
            max_staleness_s=max_staleness_s,
            cut_damaged_tail=cut_damaged_tail,
            progress=progress,
        )
        _opened.add(ledger)
        return ledger

    def close(self) -> None:
        """Makes what is queued durable and closes the journal. Later calls raise
        `LedgerClosedError`. Closing again, or closing an in-memory ledger, does nothing."""
        if self._journal is None:
            return
        with self._durable.snapshot_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                if self._forked:
                    return  # A forked child owns neither the threads nor the journal.
            # Outside the ledger's lock: a caller that has pinned the append lock waits for
            # it, finds the ledger closed, and lets its pin go, which the committer waits for.
            _close_journal(self._committer, self._journal)

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
        """Where the journal is: a directory, or a URL without its password; None in memory."""
        return None if self._journal is None else self._journal.location

    @property
    def durability(self) -> str | None:
        """ "fsync" or "unsafe_no_fsync" for a durable ledger; None in memory."""
        journal = self._journal
        if journal is None:
            return None
        if isinstance(journal, DirectoryJournal) and not journal.sync:
            return "unsafe_no_fsync"
        return "fsync"

    @property
    def read_only(self) -> bool:
        """Whether the ledger was opened with `read_only=True`."""
        return self._read_only

    @property
    def sequence(self) -> int:
        """The last journal batch this ledger has applied: 0 in memory, or before any."""
        return 0 if self._committer is None else self._committer.appended

    def refresh(self) -> int:
        """Applies what other processes appended to the journal, whatever `max_staleness_s`
        says; returns `sequence`."""
        if self._committer is not None:
            self._durable.rebuild_if_stopped(self)
            with self._lock:
                self._check_usable()
                self._durable.follow(self, now=True)
        return self.sequence

    def wait_for_batches(self, after: int, timeout_s: float) -> bool:
        """Waits at most `timeout_s` for the journal to hold a batch after sequence `after`,
        then applies what others appended; returns whether this ledger is past `after`. A
        follower's loop: `while True: ledger.wait_for_batches(ledger.sequence, 1.0)`."""
        if self._journal is None or self._committer is None:
            return False
        if self._committer.appended <= after:
            self._journal.wait(self._committer.tip, timeout_s)
            self.refresh()
        return self.sequence > after

    @property
    def engine(self) -> str:
        """The engine in use: "rust" or "python"."""
        return self._engine.name

    @property
    def batch_max(self) -> int:
        return self._batch_max

    def reserve_transfers(self, transfers: int, *, ids_in_order: bool = False) -> None:
        """Maps now the memory that `transfers` more transfers will fill, so that posting them
        never waits for the operating system to map fresh pages: the way to a flat p99 under
        sustained load. With the Rust engine that is about 176 bytes a transfer for its record
        and its movement (1.8 GB for 10,000,000), and 11-21 more for the hashed index of ids
        that do not come in ascending order. Pass `ids_in_order=True` when every id will be
        larger than the one before (as `fastledger.id()` makes them in one process) to leave
        that index out; ids that then come out of order anyway are still found, in an index
        that grows as they come. It takes about as long as the memory takes to map (1-2.4 s
        per 10,000,000 transfers on a small cloud machine), holding the ledger's lock. The
        Python engine ignores it."""
        if type(transfers) is not int or not 0 <= transfers <= TRANSFERS_RESERVED_MAX:
            raise InvalidArgumentError(
                f"transfers must be an int in 0..{TRANSFERS_RESERVED_MAX}, not {transfers!r}"
            )
        if type(ids_in_order) is not bool:
            raise InvalidArgumentError(f"ids_in_order must be a bool, not {ids_in_order!r}")
        with self._lock:
            self._check_usable()
            self._engine.reserve_transfers(transfers, ids_in_order)

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
        if self._committer is None:
            # The engine checks the records as it reads them, once, and counts what it
            # applied for `metrics()` (`Engine.counts`): this is the path of one transfer.
            lock = self._lock
            if not lock.acquire(False):
                self._wait_for_lock()
            try:
                timestamp = self._begin_batch(len(events))
                created: list[Any] = kind.create(self._engine, events, timestamp)
            finally:
                lock.release()
            if len(created) >= _LARGE_BATCH_EVENTS and self._lock_wanted:
                self._let_a_waiter_in()
            return created
        # Packed once: the journal and the engine take the same bytes, so that what was
        # checked is what is applied is what is journaled, whatever the caller's objects do.
        body = kind.pack(events)
        request = self._journaled(kind, body, kind.create_from_packed)
        self._durable.settle(self, request.sequence, request.committer)
        answer = request.answer
        # Each engine makes the result records itself, the cheapest place to make them.
        results: list[Any] = answer
        return results

    def _create_packed(self, kind: _Kind, events: object) -> PackedResults[Any]:
        records = packed.as_records(events, kind.name)
        count = len(records) // RECORD_SIZE
        _check.check_count(count, kind.name, self._batch_max)
        if count == 0:
            return PackedResults(b"", b"", kind.result, kind.status_enum)
        if self._committer is None:
            if not self._lock.acquire(False):
                self._wait_for_lock()
            try:
                timestamp = self._begin_batch(count)
                statuses, timestamps = kind.create_packed(self._engine, records, timestamp)
                self._tally(kind, count, (statuses, timestamps))
            finally:
                self._lock.release()
            if count >= _LARGE_BATCH_EVENTS and self._lock_wanted:
                self._let_a_waiter_in()
            return PackedResults(statuses, timestamps, kind.result, kind.status_enum)
        body = _immutable(records)
        request = self._journaled(kind, body, kind.create_packed)
        self._durable.settle(self, request.sequence, request.committer)
        statuses, timestamps = request.answer
        return PackedResults(statuses, timestamps, kind.result, kind.status_enum)

    def _wait_for_lock(self) -> None:
        """Takes the lock for a create in memory that found it held, saying meanwhile that a
        caller waits (see `_let_a_waiter_in`)."""
        self._lock_wanted = True
        while not self._lock.acquire(timeout=_LOCK_WANTED_EVERY_S):
            self._lock_wanted = True

    def _let_a_waiter_in(self) -> None:
        """Pauses a thread that posts large batches in memory, once it let the lock go, so
        that a caller waiting for it takes it before the next batch does. The lock favours
        no one: woken by the release, the waiter was slower to run than the poster to come
        back, and a single call waited behind a whole import (70-90 ms for 122 batches, where
        each batch takes 0.7 ms)."""
        self._lock_wanted = False
        time.sleep(_LOCK_HANDOVER_S)

    def _journaled(self, kind: _Kind, body: bytes, create: _Create | _CreatePacked) -> _Request:
        """Appends a batch to the journal and has the engine apply it with `create` on the
        same bytes; returns the request, applied, with the batch's sequence, its committer
        and the engine's answer, before the batch is durable (see `Durable.settle`).

        The batch is stamped and queued under the append lock, once this ledger has applied
        every batch that others appended before it, by whichever caller leads that hold of
        the lock (see `_lead`): this one, or one that came before it."""
        committer = self._committer
        assert committer is not None
        if self._read_only:
            raise ReadOnlyLedgerError(
                f"the ledger of {self.path} was opened read-only: it cannot create {kind.name}"
            )
        self._durable.rebuild_if_stopped(self)
        committer = self._committer
        assert committer is not None
        self._check_usable()
        # Outside the append lock, which other processes may be waiting for.
        request = _Request(kind, body, committer.journal.checksums(body), create)
        while True:
            request.arm()
            with self._waiting_lock:
                self._waiting.append(request)
                leads = not self._leading
                self._leading = True
            if not leads:
                try:
                    request.woken.acquire()
                except BaseException:
                    self._abandon(request)
                    raise
                leads = request.state is _LEAD
            if leads:
                failure = self._lead(request)
                if request.state is not _DONE and failure is not None:
                    raise failure
            if request.state is _DONE:
                return request
            # Not applied: the leader stopped first. Trying again finds out why.
            self._check_usable()

    def _lead(self, own: _Request) -> Exception | None:
        """Applies the batches of every caller waiting, `own` among them, in one hold of the
        append lock: each stamped, queued and applied in turn under the ledger's lock, by this
        thread alone. Then wakes the others and hands the lead to one that came meanwhile.
        Returns what stopped it, if anything did.

        Callers that each took the ledger's lock and the GIL in turn to apply their own batch
        spent more time handing them over than in the engine; one thread holding both does
        the work of all, while the others sleep until their batch is applied."""
        committer = self._committer
        assert committer is not None
        requests: list[_Request] = []
        failure: Exception | None = None
        try:
            self._durable.hold(self)
            with self._lock:
                try:
                    with self._waiting_lock:
                        requests, self._waiting = self._waiting, []
                    self._check_usable()
                    self._durable.catch_up_to_append(self)
                except BaseException:
                    committer.release()
                    raise
                self._apply_runs(requests)
            # While other processes wait for the lock, before the callers woken take the GIL.
            committer.write_queued()
        except Exception as error:
            failure = error
        finally:
            self._wake(requests, own)
        return failure

    def _apply_runs(self, requests: list[_Request]) -> None:
        """Stamps, queues and applies the batches of one hold, in runs that share a batch of
        the journal where they may (see `_shared_batches`). Called under both locks by the
        leader, whose pin of the append lock the last batch's append ends, even when it
        raises; anything that raises before it ends the pin here."""
        runs = deque(_shared_batches(requests, min(self._batch_max, SHARED_EVENTS_MAX)))
        pinned = True
        try:
            while runs:
                run = runs.popleft()
                count = sum(len(request.body) for request in run) // RECORD_SIZE
                stamped_before = self._timestamp, self._expired_through
                timestamp = self._begin_batch(count)
                if (
                    len(run) > 1
                    and run[0].kind is _TRANSFERS
                    and self._engine.expiry_due(timestamp)
                ):
                    # A reservation may expire within the run, after its first event: each
                    # caller's batch alone would release it first, so each goes alone,
                    # stamped as if this stamp had not been taken.
                    self._timestamp, self._expired_through = stamped_before
                    runs.extendleft(reversed([[request] for request in run]))
                    continue
                last = not runs
                pinned = not last
                if len(run) == 1:
                    self._apply_request(run[0], timestamp, count, last=last)
                else:
                    self._apply_shared(run, timestamp, last=last)
        finally:
            if pinned:
                committer = self._committer
                assert committer is not None
                committer.release()

    def _apply_request(self, request: _Request, timestamp: int, count: int, *, last: bool) -> None:
        """Queues and applies one caller's batch of `count` events, stamped `timestamp`;
        called under both locks."""
        sequence, answer = self._apply_journaled(
            request.kind, timestamp, request.body, request.checksum, request.create, last=last
        )
        with self._answering(sequence):
            request.answered(self._committer, sequence, answer)
            self._tally(request.kind, count, answer)

    def _apply_shared(self, run: list[_Request], timestamp: int, *, last: bool) -> None:
        """Queues and applies the batches of several callers as one batch of the journal,
        stamped `timestamp` (see `_shared_batches`), and gives each caller its part of the
        results, as objects or packed as it asked; called under both locks."""
        kind = run[0].kind
        body = b"".join([request.body for request in run])
        committer = self._committer
        assert committer is not None
        checksum = committer.journal.checksums(body)
        sequence, (statuses, timestamps) = self._apply_journaled(
            kind, timestamp, body, checksum, kind.create_packed, last=last
        )
        with self._answering(sequence):
            start = 0
            for request in run:
                end = start + len(request.body) // RECORD_SIZE
                answer: Any = (statuses[start * 4 : end * 4], timestamps[start * 8 : end * 8])
                if request.create is kind.create_from_packed:
                    answer = _result_records(kind, answer)
                request.answered(committer, sequence, answer)
                self._tally(kind, end - start, answer)
                start = end

    @contextlib.contextmanager
    def _answering(self, sequence: int) -> Iterator[None]:
        """Fails the ledger if giving the callers of batch `sequence`, applied already, their
        answers raises (an interrupt, memory): a caller left without one would try its batch
        again, and apply its events a second time."""
        try:
            yield
        except BaseException as error:
            self._fail_applying(sequence, error)
            raise

    def _abandon(self, request: _Request) -> None:
        """Takes back the batch of a caller interrupted while it waited (Ctrl-C), unless a
        leader has taken it already: then it may be applied, as a batch is whose caller is
        interrupted while it waits for the flush, and retrying it with the same ids is safe.
        A lead handed to this caller goes on to the next."""
        with self._waiting_lock:
            if request not in self._waiting:
                return
            self._waiting.remove(request)
            if request.state is _LEAD:
                self._hand_lead_on()

    def _hand_lead_on(self) -> None:
        """Hands the lead to the first caller waiting, or gives it up; under `_waiting_lock`."""
        if self._waiting:
            following = self._waiting[0]
            following.state = _LEAD
            following.woken.release()
        else:
            self._leading = False

    def _wake(self, requests: list[_Request], own: _Request) -> None:
        """Wakes the callers of `requests` but `own`, whose thread leads, and hands the lead
        to the first caller that came meanwhile, or gives it up. A caller whose batch was
        applied wakes once it is durable too, so that it sleeps once rather than twice; a
        request the leader took but did not apply is left to its caller at once, which tries
        again."""
        with self._waiting_lock:
            if own in self._waiting:
                # The lead stopped before it took the requests waiting: they wait on.
                self._waiting.remove(own)
            for request in requests:
                if request is own:
                    continue
                if request.state is _DONE and request.committer is not None:
                    request.committer.release_when_durable(request.sequence, request.woken)
                else:
                    request.woken.release()
            self._hand_lead_on()

    def _apply_journaled(
        self,
        kind: _Kind,
        timestamp: int,
        body: bytes,
        body_checksum: bytes,
        create: _Create | _CreatePacked,
        *,
        last: bool = True,
    ) -> tuple[int, Any]:
        """Queues a batch for the journal, then has the engine apply it; returns the batch's
        sequence and the engine's answer. Called under both locks; `last` as for
        `Committer.append`.

        From the moment the batch is queued, an exception leaves the journal holding a batch
        that memory may lack, and fails the ledger (see `_fail_applying`)."""
        committer = self._committer
        assert committer is not None
        self._durable.policy.note_batch(len(body))
        sequence = committer.append(kind.journal_kind, timestamp, body, body_checksum, last=last)
        try:
            return sequence, create(self._engine, memoryview(body), timestamp)
        except BaseException as error:
            self._fail_applying(sequence, error)
            raise

    def _tally(self, kind: _Kind, count: int, answer: list[Any] | tuple[bytes, bytes]) -> None:
        """Counts a create the engine answered, for `metrics()`. Called under the lock."""
        self._calls[kind.index] += 1
        self._events[kind.index] += count
        if type(answer) is list:
            if count != 1 or answer[0][0] != CREATED:
                self._tally_failed(kind, answer)
        elif packed.count_failed(answer[0]):
            self._tally_failed(kind, answer)

    def _tally_failed(self, kind: _Kind, answer: list[Any] | tuple[bytes, bytes]) -> None:
        """Counts by status the results of a batch that are not CREATED. A batch of objects
        all CREATED is found so by one `list.count` in C, and costs no loop in Python. The
        codes are counted as the engines give them, enum members or ints, which hash alike.
        Called under the lock."""
        failed = self._failed_statuses[kind.index]
        if type(answer) is list:
            if len(answer) == 1:
                code = answer[0][0]
                failed[code] = failed.get(code, 0) + 1
                return
            if list(map(_status_of, answer)).count(CREATED) == len(answer):
                return
            codes: Iterable[int] = map(_status_of, answer)
        else:
            codes = memoryview(answer[0]).cast("I")
        for code, n in Counter(codes).items():
            if code != CREATED:
                failed[code] = failed.get(code, 0) + n

    def metrics(self) -> _metrics.Metrics:
        """A snapshot of what this ledger counted since it was made or opened: see
        `fastledger.Metrics` for each field and the histograms' buckets."""
        committer = self._committer
        journal = _metrics.JournalCounters() if committer is None else committer.counted()
        with self._lock:
            creates = [
                self._create_metrics(kind, engine_counts)
                for kind, engine_counts in zip(
                    (_ACCOUNTS, _TRANSFERS), self._engine.counts(), strict=True
                )
            ]
            return _metrics.Metrics(
                create_accounts=creates[0],
                create_transfers=creates[1],
                lookups=_metrics.OperationMetrics(self._lookups[0], self._lookups[1], {}),
                queries=_metrics.OperationMetrics(self._queries[0], self._queries[1], {}),
                accounts_created=creates[0].events - sum(creates[0].statuses.values()),
                transfers_created=creates[1].events - sum(creates[1].statuses.values()),
                timestamp=self._timestamp,
                sequence=self.sequence,
                journal_batches=journal.batches,
                journal_bytes=journal.bytes,
                journal_groups=journal.groups,
                group_batches=journal.group_batches.snapshot(),
                journal_write_ns=journal.write_ns.snapshot(),
                lock_wait_ns=journal.lock_wait_ns.snapshot(),
                catch_up_ns=self._catch_up_ns.snapshot(),
            )

    def _create_metrics(
        self, kind: _Kind, engine_counts: tuple[int, int, dict[int, int]]
    ) -> _metrics.OperationMetrics:
        """What this ledger and its engine counted of one kind of create."""
        engine_calls, engine_events, engine_failed = engine_counts
        failed = Counter(engine_failed)
        failed.update(self._failed_statuses[kind.index])
        return _metrics.OperationMetrics(
            self._calls[kind.index] + engine_calls,
            self._events[kind.index] + engine_events,
            {kind.status_enum(code).name: n for code, n in sorted(failed.items())},
        )

    def _begin_batch(self, count: int, journaled: int | None = None) -> int:
        """Stamps a batch (on replay, with its `journaled` stamp). The engine releases the
        pending transfers that expired before it applies a batch of transfers."""
        self._check_usable()
        if journaled is None:
            return self._batch_timestamp(count)
        return self._advance(journaled, count)

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
            return PackedAccounts(
                self._read(
                    lambda: self._engine.lookup_accounts_packed(ids), self._lookups, len(ids)
                )
            )
        return self._read(lambda: self._engine.lookup_accounts(ids), self._lookups, len(ids))

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
            return PackedTransfers(
                self._read(
                    lambda: self._engine.lookup_transfers_packed(ids), self._lookups, len(ids)
                )
            )
        return self._read(lambda: self._engine.lookup_transfers(ids), self._lookups, len(ids))

    # -- queries ---------------------------------------------------------------------------

    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]:
        """The transfers of one account that match the filter, as TigerBeetle answers it."""
        self._check_account_filter(account_filter)
        return self._read(lambda: self._engine.get_account_transfers(account_filter), self._queries)

    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]:
        """The balances after each matching transfer of an account flagged `HISTORY`."""
        self._check_account_filter(account_filter)
        return self._read(lambda: self._engine.get_account_balances(account_filter), self._queries)

    def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        """The accounts whose fields match the filter, by timestamp."""
        self._check_query_filter(query_filter)
        return self._read(lambda: self._engine.query_accounts(query_filter), self._queries)

    def query_transfers(self, query_filter: QueryFilter) -> list[Transfer]:
        """The transfers whose fields match the filter, by timestamp."""
        self._check_query_filter(query_filter)
        return self._read(lambda: self._engine.query_transfers(query_filter), self._queries)

    def balances_at(self, timestamp: int, account_ids: Sequence[int] | None = None) -> Balances:
        """The balances of accounts as they were at `timestamp`, events at that timestamp
        included: a read-only mapping from account id to `AccountBalance`.

        With `account_ids` None, every account that existed at `timestamp`; otherwise those
        of the given ids that existed then. No flag is needed on the accounts.
        """
        timestamp = _check.check_u64(timestamp, "timestamp")
        if account_ids is not None:
            account_ids = _check.check_ids(account_ids, "account_ids", 2**32)
        columns, _ = self._read(
            lambda: self._engine.balances_at(timestamp, account_ids, 0), self._queries
        )
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

        timestamp, columns, totals = self._read(read, self._queries)
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
        if now < 0:
            return 0
        # Taken as the last timestamp there is, such a reading would use up the timestamps of
        # every later call, for good: the journal keeps them.
        raise InvalidArgumentError(
            f"the clock reads {now} ns since the epoch, past the last timestamp "
            f"{TIMESTAMP_MAX}: a clock in the wrong unit or a glitch. Nothing was applied"
        )

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
        if timestamp > TIMESTAMP_MAX:
            raise InvalidArgumentError("the ledger has run out of timestamps")
        return self._advance(timestamp, count)

    def _advance(self, timestamp: int, count: int) -> int:
        self._timestamp = timestamp
        self._expired_through = timestamp - count + 1
        return timestamp

    def _expiry_time(self) -> int:
        """The time through which a read releases expired reservations: the clock, or the
        last event's timestamp when the clock is behind it, since that event has already
        happened. The current balances a read shows are then `balances_at` of that time."""
        return max(self._read_clock(), self._expired_through, self._timestamp)

    def _expire_now(self, now: int) -> bool:
        """Releases what expired by `now`, before a read.

        On a durable ledger, a read that released a reservation journals the time it expired
        through: replaying the batches alone would release it only at the next batch, so a
        ledger reopened while its clock is behind that time (set back, or another machine's)
        would show the reservation again, and let it be posted, after a reader saw it gone.
        Called under the lock, and on a durable ledger under the append lock too; returns
        whether it journaled an expiry."""
        expired = self._engine.expire_pending_transfers(now)
        self._expired_through = now
        if expired and self._committer is not None:
            self._durable.policy.note_batch(0)
            committer = self._committer
            committer.append(KIND_EXPIRY, now, b"", committer.journal.checksums(b""))
            return True
        return False

    # -- durability ------------------------------------------------------------------------

    def _read(self, read: Callable[[], R], counts: list[int], events: int = 1) -> R:
        """Runs a read under the lock. On a durable ledger it first applies what others
        appended, and returns only once every batch the read could see is durable, so that
        nothing a caller saw can vanish in a crash.

        A read that finds reservations to release journals their expiry, under the append
        lock like any batch. A read-only ledger never does: it shows the journal's state, in
        which a reservation past its timeout stays pending until a writer releases it.
        `counts` holds the calls and events of this kind of read, counted under the lock."""
        committer = self._committer
        if committer is None:
            with self._lock:
                self._check_usable()
                self._expire_now(self._expiry_time())
                return _counted(read, counts, events)
        self._durable.rebuild_if_stopped(self)
        committer = self._committer
        assert committer is not None
        with self._lock:
            self._check_usable()
            self._durable.follow(self)
            releasing = not self._read_only and self._engine.expiry_due(self._expiry_time())
            if not releasing:
                result = _counted(read, counts, events)
                seen = committer.appended
        if releasing:
            result, seen = self._read_releasing(read, counts, events)
        self._durable.settle(self, seen)
        return result

    def _read_releasing(
        self, read: Callable[[], R], counts: list[int], events: int
    ) -> tuple[R, int]:
        """A read that releases expired reservations first, journaling their expiry under the
        append lock; returns its result and the last batch it could see."""
        committer = self._committer
        assert committer is not None
        self._durable.hold(self)
        queued = False
        try:
            with self._lock:
                self._check_usable()
                self._durable.catch_up_to_append(self)
                queued = self._expire_now(self._expiry_time())
                return _counted(read, counts, events), committer.appended
        finally:
            if not queued:
                committer.release()

    def _start_over(self) -> None:
        """A new engine and a clock that has stamped nothing, for a replay of the whole
        journal: after a snapshot the engine refused, or to rebuild after a failed append."""
        self._engine = _make_engine(self._engine_name)
        self._timestamp = self._expired_through = 0

    def _check_usable(self) -> None:
        if self._closed:
            raise LedgerClosedError(f"the ledger of {self.path} is closed: open it again")
        if self._forked:
            raise LedgerForkedError(
                f"the ledger of {self.path} was opened in process {self._pid}, before it "
                "forked: open the ledger again in this process"
            )
        if self._committer is not None:
            self._committer.raise_if_failed()

    def _fail_applying(self, sequence: int, error: BaseException) -> None:
        """The engine (or an interrupt) raised on batch `sequence`, which the journal holds:
        memory may lack it, so the ledger refuses every further call until it is opened again
        and the journal replayed. An Exception becomes the error that says so; anything else,
        such as KeyboardInterrupt, goes on as it is. Called under the lock."""
        assert self._committer is not None
        failure = self._committer.fail(
            error,
            f"the engine failed on batch {sequence} of the journal {self.path} ({error!r}); "
            "the ledger in memory may lack that batch, so it refuses every further call: open "
            "the ledger again, which replays the batch from the journal",
        )
        if isinstance(error, Exception):
            raise failure from error

    def snapshot(self) -> bool:
        """Writes a snapshot of the engine now, so that the next open replays less journal.

        Returns False, writing nothing, for an in-memory or read-only ledger, a ledger whose
        journal is not a directory, or an engine that cannot export its state.
        """
        return self._durable.snapshot(self)

    def _replay(self, batch: Batch) -> None:
        """Applies a journaled batch exactly as it was applied the first time: the same
        stamp, the same expiry before transfers, the same records; or, for an expiry that a
        read journaled, the same release of what expired through its time. The durable part
        decides which batches to replay; verify replays a journal into an in-memory ledger."""
        if batch.kind == KIND_EXPIRY:
            self._engine.expire_pending_transfers(batch.timestamp)
            self._expired_through = batch.timestamp
            return
        kind = _KINDS[batch.kind]
        timestamp = self._begin_batch(batch.count, batch.timestamp)
        kind.create_packed(self._engine, memoryview(batch.body), timestamp)


def _counted(read: Callable[[], R], counts: list[int], events: int) -> R:
    """Runs a read, counting its call and events in `counts`; under the ledger's lock."""
    counts[0] += 1
    counts[1] += events
    return read()


# The durable ledgers open in this process, so that a forked child can refuse to use them.
_opened: weakref.WeakSet[Ledger] = weakref.WeakSet()


def _forked() -> None:
    for ledger in _opened:
        ledger._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
