"""A ledger directory: the writer's lock, the journal and the snapshots.

    PATH/LOCK                        held with flock by the one ledger that writes
    PATH/journal                     the batches (`_journal.py` gives the format)
    PATH/snapshot-<sequence:020d>    the engine state through batch <sequence>

A snapshot is a 128-byte header followed by the engine state (`_state.py` gives its format).
Header layout, all integers little-endian:

    offset  size  field
    0       8     magic b"FLSNAP\\0\\0"
    8       2     u16 format version (1)
    10      6     reserved, zeros
    16      8     u64 sequence: the last batch the snapshot covers (0: none)
    24      8     u64 journal offset of that batch's header
    32      8     u64 journal offset just after that batch: replay resumes there
    40      16    that batch's checksum, the link the next batch chains to
    56      8     u64 the ledger's last timestamp
    64      8     u64 the time through which pending transfers had expired
    72      8     u64 length of the engine state
    80      16    BLAKE2b-128 of the engine state
    96      16    reserved, zeros
    112     16    BLAKE2b-128 of bytes 0..112

Snapshots are written to a temporary name, flushed, renamed and the directory flushed, so a
snapshot file is whole or absent. The journal is never shortened by a snapshot: it stays the
complete, checkable history, and `fastledger verify` replays all of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ._journal import (
    CHECKSUM_SIZE,
    HEADER_SIZE,
    NO_CHECKSUM,
    Batch,
    JournalScan,
    JournalWriter,
    Tip,
    checksum,
    read_ahead,
    sync_directory,
    sync_file,
)
from .errors import InvalidArgumentError, JournalCorruptError, LedgerLockedError

__all__ = [
    "DURABILITY",
    "Directory",
    "Snapshot",
    "read_snapshots",
]

log = logging.getLogger("fastledger")

DURABILITY = ("fsync", "unsafe_no_fsync")
JOURNAL = "journal"
LOCK = "LOCK"
SNAPSHOT_MAGIC = b"FLSNAP\0\0"
SNAPSHOT_VERSION = 1
# The newest snapshots kept; older ones are removed once a newer one is durable. Two, so that
# a damaged newest snapshot still leaves one to start from.
SNAPSHOTS_KEPT = 2

_SNAPSHOT_NAME = re.compile(r"snapshot-(\d{20})")
_SNAPSHOT_HEADER = struct.Struct("<8sH6sQQQ16sQQQ16s16s16s")
assert _SNAPSHOT_HEADER.size == HEADER_SIZE
_CHECKED = HEADER_SIZE - CHECKSUM_SIZE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot read back: the journal tip it covers, the facade's clocks, the state."""

    path: str
    tip: Tip
    timestamp: int
    expired_through: int
    state: bytes


def encode_snapshot_header(tip: Tip, timestamp: int, expired_through: int, state: bytes) -> bytes:
    """The header that precedes `state` in its snapshot file. Written apart from the state, so
    that a state of gigabytes is never copied to join them."""
    header = _SNAPSHOT_HEADER.pack(
        SNAPSHOT_MAGIC,
        SNAPSHOT_VERSION,
        bytes(6),
        tip.sequence,
        tip.offset,
        tip.end,
        tip.checksum,
        timestamp,
        expired_through,
        len(state),
        checksum(state),
        bytes(16),
        NO_CHECKSUM,
    )
    return header[:_CHECKED] + checksum(header[:_CHECKED])


def decode_snapshot(path: str, header: bytes, state: bytes) -> Snapshot:
    """Decodes a snapshot file read as its header and the rest; raises ValueError saying what
    is wrong with it."""
    if len(header) < HEADER_SIZE or header[_CHECKED:] != checksum(header[:_CHECKED]):
        raise ValueError("its header fails its checksum")
    fields = _SNAPSHOT_HEADER.unpack(header)
    magic, version, _, sequence, offset, end, link, timestamp, expired, length, state_sum = fields[
        :11
    ]
    if magic != SNAPSHOT_MAGIC or version != SNAPSHOT_VERSION:
        raise ValueError(f"not a snapshot of format {SNAPSHOT_VERSION}")
    if len(state) != length or checksum(state) != state_sum:
        raise ValueError("its engine state fails its checksum")
    return Snapshot(path, Tip(sequence, offset, end, link), timestamp, expired, state)


def read_snapshot(file: str) -> Snapshot:
    """Reads and decodes one snapshot file; raises ValueError saying what is wrong with it.
    The state is read into its own bytes object, not sliced out of the file's (a copy)."""
    with open(file, "rb") as f:
        header = f.read(HEADER_SIZE)
        state = f.read()
    return decode_snapshot(file, header, state)


def snapshot_paths(path: str) -> list[str]:
    """The snapshot files of a directory, newest first."""
    names = [n for n in os.listdir(path) if _SNAPSHOT_NAME.fullmatch(n)]
    return [os.path.join(path, n) for n in sorted(names, reverse=True)]


def read_snapshots(path: str) -> list[Snapshot | tuple[str, str]]:
    """Every snapshot of a directory, newest first: decoded, or (file, what is wrong)."""
    found: list[Snapshot | tuple[str, str]] = []
    for file in snapshot_paths(path):
        try:
            found.append(read_snapshot(file))
        except ValueError as error:
            found.append((file, str(error)))
    return found


class Directory:
    """An open ledger directory: holds the writer's lock from `lock` to `close`."""

    def __init__(self, path: str, durability: str, lock_fd: int) -> None:
        self.path = path
        self.durability = durability
        self.journal = os.path.join(path, JOURNAL)
        self._lock_fd = lock_fd
        self.writer: JournalWriter | None = None
        # The snapshot policy: at least `snapshot_every` batches since the last snapshot, and
        # at least as many journal bytes as that snapshot held (None: never automatically).
        self.snapshot_every: int | None = None
        self._batches_since_snapshot = 0
        self._bytes_since_snapshot = 0
        self._snapshot_bytes = 0

    @classmethod
    def lock(cls, path: str | os.PathLike[str], durability: str) -> Directory:
        """Creates the directory if needed and takes the writer's lock."""
        if durability not in DURABILITY:
            raise InvalidArgumentError(
                f"durability must be one of {DURABILITY}, not {durability!r}"
            )
        path = os.path.abspath(os.fspath(path))
        _make_directory(path)
        fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LedgerLockedError(
                f"{path} is open for writing by another ledger (process {holder}): close it "
                "first, one writer at a time keeps the journal one hash chain"
            ) from None
        directory = cls(path, durability, fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            directory._create_journal()
        except BaseException:
            directory.close()
            raise
        return directory

    def _create_journal(self) -> None:
        if not os.path.exists(self.journal):
            fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            sync_directory(self.path)
        for name in os.listdir(self.path):
            if name.endswith(".tmp"):
                os.remove(os.path.join(self.path, name))

    def newest_snapshot(self) -> Snapshot | None:
        """The newest snapshot that is whole; a damaged one is skipped with a warning (the
        journal still holds everything it held). Older ones are not read at all."""
        for file in snapshot_paths(self.path):
            try:
                return read_snapshot(file)
            except ValueError as error:
                log.warning("fastledger: skipping snapshot %s: %s", file, error)
        return None

    def recover(self, snapshot: Snapshot | None, replay: Callable[[Batch], None]) -> JournalWriter:
        """Reads the whole journal, checking every checksum and link, replays the batches
        after `snapshot` and opens the journal for appending after the last good batch.

        The batches the snapshot covers are read too, so that damage anywhere in the journal
        refuses to open, and so that the snapshot is known to sit on this very chain.
        """
        covered = Tip() if snapshot is None else snapshot.tip
        scan = JournalScan(self.journal)
        for batch in read_ahead(scan):
            if batch.sequence > covered.sequence:
                replay(batch)
            elif batch.sequence == covered.sequence and batch.tip != covered:
                raise JournalCorruptError(
                    f"batch {batch.sequence} is not the one {_name(snapshot)} covers: the "
                    "snapshot belongs to another journal or the batch was rewritten",
                    path=self.journal,
                    offset=batch.offset,
                )
        if scan.tip.sequence < covered.sequence:
            raise JournalCorruptError(
                f"the journal's good batches end at {scan.tip.sequence}, before batch "
                f"{covered.sequence} that {_name(snapshot)} covers: acknowledged batches are "
                "missing",
                path=self.journal,
                offset=scan.tip.end,
            )
        self._start_policy(covered, scan.tip, snapshot)
        return self._start(scan)

    def _start(self, scan: JournalScan) -> JournalWriter:
        """Cuts off the torn tail the scan found and opens the journal for appending."""
        if scan.torn is not None:
            log.warning(
                "fastledger: cutting %d bytes off %s at byte offset %d (%s): the tail of a "
                "write that never finished, so no call was acknowledged for it",
                scan.torn.length,
                self.journal,
                scan.torn.offset,
                scan.torn.reason,
            )
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
        if scan.torn is not None:
            os.ftruncate(fd, scan.tip.end)
            sync_file(fd)
        self.writer = JournalWriter(self.journal, fd, scan.tip, sync=self.durability == "fsync")
        return self.writer

    def _start_policy(self, covered: Tip, tip: Tip, snapshot: Snapshot | None) -> None:
        """Starts the snapshot policy from what the open replayed."""
        self._batches_since_snapshot = tip.sequence - covered.sequence
        self._bytes_since_snapshot = tip.end - covered.end
        self._snapshot_bytes = 0 if snapshot is None else len(snapshot.state)

    def note_batch(self, size: int) -> None:
        """Counts a journaled batch of `size` record bytes; called under the ledger's lock."""
        self._batches_since_snapshot += 1
        self._bytes_since_snapshot += HEADER_SIZE + size

    def note_snapshot(self, size: int) -> None:
        """Restarts the count at a snapshot of `size` state bytes."""
        self._batches_since_snapshot = 0
        self._bytes_since_snapshot = 0
        self._snapshot_bytes = size

    @property
    def snapshot_due(self) -> bool:
        every = self.snapshot_every
        return (
            every is not None
            and self._batches_since_snapshot >= every
            and self._bytes_since_snapshot >= self._snapshot_bytes
        )

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Writes a snapshot atomically, then removes the ones it makes redundant."""
        name = os.path.join(self.path, f"snapshot-{snapshot.tip.sequence:020d}")
        header = encode_snapshot_header(
            snapshot.tip, snapshot.timestamp, snapshot.expired_through, snapshot.state
        )
        temporary = name + ".tmp"
        try:
            with open(temporary, "wb") as f:
                f.write(header)
                f.write(snapshot.state)
                f.flush()
                sync_file(f.fileno())
            os.replace(temporary, name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        sync_directory(self.path)
        for old in snapshot_paths(self.path)[SNAPSHOTS_KEPT:]:
            os.remove(old)

    def close(self) -> None:
        """Closes the journal and releases the lock; closing again does nothing."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _name(snapshot: Snapshot | None) -> str:
    return "no snapshot" if snapshot is None else os.path.basename(snapshot.path)


def _make_directory(path: str) -> None:
    if os.path.isdir(path):
        return
    os.makedirs(path)
    sync_directory(os.path.dirname(path))
