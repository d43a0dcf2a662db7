"""A ledger kept in a directory: reopening gives exactly the state it had, on both engines."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastledger
from fastledger import (
    AccountFilter,
    AccountFlags,
    AsyncLedger,
    BatchTooLargeError,
    CreateTransferStatus,
    InvalidArgumentError,
    InvalidRecordError,
    JournalWriteError,
    Ledger,
    LedgerClosedError,
    QueryFilter,
    Transfer,
    _durable,
    _ledger,
    _platform,
)
from fastledger._records import pack_transfers
from fastledger._verify import verify
from fastledger.journal.directory import DirectoryJournal
from fastledger.journal.format import HEADER_SIZE, KIND_EXPIRY, Batch
from fastledger.journal.snapshots import Snapshots

from .conftest import FakeClock, require_engine
from .helpers import account, pending, post, transfer
from .journal_scenario import STEPS, probe

T = CreateTransferStatus
FAST = "unsafe_no_fsync"


def journal_bytes(path: Path) -> bytes:
    return (path / "journal").read_bytes()


def snapshot_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("snapshot-*"))


@pytest.fixture
def slow_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Makes every journal flush take 2 ms and counts the flushes, so that callers arriving
    together have a flush to share."""
    flushes: list[int] = []
    real = _platform.fsync_file

    def sync(fd: int) -> None:
        time.sleep(0.002)
        flushes.append(fd)
        real(fd)

    monkeypatch.setattr(_platform, "fsync_file", sync)
    yield flushes


# -- reopening gives the same state ---------------------------------------------------------


@pytest.mark.parametrize("snapshot_every", [None, 1, 3], ids=["journal", "snap1", "snap3"])
def test_reopening_after_every_step_gives_what_an_in_memory_ledger_has(
    engine: str, tmp_path: Path, snapshot_every: int | None
) -> None:
    memory_clock, clock = FakeClock(), FakeClock()
    memory = Ledger(engine=engine, clock=memory_clock)
    for step in STEPS:
        expected = step(memory, memory_clock)
        with Ledger.open(tmp_path, engine=engine, clock=clock, snapshot_every=snapshot_every) as d:
            assert step(d, clock) == expected, step.__name__
        with Ledger.open(tmp_path, engine=engine, clock=clock, snapshot_every=None) as d:
            assert probe(d) == probe(memory), step.__name__
    assert verify(tmp_path).ok


def test_reopening_keeps_the_failed_ids_and_the_timestamps(engine: str, tmp_path: Path) -> None:
    clock = FakeClock()
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        for step in STEPS[:-1]:
            step(ledger, clock)
        last = ledger.query_transfers(QueryFilter(limit=1, flags=1))[0].timestamp
    clock.now_ns = 0  # a clock gone backwards must not stamp before the journal's last batch
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        retried = ledger.create_transfers([transfer(102, 3, 1, 1), transfer(200, 1, 2, 1)])
    assert [r.status for r in retried] == [T.ID_ALREADY_FAILED, T.CREATED]
    assert retried[1].timestamp > last


@pytest.mark.parametrize("snapshot", [False, True], ids=["journal", "snapshot"])
def test_each_engine_opens_the_directory_of_the_other(
    tmp_path: Path, snapshot: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_engine("rust")
    for writer, reader in (("python", "rust"), ("rust", "python")):
        path, clock = tmp_path / writer, FakeClock()
        memory = Ledger(engine=writer, clock=FakeClock())
        with Ledger.open(path, engine=writer, clock=clock, snapshot_every=None) as ledger:
            for step in STEPS:
                step(ledger, clock)
                step(memory, memory._clock)  # type: ignore[arg-type]
            if snapshot:
                ledger.snapshot()
        with Ledger.open(path, engine=reader, clock=clock) as ledger:
            assert probe(ledger) == probe(memory)


def batches_without_links(journal: bytes) -> list[tuple[bytes, bytes]]:
    """Each batch of a journal as its header without the checksums that chain it to the
    journal header (which holds a random ledger id), and its records."""
    batches, offset = [], HEADER_SIZE
    while offset < len(journal):
        header = journal[offset : offset + HEADER_SIZE]
        end = offset + HEADER_SIZE + 128 * int.from_bytes(header[12:16], "little")
        batches.append((header[:56] + header[72:112], journal[offset + HEADER_SIZE : end]))
        offset = end
    return batches


def test_both_engines_write_the_same_journal_bytes(tmp_path: Path) -> None:
    require_engine("rust")
    written, states = {}, {}
    for name in ("python", "rust"):
        clock = FakeClock()
        with Ledger.open(tmp_path / name, engine=name, clock=clock, snapshot_every=None) as ledger:
            for step in STEPS:
                step(ledger, clock)
            packed = pack_transfers([transfer(300 + i, 1, 2, 1) for i in range(5)])
            ledger.create_transfers(packed)
            if ledger.snapshot():
                [snapshot] = (tmp_path / name).glob("snapshot-*")
                states[name] = snapshot.read_bytes()[HEADER_SIZE:]
        written[name] = journal_bytes(tmp_path / name)
    assert batches_without_links(written["python"]) == batches_without_links(written["rust"])
    assert len(written["python"]) > 10 * 128
    # An engine without export_state writes no snapshot; two that have it write the same.
    assert "python" in states and len(set(states.values())) == 1


def test_a_packed_batch_is_journaled_as_its_records(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        before = len(journal_bytes(tmp_path))
        records = pack_transfers([transfer(10, 1, 2, 5), transfer(11, 2, 1, 3)])
        ledger.create_transfers(bytearray(records))
    assert journal_bytes(tmp_path)[before + 128 :] == records
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert [t.id for t in ledger.lookup_transfers([10, 11])] == [10, 11]


# -- what is journaled ------------------------------------------------------------------------


def test_a_refused_batch_writes_nothing(engine: str, tmp_path: Path) -> None:
    with Ledger.open(tmp_path, engine=engine, batch_max=2) as ledger:
        ledger.create_accounts([account(1), account(2)])
        size = len(journal_bytes(tmp_path))
        with pytest.raises(BatchTooLargeError):
            ledger.create_transfers([transfer(i, 1, 2, 1) for i in range(10, 13)])
        with pytest.raises(InvalidRecordError):
            ledger.create_transfers([transfer(10, 1, 2, -1)])
        assert ledger.create_transfers([]) == []
        assert len(journal_bytes(tmp_path)) == size
    with Ledger.open(tmp_path, engine=engine) as ledger:
        assert ledger.create_transfers([transfer(10, 1, 2, 1)])[0].status == T.CREATED


def test_a_create_returns_only_after_its_batch_is_flushed(
    tmp_path: Path, slow_fsync: list[int]
) -> None:
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        flushed = len(slow_fsync)
        ledger.create_transfers([transfer(10, 1, 2, 1)])
        assert len(slow_fsync) == flushed + 1
    with Ledger.open(tmp_path, engine="python", durability=FAST) as ledger:
        ledger.create_transfers([transfer(11, 1, 2, 1)])
        assert len(slow_fsync) == flushed + 1
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert len(ledger.lookup_transfers([10, 11])) == 2


def test_a_read_waits_until_what_it_saw_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, real = threading.Event(), _platform.fsync_file
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        monkeypatch.setattr(_platform, "fsync_file", lambda fd: (gate.wait(5), real(fd)))
        writer = threading.Thread(target=ledger.create_transfers, args=([transfer(10, 1, 2, 1)],))
        writer.start()
        while ledger._committer is None or ledger._committer.appended < 2:
            time.sleep(0.001)
        seen: list[Any] = []
        reader = threading.Thread(target=lambda: seen.append(ledger.lookup_transfers([10])))
        reader.start()
        reader.join(0.1)
        assert reader.is_alive() and not seen, "the read showed a batch not yet on disk"
        gate.set()
        writer.join()
        reader.join()
        assert [t.id for t in seen[0]] == [10]


def test_the_engine_goes_on_applying_batches_while_a_flush_is_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, real = threading.Event(), _platform.fsync_file
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        monkeypatch.setattr(_platform, "fsync_file", lambda fd: (gate.wait(5), real(fd)))
        posts = [
            threading.Thread(target=ledger.create_transfers, args=([transfer(i, 1, 2, 1)],))
            for i in (10, 11, 12)
        ]
        for thread in posts:
            thread.start()
        # The calls that wait for the same hold of the lock may share a batch of the journal,
        # so it is the engine's count that says all three were applied.
        wait_for(lambda: ledger.metrics().transfers_created == 3, "a flush held the ledger's lock")
        gate.set()
        for thread in posts:
            thread.join()
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert len(ledger.lookup_transfers([10, 11, 12])) == 3


def wait_for(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.001)


def test_a_snapshot_waits_for_the_journal_outside_the_lock_and_covers_what_it_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, real = threading.Event(), _platform.fsync_file
    with Ledger.open(tmp_path, engine="python", snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        journal = ledger._committer
        assert journal is not None
        monkeypatch.setattr(_platform, "fsync_file", lambda fd: (gate.wait(5), real(fd)))
        threads = [
            threading.Thread(target=ledger.create_transfers, args=([transfer(10, 1, 2, 1)],))
        ]
        threads[0].start()
        wait_for(lambda: journal.appended == 2, "the first batch was not applied")
        threads.append(threading.Thread(target=ledger.snapshot))
        threads[1].start()
        wait_for(lambda: journal._marked == 2, "the snapshot did not export the state")
        threads.append(
            threading.Thread(target=ledger.create_transfers, args=([transfer(11, 1, 2, 1)],))
        )
        threads[2].start()
        wait_for(lambda: journal.appended == 3, "a snapshot held the ledger's lock")
        gate.set()
        for thread in threads:
            thread.join()
    assert snapshot_files(tmp_path) == [f"snapshot-{2:020d}"]
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert [t.id for t in ledger.lookup_transfers([10, 11])] == [10, 11]


# -- opening, closing and locking ---------------------------------------------------------------


def test_a_second_open_of_a_directory_shares_it(engine: str, tmp_path: Path) -> None:
    with (
        Ledger.open(tmp_path, engine=engine) as first,
        Ledger.open(tmp_path, engine=engine) as second,
    ):
        first.create_accounts([account(1), account(2)])
        assert second.create_transfers([transfer(10, 1, 2, 3)])[0].status == T.CREATED
        assert first.lookup_accounts([1])[0].debits_posted == 3, "a read follows the other"
        assert first.sequence == second.sequence == 2
    assert verify(tmp_path).ok


def test_another_process_opens_and_writes_a_directory_that_is_open(tmp_path: Path) -> None:
    script = (
        "import sys, fastledger\n"
        "from fastledger import Transfer\n"
        "with fastledger.Ledger.open(sys.argv[1], engine='python') as ledger:\n"
        "    t = Transfer(id=11, debit_account_id=2, credit_account_id=1, amount=4, ledger=1,"
        " code=1)\n"
        "    sys.exit(0 if ledger.create_transfers([t])[0].status.name == 'CREATED' else 3)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env)
        assert other.returncode == 0
        assert ledger.lookup_accounts([1])[0].credits_posted == 4
        assert ledger.create_transfers([transfer(12, 1, 2, 1)])[0].status == T.CREATED
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert [t.id for t in ledger.lookup_transfers([11, 12])] == [11, 12]


def test_a_closed_ledger_refuses_every_call(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, engine="python")
    ledger.close()
    ledger.close()
    with pytest.raises(LedgerClosedError):
        ledger.create_accounts([account(1)])
    with pytest.raises(LedgerClosedError):
        ledger.lookup_accounts([1])
    assert ledger.path == str(tmp_path) and ledger.durability == "fsync"


def test_an_in_memory_ledger_closes_as_a_no_op() -> None:
    with Ledger(engine="python") as ledger:
        ledger.close()
        assert ledger.create_accounts([account(1)])[0].status.name == "CREATED"
        assert ledger.path is None and ledger.durability is None and not ledger.snapshot()


def test_open_refuses_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="durability"):
        Ledger.open(tmp_path, durability="sometimes")
    with pytest.raises(InvalidArgumentError, match="snapshot_every"):
        Ledger.open(tmp_path, snapshot_every=0)
    Ledger.open(tmp_path, engine="python").close()


# -- snapshots --------------------------------------------------------------------------------


@pytest.mark.parametrize(("engine", "snapshots"), [("python", 1), ("rust", 0)])
def test_by_default_only_the_python_engine_snapshots_automatically(
    tmp_path: Path, clock: FakeClock, engine: str, snapshots: int
) -> None:
    """The Rust engine replays its journal faster than it imports a snapshot."""
    require_engine(engine)
    with Ledger.open(tmp_path, engine=engine, clock=clock, durability=FAST) as ledger:
        ledger.create_accounts([account(1), account(2)])
        for i in range(_durable.SNAPSHOT_EVERY):
            ledger.create_transfers([transfer(10 + i, 1, 2, 1)])
    assert len(snapshot_files(tmp_path)) == snapshots


def count_replays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    replayed: list[int] = []
    real = Ledger._replay

    def replay(self: Ledger, batch: Batch) -> None:
        replayed.append(batch.sequence)
        real(self, batch)

    monkeypatch.setattr(Ledger, "_replay", replay)
    return replayed


def post_batches(ledger: Ledger, count: int, first_id: int = 1000) -> None:
    for i in range(count):
        ledger.create_transfers([transfer(first_id + i, 1, 2, 1)])


def test_a_snapshot_lets_the_next_open_replay_only_what_follows_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(
        tmp_path, engine="python", clock=clock, durability=FAST, snapshot_every=None
    ) as ledger:
        ledger.create_accounts([account(1), account(2)])
        post_batches(ledger, 5)
        assert ledger.snapshot()
        post_batches(ledger, 2, first_id=2000)
        expected = probe(ledger)
    assert snapshot_files(tmp_path) == ["snapshot-00000000000000000006"]
    replayed = count_replays(monkeypatch)
    with Ledger.open(tmp_path, engine="python", clock=clock) as ledger:
        assert probe(ledger) == expected
    assert replayed == [7, 8]


def test_snapshots_are_taken_automatically_and_the_two_newest_kept(
    clock: FakeClock, tmp_path: Path
) -> None:
    with Ledger.open(
        tmp_path, engine="python", clock=clock, durability=FAST, snapshot_every=2
    ) as ledger:
        ledger.create_accounts([account(1), account(2)])
        post_batches(ledger, 9)
        expected = probe(ledger)
    assert len(snapshot_files(tmp_path)) == 2
    with Ledger.open(tmp_path, engine="python", clock=clock) as ledger:
        assert probe(ledger) == expected
    report = verify(tmp_path)
    assert report.ok and report.snapshots_checked == 2, report.summary()


def test_a_damaged_snapshot_is_skipped_for_the_journal(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Ledger.open(tmp_path, engine="python", clock=clock, snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        post_batches(ledger, 3)
        ledger.snapshot()
        expected = probe(ledger)
    [name] = snapshot_files(tmp_path)
    data = bytearray((tmp_path / name).read_bytes())
    data[200] ^= 1
    (tmp_path / name).write_bytes(data)
    replayed = count_replays(monkeypatch)
    with (
        caplog.at_level(logging.WARNING),
        Ledger.open(tmp_path, engine="python", clock=clock) as ledger,
    ):
        assert probe(ledger) == expected
    assert replayed == [1, 2, 3, 4] and "skipping snapshot" in caplog.text
    assert not verify(tmp_path).ok


def test_a_snapshot_of_another_ledger_is_skipped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, amount in (("a", 1), ("b", 2)):
        with Ledger.open(tmp_path / name, engine="python", snapshot_every=None) as ledger:
            ledger.create_accounts([account(1), account(2)])
            ledger.create_transfers([transfer(10, 1, 2, amount)])
            ledger.snapshot()
    [snapshot] = snapshot_files(tmp_path / "a")
    (tmp_path / "b" / snapshot).write_bytes((tmp_path / "a" / snapshot).read_bytes())
    with caplog.at_level(logging.WARNING), Ledger.open(tmp_path / "b", engine="python") as ledger:
        assert ledger.lookup_transfers([10])[0].amount == 2, "the journal decides"
    assert "another ledger" in caplog.text
    report = verify(tmp_path / "b")
    assert not report.ok and "another ledger" in report.problems[0]


def test_an_engine_without_snapshots_replays_the_whole_journal(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(tmp_path, engine="python", clock=clock, snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        post_batches(ledger, 2)
        ledger.snapshot()
        expected = probe(ledger)
    monkeypatch.setattr(_durable, "_snapshot_engine", lambda engine: None)
    replayed = count_replays(monkeypatch)
    with Ledger.open(tmp_path, engine="python", clock=clock, snapshot_every=1) as ledger:
        assert probe(ledger) == expected
        assert not ledger.snapshot()
        post_batches(ledger, 2, first_id=2000)
    assert replayed == [1, 2, 3]
    assert snapshot_files(tmp_path) == ["snapshot-00000000000000000003"]


def test_a_snapshot_holds_the_expiry_it_records_even_right_after_an_accounts_batch(
    tmp_path: Path, clock: FakeClock
) -> None:
    with Ledger.open(tmp_path, engine="python", clock=clock, snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        ledger.create_transfers([pending(10, 1, 2, 5, timeout=1)])
        clock.advance(seconds=2)
        ledger.create_accounts([account(3)])  # stamps past the expiry, expires nothing
        ledger.snapshot()
        expected = probe(ledger)
    report = verify(tmp_path)
    assert report.ok and report.snapshots_checked == 1, report.summary()
    with Ledger.open(tmp_path, engine="python", clock=clock) as ledger:
        assert probe(ledger) == expected


def test_a_pending_transfer_a_read_saw_expire_stays_expired_when_reopened_with_a_clock_behind(
    engine: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        ledger.create_accounts([account(1), account(2)])
        ledger.create_transfers([pending(10, 1, 2, 5, timeout=1)])
        clock.advance(seconds=2)
        seen = ledger.lookup_accounts([1])[0]  # this read releases the reservation
        assert seen.debits_pending == 0
    clock.advance(seconds=-2)  # set back, or another machine's clock
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        assert ledger.lookup_accounts([1]) == [seen]
        posted = ledger.create_transfers([post(11, 10)])
    assert [r.status for r in posted] == [T.PENDING_TRANSFER_EXPIRED]
    assert verify(tmp_path).ok


def test_only_a_read_that_releases_a_reservation_adds_to_the_journal(
    engine: str, tmp_path: Path, clock: FakeClock
) -> None:
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        ledger.create_accounts([account(1), account(2)])
        ledger.create_transfers([pending(10, 1, 2, 5, timeout=1)])
        before = journal_bytes(tmp_path)
        ledger.lookup_accounts([1])
        assert journal_bytes(tmp_path) == before  # nothing due yet
        clock.advance(seconds=2)
        ledger.lookup_accounts([1])
        grown = journal_bytes(tmp_path)
        assert len(grown) == len(before) + HEADER_SIZE
        header = grown[len(before) :]
        assert int.from_bytes(header[10:12], "little") == KIND_EXPIRY
        ledger.lookup_accounts([1])
        assert journal_bytes(tmp_path) == grown  # released once, journaled once


def test_export_state_then_import_state_gives_the_same_state(engine: str) -> None:
    clock = FakeClock()
    ledger = Ledger(engine=engine, clock=clock)
    for step in STEPS:
        step(ledger, clock)
    source = _durable._snapshot_engine(ledger._engine)
    if source is None:
        pytest.skip(f"the {engine} engine cannot export its state yet")
    copy = Ledger(engine=engine, clock=clock)
    target = _durable._snapshot_engine(copy._engine)
    assert target is not None
    target.import_state(source.export_state())
    copy._advance(ledger._timestamp, 1)
    copy._expired_through = ledger._expired_through
    assert target.export_state() == source.export_state()
    assert probe(copy) == probe(ledger)


# -- many callers at once ---------------------------------------------------------------------


def test_callers_arriving_together_share_one_flush(tmp_path: Path, slow_fsync: list[int]) -> None:
    threads, per_thread = 16, 10
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        flushed = len(slow_fsync)
        results: dict[int, Any] = {}
        barrier = threading.Barrier(threads)

        def post(worker: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                id_ = 1000 + worker * per_thread + i
                results[id_] = ledger.create_transfers([transfer(id_, 1, 2, 1)])

        run_threads(threads, post)
        flushes = len(slow_fsync) - flushed
    assert len(results) == threads * per_thread
    assert all(r[0].status == T.CREATED for r in results.values())
    assert flushes < threads * per_thread / 2, f"{flushes} flushes for {len(results)} batches"


def create_behind_one_hold(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, Any]]
) -> dict[int, Any]:
    """Has one thread per call create its batch, all of them waiting for one hold of the append
    lock: the first leads and waits at a gate until every other one has queued behind it.
    Returns each call's results as (status, timestamp) pairs, or the exception it raised."""
    gate = threading.Event()
    real_hold = _durable.Durable.hold

    def held_at_the_gate(self: Any, ledger: Ledger) -> None:
        gate.wait(5)
        real_hold(self, ledger)

    monkeypatch.setattr(_durable.Durable, "hold", held_at_the_gate)
    got: dict[int, Any] = {}

    def call(n: int, kind: str, events: Any) -> None:
        try:
            got[n] = [
                (int(r.status), r.timestamp) for r in getattr(ledger, f"create_{kind}")(events)
            ]
        except BaseException as error:
            got[n] = error

    callers = []
    for n, (kind, events) in enumerate(calls):
        callers.append(threading.Thread(target=call, args=(n, kind, events)))
        callers[-1].start()
        wait_for(lambda n=n: len(ledger._waiting) == n + 1, f"caller {n} did not queue")
    gate.set()
    for caller in callers:
        caller.join()
    monkeypatch.setattr(_durable.Durable, "hold", real_hold)
    return got


def created_alone(reference: Ledger, calls: list[tuple[str, Any]]) -> dict[int, Any]:
    """What each call gets from `reference`, one after the other."""
    return {
        n: [(int(r.status), r.timestamp) for r in getattr(reference, f"create_{kind}")(events)]
        for n, (kind, events) in enumerate(calls)
    }


def test_callers_that_wait_for_one_hold_share_a_batch_and_get_what_each_would_alone(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    linked, imported = fastledger.TransferFlags.LINKED, fastledger.TransferFlags.IMPORTED
    calls: list[tuple[str, Any]] = [
        ("transfers", [transfer(10, 1, 2, 5)]),
        ("transfers", pack_transfers([transfer(11, 1, 2, 1), transfer(12, 2, 9, 1)])),
        # An open chain at the end of a caller's batch ends there, shared or not.
        ("transfers", [transfer(13, 1, 2, 1, flags=linked)]),
        ("transfers", [transfer(14, 1, 2, 1)]),
        ("accounts", [account(5)]),
        # A batch that imports is judged as a batch of its own.
        ("transfers", [transfer(15, 1, 2, 1, flags=imported, timestamp=1)]),
        ("transfers", [transfer(16, 1, 2, 1), transfer(10, 1, 2, 5)]),
    ]
    # A clock that stands still: every batch is stamped right after the one before, shared
    # or not, so the results of the two ledgers must be the same to the nanosecond.
    reference = Ledger(engine=engine, clock=FakeClock())
    reference.create_accounts([account(1), account(2)])
    expected = created_alone(reference, calls)
    with Ledger.open(tmp_path, engine=engine, clock=FakeClock()) as ledger:
        ledger.create_accounts([account(1), account(2)])
        batches_before = ledger.metrics().journal_batches
        assert create_behind_one_hold(ledger, monkeypatch, calls) == expected
        # The first three share a batch; the accounts, the import and what follows it do not.
        assert ledger.metrics().journal_batches - batches_before == 5
        assert ledger.metrics().create_transfers.calls == 6
    with Ledger.open(tmp_path, engine=engine) as reopened:
        ids = list(range(1, 17))
        assert reopened.lookup_accounts(ids) == reference.lookup_accounts(ids)
        assert reopened.lookup_transfers(ids) == reference.lookup_transfers(ids)


def test_callers_whose_shared_batch_would_pass_an_expiry_go_one_by_one(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch releases the reservations that expired by its first timestamp: a reservation
    expiring at the second caller's timestamp is released for it alone, and must be so when
    the two wait for one hold too."""

    def reserve_until_the_next_two_stamps(ledger: Ledger, clock: FakeClock) -> None:
        limited = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        ledger.create_accounts([account(1, flags=limited), account(2), account(3), account(4)])
        ledger.create_transfers([transfer(10, 2, 1, 10)])
        # Reserves all that account 1 may spend, for one second.
        [reserved] = ledger.create_transfers([pending(11, 1, 2, 10, timeout=1)])
        # Stamped next: a batch of accounts, which expires nothing, just before the expiry.
        clock.now_ns = reserved.timestamp + 1_000_000_000 - 2
        ledger.create_accounts([account(5)])

    # The first is stamped a nanosecond before the expiry, the second at it.
    calls = [("transfers", [transfer(12, 3, 4, 1)]), ("transfers", [transfer(13, 1, 2, 5)])]
    clock = FakeClock()
    reference = Ledger(engine=engine, clock=clock)
    reserve_until_the_next_two_stamps(reference, clock)
    expected = created_alone(reference, calls)
    assert [status for status, _ in expected[1]] == [T.CREATED]
    clock = FakeClock()
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        reserve_until_the_next_two_stamps(ledger, clock)
        assert create_behind_one_hold(ledger, monkeypatch, calls) == expected


def test_an_interrupt_while_a_leader_hands_out_shared_results_applies_nothing_twice(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller whose shared batch was applied, but that got no answer, must not try it again:
    the ledger fails instead, and the journal holds each event once."""
    real_records = _ledger._result_records
    handed: list[int] = []

    def interrupted_records(kind: Any, answer: Any) -> Any:
        handed.append(1)
        if len(handed) == 2:
            raise KeyboardInterrupt
        return real_records(kind, answer)

    with Ledger.open(tmp_path, engine=engine) as ledger:
        ledger.create_accounts([account(1), account(2)])
        before = ledger.sequence
        monkeypatch.setattr(_ledger, "_result_records", interrupted_records)
        calls = [("transfers", [transfer(20 + n, 1, 2, 1)]) for n in range(3)]
        got = create_behind_one_hold(ledger, monkeypatch, calls)
        # The leader is interrupted; the callers it had no answer for meet the failed ledger.
        assert isinstance(got[0], KeyboardInterrupt), got[0]
        assert all(isinstance(got[n], JournalWriteError) for n in (1, 2)), got
    with Ledger.open(tmp_path, engine=engine) as reopened:
        assert reopened.sequence == before + 1
        assert [t.id for t in reopened.lookup_transfers([20, 21, 22])] == [20, 21, 22]


def run_threads(count: int, target: Any) -> None:
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            target(worker)
        except BaseException as error:
            errors.append(error)
            raise

    workers = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors


def test_sixteen_threads_posting_and_reading_lose_nothing(
    clock: FakeClock, engine: str, tmp_path: Path
) -> None:
    accounts = 20
    with Ledger.open(tmp_path, engine=engine, clock=clock, snapshot_every=40) as ledger:
        ledger.create_accounts([account(i) for i in range(1, accounts + 1)])
        results: dict[int, CreateTransferStatus] = {}

        def work(worker: int) -> None:
            rng = random.Random(worker)
            for n in range(30):
                first = 10_000 * (worker + 1) + 10 * n
                batch = [
                    transfer(first + k, *rng.sample(range(1, accounts + 1), 2), rng.randint(1, 9))
                    for k in range(rng.randint(1, 5))
                ]
                for t, r in zip(batch, ledger.create_transfers(batch), strict=True):
                    results[t.id] = r.status
                if n % 3 == 0:
                    assert ledger.trial_balance(1).balanced
                    seen = ledger.lookup_transfers([t.id for t in batch])
                    assert [t.id for t in seen] == [t.id for t in batch]

        run_threads(16, work)
        expected = probe(ledger)
    assert set(results.values()) == {T.CREATED}
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        assert probe(ledger) == expected
        assert len(ledger.lookup_transfers(list(results))) == len(results)
    report = verify(tmp_path)
    assert report.ok and report.transfers == len(results), report.summary()


# -- asyncio ----------------------------------------------------------------------------------


def test_async_calls_share_flushes_and_never_block_the_loop(
    tmp_path: Path, slow_fsync: list[int]
) -> None:
    async def main() -> tuple[list[Any], int, int]:
        async with await AsyncLedger.open(tmp_path, engine="python") as ledger:
            await ledger.create_accounts([account(1), account(2)])
            flushed = len(slow_fsync)
            ticks = 0
            done = False

            async def ticker() -> None:
                nonlocal ticks
                while not done:
                    ticks += 1
                    await asyncio.sleep(0.001)

            ticking = asyncio.create_task(ticker())
            results = await asyncio.gather(
                *(ledger.create_transfers([transfer(100 + i, 1, 2, 1)]) for i in range(64))
            )
            done = True
            await ticking
            return results, len(slow_fsync) - flushed, ticks

    results, flushes, ticks = asyncio.run(main())
    assert [r[0].status for r in results] == [T.CREATED] * 64
    assert flushes < 32 and ticks > 1
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert len(ledger.lookup_transfers(list(range(100, 164)))) == 64
        # The 64 calls run on as many threads, in whichever order they take the ledger's lock.
        posted = ledger.get_account_transfers(AccountFilter(account_id=1))
        assert sorted(t.id for t in posted) == list(range(100, 164))


# -- a failed write ---------------------------------------------------------------------------


def test_a_failed_flush_fails_the_ledger_until_it_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(tmp_path, engine="python")
    ledger.create_accounts([account(1), account(2)])

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_platform, "fsync_file", broken)
    with pytest.raises(JournalWriteError, match="retry them with the same ids"):
        ledger.create_transfers([transfer(10, 1, 2, 1)])
    with pytest.raises(JournalWriteError):
        ledger.lookup_accounts([1])
    ledger.close()
    monkeypatch.undo()
    with Ledger.open(tmp_path, engine="python") as ledger:
        # The write itself went through, only its flush failed: the retry finds it.
        assert ledger.create_transfers([transfer(10, 1, 2, 1)])[0].status == T.EXISTS


class InterceptedEngine:
    """The wrapped engine, except that each create of transfers first calls `before`: the
    ledger has queued the batch for the journal by then."""

    def __init__(self, inner: Any, before: Callable[[], None]) -> None:
        self._inner = inner
        self._before = before

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if not name.startswith("create_transfers"):
            return method

        def create(*args: Any) -> Any:
            self._before()
            return method(*args)

        return create


def raising(error: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise error

    return raise_it


@pytest.mark.parametrize("packed", [False, True], ids=["objects", "packed"])
def test_an_engine_failing_on_a_journaled_batch_fails_the_ledger_until_it_is_opened_again(
    engine: str, tmp_path: Path, packed: bool
) -> None:
    ledger = Ledger.open(tmp_path, engine=engine)
    ledger.create_accounts([account(1), account(2)])
    ledger.create_transfers([transfer(10, 1, 2, 1)])
    batch = [transfer(11, 1, 2, 5), transfer(12, 2, 1, 2)]
    ledger._engine = InterceptedEngine(ledger._engine, raising(RuntimeError("engine bug")))
    with pytest.raises(JournalWriteError, match="open the ledger again") as failed:
        ledger.create_transfers(pack_transfers(batch) if packed else batch)
    assert isinstance(failed.value.__cause__, RuntimeError)
    with pytest.raises(JournalWriteError, match="the engine failed on batch 3"):
        ledger.lookup_transfers([10])
    with pytest.raises(JournalWriteError, match="the engine failed on batch 3"):
        ledger.create_transfers([transfer(13, 1, 2, 1)])
    ledger.close()
    with Ledger.open(tmp_path, engine=engine) as ledger:
        # The journal holds the batch the engine failed on: reopening applies it whole, and
        # a retry with the same ids finds it.
        assert [t.id for t in ledger.lookup_transfers([10, 11, 12, 13])] == [10, 11, 12]
        assert [r.status for r in ledger.create_transfers(batch)] == [T.EXISTS, T.EXISTS]
        (first,) = ledger.lookup_accounts([1])
        assert (first.debits_posted, first.credits_posted) == (6, 2)
        assert ledger.trial_balance(1).balanced
    report = verify(tmp_path)
    assert report.ok and report.transfers == 3, report.summary()


def test_an_interrupt_during_a_journaled_batch_goes_on_and_fails_the_ledger(
    tmp_path: Path,
) -> None:
    ledger = Ledger.open(tmp_path, engine="python")
    ledger.create_accounts([account(1), account(2)])
    ledger._engine = InterceptedEngine(ledger._engine, raising(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ledger.create_transfers([transfer(10, 1, 2, 1)])
    with pytest.raises(JournalWriteError, match="open the ledger again"):
        ledger.create_transfers([transfer(11, 1, 2, 1)])
    ledger.close()
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert [t.id for t in ledger.lookup_transfers([10, 11])] == [10]


def test_the_journal_writes_a_batch_while_the_engine_applies_it(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed, real = threading.Event(), _platform.fsync_file

    def sync(fd: int) -> None:
        real(fd)
        flushed.set()

    def wait_for_the_flush() -> None:
        assert flushed.wait(5), "the journal waited for the engine to write the batch"

    with Ledger.open(tmp_path, engine=engine) as ledger:
        ledger.create_accounts([account(1), account(2)])
        monkeypatch.setattr(_platform, "fsync_file", sync)
        ledger._engine = InterceptedEngine(ledger._engine, wait_for_the_flush)
        assert ledger.create_transfers([transfer(10, 1, 2, 1)])[0].status == T.CREATED
    with Ledger.open(tmp_path, engine=engine) as ledger:
        assert [t.id for t in ledger.lookup_transfers([10])] == [10]


def test_the_package_exports_the_durability_api() -> None:
    for name in (
        "AsyncLedger",
        "JournalCorruptError",
        "JournalOutcomeUnknownError",
        "JournalWriteError",
        "LedgerClosedError",
        "LedgerForkedError",
        "ReadOnlyLedgerError",
    ):
        assert name in fastledger.__all__
    assert issubclass(fastledger.JournalCorruptError, fastledger.FastledgerError)
    assert Transfer is fastledger.Transfer


def test_a_snapshot_rewritten_with_fresh_checksums_is_skipped_and_reported(
    engine: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A party that rewrites a snapshot's state and recomputes its checksums gets it refused:
    the engines import only a state that hangs together, the journal decides, and verify
    reports the snapshot."""
    with Ledger.open(tmp_path, engine=engine, snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        ledger.create_transfers([transfer(10, 1, 2, 5)])
        assert ledger.snapshot()
        expected = probe(ledger)
    [name] = snapshot_files(tmp_path)
    journal = DirectoryJournal(tmp_path, read_only=True)
    snapshots = Snapshots(str(tmp_path), journal.header.ledger_id, journal.checksums)
    journal.close()
    snapshot = snapshots.read(str(tmp_path / name))
    state = bytearray(snapshot.state)
    found = state.find((5).to_bytes(16, "little"))
    assert found > 0, "a balance of 5 is in the state"
    state[found] = 50
    (tmp_path / name).unlink()
    snapshots.write(dataclasses.replace(snapshot, state=bytes(state)))
    with caplog.at_level(logging.WARNING), Ledger.open(tmp_path, engine=engine) as ledger:
        assert probe(ledger) == expected
    assert "skipping snapshot" in caplog.text
    report = verify(tmp_path)
    assert not report.ok, report.summary()
