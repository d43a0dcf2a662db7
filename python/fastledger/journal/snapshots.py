"""Snapshots: the engine state through a batch, so that an open replays less journal.

A snapshot is a cache, never a second source of truth: the journal holds everything, and a
snapshot is used only when the batch it covers is the very batch of the journal (same sequence,
same checksum). Its file, `snapshot-<sequence:020d>` beside the journal, is a 128-byte header
followed by the engine state. Header layout, all integers little-endian:

    offset  size  field
    0       8     magic b"FLSNAP\\0\\0"
    8       2     u16 format version (2)
    10      2     u16 rules version of the engine that exported the state
    12      4     reserved, zeros
    16      8     u64 sequence: the last batch the snapshot covers (0: none)
    24      8     u64 journal offset of that batch's header
    32      8     u64 journal offset just after that batch: replay resumes there
    40      16    that batch's checksum, the link the next batch chains to
    56      8     u64 the ledger's last timestamp
    64      8     u64 the time through which pending transfers had expired
    72      8     u64 length of the engine state
    80      16    checksum of the engine state
    96      16    the ledger's id, as in the journal header
    112     16    checksum of bytes 0..112

The checksums are the journal's, keyed when the journal is. Any number of processes may write
snapshots of one directory: each writes under a name of its own, flushes it and links it into
place, which never replaces a file (two snapshots of one batch hold the same bytes, as both
engines are deterministic). Only the newest two are kept; a process that lists a snapshot that
another then removes skips to the next one, and one that has opened a snapshot goes on reading
it after the name is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
from dataclasses import dataclass

from .. import _platform
from .format import CHECKSUM_SIZE, HEADER_SIZE, NO_CHECKSUM, RULES_VERSION, Checksums, Tip

__all__ = ["SNAPSHOTS_KEPT", "Snapshot", "SnapshotPolicy", "Snapshots"]

log = logging.getLogger("fastledger")

SNAPSHOT_MAGIC = b"FLSNAP\0\0"
SNAPSHOT_VERSION = 2
# The newest snapshots kept; older ones are removed once a newer one is durable. Two, so that
# a damaged newest snapshot still leaves one to start from.
SNAPSHOTS_KEPT = 2

_NAME = re.compile(r"snapshot-(\d{20})")
_TEMPORARY = re.compile(r"\.snapshot-\d{20}\.(\d+)\.[0-9a-f]+\.tmp")
_HEADER = struct.Struct("<8sHH4xQQQ16sQQQ16s16s16s")
assert _HEADER.size == HEADER_SIZE
_CHECKED = HEADER_SIZE - CHECKSUM_SIZE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot read back: the journal tip it covers, the facade's clocks, the state."""

    path: str
    tip: Tip
    timestamp: int
    expired_through: int
    state: bytes


class SnapshotPolicy:
    """When a snapshot is due: after at least `every` batches since the last one, and once at
    least as many journal bytes followed it as it held, so that snapshots never cost more than
    the journal they let the next open skip. `every` None: never on its own."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self._batches = 0
        self._bytes = 0
        self._snapshot_bytes = 0

    def start(self, batches: int, size: int, snapshot_bytes: int) -> None:
        """Starts from what an open replayed after its snapshot."""
        self._batches, self._bytes, self._snapshot_bytes = batches, size, snapshot_bytes

    def note_batch(self, size: int) -> None:
        """Counts a journaled batch of `size` record bytes; called under the ledger's lock."""
        self._batches += 1
        self._bytes += HEADER_SIZE + size

    def note_snapshot(self, size: int) -> None:
        """Restarts the count at a snapshot of `size` state bytes."""
        self.start(0, 0, size)

    @property
    def due(self) -> bool:
        every = self.every
        return every is not None and self._batches >= every and self._bytes >= self._snapshot_bytes


class Snapshots:
    """The snapshots of one ledger kept in one directory."""

    def __init__(self, path: str, ledger_id: bytes, checksums: Checksums) -> None:
        self.path = path
        self._ledger_id = ledger_id
        self._checksums = checksums

    def files(self) -> list[str]:
        """The snapshot files, newest first."""
        names = [n for n in os.listdir(self.path) if _NAME.fullmatch(n)]
        return [os.path.join(self.path, n) for n in sorted(names, reverse=True)]

    def read(self, file: str) -> Snapshot:
        """Reads and decodes one snapshot file; raises ValueError saying what is wrong."""
        with open(file, "rb") as f:
            header = f.read(HEADER_SIZE)
            state = f.read()
        if len(header) < HEADER_SIZE or header[_CHECKED:] != self._checksums(header[:_CHECKED]):
            raise ValueError("its header fails its checksum")
        fields = _HEADER.unpack(header)
        magic, version, rules, sequence, offset, end, link, timestamp, expired = fields[:9]
        length, state_sum, ledger_id = fields[9:12]
        if magic != SNAPSHOT_MAGIC or version != SNAPSHOT_VERSION:
            raise ValueError(f"not a snapshot of format {SNAPSHOT_VERSION}")
        if rules != RULES_VERSION:
            raise ValueError(f"exported under rules version {rules}, not {RULES_VERSION}")
        if ledger_id != self._ledger_id:
            raise ValueError("it is a snapshot of another ledger")
        if len(state) != length or self._checksums(state) != state_sum:
            raise ValueError("its engine state fails its checksum")
        return Snapshot(file, Tip(sequence, offset, end, link), timestamp, expired, state)

    def read_all(self) -> list[Snapshot | tuple[str, str]]:
        """Every snapshot, newest first: decoded, or (file, what is wrong)."""
        found: list[Snapshot | tuple[str, str]] = []
        for file in self.files():
            try:
                found.append(self.read(file))
            except FileNotFoundError:
                continue  # Removed by a process that wrote a newer one.
            except ValueError as error:
                found.append((file, str(error)))
        return found

    def newest(self) -> Snapshot | None:
        """The newest snapshot that is whole; a damaged one is skipped with a warning (the
        journal still holds everything it held). Older ones are not read at all."""
        for file in self.files():
            try:
                return self.read(file)
            except FileNotFoundError:
                continue
            except ValueError as error:
                log.warning("fastledger: skipping snapshot %s: %s", file, error)
        return None

    def write(self, snapshot: Snapshot) -> None:
        """Writes a snapshot under its name unless one is there, then removes the snapshots
        it makes redundant."""
        name = os.path.join(self.path, f"snapshot-{snapshot.tip.sequence:020d}")
        header = self._encode_header(snapshot)
        temporary = os.path.join(
            self.path,
            f".snapshot-{snapshot.tip.sequence:020d}.{os.getpid()}.{os.urandom(4).hex()}.tmp",
        )
        try:
            with open(temporary, "xb") as f:
                f.write(header)
                f.write(snapshot.state)
                f.flush()
                _platform.fsync_file(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        _platform.fsync_directory(self.path)
        for old in self.files()[SNAPSHOTS_KEPT:]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(old)

    def remove_abandoned(self) -> None:
        """Removes the temporary files of snapshots whose writer no longer runs."""
        for name in os.listdir(self.path):
            found = _TEMPORARY.fullmatch(name)
            if found is not None and not _running(int(found.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.path, name))

    def _encode_header(self, snapshot: Snapshot) -> bytes:
        """The header that precedes the state in its file. Written apart from the state, so
        that a state of gigabytes is never copied to join them."""
        tip, state = snapshot.tip, snapshot.state
        checked = _HEADER.pack(
            SNAPSHOT_MAGIC,
            SNAPSHOT_VERSION,
            RULES_VERSION,
            tip.sequence,
            tip.offset,
            tip.end,
            tip.checksum,
            snapshot.timestamp,
            snapshot.expired_through,
            len(state),
            self._checksums(state),
            self._ledger_id,
            NO_CHECKSUM,
        )[:_CHECKED]
        return checked + self._checksums(checked)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
