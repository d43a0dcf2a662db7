"""A journal in a local directory, shared by every process on the machine that opens it.

    PATH/journal                     the journal header, then the batches (`format` gives them)
    PATH/tip                         the durable tip, kept apart from the journal
    PATH/snapshot-<sequence:020d>    the engine state through a batch (`snapshots` gives them)

Any number of processes may open one directory, all of them writers. The append lock is an
advisory lock on the journal file itself: a lock file could be removed under a running ledger,
the journal cannot be without the ledger noticing, since every write first checks that the file
at PATH/journal is still the one it holds open.

The tip file records the last durable batch: its sequence, where it ends and its checksum. A
writer updates it after every flush, so it is never ahead of what is on disk, and other
processes learn from it at the cost of reading shared memory that a batch was appended. A
writer that another process waits for lets the append lock go once it has written, and flushes
after, so that the next process writes while the disk flushes; that one's own flush then covers
both writes. Any process that flushed may update the tip file, under an advisory lock of the
directory itself (a file for it could be removed under a running ledger, the directory cannot),
so that two never write one slot at once and the tip only moves forward.

The tip file also gives away a journal that lost batches from its end (restored from an old
copy, say), which a hash chain alone cannot show: opening then refuses with the number of
batches missing. It holds the tip twice, in two slots written in turn, each with its own
checksum, so that a writer killed while it updates one leaves the other intact.

    tip file layout, all integers little-endian
    offset  size  field
    0       8     magic b"FLTIP\\0\\0\\0"
    8       16    the ledger's id, as in the journal header
    24      40    reserved, zeros
    64      64    slot A: u64 sequence, u64 header offset, u64 end, 16 the batch's checksum,
                  8 zeros, 16 checksum of the ledger's id and the slot's first 48 bytes
    128     64    slot B, the same
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
import sys
import threading
import time
from collections.abc import Iterator

from .. import _platform
from .._records import RECORD_SIZE
from ..errors import InvalidArgumentError, JournalCorruptError, JournalWriteError
from .format import (
    HEADER_SIZE,
    Batch,
    Checksums,
    JournalHeader,
    Queued,
    Tip,
    body_is_torn,
    decode_batch_header,
    encode_batches,
)

__all__ = ["JOURNAL", "TIP", "DirectoryJournal"]

log = logging.getLogger("fastledger")

JOURNAL = "journal"
TIP = "tip"
TIP_MAGIC = b"FLTIP\0\0\0"
_TIP_SIZE = 256
_SLOTS = (64, 128)
_SLOT = struct.Struct("<QQQ16s8x")
# The sequences of the two slots, read in one go.
_SEQUENCES = struct.Struct("<Q56xQ")
_SLOT_SIZE = 64
# How often `wait` looks at the tip file: a follower learns of a batch within this.
_POLL_S = 0.0002
# How long a process that let the append lock go to a waiting one waits for that one's batch
# before it takes the lock again.
_YIELD_S = 0.005
# The most bytes one read of the journal asks for while replaying it.
_READ_MAX = 1 << 20
_FORMAT_1_MAGIC = b"FLBATCH\0"


class DirectoryJournal:
    """The journal of one ledger directory, opened by one process."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        read_only: bool = False,
        sync: bool = True,
        cut_damaged_tail: bool = False,
        header: JournalHeader | None = None,
    ) -> None:
        if not hasattr(os, "pwritev"):
            raise InvalidArgumentError(
                f"a ledger directory needs positional reads and writes (os.pread, os.pwritev), "
                f"which Python on {sys.platform} lacks: keep the journal in PostgreSQL "
                "(a postgresql:// URL), or the ledger in memory"
            )
        self.path = os.path.abspath(os.fspath(path))
        self.location = self.path
        self.file = os.path.join(self.path, JOURNAL)
        self.read_only = read_only
        self.checksums = Checksums(key)
        self.sync = sync
        self._cut_damaged_tail = cut_damaged_tail
        if not read_only:
            _make_directory(self.path)
            self._create_journal(header)
        elif not os.path.isfile(self.file):
            raise InvalidArgumentError(
                f"{self.path} holds no ledger: a read-only open never creates one"
            )
        self._fd = os.open(self.file, os.O_RDONLY if read_only else os.O_RDWR)
        self._record_fd = -1
        try:
            self._identity = _identity(os.fstat(self._fd))
            block = os.pread(self._fd, HEADER_SIZE, 0)
            if block[:8] == _FORMAT_1_MAGIC:
                raise JournalCorruptError(
                    "this journal has format 1, written by fastledger 0.1; this release reads "
                    "format 2 only",
                    path=self.file,
                    offset=0,
                )
            self.header = JournalHeader.decode(block, self.checksums, self.file)
            self._tip_map = self._open_tip_file()
            self._waiting_fd = os.open(os.path.join(self.path, TIP), os.O_RDONLY)
            # Records of the tip go under the lock of the directory, across processes, and of
            # `_recording`, across this process's threads, which share the one open directory.
            self._record_fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            self._recording = threading.Lock()
        except BaseException:
            if self._record_fd >= 0:
                os.close(self._record_fd)
            os.close(self._fd)
            raise
        self._locked = False
        # The journal's size when this process let the lock go to a waiting one.
        self._yielded_at: int | None = None
        self.torn_tail: str | None = None
        self._torn: str | None = None

    # -- creation ----------------------------------------------------------------------------

    def _create_journal(self, header: JournalHeader | None) -> None:
        """Makes the journal if there is none, whole or not at all, with `header` (a copy's)
        or a new one: the header is written to a file of its own name first, then linked
        into place, which fails if another process made the journal meanwhile (its journal is
        then the one)."""
        if os.path.exists(self.file):
            return
        header = header or JournalHeader.new(self.checksums)
        encoded = header.encode(self.checksums)
        with _private_file(self.path, JOURNAL, encoded) as temporary, _already_there():
            os.link(temporary, self.file)
        _platform.fsync_directory(self.path)

    def _open_tip_file(self) -> mmap.mmap:
        name = os.path.join(self.path, TIP)
        if not os.path.exists(name):
            if self.read_only:
                raise InvalidArgumentError(
                    f"{self.path} has no tip file yet: open it for writing once first"
                )
            self._create_tip_file(name)
        fd = os.open(name, os.O_RDONLY if self.read_only else os.O_RDWR)
        try:
            if os.fstat(fd).st_size != _TIP_SIZE:
                raise JournalCorruptError("the tip file has the wrong size", path=name, offset=0)
            access = mmap.ACCESS_READ if self.read_only else mmap.ACCESS_WRITE
            tip_map = mmap.mmap(fd, _TIP_SIZE, access=access)
        finally:
            os.close(fd)
        if tip_map[:8] != TIP_MAGIC or tip_map[8:24] != self.header.ledger_id:
            tip_map.close()
            raise JournalCorruptError(
                "the tip file belongs to another ledger than the journal beside it",
                path=name,
                offset=0,
            )
        return tip_map

    def _create_tip_file(self, name: str) -> None:
        size = os.path.getsize(self.file)
        if size > HEADER_SIZE:
            log.warning(
                "fastledger: %s has no tip file; making one. Until then nothing showed whether "
                "the journal lost batches from its end",
                self.path,
            )
        empty = self.header.empty_tip(self.checksums)
        data = bytearray(_TIP_SIZE)
        data[:8] = TIP_MAGIC
        data[8:24] = self.header.ledger_id
        for at in _SLOTS:
            data[at : at + _SLOT_SIZE] = self._encode_slot(empty)
        with _private_file(self.path, TIP, bytes(data)) as temporary, _already_there():
            os.link(temporary, name)
        _platform.fsync_directory(self.path)

    # -- the durable tip ---------------------------------------------------------------------

    def _encode_slot(self, tip: Tip) -> bytes:
        fields = _SLOT.pack(tip.sequence, tip.offset, tip.end, tip.checksum)
        return fields + self.checksums(self.header.ledger_id + fields)

    def durable_tip(self) -> Tip:
        """The tip that the tip file records: the newest of its two slots that is whole."""
        best: Tip | None = None
        for at in _SLOTS:
            slot = self._tip_map[at : at + _SLOT_SIZE]
            if slot[48:] != self.checksums(self.header.ledger_id + slot[:48]):
                continue
            tip = Tip(*_SLOT.unpack(slot[:48]))
            if best is None or tip.sequence > best.sequence:
                best = tip
        if best is None:
            raise JournalCorruptError(
                "both slots of the tip file fail their checksums",
                path=os.path.join(self.path, TIP),
                offset=0,
            )
        return best

    @contextlib.contextmanager
    def _recording_tip(self) -> Iterator[None]:
        """Holds the tip file for one record: against this process's other threads and
        against other processes."""
        with self._recording:
            _platform.lock_exclusive(self._record_fd)
            try:
                yield
            finally:
                _platform.unlock(self._record_fd)

    def _record_tip(self, tip: Tip) -> None:
        """Writes `tip` over the older slot, the newer one staying whole meanwhile, unless the
        tip file holds `tip` or a later one already: another process may have flushed past it."""
        with self._recording_tip():
            # The slots' sequences alone settle the common case; a slot that claims `tip` or a
            # later one must also be whole to count.
            a, b = _SEQUENCES.unpack_from(self._tip_map, _SLOTS[0])
            if max(a, b) >= tip.sequence and self.durable_tip().sequence >= tip.sequence:
                return
            older = _SLOTS[0] if a <= b else _SLOTS[1]
            self._tip_map[older : older + _SLOT_SIZE] = self._encode_slot(tip)

    def reset_tip(self, tip: Tip) -> None:
        """Writes `tip` over both slots: a tip going back, after an explicit cut."""
        with self._recording_tip():
            for at in _SLOTS:
                self._tip_map[at : at + _SLOT_SIZE] = self._encode_slot(tip)

    def changed(self, tip: Tip) -> bool:
        # Both slots' sequences without their checksums: a slot half written by a writer at
        # this moment can only make this say yes, and then `read` checks the slot properly.
        a, b = _SEQUENCES.unpack_from(self._tip_map, _SLOTS[0])
        return bool(a > tip.sequence or b > tip.sequence)

    def wait(self, tip: Tip, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.changed(tip):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    # -- reading -----------------------------------------------------------------------------

    def read(self, after: Tip, *, locked: bool) -> Iterator[Batch]:
        """See `Journal.read`. Unlocked, up to the durable tip; locked, to the end of the file,
        cutting off the torn tail of a write that never finished."""
        durable = self.durable_tip()
        size = os.fstat(self._fd).st_size
        if not locked:
            yield from self._read_durable(after, durable, size)
            return
        # What lies past the durable tip was written whole, under the append lock, by a process
        # that may still be flushing it, or that died before it could. It is not durable until
        # this process's committer flushes it, as it does before anything that depends on it
        # is acknowledged.
        last = after
        try:
            for batch in self._read_to_end(after, durable, size):
                last = batch.tip
                yield batch
        except JournalCorruptError as error:
            if not self._cut_damaged_tail:
                raise
            self._cut(last, size, f"it is damaged: {error}")
        else:
            if self._torn is not None:
                self._cut(last, size, self._torn)

    def inspect(self, after: Tip) -> Iterator[Batch]:
        """Every batch after `after`, as `read` under the lock finds them, but changing
        nothing: afterwards `torn_tail` says what follows the last whole batch, if anything.
        Past the durable tip that may also be a write in progress in another process."""
        size = os.fstat(self._fd).st_size
        last = after
        for batch in self._read_to_end(after, self.durable_tip(), size):
            last = batch.tip
            yield batch
        self.torn_tail = None
        if self._torn is not None:
            self.torn_tail = f"{size - last.end} bytes after batch {last.sequence}: {self._torn}"

    def _read_to_end(self, after: Tip, durable: Tip, size: int) -> Iterator[Batch]:
        """The batches up to the durable tip, checked against it, then those past it up to
        `size`; afterwards `_torn` says why reading stopped short of `size`, if it did."""
        self._torn = None
        last = after
        for batch in self._read_durable(after, durable, size):
            last = batch.tip
            yield batch
        reader = _Reader(self._fd, self.checksums, self.file, durable.end)
        yield from reader.batches(last, size)
        self._torn = reader.torn

    def _read_durable(self, after: Tip, durable: Tip, size: int) -> Iterator[Batch]:
        # A journal shorter than its durable tip lost its end: read what it holds, then say
        # how many batches are gone.
        end = min(size, durable.end)
        reader = _Reader(self._fd, self.checksums, self.file, end if end == durable.end else 0)
        last = after
        for batch in reader.batches(after, end):
            last = batch.tip
            yield batch
        if last.sequence < durable.sequence or size < durable.end:
            # Read from the start, the batches missing are counted; read from a tip that the
            # file no longer reaches, its bytes are.
            missing = (
                f"{durable.sequence - last.sequence} acknowledged batches are missing"
                if last.sequence < durable.sequence
                else f"the {durable.end - size} bytes of acknowledged batches are missing"
            )
            raise JournalCorruptError(
                f"the journal ends at byte {min(size, last.end)}, yet batch {durable.sequence} "
                f"was made durable up to byte {durable.end} (the tip file says so): {missing} "
                "from its end. Restore the journal from a copy that holds them",
                path=self.file,
                offset=min(size, last.end),
            )
        if last.sequence == durable.sequence and last.checksum != durable.checksum:
            raise JournalCorruptError(
                f"batch {durable.sequence} is not the one the tip file records: the journal "
                "was replaced or rewritten",
                path=self.file,
                offset=durable.offset,
            )

    def _cut(self, last: Tip, size: int, why: str) -> None:
        """Cuts the journal after `last`, the last good batch; under the append lock."""
        log.warning(
            "fastledger: cutting %d bytes off %s at byte offset %d, after batch %d: %s",
            size - last.end,
            self.file,
            last.end,
            last.sequence,
            why,
        )
        os.ftruncate(self._fd, last.end)
        _platform.fsync_file(self._fd)
        if last.sequence < self.durable_tip().sequence:
            # Only an explicit cut of damage goes below the durable tip.
            self.reset_tip(last)

    # -- appending ---------------------------------------------------------------------------

    def lock(self) -> None:
        self._check_identity()
        if self._yielded_at is not None:
            # This process let the lock go to a waiting one: that one takes it first, since
            # taking it straight back, as a lock without a queue allows, would starve it.
            self._wait_for_write(self._yielded_at, _YIELD_S)
            self._yielded_at = None
        if _platform.try_lock_exclusive(self._fd):
            self._locked = True
            return
        # Waiting, it holds a shared lock of the tip file, which tells the holder that someone
        # waits: the kernel keeps it exact, and drops it with a process that dies waiting.
        _platform.lock_shared(self._waiting_fd)
        try:
            _platform.lock_exclusive(self._fd)
        finally:
            _platform.unlock(self._waiting_fd)
        self._locked = True

    def contended(self) -> bool:
        """Whether another process waits for the append lock."""
        if _platform.try_lock_exclusive(self._waiting_fd):
            _platform.unlock(self._waiting_fd)
            return False
        return True

    def unlock(self) -> None:
        self._locked = False
        self._yielded_at = os.fstat(self._fd).st_size if self.contended() else None
        _platform.unlock(self._fd)

    def _wait_for_write(self, size: int, timeout_s: float) -> None:
        """Waits at most `timeout_s` for the journal to grow past `size` bytes."""
        deadline = time.monotonic() + timeout_s
        while os.fstat(self._fd).st_size <= size and time.monotonic() < deadline:
            time.sleep(_POLL_S)

    def write(self, group: list[Queued], after: Tip) -> list[Tip]:
        assert self._locked and not self.read_only
        self._check_identity()
        parts, tips = encode_batches(group, after, self.checksums)
        try:
            _write_all(self._fd, parts, after.end)
        except OSError as error:
            raise self._write_failed(error) from error
        return tips

    def flush(self, tip: Tip) -> None:
        """Flushes the file, which makes durable every batch any process wrote to it before,
        then records `tip` in the tip file unless a later one is there already."""
        try:
            if self.sync:
                _platform.fsync_file(self._fd)
        except OSError as error:
            raise self._write_failed(error) from error
        self._record_tip(tip)

    def _write_failed(self, error: OSError) -> JournalWriteError:
        return JournalWriteError(
            f"writing the journal {self.file} failed ({error}); whether the batches in "
            "flight reached the disk is unknown, and none was acknowledged: open the "
            "ledger again and retry them with the same ids"
        )

    def _check_identity(self) -> None:
        """Refuses to go on once PATH/journal is no longer the file this ledger holds open:
        batches written to a deleted or replaced file would be lost at the next open."""
        try:
            current = _identity(os.stat(self.file))
        except FileNotFoundError:
            current = None
        if current != self._identity:
            raise JournalWriteError(
                f"{self.file} is no longer the journal this ledger opened: it was deleted, "
                "moved or replaced. Nothing more is written; find out what happened to it"
            )

    def close(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(ValueError, OSError):
            if not self.read_only:
                self._tip_map.flush()
        self._tip_map.close()
        os.close(self._waiting_fd)
        os.close(self._record_fd)
        os.close(self._fd)
        self._fd = -1


class _Reader:
    """Reads batches by their declared lengths, from a tip on, up to an end.

    A batch that reaches past the durable tip may be the torn tail of a write that was never
    acknowledged: cut short, or with a sector of zeros where its data never reached the disk.
    Then `torn` says so and reading stops. Anything else wrong is corruption.
    """

    def __init__(self, fd: int, checksums: Checksums, where: str, durable_end: int) -> None:
        self._fd = fd
        self._checksums = checksums
        self._where = where
        self._durable_end = durable_end
        self.torn: str | None = None

    def batches(self, after: Tip, end: int) -> Iterator[Batch]:
        tip = after
        while tip.end < end and self.torn is None:
            batch = self._batch(tip, end)
            if batch is None:
                return
            tip = batch.tip
            yield batch

    def _batch(self, after: Tip, end: int) -> Batch | None:
        offset = after.end
        block = os.pread(self._fd, HEADER_SIZE, offset)
        if len(block) < HEADER_SIZE:
            self._torn(offset, "the last batch header is cut short")
            return None
        header = decode_batch_header(block, after, self._checksums, self._where)
        if header is None:
            self._torn(offset, "the last batch header is a sector of zeros")
            return None
        size = header.body_size
        body = _pread_all(self._fd, size, offset + HEADER_SIZE)
        if len(body) < size or offset + HEADER_SIZE + size > end:
            self._torn(offset, f"batch {header.sequence} is cut short")
            return None
        if self._checksums(body) != header.body_checksum:
            if body_is_torn(body, offset + HEADER_SIZE):
                self._torn(offset, f"batch {header.sequence} holds a sector of zeros")
                return None
            raise JournalCorruptError(
                f"batch {header.sequence} fails its checksum", path=self._where, offset=offset
            )
        assert len(body) % RECORD_SIZE == 0
        return Batch(header.sequence, header.kind, header.timestamp, body, offset, header.checksum)

    def _torn(self, offset: int, why: str) -> None:
        if offset < self._durable_end:
            raise JournalCorruptError(
                f"{why}, inside what was made durable", path=self._where, offset=offset
            )
        self.torn = f"{why}: the torn tail of a write that was never acknowledged"


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`, or fewer at the end of the file."""
    if size <= _READ_MAX:
        return os.pread(fd, size, offset)
    parts = []
    while size > 0:
        part = os.pread(fd, min(size, _READ_MAX), offset)
        if not part:
            break
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return b"".join(parts)


# The most buffers one os.pwritev takes: IOV_MAX on Linux and macOS.
_IOV_MAX = 1024


def _write_all(fd: int, parts: list[bytes], offset: int) -> None:
    """Writes `parts` in order at `offset`, handing the buffers to the kernel as they are
    rather than joining them into one more copy of every body, resuming after a short write."""
    views: list[bytes | memoryview] = list(parts)
    start = 0
    while start < len(views):
        written = os.pwritev(fd, views[start : start + _IOV_MAX], offset)
        offset += written
        while start < len(views) and written >= len(views[start]):
            written -= len(views[start])
            start += 1
        if written:
            views[start] = memoryview(views[start])[written:]


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


@contextlib.contextmanager
def _private_file(directory: str, name: str, data: bytes) -> Iterator[str]:
    """A flushed file holding `data`, under a name no other process uses, removed after."""
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        _platform.fsync_file(fd)
        os.close(fd)
        fd = -1
        yield temporary
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _already_there() -> contextlib.suppress:
    """Another process linked its file into place first: then that one is the file."""
    return contextlib.suppress(FileExistsError)


def _make_directory(path: str) -> None:
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    _platform.fsync_directory(os.path.dirname(path))
