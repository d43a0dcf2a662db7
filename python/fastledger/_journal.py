"""The journal: an append-only file of committed batches, chained by their checksums.

Every batch is a 128-byte header followed by its records, the 128-byte records exactly as the
caller submitted them. Headers and records are both 128 bytes, so every batch starts at a
multiple of 128. Header layout, all integers little-endian:

    offset  size  field
    0       8     magic b"FLBATCH\\0"
    8       2     u16 format version (1)
    10      2     u16 kind: 1 accounts, 2 transfers, 3 expiry (pending transfers that a read
                  released: no body, the timestamp is the time they expired through)
    12      4     u32 count: records in the body, 1..8189 (0 for an expiry)
    16      8     u64 sequence: 1 for the first batch, then one more per batch
    24      8     u64 timestamp: the batch timestamp the ledger gave (its last event's)
    32      8     u64 write sequence: the sequence of the first batch of the write (the group
                  commit) that carried this batch
    40      16    body checksum: BLAKE2b-128 of the records
    56      16    previous checksum: the checksum (bytes 112..128) of the batch before, zeros
                  for sequence 1; this is the hash chain
    72      40    reserved, zeros
    112     16    checksum: BLAKE2b-128 of bytes 0..112, which hold the body checksum, so it
                  covers the whole batch

Recovery reads batches in order. A batch that is cut short or fails a checksum is the torn
tail of a write that never finished, and is cut off, only if no batch of a later write follows
it: a later write starts only after the fsync of the one before returned, so a damaged batch
followed by one is damage to an acknowledged batch, and the journal refuses to open. A batch
whose checksums hold but whose sequence or previous checksum is wrong was never torn: that is
a broken chain, refused wherever it is.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import sys
import threading
from _thread import LockType, allocate_lock
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from ._records import RECORD_SIZE
from ._types import BATCH_MAX
from .errors import JournalCorruptError, JournalWriteError

__all__ = [
    "HEADER_SIZE",
    "KIND_ACCOUNTS",
    "KIND_EXPIRY",
    "KIND_TRANSFERS",
    "Batch",
    "JournalScan",
    "JournalWriter",
    "Queued",
    "Tip",
    "checksum",
    "encode_header",
    "read_ahead",
    "sync_directory",
    "write_batches",
]

MAGIC = b"FLBATCH\0"
VERSION = 1
KIND_ACCOUNTS = 1
KIND_TRANSFERS = 2
KIND_EXPIRY = 3
HEADER_SIZE = 128
CHECKSUM_SIZE = 16
NO_CHECKSUM = bytes(CHECKSUM_SIZE)

_HEADER = struct.Struct("<8sHHIQQQ16s16s40s16s")
assert _HEADER.size == HEADER_SIZE == RECORD_SIZE
_CHECKED = HEADER_SIZE - CHECKSUM_SIZE
# The header without its checksum, the bytes that the checksum covers.
_HEADER_CHECKED = struct.Struct("<8sHHIQQQ16s16s40s")
assert _HEADER_CHECKED.size == _CHECKED
_RESERVED = bytes(40)

# One write of a group commit carries at most this many bytes (and at least one batch), so
# that a burst of callers cannot make the leader build an unbounded buffer.
WRITE_BYTES_MAX = 16 * 1024 * 1024
# The most bytes read at once while looking past damage for a batch of a later write.
_SEARCH_CHUNK = 1024 * 1024
_B = TypeVar("_B")

# How many batches `read_ahead` reads and checks before the replay asks for them (8 MiB of
# full batches at most).
READ_AHEAD_BATCHES = 8


def checksum(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()


@dataclass(frozen=True, slots=True)
class Tip:
    """The last batch of the journal: its sequence, where its header starts, where it ends,
    and its checksum (the link the next batch chains to). Sequence 0 is the empty journal."""

    sequence: int = 0
    offset: int = 0
    end: int = 0
    checksum: bytes = NO_CHECKSUM


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch read back from the journal."""

    sequence: int
    kind: int
    timestamp: int
    body: bytes
    offset: int
    checksum: bytes

    @property
    def count(self) -> int:
        return len(self.body) // RECORD_SIZE

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + len(self.body)

    @property
    def tip(self) -> Tip:
        return Tip(self.sequence, self.offset, self.end, self.checksum)


def encode_header(
    sequence: int, kind: int, timestamp: int, body: bytes, write_sequence: int, previous: bytes
) -> bytes:
    """The header of a batch; its last 16 bytes are its checksum."""
    checked = _HEADER_CHECKED.pack(
        MAGIC,
        VERSION,
        kind,
        len(body) // RECORD_SIZE,
        sequence,
        timestamp,
        write_sequence,
        checksum(body),
        previous,
        _RESERVED,
    )
    return checked + checksum(checked)


@dataclass(frozen=True, slots=True)
class _Header:
    magic: bytes
    version: int
    kind: int
    count: int
    sequence: int
    timestamp: int
    write_sequence: int
    body_checksum: bytes
    previous: bytes
    reserved: bytes


def _parse_header(block: bytes) -> _Header | None:
    """The header in `block`, or None if its checksum fails (a torn or damaged header)."""
    if len(block) < HEADER_SIZE or block[_CHECKED:] != checksum(block[:_CHECKED]):
        return None
    return _Header(*_HEADER.unpack(block)[:-1])


def _invalid_field(header: _Header) -> str | None:
    """Why a header whose checksum holds is still not one this version writes, if it is not."""
    if header.magic != MAGIC:
        return "a checksummed header without the batch magic"
    if header.version != VERSION:
        return f"journal format version {header.version}; this fastledger reads {VERSION}"
    if header.kind not in (KIND_ACCOUNTS, KIND_TRANSFERS, KIND_EXPIRY):
        return f"unknown batch kind {header.kind}"
    if header.kind == KIND_EXPIRY and header.count != 0:
        return f"an expiry of {header.count} records"
    if header.kind != KIND_EXPIRY and not 1 <= header.count <= BATCH_MAX:
        return f"a batch of {header.count} records"
    if not 1 <= header.write_sequence <= header.sequence:
        return f"write sequence {header.write_sequence} of batch {header.sequence}"
    if header.reserved != _RESERVED:
        return "non-zero reserved header bytes"
    return None


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at the end of the journal that no acknowledged write produced."""

    offset: int
    length: int
    reason: str


class JournalScan:
    """Reads every batch of a journal, checking every checksum and link of the chain.

    Iterating yields each good batch in order. Afterwards `tip` is the last good batch and
    `torn` says what follows it, if anything: the torn tail that recovery cuts off. Damage
    that is not a torn tail raises JournalCorruptError naming the file and byte offset.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.tip = Tip()
        self.torn: TornTail | None = None

    def __iter__(self) -> Iterator[Batch]:
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            while self.tip.end < size:
                batch = self._read_batch(f, size)
                if batch is None:
                    return
                self.tip = batch.tip
                yield batch

    def _read_batch(self, f: BinaryIO, size: int) -> Batch | None:
        offset = self.tip.end
        block = f.read(HEADER_SIZE)
        header = _parse_header(block)
        if header is None:
            what = "cut short" if len(block) < HEADER_SIZE else "fails its checksum"
            self._damaged(f, size, offset, f"the batch header {what}")
            return None
        self._check_header(header, offset)
        body = f.read(header.count * RECORD_SIZE)
        if len(body) < header.count * RECORD_SIZE:
            self._damaged(f, size, offset, f"batch {header.sequence} is cut short")
            return None
        if checksum(body) != header.body_checksum:
            self._damaged(f, size, offset, f"batch {header.sequence} fails its checksum")
            return None
        return Batch(header.sequence, header.kind, header.timestamp, body, offset, block[_CHECKED:])

    def _check_header(self, header: _Header, offset: int) -> None:
        """A header that passed its checksum was written whole: anything wrong in it is a
        broken chain or a foreign file, never a torn write."""
        invalid = _invalid_field(header)
        if invalid is None and header.sequence != self.tip.sequence + 1:
            invalid = f"batch {header.sequence} where batch {self.tip.sequence + 1} belongs"
        if invalid is None and header.previous != self.tip.checksum:
            invalid = (
                f"broken hash chain: batch {header.sequence} does not link to the checksum "
                f"of batch {self.tip.sequence}"
            )
        if invalid is not None:
            raise JournalCorruptError(invalid, path=self.path, offset=offset)

    def _damaged(self, f: BinaryIO, size: int, offset: int, reason: str) -> None:
        """Damage at `offset`: a torn tail unless a batch of a later write follows."""
        later = _find_later_write(f, offset + HEADER_SIZE, size, self.tip.sequence + 1)
        if later is not None:
            raise JournalCorruptError(
                f"{reason}, yet batch {later[1]} of a later write follows at byte offset "
                f"{later[0]}: an acknowledged batch is damaged",
                path=self.path,
                offset=offset,
            )
        self.torn = TornTail(offset, size - offset, reason)


def read_ahead(batches: Iterable[_B], depth: int = READ_AHEAD_BATCHES) -> Iterator[_B]:
    """Yields `batches` in order while a thread reads and checks up to `depth` more.

    Reading and checksumming a journal took about a third of opening it; both let go of the
    GIL, as the engine does while it replays a batch, so on a second core they overlap the
    replay. An exception of the reading, such as JournalCorruptError, is raised here when the
    replay reaches the batch it stopped at, so what the replay applied is the same as without
    the thread.
    """
    ahead: queue.Queue[_B | BaseException | None] = queue.Queue(depth)
    stopped = threading.Event()

    def put(item: _B | BaseException | None) -> bool:
        # Gives up once the replay has stopped asking, so that the thread always ends.
        while not stopped.is_set():
            try:
                ahead.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as error:
            put(error)
            return
        put(None)

    reader = threading.Thread(target=read, name="fastledger-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
        reader.join()


def _find_later_write(f: BinaryIO, start: int, size: int, sequence: int) -> tuple[int, int] | None:
    """The offset and sequence of the first intact header after `start` whose write began
    after batch `sequence`, looking at every 128-byte boundary up to `size`."""
    offset = -(-start // HEADER_SIZE) * HEADER_SIZE
    while offset + HEADER_SIZE <= size:
        f.seek(offset)
        chunk = f.read(min(_SEARCH_CHUNK, size - offset))
        for at in range(0, len(chunk) - HEADER_SIZE + 1, HEADER_SIZE):
            if chunk[at : at + 8] != MAGIC:
                continue
            header = _parse_header(chunk[at : at + HEADER_SIZE])
            if header is not None and header.write_sequence > sequence:
                return offset + at, header.sequence
        offset += len(chunk) - len(chunk) % HEADER_SIZE
    return None


def sync_file(fd: int) -> None:
    """Flushes a file's data and size to stable storage."""
    if sys.platform == "darwin":
        import fcntl

        # On macOS fsync leaves the data in the drive's cache; F_FULLFSYNC flushes that too.
        fcntl.fcntl(fd, getattr(fcntl, "F_FULLFSYNC", 51))
    else:
        os.fsync(fd)


def sync_directory(path: str) -> None:
    """Makes the creation, rename or removal of files in `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A queued batch: its sequence, kind, timestamp and records. A tuple, not a dataclass: one is
# made per call under the ledger's lock.
Queued = tuple[int, int, int, bytes]

# The most buffers one os.writev takes: IOV_MAX on Linux and macOS.
_IOV_MAX = 1024


def write_batches(fd: int, group: list[Queued], tip: Tip, *, sync: bool) -> list[Tip]:
    """Writes a group of batches after `tip` as one write (a group commit) and flushes it if
    `sync`; returns the tip after each of its batches."""
    parts: list[bytes | memoryview] = []
    tips: list[Tip] = []
    first = group[0][0]
    for sequence, kind, timestamp, body in group:
        header = encode_header(sequence, kind, timestamp, body, first, tip.checksum)
        parts += (header, body)
        tip = Tip(sequence, tip.end, tip.end + HEADER_SIZE + len(body), header[_CHECKED:])
        tips.append(tip)
    _write_all(fd, parts)
    if sync:
        sync_file(fd)
    return tips


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """Writes `parts` in order, handing the buffers to the kernel as they are rather than
    joining them into one more copy of every body. Like os.write, os.writev may write less
    than asked, so it resumes after what was written."""
    start = 0
    while start < len(parts):
        written = os.writev(fd, parts[start : start + _IOV_MAX])
        while start < len(parts) and written >= len(parts[start]):
            written -= len(parts[start])
            start += 1
        if written:
            parts[start] = memoryview(parts[start])[written:]


class JournalWriter:
    """Appends batches with group commit, from a writer thread of its own.

    `append` runs under the ledger's lock before the engine applies the batch, so sequences
    follow the order in which the engine applies batches, and the writer checksums, writes and
    flushes a batch while the engine works on it (both release the GIL for large batches).
    The journal can run ahead of the engine because it holds only what the engine is given,
    never what it answered. `wait` runs outside the lock.

    The writer takes every queued batch (up to WRITE_BYTES_MAX) as one write and one flush, so
    batches queued during a flush share the next one. Each waiter sleeps on a lock of its own,
    released by the write that made its batch durable: waking every waiter for each write made
    each of them contend for the GIL, which cost more than the fsync itself with dozens of
    threads.
    """

    def __init__(self, path: str, fd: int, tip: Tip, *, sync: bool) -> None:
        self.path = path
        self._fd = fd
        self._sync = sync
        # Guards everything below; held only briefly, never across a write.
        self._lock = threading.Lock()
        # The writer sleeps on this lock while `_idle`; whoever clears `_idle` releases it
        # once, to wake the writer. A bare lock: a Condition's notify, made on most appends
        # of a lone caller, cost more than the rest of the append.
        self._wake = allocate_lock()
        self._wake.acquire()
        self._queue: list[Queued] = []
        self._tip = tip
        self._appended = tip.sequence
        self._durable = tip.sequence
        self._idle = False
        self._closing = False
        # The callers waiting for their batch to be durable, and the lock each sleeps on.
        self._waiters: list[tuple[int, LockType]] = []
        # The batch a snapshot covers, and its tip once it is on disk.
        self._marked = 0
        self._marked_tip: Tip | None = None
        # Why the ledger refuses further batches; `_stopped` once the writer itself failed,
        # after which no batch becomes durable.
        self._failure: BaseException | None = None
        self._failure_message = ""
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fastledger-journal", daemon=True)
        self._thread.start()

    @property
    def appended(self) -> int:
        """The sequence of the last batch appended, durable or not."""
        return self._appended

    def append(self, kind: int, timestamp: int, body: bytes) -> int:
        """Queues a batch that the engine is about to apply; returns its sequence."""
        with self._lock:
            self.raise_if_failed()
            self._appended = sequence = self._appended + 1
            self._queue.append((sequence, kind, timestamp, body))
            self._wake_writer()
            return sequence

    def wait(self, sequence: int) -> None:
        """Returns once batch `sequence` and every batch before it are on disk."""
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
        # Only a writer that failed releases a waiter before its batch is durable.
        if self._durable < sequence:
            raise self._failed() from self._failure

    def mark(self) -> int:
        """Remembers the tip of the last appended batch once it is written, for a snapshot of
        the state through it; returns its sequence. Called under the ledger's lock."""
        with self._lock:
            self._marked = self._appended
            self._marked_tip = self._tip if self._durable == self._appended else None
            return self._marked

    def marked_tip(self, sequence: int) -> Tip:
        """Waits until the batch `mark` returned is on disk; returns its tip."""
        self.wait(sequence)
        with self._lock:
            assert self._marked == sequence and self._marked_tip is not None
            return self._marked_tip

    def flush(self) -> Tip:
        """Writes every appended batch; returns the tip, which they all precede."""
        self.wait(self._appended)
        with self._lock:
            return self._tip

    def fail_applying(self, sequence: int, error: BaseException) -> JournalWriteError:
        """Refuses every further batch because the engine failed on batch `sequence`, which
        was queued already and is still written: memory may lack a batch that the journal
        holds. Returns the error that says so. Called under the ledger's lock."""
        with self._lock:
            self._fail(
                error,
                f"the engine failed on batch {sequence} after the journal {self.path} took it "
                f"({error!r}); the ledger in memory may lack that batch, so it refuses every "
                "further call: open the ledger again, which replays the batch from the journal, "
                "and retry it with the same ids",
            )
            return self._failed()

    def raise_if_failed(self) -> None:
        """Refuses to go on once memory and the journal may differ."""
        if self._failure is not None:
            raise self._failed() from self._failure

    def close(self) -> None:
        """Writes what is still queued, stops the writer and closes the file."""
        with self._lock:
            self._closing = True
            self._wake_writer()
        self._thread.join()
        os.close(self._fd)

    def _wake_writer(self) -> None:
        # Called with the lock held.
        if self._idle:
            self._idle = False
            self._wake.release()

    def _fail(self, error: BaseException, message: str) -> None:
        # The first failure is the one that tells the user what happened.
        if self._failure is None:
            self._failure, self._failure_message = error, message

    def _failed(self) -> JournalWriteError:
        return JournalWriteError(self._failure_message)

    def _run(self) -> None:
        """The writer thread: writes the queue, a group at a time, until closed or failed."""
        while True:
            with self._lock:
                group = self._next_group()
            if not group:
                return
            try:
                tips = write_batches(self._fd, group, self._tip, sync=self._sync)
            except BaseException as error:
                self._stop(error)
                return
            self._written(group, tips)

    def _next_group(self) -> list[Queued]:
        """Sleeps until a batch is queued; takes the next group. Empty once closed and
        written. Called with the lock held."""
        while not self._queue and not self._closing:
            self._idle = True
            self._lock.release()
            self._wake.acquire()
            self._lock.acquire()
        size = 0
        for count, queued in enumerate(self._queue):
            size += HEADER_SIZE + len(queued[3])
            if size > WRITE_BYTES_MAX and count > 0:
                break
        else:
            count = len(self._queue)
        group, self._queue = self._queue[:count], self._queue[count:]
        return group

    def _written(self, group: list[Queued], tips: list[Tip]) -> None:
        """Makes a written group durable and wakes the waiters of its batches."""
        first, through = group[0][0], group[-1][0]
        with self._lock:
            self._tip = tips[-1]
            if first <= self._marked <= through:
                self._marked_tip = tips[self._marked - first]
            self._durable = through
            waiters = self._waiters
            ready = [waiter for sequence, waiter in waiters if sequence <= through]
            if len(ready) < len(waiters):
                self._waiters = [(s, waiter) for s, waiter in waiters if s > through]
            else:
                self._waiters = []
        for waiter in ready:
            waiter.release()

    def _stop(self, error: BaseException) -> None:
        """A write or flush failed; part of the group may be on disk, so the file can take no
        further write. Every waiter learns it."""
        with self._lock:
            self._fail(
                error,
                f"writing the journal {self.path} failed ({error!r}); the outcome of the "
                "batches in flight is unknown: open the ledger again and retry them with the "
                "same ids",
            )
            self._stopped = True
            waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.release()
