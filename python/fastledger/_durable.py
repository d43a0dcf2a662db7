"""The durable part of a ledger: its journal opened and recovered, kept in step with the other
processes that append to it, rebuilt after a failed append, and snapshotted.

`Ledger` owns the API, the argument checks, the clock and the lock, and queues each batch for
the journal's committer (`journal/committer.py`), which makes it durable. This module owns
everything that reads the journal back into the ledger's engine: `Durable.open` opens a
journal and recovers from it (the newest snapshot the engine can import, then the batches
after it), `Durable.follow` and `Durable.catch_up_to_append` apply what others appended,
`Durable.rebuild_if_stopped` builds the state again after an append to a server failed, and
`Durable.settle` waits until a batch is durable and takes the snapshots that are due. It drives
the ledger it is given through the same engine, clock and lock as the API does, and applies
each journaled batch with `Ledger._replay`, so that a batch replayed is stamped and applied as
it was the first time.

The order of locks is the ledger's: a hold of the journal's append lock (`Committer.hold`) is
taken outside the ledger's `threading.Lock`, and a snapshot is written with neither held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Literal, Protocol, cast

from ._contract import Engine
from ._progress import ProgressCallback, Reporter, journal_extent
from .errors import InvalidArgumentError, JournalCorruptError, JournalWriteError, LedgerClosedError
from .journal import Journal, read_ahead
from .journal.committer import Committer
from .journal.directory import DirectoryJournal
from .journal.format import Batch, Tip
from .journal.snapshots import Snapshot, SnapshotPolicy, Snapshots

if TYPE_CHECKING:
    from ._ledger import Ledger

__all__ = ["SNAPSHOT_EVERY", "Durable"]

log = logging.getLogger("fastledger")

# A durable ledger on the Python engine snapshots it after at least this many batches by
# default (and only once the journal written since the last snapshot is as large as that
# snapshot, so that snapshots never cost more than the journal they let the next open skip).
# The Rust engine replays its journal faster than it imports a snapshot: see `Ledger.open`.
SNAPSHOT_EVERY = 128


class SnapshotEngine(Protocol):
    """What snapshots need of an engine; an engine without it replays the whole journal."""

    def export_state(self) -> bytes: ...

    def import_state(self, state: bytes) -> None: ...


def _snapshot_engine(engine: Engine) -> SnapshotEngine | None:
    if hasattr(engine, "export_state") and hasattr(engine, "import_state"):
        return cast(SnapshotEngine, engine)
    return None


class Durable:
    """What keeps one ledger's memory in step with its journal: its snapshots and when to take
    one, the committer's epoch it last caught up in, and when it last looked for batches of
    others. An in-memory ledger holds one too, with no snapshots, so that `snapshot()` has one
    to ask and answers False.

    The ledger's journal and committer stay the ledger's own attributes (`_journal`,
    `_committer`), which every call of its API reads; the methods here set them on `open` and
    on a rebuild, and take the ledger they act on as their first argument."""

    def __init__(
        self,
        snapshots: Snapshots | None = None,
        every: int | None = None,
        max_staleness_ns: int | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.policy = SnapshotPolicy(every)
        # The committer's epoch the ledger last caught up in (see `catch_up_to_append`).
        self.epoch = 0
        # A read looks at the journal for batches of others unless it looked less than this
        # long ago (None: always; reads are then linearizable).
        self.max_staleness_ns = max_staleness_ns
        self.looked_ns = 0
        # Held across a whole snapshot, so that two never write at once, and by `close`.
        self.snapshot_lock = threading.Lock()
        self._follower = _WaitingFollower()

    @classmethod
    def open(
        cls,
        ledger: Ledger,
        path: str | os.PathLike[str],
        *,
        key: bytes | None,
        read_only: bool,
        durability: str,
        snapshot_every: int | Literal["auto"] | None,
        max_staleness_s: float | None,
        cut_damaged_tail: bool,
        progress: ProgressCallback | None = None,
    ) -> Durable:
        """Opens the journal at `path` for a new `ledger`, recovers its state from it and
        returns the durable part that keeps it in step; the arguments are those of
        `Ledger.open`, checked there. An exception of `progress` closes the journal again and
        propagates."""
        journal = _open_journal(path, key, read_only, durability, cut_damaged_tail)
        try:
            snapshots, every = None, None
            if isinstance(journal, DirectoryJournal) and _snapshot_engine(ledger._engine):
                snapshots = Snapshots(journal.path, journal.header.ledger_id, journal.checksums)
                if snapshot_every == "auto":
                    snapshot_every = None if ledger.engine == "rust" else SNAPSHOT_EVERY
                every = None if read_only else snapshot_every
            ledger._read_only = read_only
            durable = cls(
                snapshots,
                every,
                None if max_staleness_s is None else int(max_staleness_s * 1e9),
            )
            reporter = None
            if progress is not None:
                reporter = Reporter(progress, "replay", *journal_extent(journal))
            durable.recover(ledger, journal, cut_everything=cut_damaged_tail, reporter=reporter)
            if reporter is not None:
                assert ledger._committer is not None
                tip = ledger._committer.tip
                reporter.done(tip.sequence, tip.end)
        except BaseException:
            if ledger._committer is not None:
                ledger._committer.close()
            journal.close()
            raise
        weakref.finalize(ledger, _close_journal, ledger._committer, journal)
        return durable

    # -- recovery --------------------------------------------------------------------------

    def recover(
        self,
        ledger: Ledger,
        journal: Journal,
        *,
        cut_everything: bool,
        reporter: Reporter | None = None,
    ) -> None:
        """Loads the newest snapshot the engine can import, replays the journal after it, and
        for a writer takes the append lock once to read what lies past the durable tip.

        The batches the snapshot covers are read too, so that damage anywhere in the journal
        refuses to open, and so that the snapshot is known to sit on this very chain. Reading
        up to the durable tip needs no lock, so that a long replay never holds up the other
        processes; `cut_everything` reads it all under the lock, as only then may damage be
        cut off. `reporter`, if any, hears of the snapshot and of the batches as they are read."""
        snapshot = self._load_snapshot(ledger)
        if reporter is not None and snapshot is not None:
            # No batch is read yet: the counts start from none, so that they only ever grow.
            reporter.report("snapshot", 0, 0)
        start = journal.header.empty_tip(journal.checksums)
        covered = start if snapshot is None else snapshot.tip
        committer = Committer(journal, start)
        try:
            if cut_everything:
                committer.hold()
        except BaseException:
            committer.close()
            raise
        try:
            batches = read_ahead(journal.read(start, locked=cut_everything))
            try:
                with ledger._lock:
                    # Published with the replay, under the lock: a call of another thread
                    # that saw the new committer before the replay would apply the whole
                    # journal itself, and the replay would apply it again.
                    ledger._journal = journal
                    ledger._committer = committer
                    tip = _replay_after(ledger, batches, start, snapshot, reporter)
                    committer.caught_up(tip, durable=not cut_everything)
                    self.epoch = committer.epoch
            finally:
                # Stops the thread that reads ahead now, not once the generator is collected,
                # so that a replay stopped by an error leaves no read of a closed journal.
                if isinstance(batches, Generator):
                    batches.close()
            if committer.tip.sequence < covered.sequence:
                raise JournalCorruptError(
                    f"the journal ends at batch {committer.tip.sequence}, before batch "
                    f"{covered.sequence} that {_name(snapshot)} covers: acknowledged batches "
                    "are missing",
                    path=journal.location,
                    offset=committer.tip.end,
                )
            self.looked_ns = time.monotonic_ns()
            self.policy.start(
                committer.tip.sequence - covered.sequence,
                committer.tip.end - covered.end,
                0 if snapshot is None else len(snapshot.state),
            )
            if not ledger._read_only and not cut_everything:
                committer.hold()
                cut_everything = True
                with ledger._lock:
                    self.catch_up_to_append(ledger)
        except BaseException:
            if ledger._committer is not committer:
                if cut_everything:
                    committer.release()
                    cut_everything = False
                committer.close()
            raise
        finally:
            if cut_everything:
                committer.release()

    def _load_snapshot(self, ledger: Ledger) -> Snapshot | None:
        engine = _snapshot_engine(ledger._engine)
        snapshots = self.snapshots
        if snapshots is None or engine is None:
            return None
        if not ledger._read_only:
            snapshots.remove_abandoned()
        snapshot = snapshots.newest()
        if snapshot is not None:
            try:
                engine.import_state(snapshot.state)
            except ValueError as error:
                # Whole by its checksums, yet a state that does not hang together: written by
                # someone else than a ledger. A snapshot is a cache, so the journal decides.
                log.warning(
                    "fastledger: skipping snapshot %s, whose state the engine refuses (%s): "
                    "replaying the whole journal",
                    snapshot.path,
                    error,
                )
                ledger._start_over()
                return None
            ledger._timestamp = snapshot.timestamp
            ledger._expired_through = snapshot.expired_through
        return snapshot

    # -- following other processes ---------------------------------------------------------

    def follow(self, ledger: Ledger, *, now: bool = False) -> None:
        """Applies, before a read, what other processes appended. Nothing to look for while
        this process holds the append lock and has caught up in it: no one else can append.
        Otherwise a look at the journal's durable tip, and a read of the new batches if there
        are any. Called under the lock."""
        committer = ledger._committer
        journal = ledger._journal
        assert committer is not None and journal is not None
        if committer.holding and committer.epoch == self.epoch:
            return
        if self.max_staleness_ns is not None:
            looked_ns = time.monotonic_ns()
            if not now and looked_ns - self.looked_ns < self.max_staleness_ns:
                return
            self.looked_ns = looked_ns
        if journal.changed(committer.tip):
            self._catch_up(ledger, journal.read(committer.tip, locked=False), durable=True)

    def hold(self, ledger: Ledger) -> None:
        """Takes a hold of the append lock for a caller, as `Committer.hold` does. Called
        outside the lock.

        What others appended is applied first, before waiting, while they still hold the
        lock; and while this process waits for it, a thread goes on applying what the others
        append meanwhile. What is left to catch up once the lock is this process's is then at
        most the last holder's batches, not every batch of every process it waited behind."""
        committer = ledger._committer
        assert committer is not None
        if committer.holding:
            committer.hold()
            return
        with ledger._lock:
            ledger._check_usable()
            self.follow(ledger, now=True)
        with self._follower.following(ledger):
            committer.hold()

    def catch_up_to_append(self, ledger: Ledger) -> None:
        """Applies what others appended before this process took the append lock, once per
        hold of it, before its first batch is stamped. Called under both locks."""
        committer = ledger._committer
        journal = ledger._journal
        assert committer is not None and journal is not None
        if committer.epoch != self.epoch:
            self._catch_up(ledger, journal.read(committer.tip, locked=True), durable=False)
            self.epoch = committer.epoch

    def _catch_up(self, ledger: Ledger, batches: Iterable[Batch], *, durable: bool) -> None:
        """Applies batches that others appended after this process's tip: `durable` ones,
        read without the append lock, or ones read under it, which may still wait for their
        flush. A failure while applying one leaves memory short of the journal, which fails
        the ledger."""
        committer = ledger._committer
        assert committer is not None
        tip = committer.tip
        started_ns = time.perf_counter_ns()
        try:
            for batch in batches:
                ledger._replay(batch)
                tip = batch.tip
        except JournalCorruptError:
            committer.caught_up(tip, durable=durable)
            raise
        except BaseException as error:
            committer.caught_up(tip, durable=durable)
            ledger._fail_applying(tip.sequence + 1, error)
            raise
        committer.caught_up(tip, durable=durable)
        ledger._catch_up_ns.record(time.perf_counter_ns() - started_ns)

    def rebuild_if_stopped(self, ledger: Ledger) -> None:
        """After a write to a journal on a server failed, or its outcome is unknown, builds the
        state again from the journal before the next call: the batches in flight were applied
        in memory but acknowledged to no one, and the journal alone says which of them are
        there. A directory's journal cannot say as much after a failed write or flush, so a
        ledger on a directory stops until it is opened again. Called outside the lock."""
        committer = ledger._committer
        if committer is None or not committer.stopped or ledger._closed or ledger._forked:
            return
        if isinstance(ledger._journal, DirectoryJournal):
            return
        with self.snapshot_lock:
            if ledger._committer is not committer:
                return  # Another thread rebuilt it meanwhile.
            journal = ledger._journal
            assert journal is not None
            log.warning(
                "fastledger: an append to %s failed or may have failed; reading the journal "
                "again before the next call",
                ledger.path,
            )
            committer.close()
            with ledger._lock:
                ledger._start_over()
                self.epoch = 0
            self.recover(ledger, journal, cut_everything=False)

    # -- snapshots -------------------------------------------------------------------------

    def settle(self, ledger: Ledger, sequence: int, committer: Committer | None = None) -> None:
        """Waits, outside the lock, until batch `sequence` of `committer` (the ledger's, by
        default) is durable; then takes a snapshot if one is due."""
        committer = committer or ledger._committer
        if committer is None or sequence == 0:
            return
        committer.wait(sequence)
        if self.policy.due and self.snapshot_lock.acquire(blocking=False):
            try:
                self._snapshot(ledger)
            except LedgerClosedError:
                pass  # Closed meanwhile: the next open replays a little more journal.
            except OSError as error:
                # The caller's batch is durable already; a snapshot only saves replay time,
                # so its failure must not fail the call; a later one is tried as usual.
                log.warning("fastledger: a snapshot of %s failed: %s", ledger.path, error)
            finally:
                self.snapshot_lock.release()

    def snapshot(self, ledger: Ledger) -> bool:
        """Writes a snapshot now, unless the ledger has no snapshots or is read-only: see
        `Ledger.snapshot`."""
        if self.snapshots is None or ledger._read_only:
            return False
        with self.snapshot_lock:
            self._snapshot(ledger)
        return True

    def _snapshot(self, ledger: Ledger) -> None:
        """Exports the engine under the lock; outside it, waits until every batch the state
        holds is durable and writes the file. Called with the snapshot lock held.

        Waiting for the journal under the lock stalled every caller for a write and an fsync
        at each snapshot; the state is a copy, so later batches cannot change it meanwhile.
        """
        engine = _snapshot_engine(ledger._engine)
        committer, snapshots = ledger._committer, self.snapshots
        assert committer is not None and snapshots is not None and engine is not None
        with ledger._lock:
            ledger._check_usable()
            # The snapshot records the time through which pending transfers expired; after
            # an accounts batch the engine can lag behind it, so it catches up first (as the
            # next read or transfers batch would) and the state matches what it records.
            ledger._engine.expire_pending_transfers(ledger._expired_through)
            state = engine.export_state()
            sequence = committer.mark()
            timestamp, expired_through = ledger._timestamp, ledger._expired_through
            self.policy.note_snapshot(len(state))
        tip = committer.marked_tip(sequence)
        snapshots.write(Snapshot("", tip, timestamp, expired_through, state))


class _WaitingFollower:
    """A thread that applies what other processes append while a caller of this process
    waits for the append lock (see `Durable.hold`). It lives while callers wait, and ends
    once none has for `_FOLLOWER_IDLE_S`, so that a closed or dropped ledger leaves no
    thread behind; it keeps only a weak reference to its ledger."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting = 0
        self._running = False

    @contextlib.contextmanager
    def following(self, ledger: Ledger) -> Iterator[None]:
        with self._changed:
            self._waiting += 1
            if not self._running:
                self._running = True
                reference = weakref.ref(ledger)
                threading.Thread(
                    target=self._run, args=(reference,), name="fastledger-follower", daemon=True
                ).start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._waiting -= 1
                self._changed.notify()

    def _run(self, reference: weakref.ref[Ledger]) -> None:
        while self._wait_for_waiters():
            ledger = reference()
            if ledger is None or ledger._closed or ledger._committer is None:
                self._stop_running()
                return
            committer, journal = ledger._committer, ledger._journal
            assert journal is not None
            tip = committer.tip
            del ledger  # Not kept alive across the wait.
            try:
                if not journal.wait(tip, _FOLLOWER_WAIT_S):
                    continue
                ledger = reference()
                if ledger is None:
                    self._stop_running()
                    return
                with ledger._lock:
                    if ledger._committer is committer and not ledger._closed:
                        ledger._durable.follow(ledger, now=True)
                del ledger
            except Exception as error:
                # The caller that waits reads the journal again under the lock, and meets
                # whatever this was there, where it is reported.
                log.debug("fastledger: following while waiting for the lock stopped: %r", error)
                self._stop_running()
                return

    def _stop_running(self) -> None:
        with self._changed:
            self._running = False

    def _wait_for_waiters(self) -> bool:
        """Waits until a caller has waited for the append lock for `_FOLLOWER_DELAY_S`: one
        that gets it sooner has little to catch up, and following would only cost the journal
        a look. False once none has waited for a while: the thread is then no longer running,
        which is decided under the same hold of the condition that a new waiter looks at."""
        with self._changed:
            while True:
                if not self._changed.wait_for(lambda: self._waiting > 0, _FOLLOWER_IDLE_S):
                    self._running = False
                    return False
                if not self._changed.wait_for(lambda: self._waiting == 0, _FOLLOWER_DELAY_S):
                    return True


# How long a caller waits for the append lock before the follower starts applying what others
# append, how long the follower waits for a batch at a time, and how long it lives without
# waiters.
_FOLLOWER_DELAY_S = 0.002
_FOLLOWER_WAIT_S = 0.05
_FOLLOWER_IDLE_S = 1.0


def _replay_after(
    ledger: Ledger,
    batches: Iterable[Batch],
    start: Tip,
    snapshot: Snapshot | None,
    reporter: Reporter | None = None,
) -> Tip:
    """Replays the batches after `start` that follow the one `snapshot` covers, checking
    that that one is the batch the snapshot covers; returns the tip of the last batch.
    `reporter`, if any, hears of each batch read."""
    tip = start
    covered = start if snapshot is None else snapshot.tip
    for batch in batches:
        if batch.sequence > covered.sequence:
            ledger._replay(batch)
        elif batch.sequence == covered.sequence and batch.tip != covered:
            raise JournalCorruptError(
                f"batch {batch.sequence} is not the one {_name(snapshot)} covers: the "
                "snapshot belongs to another journal or the batch was rewritten",
                path=snapshot.path if snapshot is not None else "",
                offset=batch.offset,
            )
        tip = batch.tip
        if reporter is not None:
            reporter.batch(tip.sequence, tip.end)
    return tip


def _name(snapshot: Snapshot | None) -> str:
    return "no snapshot" if snapshot is None else os.path.basename(snapshot.path)


def _open_journal(
    path: str | os.PathLike[str],
    key: bytes | None,
    read_only: bool,
    durability: str,
    cut_damaged_tail: bool,
) -> Journal:
    """The journal at `path`: a directory, or a PostgreSQL database for a URL."""
    if key is not None and (type(key) is not bytes or not 16 <= len(key) <= 64):
        raise InvalidArgumentError("key must be bytes of length 16 to 64, or None")
    location = os.fspath(path)
    if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
        from .journal.postgres import PostgresJournal

        return PostgresJournal.open(location, key=key, read_only=read_only)
    if "://" in str(location):
        raise InvalidArgumentError(
            f"{location!r} looks like a URL of a kind fastledger cannot keep a journal in: "
            "give a directory or a postgresql:// URL"
        )
    return DirectoryJournal(
        location,
        key=key,
        read_only=read_only,
        sync=durability == "fsync",
        cut_damaged_tail=cut_damaged_tail,
    )


def _close_journal(committer: Committer | None, journal: Journal) -> None:
    """Makes what is queued durable, then closes: a failure was reported to its callers
    already, and closing still releases."""
    try:
        if committer is not None:
            with contextlib.suppress(JournalWriteError):
                committer.flush()
            committer.close()
    finally:
        journal.close()
