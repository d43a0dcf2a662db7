"""Many processes on one ledger directory, and the ways a directory can be taken from under an
open ledger: every process ends with the same state, nothing acknowledged is ever lost, and a
ledger that cannot know where its journal went stops before it acknowledges more."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fastledger import (
    CreateTransferStatus,
    InvalidArgumentError,
    JournalCorruptError,
    JournalWriteError,
    Ledger,
    LedgerForkedError,
    QueryFilter,
    ReadOnlyLedgerError,
    Transfer,
    TransferFlags,
)
from fastledger._records import pack_transfers
from fastledger._verify import verify
from fastledger.journal import committer as committer_module
from fastledger.journal import directory
from fastledger.journal.directory import DirectoryJournal
from fastledger.journal.format import KIND_TRANSFERS, Checksums, Tip, queued

from .conftest import ENGINE_NAMES, FakeClock, require_engine
from .helpers import account, pending, post, transfer

T = CreateTransferStatus
UNKEYED = Checksums(None)
ACCOUNTS = 8
WORKERS = 3
BATCHES_EACH = 40


def state_digest(ledger: Ledger) -> str:
    """A digest of every account and transfer a ledger holds, ids, balances and timestamps."""
    digest = hashlib.blake2b()
    for page_of in (ledger.query_accounts, ledger.query_transfers):
        after = 0
        while page := page_of(QueryFilter(timestamp_min=after + 1, limit=8189)):
            digest.update(repr(page).encode())
            after = page[-1].timestamp
    return digest.hexdigest()


def open_accounts(path: Path, engine: str) -> None:
    with Ledger.open(path, engine=engine) as ledger:
        ledger.create_accounts([account(n) for n in range(1, ACCOUNTS + 1)])


def post_from(
    path: str,
    engine: str,
    worker: int,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
    marker: Path | None = None,
) -> None:
    """A worker process: posts plain, linked and two-phase transfers; posts the pending
    transfers the worker before it made (they cross processes); reports its final digest once
    the file `finished` appears in `marker` (default: the ledger's directory)."""
    finished = os.path.join(marker or path, "finished")
    rng = random.Random(worker)
    acknowledged = []
    with Ledger.open(path, engine=engine) as ledger:
        for n in range(BATCHES_EACH):
            base = 1_000_000 * (worker + 1) + 10 * n
            debit, credit = rng.sample(range(1, ACCOUNTS + 1), 2)
            batch = [
                transfer(base, debit, credit, rng.randint(1, 50)),
                pending(base + 1, credit, debit, 7),
            ]
            if n % 4 == 0:
                batch[0] = dataclasses.replace(batch[0], flags=TransferFlags.LINKED)
            ledger.create_transfers(batch)
            acknowledged += [base, base + 1]
            other = 1_000_000 * ((worker + WORKERS - 1) % WORKERS + 1) + 10 * n + 1
            ledger.create_transfers([post(base + 2, other)])
        # Wait until every worker is done, then read: the last batches of all are seen.
        results.put(("done", worker, acknowledged))
        while not os.path.exists(finished):
            time.sleep(0.01)
        results.put(("digest", worker, state_digest(ledger), ledger.sequence))


def run_workers(
    location: str, engine: str, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], set[tuple[str, int]]]:
    """Runs WORKERS spawned `post_from` processes on the ledger at `location`; returns the ids
    they were acknowledged and the set of (digest, sequence) they ended with."""
    # A spawned child imports the worker from this module, by the parent's sys.path.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    workers = [
        context.Process(target=post_from, args=(location, engine, n, results, marker))
        for n in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    acknowledged: list[int] = []
    for _ in workers:
        kind, _, ids = results.get(timeout=180)
        assert kind == "done"
        acknowledged += ids
    (marker / "finished").touch()
    digests = {results.get(timeout=60)[2:] for _ in workers}
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert len(digests) == 1, "every process holds the same state"
    return acknowledged, digests


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_processes_posting_at_once_end_with_the_state_of_one_replay(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_engine(engine)
    open_accounts(tmp_path, engine)
    acknowledged, digests = run_workers(str(tmp_path), engine, tmp_path, monkeypatch)
    for replay_engine in ENGINE_NAMES:
        require_engine(replay_engine)
        with Ledger.open(tmp_path, engine=replay_engine, read_only=True) as replay:
            assert {(state_digest(replay), replay.sequence)} == digests
            found = replay.lookup_transfers(acknowledged[:8000])
            assert len(found) == len(acknowledged)
            assert replay.trial_balance(1).balanced
    report = verify(tmp_path)
    assert report.ok, report.summary()


KILLED_WRITER = """
import sys, fastledger
from fastledger import Transfer
path, start = sys.argv[1], int(sys.argv[2])
with fastledger.Ledger.open(path, engine="python") as ledger:
    for n in range(start, start + 100_000):
        t = Transfer(id=n, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)
        ledger.create_transfers([t])
        print(n, flush=True)
"""


def test_a_writer_killed_at_random_moments_leaves_the_others_working_and_loses_nothing(
    tmp_path: Path,
) -> None:
    open_accounts(tmp_path, "python")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    acknowledged: list[int] = []
    rng = random.Random(7)
    with Ledger.open(tmp_path, engine="python") as survivor:
        for round_ in range(6):
            victim = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    KILLED_WRITER,
                    str(tmp_path),
                    str(10_000_000 * (round_ + 1)),
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert victim.stdout is not None
            first = victim.stdout.readline()
            assert first, "the writer started"
            acknowledged.append(int(first))
            deadline = time.monotonic() + rng.uniform(0.05, 0.3)
            while time.monotonic() < deadline:
                own = 100 + round_ * 1000 + len(acknowledged)
                assert survivor.create_transfers([transfer(own, 2, 1, 1)])[0].status == T.CREATED
                acknowledged.append(own)
            victim.send_signal(signal.SIGKILL)
            out, _ = victim.communicate()
            acknowledged += [int(line) for line in out.split()]
        found = {t.id for t in survivor.lookup_transfers(acknowledged[-8000:])}
        assert found == set(acknowledged[-8000:])
    with Ledger.open(tmp_path, engine="python") as reopened:
        for start in range(0, len(acknowledged), 8000):
            chunk = acknowledged[start : start + 8000]
            assert len(reopened.lookup_transfers(chunk)) == len(chunk)
        assert reopened.trial_balance(1).balanced
    assert verify(tmp_path).ok


def test_a_read_only_ledger_follows_the_journal_and_never_writes(
    engine: str, tmp_path: Path
) -> None:
    with Ledger.open(tmp_path, engine=engine) as writer:
        writer.create_accounts([account(1), account(2)])
        follower = Ledger.open(tmp_path, engine=engine, read_only=True)
        with follower:
            assert follower.read_only and follower.sequence == 1
            writer.create_transfers([transfer(10, 1, 2, 5)])
            assert follower.lookup_accounts([1])[0].debits_posted == 5, "a read follows"
            writer.create_transfers([transfer(11, 1, 2, 5)])
            assert follower.wait_for_batches(2, timeout_s=5)
            assert follower.sequence == 3
            with pytest.raises(ReadOnlyLedgerError):
                follower.create_transfers([transfer(12, 1, 2, 5)])
            assert not follower.snapshot(), "a read-only ledger writes no snapshot"
    size = (tmp_path / "journal").stat().st_size
    with Ledger.open(tmp_path, engine=engine, read_only=True) as follower:
        assert follower.sequence == 3
    assert (tmp_path / "journal").stat().st_size == size


def test_a_read_only_open_of_a_missing_ledger_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="never creates"):
        Ledger.open(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_a_stale_read_is_allowed_only_when_asked_for(engine: str, tmp_path: Path) -> None:
    with Ledger.open(tmp_path, engine=engine) as writer:
        writer.create_accounts([account(1), account(2)])
        with Ledger.open(tmp_path, engine=engine, max_staleness_s=3600) as stale:
            stale.lookup_accounts([1])
            writer.create_transfers([transfer(10, 1, 2, 5)])
            assert stale.lookup_accounts([1])[0].debits_posted == 0, "within its staleness"
            assert stale.refresh() == 2
            assert stale.lookup_accounts([1])[0].debits_posted == 5


# -- a write flushed after the append lock is let go --------------------------------------------


def raw_write(journal: DirectoryJournal, *transfers: Transfer) -> Tip:
    """Appends one batch of `transfers` as a process does, without flushing it: the append lock
    is let go first, as a writer that another process waits for does. Returns its tip."""
    journal.lock()
    tip = journal.header.empty_tip(journal.checksums)
    for batch in journal.read(tip, locked=True):
        tip = batch.tip
    body = pack_transfers(list(transfers))
    group = [queued(tip.sequence + 1, KIND_TRANSFERS, time.time_ns(), body, journal.checksums)]
    written = journal.write(group, tip)[-1]
    journal.unlock()
    return written


def test_a_write_not_yet_flushed_is_built_on_by_the_next_writer_whose_flush_covers_both(
    tmp_path: Path,
) -> None:
    open_accounts(tmp_path, "python")
    first, second = DirectoryJournal(tmp_path), DirectoryJournal(tmp_path)
    try:
        start = first.durable_tip()
        written = raw_write(first, transfer(1, 1, 2, 5))
        assert not second.changed(start), "unlocked readers see durable batches only"
        assert list(second.read(start, locked=False)) == []
        later = raw_write(second, transfer(2, 2, 1, 3))
        assert later.sequence == written.sequence + 1
        second.flush(later)
        assert second.durable_tip() == later
        first.flush(written)
        assert first.durable_tip() == later, "the tip file never goes back"
        assert [b.sequence for b in second.read(start, locked=False)] == [2, 3]
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_ledger_applies_a_write_left_unflushed_and_acknowledges_only_once_it_is_durable(
    engine: str, tmp_path: Path
) -> None:
    """A process that wrote a batch and died before its flush left a batch that no one was
    told of: reads do not show it, the next writer applies it, and its own flush makes both
    durable before it answers."""
    require_engine(engine)
    with Ledger.open(tmp_path, engine=engine) as ledger:
        ledger.create_accounts([account(1), account(2)])
        other = DirectoryJournal(tmp_path)
        try:
            left = raw_write(other, transfer(10, 1, 2, 5))
        finally:
            other.close()
        assert ledger.lookup_transfers([10]) == []
        assert [r.status for r in ledger.create_transfers([transfer(11, 2, 1, 3)])] == [T.CREATED]
        assert [t.id for t in ledger.lookup_transfers([10, 11])] == [10, 11]
        assert ledger.sequence == left.sequence + 1
        reader = DirectoryJournal(tmp_path, read_only=True)
        try:
            assert reader.durable_tip().sequence == ledger.sequence, "durable when answered"
        finally:
            reader.close()
    report = verify(tmp_path)
    assert report.ok and report.transfers == 2 and not report.notes, report.summary()


def test_a_ledger_waiting_for_the_append_lock_applies_what_the_holder_appends_meanwhile(
    tmp_path: Path,
) -> None:
    open_accounts(tmp_path, "python")
    holder = DirectoryJournal(tmp_path)
    try:
        with Ledger.open(tmp_path, engine="python") as ledger:
            start = ledger.sequence
            holder.lock()
            tip = start_tip = holder.durable_tip()
            assert start == start_tip.sequence
            posted: list[Any] = []
            poster = threading.Thread(
                target=lambda: posted.append(ledger.create_transfers([transfer(30, 1, 2, 1)]))
            )
            poster.start()
            for n in range(2):
                body = pack_transfers([transfer(20 + n, 2, 1, 1)])
                batch = queued(tip.sequence + 1, KIND_TRANSFERS, time.time_ns(), body, UNKEYED)
                tip = holder.write([batch], tip)[-1]
                holder.flush(tip)
            deadline = time.monotonic() + 10
            while ledger.sequence < tip.sequence and time.monotonic() < deadline:
                time.sleep(0.005)
            assert not posted, "the create still waits for the lock"
            assert ledger.sequence == start_tip.sequence + 2, "applied while waiting"
            holder.unlock()
            poster.join(10)
            assert [r.status for r in posted[0]] == [T.CREATED]
            assert ledger.sequence == tip.sequence + 1
    finally:
        holder.close()
    report = verify(tmp_path)
    assert report.ok and report.transfers == 3, report.summary()


# -- a directory taken from under an open ledger ----------------------------------------------


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_write_that_fails_once_others_appended_fails_that_ledger_and_lets_the_lock_go(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once another process appended, the leader of a hold writes its batches itself and
    lets the lock go at once: a failure there stops that ledger alone, and the others go on."""
    require_engine(engine)
    failed_in: list[str] = []
    real_write_all = directory._write_all

    def write_all(fd: int, parts: list[bytes], offset: int) -> None:
        if not failed_in:
            failed_in.append(threading.current_thread().name)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, parts, offset)

    with (
        Ledger.open(tmp_path, engine=engine) as first,
        Ledger.open(tmp_path, engine=engine) as other,
    ):
        first.create_accounts([account(1), account(2)])
        assert [r.status for r in other.create_transfers([transfer(10, 1, 2, 5)])] == [T.CREATED]
        monkeypatch.setattr(directory, "_write_all", write_all)
        # Led from a thread other than the main one, which leaves its writes to the committer.
        outcome: list[Any] = []
        leader = threading.Thread(
            target=lambda: outcome.append(catch(first.create_transfers, [transfer(11, 1, 2, 5)])),
            name="leader",
        )
        leader.start()
        leader.join()
        assert isinstance(outcome[0], JournalWriteError) and "No space left" in str(outcome[0])
        assert failed_in == ["leader"], "the leader wrote"
        assert [r.status for r in other.create_transfers([transfer(12, 2, 1, 3)])] == [T.CREATED]
        with pytest.raises(JournalWriteError):
            first.lookup_transfers([10])
    with Ledger.open(tmp_path, engine=engine) as reopened:
        assert [t.id for t in reopened.lookup_transfers([10, 11, 12])] == [10, 12]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_failed_write_lets_no_other_write_through_before_the_committer_stops(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch queued while a failed write stops the committer (here, the expiry that a read
    journals, with the stop made slow) is never written after the tip the failed write began
    from, and so never acknowledged in its place."""
    require_engine(engine)
    clock = FakeClock()
    real_write_all, real_stop = directory._write_all, committer_module.Committer._stop
    stopping = threading.Event()

    def write_all(fd: int, parts: list[bytes], offset: int) -> None:
        if not stopping.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, parts, offset)

    def slow_stop(self: Any, error: BaseException, **options: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            time.sleep(0.3)
        real_stop(self, error, **options)

    with (
        Ledger.open(tmp_path, engine=engine, clock=clock) as first,
        Ledger.open(tmp_path, engine=engine, clock=clock) as other,
    ):
        first.create_accounts([account(1), account(2)])
        first.create_transfers([pending(20, 1, 2, 5, timeout=1)])
        other.create_transfers([transfer(10, 1, 2, 5)])
        monkeypatch.setattr(directory, "_write_all", write_all)
        monkeypatch.setattr(committer_module.Committer, "_stop", slow_stop)
        outcome: list[Any] = []
        leader = threading.Thread(
            target=lambda: outcome.append(catch(first.create_transfers, [transfer(11, 1, 2, 5)]))
        )
        leader.start()
        assert stopping.wait(5)
        clock.advance(seconds=2)
        with pytest.raises(JournalWriteError):
            first.lookup_accounts([1])
        leader.join()
        assert isinstance(outcome[0], JournalWriteError), outcome
    with Ledger.open(tmp_path, engine=engine) as reopened:
        assert [t.id for t in reopened.lookup_transfers([10, 11, 20])] == [10, 20]


def catch(call: Any, *args: Any) -> Any:
    """What `call` returned, or the exception it raised."""
    try:
        return call(*args)
    except Exception as error:
        return error


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_ctrl_c_while_the_main_thread_leads_reaches_it_and_fails_nothing(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once others appended, a leader hands its hold's write to no thread, but on the main
    thread, where Ctrl-C lands, the committer thread writes, so that the interrupt stops the
    wait and never cuts the write."""
    require_engine(engine)
    real_write_all = directory._write_all
    wrote_in: list[str] = []

    def write_all(fd: int, parts: list[bytes], offset: int) -> None:
        if not wrote_in:
            wrote_in.append(threading.current_thread().name)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        real_write_all(fd, parts, offset)

    with (
        Ledger.open(tmp_path, engine=engine) as first,
        Ledger.open(tmp_path, engine=engine) as other,
    ):
        first.create_accounts([account(1), account(2)])
        other.create_transfers([transfer(10, 1, 2, 5)])
        monkeypatch.setattr(directory, "_write_all", write_all)
        with pytest.raises(KeyboardInterrupt):
            first.create_transfers([transfer(11, 1, 2, 5)])
        assert wrote_in == ["fastledger-journal"]
        assert [t.id for t in first.lookup_transfers([10, 11])] == [10, 11]
        assert [r.status for r in first.create_transfers([transfer(12, 2, 1, 1)])] == [T.CREATED]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_ledger_whose_journal_was_deleted_or_replaced_stops_acknowledging(
    engine: str, tmp_path: Path, how: str
) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, engine=engine)
    ledger.create_accounts([account(1), account(2)])
    if how == "deleted":
        shutil.rmtree(path)
    else:
        shutil.copytree(path, tmp_path / "copy")
        os.replace(tmp_path / "copy" / "journal", path / "journal")
    with pytest.raises(JournalWriteError, match="no longer the journal this ledger opened"):
        ledger.create_transfers([transfer(10, 1, 2, 1)])
    with pytest.raises(JournalWriteError):
        ledger.create_transfers([transfer(11, 1, 2, 1)])
    ledger.close()


def test_two_processes_never_interleave_their_appends(tmp_path: Path) -> None:
    """Each group goes out under the append lock: the chain holds however the writes of two
    processes meet."""
    open_accounts(tmp_path, "python")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER.replace("100_000", "300"), str(tmp_path), start],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for start in ("1000", "5000")
    ]
    for writer in writers:
        assert writer.wait(120) == 0
    report = verify(tmp_path)
    assert report.ok and report.transfers == 600, report.summary()


# -- misuse -----------------------------------------------------------------------------------


def test_a_ledger_used_in_a_forked_child_refuses_clearly(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, engine="python")
    ledger.create_accounts([account(1), account(2)])
    pid = os.fork()
    if pid == 0:  # the child
        try:
            ledger.create_transfers([transfer(10, 1, 2, 1)])
        except LedgerForkedError as error:
            os._exit(3 if "open the ledger again in this process" in str(error) else 4)
        os._exit(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert ledger.create_transfers([transfer(10, 1, 2, 1)])[0].status == T.CREATED
    ledger.close()


def test_a_clock_past_the_last_timestamp_is_refused_and_consumes_nothing(
    engine: str, tmp_path: Path
) -> None:
    readings = [1_000_000_000_000, 2**64, 2**63, 1_000_000_000_100]
    with Ledger.open(tmp_path, engine=engine, clock=lambda: readings[0]) as ledger:
        ledger.create_accounts([account(1), account(2)])
        for reading in readings[1:3]:
            readings[0] = reading
            with pytest.raises(InvalidArgumentError, match="wrong unit"):
                ledger.create_transfers([transfer(10, 1, 2, 1)])
        readings[0] = readings[3]
        [created] = ledger.create_transfers([transfer(10, 1, 2, 1)])
        assert created.status == T.CREATED and created.timestamp == readings[3]
    with Ledger.open(tmp_path, engine=engine, clock=lambda: readings[3] + 1) as ledger:
        assert ledger.create_transfers([transfer(11, 1, 2, 1)])[0].status == T.CREATED


def test_a_url_that_is_not_postgresql_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError, match="postgresql://"):
        Ledger.open("mysql://localhost/ledger")
    assert not list(tmp_path.iterdir())


class Shifting(Sequence[Transfer]):
    """A sequence whose items change each time they are read: honest the first time."""

    def __init__(self, honest: list[Transfer]) -> None:
        self._honest = honest
        self._reads = 0

    def __len__(self) -> int:
        return len(self._honest)

    def __getitem__(self, index: Any) -> Any:
        self._reads += 1
        item = self._honest[index]
        if self._reads <= len(self._honest):
            return item
        return dataclasses.replace(item, amount=10**30, debit_account_id=2)


def test_a_sequence_that_changes_as_it_is_read_is_applied_as_journaled(
    engine: str, tmp_path: Path
) -> None:
    with Ledger.open(tmp_path, engine=engine) as ledger:
        ledger.create_accounts([account(1), account(2)])
        batch = Shifting([transfer(10, 1, 2, 5), transfer(11, 1, 2, 6)])
        # Which reading of an item was packed depends on the packer; whatever it took, the
        # engine applied exactly that, and the journal holds exactly that.
        ledger.create_transfers(batch)
        live = state_digest(ledger)
    with Ledger.open(tmp_path, engine=engine) as reopened:
        assert state_digest(reopened) == live, "memory and journal agree"


def test_a_journal_cut_under_a_running_ledger_is_found_before_its_next_append(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        cut_at = (tmp_path / "journal").stat().st_size
        ledger.create_transfers([transfer(10, 1, 2, 1)])
        time.sleep(0.05)  # past the time an idle process keeps the append lock
        os.truncate(tmp_path / "journal", cut_at)
        with pytest.raises(JournalCorruptError, match="bytes of acknowledged batches are missing"):
            ledger.create_transfers([transfer(11, 1, 2, 1)])
        assert (tmp_path / "journal").stat().st_size == cut_at, "nothing written after the cut"
