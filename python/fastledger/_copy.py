"""`fastledger copy SRC DST`: copies a ledger's journal between a directory and PostgreSQL.

The copy holds the very same bytes, batch for batch, under the same journal header (the same
ledger id), so every checksum of the chain is the same: the copy is checked by comparing the
checksum of each batch it wrote with the source's. The destination must hold no journal yet.
Snapshots are not copied; they are a cache that each place rebuilds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ._durable import _open_journal
from ._progress import ProgressCallback, Reporter, journal_extent, terminal_line
from ._verify import add_key_file_argument
from .errors import FastledgerError, InvalidArgumentError, JournalCorruptError
from .journal import Journal, read_ahead
from .journal.directory import JOURNAL, DirectoryJournal
from .journal.format import HEADER_SIZE, Batch, JournalHeader, Queued, Tip, queued

__all__ = ["CopyReport", "copy", "copy_main"]

# The most record bytes one write of the copy carries.
_GROUP_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CopyReport:
    batches: int
    events: int
    journal_bytes: int


def copy(
    source: str,
    destination: str,
    *,
    key: bytes | None = None,
    progress: ProgressCallback | None = None,
) -> CopyReport:
    """Copies the journal at `source` to `destination` (each a directory or a postgresql://
    URL); refuses a destination that holds a journal already. `progress`, when given, is
    called with a `fastledger.Progress` as batches are read (stage `"copy"`, then `"done"`
    once the last is written), as `Ledger.open` calls it."""
    if progress is not None and not callable(progress):
        raise InvalidArgumentError("progress must be a callable or None")
    reader = _open_journal(source, key, True, "fsync", False)
    try:
        writer = _open_destination(destination, reader.header, key)
        try:
            reporter = None
            if progress is not None:
                reporter = Reporter(progress, "copy", *journal_extent(reader))
            return _copy_batches(reader, writer, reporter)
        finally:
            writer.close()
    finally:
        reader.close()


def _open_destination(location: str, header: JournalHeader, key: bytes | None) -> Journal:
    if "://" not in location:
        if os.path.exists(os.path.join(location, JOURNAL)):
            raise InvalidArgumentError(f"{location} holds a journal already: copy into a new one")
        return DirectoryJournal(location, key=key, header=header)
    from .journal.postgres import PostgresJournal

    return PostgresJournal.open(location, key=key, header=header)


def _copy_batches(reader: Journal, writer: Journal, reporter: Reporter | None) -> CopyReport:
    if writer.header != reader.header:
        raise InvalidArgumentError(
            f"{writer.location} holds a journal already: copy into a new one"
        )
    writer.lock()
    try:
        tip = writer.header.empty_tip(writer.checksums)
        if writer.changed(tip):
            raise InvalidArgumentError(
                f"{writer.location} holds batches already: copy into a new journal"
            )
        group: list[Queued] = []
        checks: list[Batch] = []
        events = 0
        for batch in read_ahead(
            reader.read(reader.header.empty_tip(reader.checksums), locked=False)
        ):
            group.append(
                queued(batch.sequence, batch.kind, batch.timestamp, batch.body, writer.checksums)
            )
            checks.append(batch)
            events += batch.count
            if sum(HEADER_SIZE + len(b[3]) for b in group) >= _GROUP_BYTES:
                tip = _write(writer, group, tip, checks)
            if reporter is not None:
                reporter.batch(batch.sequence, batch.end)
        if group:
            tip = _write(writer, group, tip, checks)
    finally:
        writer.unlock()
    if reporter is not None:
        reporter.done(tip.sequence, tip.end)
    return CopyReport(tip.sequence, events, tip.end)


def _write(writer: Journal, group: list[Queued], tip: Tip, checks: list[Batch]) -> Tip:
    """Writes a group, checks that each batch came out with the source's checksum; empties
    both lists and returns the new tip."""
    tips = writer.write(group, tip)
    writer.flush(tips[-1])
    for written, source in zip(tips, checks, strict=True):
        if written.checksum != source.checksum or written.end != source.end:
            raise JournalCorruptError(
                f"batch {source.sequence} came out of the copy different from the source",
                path=writer.location,
                offset=written.offset,
            )
    group.clear()
    checks.clear()
    return tips[-1]


def copy_main(argv: Sequence[str] | None = None) -> int:
    """`fastledger copy SRC DST`: returns 0 on success, 1 on failure."""
    parser = argparse.ArgumentParser(
        prog="fastledger copy",
        description="Copy a ledger's journal between a directory and PostgreSQL, batch for "
        "batch, checking that every batch of the copy has the source's checksum. The "
        "destination must hold no journal yet; snapshots are not copied. The source may stay "
        "in use: the copy takes the batches that were durable when it read them.",
        epilog="examples:\n"
        "  fastledger copy ./ledger postgresql://app@db/ledger   # move a ledger to PostgreSQL\n"
        "  fastledger copy postgresql://app@db/ledger ./backup   # and back, e.g. as a backup\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="a ledger directory or a postgresql:// URL")
    parser.add_argument("destination", help="a new directory or a postgresql:// URL")
    add_key_file_argument(parser)
    args = parser.parse_args(argv)
    try:
        report = copy(
            args.source,
            args.destination,
            key=args.key,
            progress=terminal_line("copy", sys.stderr),
        )
    except FastledgerError as error:
        print(f"fastledger copy: error: {error}", file=sys.stderr)
        return 1
    print(
        f"copied {report.batches} batches ({report.events} events, {report.journal_bytes} "
        f"bytes) from {args.source} to {args.destination}"
    )
    return 0
