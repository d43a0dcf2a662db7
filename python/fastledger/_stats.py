"""`fastledger stats PATH`: what a ledger's journal holds, read without a lock or a replay.

It reads the journal up to its durable tip, as a read-only ledger would, and counts batches
and the events they carry by kind. The events are those submitted: a batch is journaled
before the engine decides each event's status, so an event that failed is counted too;
`fastledger verify` replays the journal and counts what exists. Other processes may go on
using the ledger meanwhile.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ._durable import _open_journal
from ._verify import add_key_file_argument
from .errors import FastledgerError
from .journal import read_ahead
from .journal.directory import DirectoryJournal
from .journal.format import KIND_ACCOUNTS, KIND_EXPIRY, KIND_TRANSFERS
from .journal.snapshots import Snapshots

__all__ = ["JournalStats", "stats", "stats_main"]


@dataclass(slots=True)
class JournalStats:
    """What `stats` counted. Timestamps are ns since the epoch, None without batches;
    `snapshots` are the snapshot files of a directory, newest first."""

    location: str
    batches: int = 0
    account_batches: int = 0
    transfer_batches: int = 0
    expiry_batches: int = 0
    accounts_submitted: int = 0
    transfers_submitted: int = 0
    journal_bytes: int = 0
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    snapshots: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"journal              {self.location}",
            f"batches              {self.batches:,} ({self.account_batches:,} of accounts, "
            f"{self.transfer_batches:,} of transfers, {self.expiry_batches:,} expiries)",
            f"accounts submitted   {self.accounts_submitted:,}",
            f"transfers submitted  {self.transfers_submitted:,}",
            f"journal bytes        {self.journal_bytes:,}",
            f"first batch          {_time(self.first_timestamp)}",
            f"last batch           {_time(self.last_timestamp)}",
        ]
        if self.snapshots:
            names = ", ".join(os.path.basename(file) for file in self.snapshots)
            lines.append(f"snapshots            {len(self.snapshots)}: {names}")
        else:
            lines.append("snapshots            none")
        lines.append(
            "(submitted: the events the journal holds, CREATED or not; `fastledger verify` "
            "replays them and counts what exists)"
        )
        return "\n".join(lines)


def _time(timestamp_ns: int | None) -> str:
    if timestamp_ns is None:
        return "-"
    seconds, ns = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{moment}.{ns:09d} UTC"


def stats(path: str, *, key: bytes | None = None) -> JournalStats:
    """Counts what the journal at `path` (a directory or a postgresql:// URL) holds, up to its
    durable tip; takes no lock and changes nothing."""
    journal = _open_journal(path, key, True, "fsync", False)
    try:
        found = JournalStats(journal.location)
        start = journal.header.empty_tip(journal.checksums)
        found.journal_bytes = start.end
        for batch in read_ahead(journal.read(start, locked=False)):
            found.batches += 1
            if batch.kind == KIND_ACCOUNTS:
                found.account_batches += 1
                found.accounts_submitted += batch.count
            elif batch.kind == KIND_TRANSFERS:
                found.transfer_batches += 1
                found.transfers_submitted += batch.count
            else:
                assert batch.kind == KIND_EXPIRY
                found.expiry_batches += 1
            if found.first_timestamp is None:
                found.first_timestamp = batch.timestamp
            found.last_timestamp = batch.timestamp
            found.journal_bytes = batch.end
        if isinstance(journal, DirectoryJournal):
            found.snapshots = Snapshots(
                journal.path, journal.header.ledger_id, journal.checksums
            ).files()
        return found
    finally:
        journal.close()


def stats_main(argv: Sequence[str] | None = None) -> int:
    """`fastledger stats PATH`: prints what the journal holds; returns 0, or 1 on failure."""
    parser = argparse.ArgumentParser(
        prog="fastledger stats",
        description="Print what a ledger's journal holds: batches, the accounts and transfers "
        "submitted, its size, the first and last batch's time and the snapshots. It reads "
        "only, takes no lock and replays nothing, so the ledger may stay in use meanwhile.",
        epilog="examples:\n"
        "  fastledger stats ./ledger                # the directory of Ledger.open('./ledger')\n"
        "  fastledger stats postgresql://host/db    # a journal kept in PostgreSQL\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", help="the ledger directory, or a postgresql:// URL")
    add_key_file_argument(parser)
    args = parser.parse_args(argv)
    try:
        found = stats(args.path, key=args.key)
    except FastledgerError as error:
        print(f"fastledger stats: error: {error}", file=sys.stderr)
        return 1
    print(found.summary())
    return 0
