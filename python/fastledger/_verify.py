"""`fastledger verify PATH`: checks a ledger's journal end to end, without changing it.

It checks the journal header, every checksum and link of the hash chain and the durable tip
recorded beside a directory journal, replays the whole journal into a fresh engine, compares
each snapshot with the replayed state at the batch it covers, and checks that every ledger's
debits equal its credits. Damage that opening would refuse is a problem; what lies past the
durable tip of a directory without being a whole batch is reported as a note, since it is
either a write in progress in another process or the torn tail of one that never finished,
which the next open for writing cuts off. Other processes may go on using the ledger
meanwhile: verify takes no lock.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from ._durable import _open_journal, _snapshot_engine
from ._ledger import ENGINES, Ledger
from ._progress import ProgressCallback, ProgressLine, Reporter, journal_extent, terminal_line
from ._types import BATCH_MAX, Account, QueryFilter, Transfer
from .errors import FastledgerError, JournalCorruptError
from .journal import Journal, read_ahead
from .journal.directory import DirectoryJournal
from .journal.format import Tip
from .journal.snapshots import Snapshot, Snapshots

__all__ = ["LedgerTotals", "VerifyReport", "add_key_file_argument", "verify", "verify_main"]

T = TypeVar("T", Account, Transfer)


@dataclass(slots=True)
class LedgerTotals:
    """The sums of the balances of one ledger's accounts."""

    accounts: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def balanced(self) -> bool:
        return (
            self.debits_pending == self.credits_pending
            and self.debits_posted == self.credits_posted
        )


@dataclass(slots=True)
class VerifyReport:
    """What `verify` found. `ok` is true when it found no problem at all."""

    path: str
    batches: int = 0
    events: int = 0
    journal_bytes: int = 0
    accounts: int = 0
    transfers: int = 0
    snapshots_checked: int = 0
    ledgers: dict[int, LedgerTotals] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [
            f"{self.path}: {'OK' if self.ok else 'PROBLEMS FOUND'}",
            f"  journal: {self.batches} batches, {self.events} events, {self.journal_bytes} bytes",
            f"  state: {self.accounts} accounts, {self.transfers} transfers",
            f"  snapshots compared with the replay: {self.snapshots_checked}",
        ]
        for ledger, t in sorted(self.ledgers.items()):
            verdict = "balanced" if t.balanced else "UNBALANCED"
            lines.append(
                f"  ledger {ledger}: {t.accounts} accounts, debits posted {t.debits_posted} "
                f"= credits posted {t.credits_posted}, debits pending {t.debits_pending} "
                f"= credits pending {t.credits_pending}: {verdict}"
            )
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def verify(
    path: str | os.PathLike[str],
    *,
    engine: str = "auto",
    progress: ProgressCallback | TextIO | None = None,
    key: bytes | None = None,
) -> VerifyReport:
    """Checks the journal at `path`, a directory or a `postgresql://` URL, end to end; see
    the module's description.

    `engine` replays the journal; "auto" takes the Rust engine unless snapshots need
    comparing and it cannot export its state. `progress`, when given, is called with a
    `fastledger.Progress` as the journal is replayed (stage `"verify"`, then `"done"`), as
    `Ledger.open` calls it; a stream instead receives a progress line about once a second.
    `key` is the journal's key, if it has one.
    """
    if progress is not None and not callable(progress):
        progress = ProgressLine("verify", progress)
    location = os.fspath(path)
    report = VerifyReport(location if "://" in location else os.path.abspath(location))
    try:
        journal = _open_journal(path, key, True, "fsync", False)
    except FastledgerError as error:
        report.problems.append(str(error))
        return report
    try:
        snapshots = _read_snapshots(journal, report)
        ledger = Ledger(engine, clock=lambda: 0)
        if engine == "auto" and snapshots and _snapshot_engine(ledger._engine) is None:
            # Comparing snapshots needs an engine that exports its state: the reference one.
            ledger = Ledger("python", clock=lambda: 0)
        _replay(ledger, journal, snapshots, report, progress)
    finally:
        journal.close()
    for snapshot in snapshots.values():
        report.problems.append(
            f"{os.path.basename(snapshot.path)} covers batch {snapshot.tip.sequence}, "
            f"which the journal does not hold"
        )
    _tally(ledger, report)
    return report


def _read_snapshots(journal: Journal, report: VerifyReport) -> dict[int, Snapshot]:
    snapshots: dict[int, Snapshot] = {}
    if not isinstance(journal, DirectoryJournal):
        return snapshots
    found = Snapshots(journal.path, journal.header.ledger_id, journal.checksums).read_all()
    for snapshot in found:
        if isinstance(snapshot, Snapshot):
            snapshots[snapshot.tip.sequence] = snapshot
        else:
            report.problems.append(f"{os.path.basename(snapshot[0])}: {snapshot[1]}")
    return snapshots


def _replay(
    ledger: Ledger,
    journal: Journal,
    snapshots: dict[int, Snapshot],
    report: VerifyReport,
    callback: ProgressCallback | None,
) -> None:
    """Replays the whole journal, comparing each snapshot when its batch is reached; takes
    the snapshots it compared out of `snapshots`."""
    start = journal.header.empty_tip(journal.checksums)
    if isinstance(journal, DirectoryJournal):
        batches = journal.inspect(start)
    else:
        batches = journal.read(start, locked=False)
    progress = None if callback is None else Reporter(callback, "verify", *journal_extent(journal))
    _compare(ledger, snapshots.pop(0, None), start, report)
    last = start
    try:
        for batch in read_ahead(batches):
            ledger._replay(batch)
            report.batches += 1
            report.events += batch.count
            last = batch.tip
            _compare(ledger, snapshots.pop(batch.sequence, None), last, report)
            if progress is not None:
                progress.batch(last.sequence, last.end)
    except JournalCorruptError as error:
        report.problems.append(f"{error} (opening refuses this journal)")
    if progress is not None:
        progress.done(last.sequence, last.end)
    report.journal_bytes = last.end
    if isinstance(journal, DirectoryJournal) and journal.torn_tail is not None:
        report.notes.append(
            f"{journal.file}: {journal.torn_tail}; or a write in progress. The next open for "
            "writing cuts it off"
        )


def _compare(ledger: Ledger, snapshot: Snapshot | None, tip: Tip, report: VerifyReport) -> None:
    """Compares a snapshot with the replayed state at the batch it covers."""
    if snapshot is None:
        return
    name = os.path.basename(snapshot.path)
    if snapshot.tip != tip:
        report.problems.append(f"{name} does not match batch {tip.sequence} of the journal")
        return
    engine = _snapshot_engine(ledger._engine)
    if engine is None:
        report.notes.append(f"{name}: the {ledger.engine} engine cannot export its state")
        return
    # The live ledger had expired pending transfers through this time when it exported.
    ledger._engine.expire_pending_transfers(snapshot.expired_through)
    if engine.export_state() != snapshot.state:
        report.problems.append(
            f"{name} differs from the replay of the journal through batch {tip.sequence}"
        )
    report.snapshots_checked += 1


def _tally(ledger: Ledger, report: VerifyReport) -> None:
    """Counts accounts and transfers, sums each ledger's balances, flags an unbalanced one."""
    for account in _pages(ledger.query_accounts):
        report.accounts += 1
        t = report.ledgers.setdefault(account.ledger, LedgerTotals())
        t.accounts += 1
        t.debits_pending += account.debits_pending
        t.debits_posted += account.debits_posted
        t.credits_pending += account.credits_pending
        t.credits_posted += account.credits_posted
    report.transfers = sum(1 for _ in _pages(ledger.query_transfers))
    for number, totals in sorted(report.ledgers.items()):
        if not totals.balanced:
            report.problems.append(f"ledger {number}: debits do not equal credits")


def _pages(query: Callable[[QueryFilter], list[T]]) -> Iterator[T]:
    """Every record a query method returns, a page at a time in timestamp order."""
    after = 0
    while True:
        page = query(QueryFilter(timestamp_min=after + 1, limit=BATCH_MAX))
        yield from page
        if len(page) < BATCH_MAX:
            return
        after = page[-1].timestamp


def add_key_file_argument(parser: argparse.ArgumentParser) -> None:
    """`--key-file FILE`: the key of a keyed journal, read from a file (never given on the
    command line, where other users of the machine could read it); `args.key`."""
    parser.add_argument(
        "--key-file",
        dest="key",
        type=_read_key,
        default=None,
        metavar="FILE",
        help="a file holding the journal's key, for a keyed journal",
    )


def _read_key(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def verify_main(argv: Sequence[str] | None = None) -> int:
    """`fastledger verify PATH`: prints the report; returns 0 if it found no problem, else 1."""
    parser = argparse.ArgumentParser(
        prog="fastledger verify",
        description="Check a ledger's journal end to end: every checksum, the hash chain, the "
        "durable tip, a replay of the journal against the snapshots, and debits equal to "
        "credits. It reads only and takes no lock, so the ledger may stay in use meanwhile.",
        epilog="exit status: 0 when the directory is sound, 1 on any problem, 2 on a usage "
        "error.\n\nexamples:\n"
        "  fastledger verify ./ledger                 # the directory of Ledger.open('./ledger')\n"
        "  fastledger verify ./ledger --quiet         # no progress, even on a terminal\n"
        "  fastledger verify ./ledger --engine python # replay with the reference engine\n"
        "  fastledger verify postgresql://host/db     # a journal kept in PostgreSQL\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", help="the ledger directory, or a postgresql:// URL")
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="replay engine")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress on stderr, even on a terminal"
    )
    add_key_file_argument(parser)
    args = parser.parse_args(argv)
    progress = None if args.quiet else terminal_line("verify", sys.stderr)
    report = verify(args.path, engine=args.engine, progress=progress, key=args.key)
    print(report.summary())
    return 0 if report.ok else 1
