"""The bytes of a journal, the same wherever it is kept: a journal header, then batches.

A journal starts with one 128-byte journal header, written once when the journal is made:

    offset  size  field
    0       8     magic b"FLJOURN\\0"
    8       2     u16 format version (2)
    10      2     u16 rules version: the version of the state machine's rules that every
                  batch of this journal was applied under (see `RULES_VERSION`)
    12      4     u32 flags: bit 0 set when every checksum of the journal is keyed
    16      16    the ledger's id: random, given when the journal is made; snapshots and
                  copies of the journal name it
    32      8     u64 when the journal was made, ns since the epoch
    40      72    reserved, zeros
    112     16    checksum of bytes 0..112

Every batch is a 128-byte header followed by its records, the 128-byte records exactly as the
caller submitted them. Header layout, all integers little-endian:

    offset  size  field
    0       8     magic b"FLBATCH\\0"
    8       2     u16 format version (2)
    10      2     u16 kind: 1 accounts, 2 transfers, 3 expiry (pending transfers that a read
                  released: no body, the timestamp is the time they expired through)
    12      4     u32 count: records in the body, 1..8189 (0 for an expiry)
    16      8     u64 sequence: 1 for the first batch, then one more per batch
    24      8     u64 timestamp: the batch timestamp the ledger gave (its last event's)
    32      8     reserved, zeros
    40      16    body checksum: of the records
    56      16    previous checksum: the checksum (bytes 112..128) of the batch before, and
                  for sequence 1 the journal header's; this is the hash chain
    72      40    reserved, zeros
    112     16    checksum: of bytes 0..112, which hold the body checksum, so it covers the
                  whole batch

A checksum is BLAKE2b-128. With a key it is BLAKE2b's keyed MAC, so that a party without the
key cannot rewrite a batch and recompute the chain after it; without one, the chain proves only
that the journal is whole and in order, not who wrote it.

Batches are read by their declared lengths from the start, never by looking for a header among
record bytes, which callers control. What a crash can leave of a write that was never
acknowledged is a torn tail: a batch shorter than its header announces, or one whose damaged
part is a whole sector of zeros (the file grew before its data reached the disk). Any other
damage, the last batch included, is corruption.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass

from .._records import RECORD_SIZE
from .._types import BATCH_MAX
from ..errors import JournalCorruptError

__all__ = [
    "HEADER_SIZE",
    "KIND_ACCOUNTS",
    "KIND_EXPIRY",
    "KIND_TRANSFERS",
    "RULES_VERSION",
    "SECTOR_SIZE",
    "Batch",
    "Checksums",
    "JournalHeader",
    "Queued",
    "Tip",
    "batch_size",
    "decode_batch_header",
    "encode_batches",
    "queued",
]

JOURNAL_MAGIC = b"FLJOURN\0"
BATCH_MAGIC = b"FLBATCH\0"
VERSION = 2
# The version of the rules both engines apply: which statuses a create can return and when.
# A journal keeps the inputs of its batches, not their outcomes, so replaying it under other
# rules would give other outcomes than its callers were told: a journal written under another
# version is refused. Raise it with every change that can change an outcome.
RULES_VERSION = 1
KIND_ACCOUNTS = 1
KIND_TRANSFERS = 2
KIND_EXPIRY = 3
HEADER_SIZE = 128
CHECKSUM_SIZE = 16
NO_CHECKSUM = bytes(CHECKSUM_SIZE)
# The unit in which a disk writes: a crash can leave a whole sector unwritten (zeros), never
# part of one.
SECTOR_SIZE = 512
FLAG_KEYED = 1

_CHECKED = HEADER_SIZE - CHECKSUM_SIZE
_JOURNAL_HEADER = struct.Struct("<8sHHI16sQ72s")
_BATCH_HEADER = struct.Struct("<8sHHIQQ8s16s16s40s")
assert _JOURNAL_HEADER.size == _BATCH_HEADER.size == _CHECKED
assert HEADER_SIZE == RECORD_SIZE and SECTOR_SIZE % HEADER_SIZE == 0
_ZERO_SECTOR = bytes(SECTOR_SIZE)


class Checksums:
    """BLAKE2b-128 of data, keyed or not: the one checksum of a journal and its snapshots."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and not 16 <= len(key) <= 64:
            raise ValueError("a journal key holds 16 to 64 bytes")
        self.key = key

    @property
    def keyed(self) -> bool:
        return self.key is not None

    def __call__(self, data: bytes | memoryview) -> bytes:
        if self.key is None:
            return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()
        return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE, key=self.key).digest()


@dataclass(frozen=True, slots=True)
class JournalHeader:
    """The first 128 bytes of a journal: what it is, under which rules, with which key."""

    ledger_id: bytes
    rules_version: int = RULES_VERSION
    keyed: bool = False
    created_ns: int = 0

    @classmethod
    def new(cls, checksums: Checksums) -> JournalHeader:
        return cls(os.urandom(16), RULES_VERSION, checksums.keyed, time.time_ns())

    def encode(self, checksums: Checksums) -> bytes:
        flags = FLAG_KEYED if self.keyed else 0
        checked = _JOURNAL_HEADER.pack(
            JOURNAL_MAGIC,
            VERSION,
            self.rules_version,
            flags,
            self.ledger_id,
            self.created_ns,
            bytes(72),
        )
        return checked + checksums(checked)

    def empty_tip(self, checksums: Checksums) -> Tip:
        """The tip of the journal before its first batch: batch 1 chains to the journal
        header's checksum, so that no batch can be moved into another journal."""
        return Tip(0, 0, HEADER_SIZE, self.encode(checksums)[_CHECKED:])

    @classmethod
    def decode(cls, block: bytes, checksums: Checksums, where: str) -> JournalHeader:
        """The header in `block`; refuses anything else with a message naming `where`."""

        def refuse(why: str) -> JournalCorruptError:
            return JournalCorruptError(why, path=where, offset=0)

        if len(block) < HEADER_SIZE or block[:8] != JOURNAL_MAGIC:
            raise refuse("this is not a fastledger journal (it does not begin with one's header)")
        _, version, rules, flags, ledger_id, created, reserved = _JOURNAL_HEADER.unpack(
            block[:_CHECKED]
        )
        if version != VERSION:
            raise refuse(f"journal format version {version}; this fastledger reads {VERSION}")
        keyed = bool(flags & FLAG_KEYED)
        if keyed != checksums.keyed:
            raise refuse(
                "the journal is keyed: open it with its key"
                if keyed
                else "the journal has no key, yet one was given"
            )
        if block[_CHECKED:HEADER_SIZE] != checksums(block[:_CHECKED]):
            raise refuse(
                "the journal header fails its checksum"
                + (" (is this the journal's key?)" if keyed else "")
            )
        if flags & ~FLAG_KEYED or reserved != bytes(72):
            raise refuse("the journal header holds unknown flags or non-zero reserved bytes")
        if rules != RULES_VERSION:
            raise refuse(
                f"the journal was written under rules version {rules}, and this fastledger "
                f"applies rules version {RULES_VERSION}: replaying it could give other outcomes "
                "than its callers were told. Open it with the fastledger release that wrote it"
            )
        return cls(ledger_id, rules, keyed, created)


@dataclass(frozen=True, slots=True)
class Tip:
    """The last batch of a journal as one process knows it: its sequence, where its header
    starts and where it ends in a directory journal (the first batch starts after the journal
    header), and its checksum, the link the next batch chains to. Sequence 0 is the empty
    journal."""

    sequence: int = 0
    offset: int = 0
    end: int = HEADER_SIZE
    checksum: bytes = NO_CHECKSUM


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch read back from a journal."""

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


# A batch on its way into a journal: its sequence, kind, timestamp, records and the checksum of
# its records. A tuple, not a dataclass: one is made per call under the ledger's lock. The
# records' checksum is computed before, by the caller: over a full batch it costs more than
# the write itself, and no other process waits for the append lock meanwhile.
Queued = tuple[int, int, int, bytes, bytes]


def queued(sequence: int, kind: int, timestamp: int, body: bytes, checksums: Checksums) -> Queued:
    """A batch to write, its records' checksum computed here."""
    return (sequence, kind, timestamp, body, checksums(body))


@dataclass(frozen=True, slots=True)
class BatchHeader:
    kind: int
    count: int
    sequence: int
    timestamp: int
    body_checksum: bytes
    previous: bytes
    checksum: bytes

    @property
    def body_size(self) -> int:
        return self.count * RECORD_SIZE


def encode_batches(
    group: list[Queued], tip: Tip, checksums: Checksums
) -> tuple[list[bytes], list[Tip]]:
    """The bytes of a group of batches written after `tip` as one write (a group commit): a
    header and a body per batch; and the tip after each. A batch's bytes depend only on the
    batch and the one before it, never on how batches were grouped, so a copy of a journal
    holds the very same bytes."""
    parts: list[bytes] = []
    tips: list[Tip] = []
    for sequence, kind, timestamp, body, body_checksum in group:
        checked = _BATCH_HEADER.pack(
            BATCH_MAGIC,
            VERSION,
            kind,
            len(body) // RECORD_SIZE,
            sequence,
            timestamp,
            bytes(8),
            body_checksum,
            tip.checksum,
            bytes(40),
        )
        link = checksums(checked)
        parts += (checked + link, body)
        tip = Tip(sequence, tip.end, tip.end + HEADER_SIZE + len(body), link)
        tips.append(tip)
    return parts, tips


def batch_size(header: bytes) -> int:
    """The size of a whole batch, header included, as its header declares it, unchecked: what
    a reader that holds only the header has yet to read."""
    count: int = _BATCH_HEADER.unpack_from(header)[3]
    return HEADER_SIZE + count * RECORD_SIZE


def decode_batch_header(
    block: bytes, after: Tip, checksums: Checksums, where: str
) -> BatchHeader | None:
    """The header of the batch that follows `after`, read from `block`; None if the block is
    a whole sector's worth of zeros, as a write the disk never took leaves. Anything else that
    is not that batch's header is corruption, raised naming `where` and the offset."""

    def refuse(why: str) -> JournalCorruptError:
        return JournalCorruptError(why, path=where, offset=after.end)

    if block == bytes(HEADER_SIZE):
        return None
    if block[_CHECKED:] != checksums(block[:_CHECKED]):
        raise refuse(f"the header of batch {after.sequence + 1} fails its checksum")
    magic, version, kind, count, sequence, timestamp, zeros, body_sum, previous, reserved = (
        _BATCH_HEADER.unpack(block[:_CHECKED])
    )
    why = None
    if magic != BATCH_MAGIC:
        why = "a checksummed header without the batch magic"
    elif version != VERSION:
        why = f"journal format version {version}; this fastledger reads {VERSION}"
    elif kind not in (KIND_ACCOUNTS, KIND_TRANSFERS, KIND_EXPIRY):
        why = f"unknown batch kind {kind}"
    elif kind == KIND_EXPIRY and count != 0:
        why = f"an expiry of {count} records"
    elif kind != KIND_EXPIRY and not 1 <= count <= BATCH_MAX:
        why = f"a batch of {count} records"
    elif zeros != bytes(8) or reserved != bytes(40):
        why = "non-zero reserved header bytes"
    elif sequence != after.sequence + 1:
        why = f"batch {sequence} where batch {after.sequence + 1} belongs"
    elif previous != after.checksum:
        why = (
            f"broken hash chain: batch {sequence} does not link to the checksum of batch "
            f"{after.sequence}"
        )
    if why is not None:
        raise refuse(why)
    return BatchHeader(kind, count, sequence, timestamp, body_sum, previous, block[_CHECKED:])


def body_is_torn(body: bytes, offset: int) -> bool:
    """Whether a body that fails its checksum holds a whole sector of zeros (at `offset` in
    its file): a write the disk never took. No record is all zeros (its id is not 0), so no
    batch ever holds such a sector of its own."""
    start = -offset % SECTOR_SIZE
    return any(
        body[at : at + SECTOR_SIZE] == _ZERO_SECTOR
        for at in range(start, len(body) - SECTOR_SIZE + 1, SECTOR_SIZE)
    )


def decode_batch(data: bytes, after: Tip, checksums: Checksums, where: str) -> Batch:
    """The one batch `data` holds, the one that follows `after`, checked whole: a row of a
    journal kept in a database holds exactly one batch, so anything wrong is corruption."""
    header = decode_batch_header(data[:HEADER_SIZE], after, checksums, where)
    body = data[HEADER_SIZE:]
    if header is None or len(body) != header.body_size or checksums(body) != header.body_checksum:
        raise JournalCorruptError(
            f"batch {after.sequence + 1} is damaged", path=where, offset=after.end
        )
    return Batch(header.sequence, header.kind, header.timestamp, body, after.end, header.checksum)
