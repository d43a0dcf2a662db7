"""Group commit: appends a process's batches to a shared journal from a thread of its own.

The ledger queues a batch under its lock just before the engine applies it, so the journal's
order is the order in which the engine applies batches, and the committer writes and flushes
the batch while the engine works on it. The journal runs ahead of the engine only by what the
engine is given, never by what it answered. Callers wait for their batch outside the lock.

Across processes, a batch may only be stamped and queued while this process holds the journal's
append lock and has applied every batch others appended before it. `hold` takes the lock for a
caller (once for all the callers that arrive together) and pins it until the caller has queued
its last batch: the ledger's leader queues the batches of every create waiting under one pin.
The committer thread lets the lock go once the queue is written and nothing is pinned. While
other processes append too, the leader writes the queue itself once its last batch is queued
(`write_queued`) and lets the lock go at once, rather than wait for the committer thread to be
scheduled. A hold that has already carried `GROUPS_PER_HOLD` writes takes no new callers, so
that a busy process hands the lock to the others between its groups. Each acquisition of the
lock starts a new `epoch`: the ledger catches up with the journal once per epoch, before its
first batch.

A write is flushed after the lock is let go, when another process waits for it: that one reads
the batches written and writes its own while the disk flushes, and its flush covers both. So a
batch this process wrote, or read under the lock, may not be durable yet: `tip` is the last
batch in the journal as this process knows it, and a caller waits for its batch to be durable
(`wait`) before it is acknowledged. Batches read under the lock that no write of this process
follows are flushed by the committer thread all the same.

Taking the lock and catching up cost more than the rest of a small append, so an idle process
keeps the lock for up to `LINGER_S` after its last write, unless the journal says that another
process waits for it or others appended since this process last wrote: a process on its own
takes it once, and one among others hands it over as soon as its writes are done.
"""

from __future__ import annotations

import logging
import threading
import time
from _thread import LockType, allocate_lock

from .. import _metrics
from ..errors import JournalWriteError
from . import Journal
from .format import HEADER_SIZE, Queued, Tip

__all__ = ["GROUPS_PER_HOLD", "WRITE_BYTES_MAX", "Committer"]

# One write of a group commit carries at most this many bytes (and at least one batch), so
# that a burst of callers cannot make the committer build an unbounded buffer.
WRITE_BYTES_MAX = 16 * 1024 * 1024
# Once this many bytes are queued, the committer writes them without waiting for the other
# callers that pinned the append lock to queue theirs: a full batch is worth writing while the
# engine applies the next.
GROUP_WAIT_BYTES_MAX = 1024 * 1024
# The writes one hold of the append lock carries, while another process waits for it, before
# it takes no new callers and lets the lock go.
GROUPS_PER_HOLD = 2
# How long an idle process keeps the append lock that no other process waits for, and how often
# it looks whether one does meanwhile.
LINGER_S = 0.002
_LINGER_POLL_S = 0.0005

log = logging.getLogger("fastledger")


class Committer:
    """Appends batches to `journal` after `tip`, with group commit."""

    def __init__(self, journal: Journal, tip: Tip) -> None:
        self.journal = journal
        # Guards everything below; held only briefly, never across a write or a lock wait.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: list[Queued] = []
        self._queued_bytes = 0
        # Whether another process waited for the append lock at the last write, as far as
        # `Journal.contended` could tell; asked once per write, since each probe lets go of
        # the GIL, which the committer thread then waits to take back from the callers.
        self._contended = False
        # Whether others appended since this process last wrote, as the catch-up of this hold
        # found: then this one hands the lock over as soon as its writes are done, rather than
        # keep it for a while in case its callers come back (`LINGER_S`), which kept the
        # others waiting for up to `_LINGER_POLL_S` after they asked for it.
        self._own_through = tip.sequence
        self._others_appended = False
        # The last batch written or read, the last queued, and the last known durable.
        self._tip = tip
        self._appended = tip.sequence
        self._durable = tip.sequence
        self._closing = False
        # The append lock: whether this process holds it, whether a caller is taking it, the
        # callers that pinned it, the writes of this hold, and how many holds there were.
        self._locked = False
        self._acquiring = False
        self._pins = 0
        self._groups = 0
        self.epoch = 0
        # Whether a group is being written, by the committer thread or by a leader
        # (`write_queued`): writes go one at a time, in order, and the lock stays meanwhile.
        # When the leaders' writes that the committer thread has not flushed yet started, and
        # their batches, for `counters.write_ns`.
        self._writing = False
        self._unflushed_since_ns = 0
        self._unflushed_batches = 0
        # The callers waiting for their batch to be durable, and the lock each sleeps on:
        # waking every waiter for each write made each of them contend for the GIL, which cost
        # more than the fsync itself with dozens of threads.
        self._waiters: list[tuple[int, LockType]] = []
        # The batch a snapshot covers, and its tip once it is durable.
        self._marked = 0
        self._marked_tip: Tip | None = None
        # Why the ledger refuses further batches; `_stopped` once a write failed, after which
        # no batch becomes durable.
        self._failure: BaseException | None = None
        self._failure_message = ""
        self._stopped = False
        # Counted under `_lock`, for `Ledger.metrics()`.
        self.counters = _metrics.JournalCounters()
        self._thread = threading.Thread(target=self._run, name="fastledger-journal", daemon=True)
        self._thread.start()

    @property
    def appended(self) -> int:
        """The sequence of the last batch queued, durable or not."""
        return self._appended

    @property
    def tip(self) -> Tip:
        """The last batch this process wrote or caught up to, durable or not yet."""
        return self._tip

    @property
    def holding(self) -> bool:
        """Whether this process holds the append lock, so that no one else can append."""
        return self._locked

    def hold(self) -> None:
        """Takes the append lock for one caller, or joins the hold in progress; the caller's
        `append` ends its pin, or its `release` if it queues nothing. Called outside the
        ledger's lock: it may wait for other processes."""
        with self._lock:
            while True:
                self.raise_if_failed()
                if self._locked and not self._draining():
                    self._pins += 1
                    return
                if not (self._locked or self._acquiring):
                    break
                self._changed.wait()
            self._acquiring = True
        started_ns = time.perf_counter_ns()
        try:
            self.journal.lock()
        except BaseException:
            with self._lock:
                self._acquiring = False
                self._changed.notify_all()
            raise
        waited_ns = time.perf_counter_ns() - started_ns
        if waited_ns > _metrics.SLOW_LOCK_WAIT_S * 1e9:
            log.warning(
                "fastledger: waited %.3f s for the append lock of %s",
                waited_ns / 1e9,
                self.journal.location,
            )
        with self._lock:
            self.counters.lock_wait_ns.record(waited_ns)
            self._acquiring = False
            self._locked = True
            self._groups = 0
            self._pins += 1
            self.epoch += 1
            self._changed.notify_all()

    def release(self) -> None:
        """Ends the pin of a caller that queued nothing."""
        with self._lock:
            self._unpin()

    def _unpin(self) -> None:
        # Called with the lock held. The committer lets the lock go once nothing is pinned or
        # queued; once it has stopped, the last pin does (see `_stop`).
        self._pins -= 1
        if self._pins == 0:
            if self._stopped and self._locked and not self._writing:
                self._let_go()
            self._changed.notify_all()

    def _let_go(self) -> None:
        """Lets the append lock go and wakes the callers waiting to take it. Called with the
        lock held, when nothing is pinned."""
        self._locked = False
        self.journal.unlock()
        self._changed.notify_all()

    def caught_up(self, tip: Tip, *, durable: bool) -> None:
        """Records that the engine applied what others appended, through `tip`, which is
        `durable` when it was read without the lock, and maybe not yet when read under it.
        Called under the ledger's lock while nothing of this process is queued: before its
        first batch in a hold of the append lock, or outside any hold."""
        with self._lock:
            assert not self._queue and self._appended == self._tip.sequence
            self._others_appended = tip.sequence > self._own_through
            self._tip = tip
            self._appended = tip.sequence
            if durable:
                self._made_durable(tip.sequence)
            elif self._durable < tip.sequence:
                self._changed.notify_all()

    def append(
        self, kind: int, timestamp: int, body: bytes, body_checksum: bytes, *, last: bool = True
    ) -> int:
        """Queues a batch that the engine is about to apply, ending the caller's pin unless
        more batches of the caller follow (`last` False); returns its sequence.
        `body_checksum` is the journal's checksum of `body`. Called under the ledger's lock,
        by a caller that pinned the lock."""
        with self._lock:
            assert self._locked and self._pins > 0
            if last:
                self._unpin()
            self.raise_if_failed()
            self._appended = sequence = self._appended + 1
            self._queue.append((sequence, kind, timestamp, body, body_checksum))
            self._queued_bytes += HEADER_SIZE + len(body)
            # The committer waits for the pinned callers only while another process waits.
            if self._pins == 0 or not self._contended or self._queued_bytes >= GROUP_WAIT_BYTES_MAX:
                self._changed.notify_all()
            return sequence

    def write_queued(self) -> None:
        """Writes what is queued from the caller's thread, and lets the append lock go, when
        another process waits for it; the committer thread then flushes it. Called by a leader
        once its last batch is queued, outside the ledger's lock, before it wakes its callers.

        Handed to the committer thread, the write waited for that thread to take the GIL back
        from the callers just woken: about a millisecond of every hold, while the other
        processes waited for the lock.

        Not on the main thread, where a signal handler may raise (Ctrl-C): an interrupt there
        would cut a write short and fail the ledger, where the committer thread finishes it
        and the caller only stops waiting."""
        if threading.current_thread() is threading.main_thread():
            return
        with self._lock:
            busy = self._writing or self._stopped or self._pins
            if busy or not (self._queue and self._hands_over()):
                return
            group = self._take_group()
            tip = self._tip
            self._writing = True
            self._unflushed_since_ns = self._unflushed_since_ns or time.perf_counter_ns()
            self._unflushed_batches += len(group)
        self._write(group, tip)

    def release_when_durable(self, sequence: int, waiter: LockType) -> None:
        """Releases `waiter` once batch `sequence` is durable, or once the committer stopped
        short of it."""
        with self._lock:
            if self._durable >= sequence or self._stopped:
                waiter.release()
            else:
                self._waiters.append((sequence, waiter))

    def wait(self, sequence: int) -> None:
        """Returns once batch `sequence` and every batch before it are durable."""
        # `_durable` only grows, so a batch seen durable without the lock is durable.
        if self._durable >= sequence:
            return
        with self._lock:
            if self._durable >= sequence:
                return
            if self._stopped:
                raise self._failed() from self._failure
            waiter = allocate_lock()
            waiter.acquire()
            self._waiters.append((sequence, waiter))
        waiter.acquire()
        # Only a committer that failed releases a waiter before its batch is durable.
        if self._durable < sequence:
            raise self._failed() from self._failure

    def mark(self) -> int:
        """Remembers the tip of the last queued batch once it is durable, for a snapshot of
        the state through it; returns its sequence. Called under the ledger's lock."""
        with self._lock:
            self._marked = self._appended
            self._marked_tip = self._tip if self._tip.sequence == self._appended else None
            return self._marked

    def marked_tip(self, sequence: int) -> Tip:
        """Waits until the batch `mark` returned is durable; returns its tip."""
        self.wait(sequence)
        with self._lock:
            assert self._marked == sequence and self._marked_tip is not None
            return self._marked_tip

    def flush(self) -> Tip:
        """Makes every queued batch durable; returns the tip, which they all precede."""
        self.wait(self._appended)
        with self._lock:
            return self._tip

    def counted(self) -> _metrics.JournalCounters:
        """A copy of what this committer counted, for `Ledger.metrics()`."""
        with self._lock:
            return self.counters.copy()

    def fail(self, error: BaseException, message: str) -> JournalWriteError:
        """Refuses every further batch, saying `message`: memory and the journal may differ.
        Returns the error that says so."""
        with self._lock:
            if self._failure is None:
                self._failure, self._failure_message = error, message
            return self._failed()

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def stopped(self) -> bool:
        """Whether a write failed, or its outcome is unknown: then no batch of this committer
        becomes durable any more."""
        return self._stopped

    def raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failed() from self._failure

    def close(self) -> None:
        """Writes what is still queued, lets the append lock go and stops the thread."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _hands_over(self) -> bool:
        """Whether the lock goes to the other processes as soon as this one's writes are
        done. Called with the lock held."""
        return self._contended or self._others_appended

    def _draining(self) -> bool:
        """Whether this hold takes no new callers, so as to let the lock go to the process
        that waits for it. Called with the lock held."""
        return self._groups >= GROUPS_PER_HOLD and self.journal.contended()

    def _failed(self) -> JournalWriteError:
        # The journal's own kind of failure, such as an outcome unknown, is kept for callers.
        kind = type(self._failure) if isinstance(self._failure, JournalWriteError) else None
        return (kind or JournalWriteError)(self._failure_message)

    def _run(self) -> None:
        """The committer thread: writes the queue a group at a time and flushes each write,
        until closed or failed."""
        while True:
            with self._lock:
                group = self._next_group()
                tip = self._tip
                self._writing = bool(group)
                # A leader's writes are timed with the flush that follows them.
                started_ns = self._unflushed_since_ns or time.perf_counter_ns()
                batches = self._unflushed_batches + len(group or ())
                self._unflushed_since_ns = self._unflushed_batches = 0
            if group is None:
                return
            if group:
                written = self._write(group, tip)
                if written is None:
                    return
                tip = written
            try:
                self.journal.flush(tip)
            except BaseException as error:
                self._stop(error)
                return
            if batches:
                self._count_write(batches, time.perf_counter_ns() - started_ns)
            with self._lock:
                self._made_durable(tip.sequence)

    def _write(self, group: list[Queued], tip: Tip) -> Tip | None:
        """Writes a group taken with `_writing` set, after `tip`; returns the tip of its last
        batch, or None if the write failed, which stops the committer."""
        try:
            tips = self.journal.write(group, tip)
        except BaseException as error:
            self._stop(error, wrote=True)
            return None
        self._written(group, tips)
        return tips[-1]

    def _count_write(self, batches: int, written_ns: int) -> None:
        """Counts a write with its flush, and warns of a slow one."""
        if written_ns > _metrics.SLOW_WRITE_S * 1e9:
            log.warning(
                "fastledger: a write of %d batches to %s took %.3f s",
                batches,
                self.journal.location,
                written_ns / 1e9,
            )
        with self._lock:
            self.counters.write_ns.record(written_ns)

    def _next_group(self) -> list[Queued] | None:
        """Waits until a batch is queued, letting the append lock go whenever nothing is
        queued or pinned; takes the next group. Empty when nothing is queued but batches read
        under the append lock wait for a flush; None once closed, written and flushed. Called
        with the lock held.

        While another process waits for the append lock, the group also waits for the callers
        that pinned the lock to queue their batches, one after the other as the ledger's lock
        lets them: each hold of the lock costs every process a catch-up, so it should carry
        all it can. A process on its own writes at once instead, and its callers queue the
        next group while the disk flushes this one."""
        idle_since = time.monotonic()
        while True:
            if self._writing:
                # A leader writes a group: the next write, letting the lock go and stopping
                # wait for it to end (see `_written` and `_stop`).
                self._changed.wait()
                continue
            if self._stopped:
                return None
            if self._queue:
                if self._pins == 0 or self._queued_bytes >= GROUP_WAIT_BYTES_MAX:
                    break
                if not self._contended:
                    break
                self._changed.wait()
                continue
            if self._pins == 0 and self._durable < self._tip.sequence:
                # Batches read under the lock wait for a flush, which needs no lock.
                if self._locked and self.journal.contended():
                    self._let_go()
                return []
            if self._locked and self._pins == 0:
                lingered = time.monotonic() - idle_since
                done = self._closing or lingered >= LINGER_S or self._others_appended
                if done or self.journal.contended():
                    self._let_go()
                else:
                    self._changed.wait(_LINGER_POLL_S)
                    continue
            if self._closing and not self._locked:
                return None
            self._changed.wait()
        return self._take_group()

    def _take_group(self) -> list[Queued]:
        """Takes the next group from the queue, which holds a batch at least. Called with the
        lock held."""
        size = 0
        for count, queued in enumerate(self._queue):
            size += HEADER_SIZE + len(queued[3])
            if size > WRITE_BYTES_MAX and count > 0:
                break
        else:
            count = len(self._queue)
        group, self._queue = self._queue[:count], self._queue[count:]
        self._queued_bytes -= sum(HEADER_SIZE + len(queued[3]) for queued in group)
        self._groups += 1
        return group

    def _written(self, group: list[Queued], tips: list[Tip]) -> None:
        """Records a group written, not flushed yet; lets the append lock go before the flush
        if another process waits for it and this one has nothing more to write, or if the
        committer stopped meanwhile."""
        first, through = group[0][0], group[-1][0]
        with self._lock:
            self._writing = False
            self._changed.notify_all()
            counters = self.counters
            counters.batches += len(group)
            counters.bytes += sum(HEADER_SIZE + len(queued[3]) for queued in group)
            counters.groups += 1
            counters.group_batches.record(len(group))
            self._tip = tips[-1]
            self._own_through = through
            if first <= self._marked <= through:
                self._marked_tip = tips[self._marked - first]
            self._contended = self._locked and self.journal.contended()
            done = self._locked and self._pins == 0 and not self._queue
            if done and (self._hands_over() or self._stopped):
                self._let_go()

    def _made_durable(self, through: int) -> None:
        """Records that every batch through `through` is durable, and wakes their waiters.
        Called with the lock held."""
        if through <= self._durable:
            return
        self._durable = through
        waiters = self._waiters
        ready = [waiter for sequence, waiter in waiters if sequence <= through]
        if len(ready) < len(waiters):
            self._waiters = [(s, waiter) for s, waiter in waiters if s > through]
        else:
            self._waiters = []
        for waiter in ready:
            waiter.release()

    def _stop(self, error: BaseException, *, wrote: bool = False) -> None:
        """A write failed or its outcome is unknown: no batch after it may be written, and
        every waiter learns it. The append lock goes, so that other processes go on. `wrote`
        says that the failed write was the one in flight: it ends here, in the same hold of
        the lock that stops the committer, so that no other write slips in between."""
        with self._lock:
            if wrote:
                self._writing = False
            if self._failure is None:
                self._failure = error
                self._failure_message = (
                    f"{error}. No batch in flight was acknowledged; retrying them with the same "
                    "ids is safe (one that was kept answers EXISTS)"
                    if isinstance(error, JournalWriteError)
                    else f"appending to the journal {self.journal.location} failed ({error!r}); "
                    "the batches in flight were acknowledged to no one and may or may not be in "
                    "the journal: open the ledger again and retry them with the same ids"
                )
            self._stopped = True
            waiters, self._waiters = self._waiters, []
            self._queue = []
            self._queued_bytes = 0
            # A flush fails after the lock was let go, maybe once a caller of this process
            # took it again: that caller's pin lets it go then, not this, under its feet; a
            # group being written lets it go once written (`_written`).
            if self._locked and self._pins == 0 and not self._writing:
                self._let_go()
            self._changed.notify_all()
        for _, waiter in waiters:
            waiter.release()
