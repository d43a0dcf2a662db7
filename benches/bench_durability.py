"""What durability costs: posting with an fsync per batch, many threads sharing group commits,
and reopening a large ledger from its journal alone or from a snapshot.

Each figure that pytest-benchmark's table cannot show (transfers per second, p99 latency) is
put in the benchmark's extra_info, which `--benchmark-json` keeps. The size of the ledger
that the reopen benchmarks build is FASTLEDGER_BENCH_REOPEN_TRANSFERS (default 1,000,000).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from fastledger import BATCH_MAX, Account, Ledger, Transfer
from fastledger._records import pack_transfers

ACCOUNTS = 10_000
DURABLE_BATCHES = 4
ROUNDS = 3
CALLS_PER_THREAD = 100
REOPEN_TRANSFERS = int(os.environ.get("FASTLEDGER_BENCH_REOPEN_TRANSFERS", "1000000"))


def transfers(first_id: int, count: int, seed: int = 42) -> list[Transfer]:
    rng = random.Random(seed)
    result = []
    for id_ in range(first_id, first_id + count):
        debit, credit = rng.sample(range(1, ACCOUNTS + 1), 2)
        result.append(
            Transfer(
                id=id_,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=rng.randint(1, 1000),
                ledger=1,
                code=1,
            )
        )
    return result


def open_with_accounts(path: Path, engine: str, **options: Any) -> Ledger:
    ledger = Ledger.open(path, engine=engine, **options)
    for first in range(1, ACCOUNTS + 1, BATCH_MAX):
        last = min(first + BATCH_MAX, ACCOUNTS + 1)
        ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in range(first, last)])
    return ledger


@pytest.fixture
def directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fastledger-bench-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fresh(directory: Path) -> Path:
    """A new, empty ledger directory under `directory` for one round."""
    path = Path(tempfile.mkdtemp(dir=directory))
    return path / "ledger"


@pytest.mark.parametrize("packed", [False, True], ids=["objects", "packed"])
def test_durable_batches_of_8189(
    benchmark: BenchmarkFixture, engine: str, directory: Path, packed: bool
) -> None:
    """An fsync per create_transfers call of 8189 Transfer objects, or of their packed
    records."""
    count = DURABLE_BATCHES * BATCH_MAX
    batches: list[Any] = [
        transfers(1 + i * BATCH_MAX, BATCH_MAX, seed=i) for i in range(DURABLE_BATCHES)
    ]
    if packed:
        batches = [pack_transfers(batch) for batch in batches]
    what = "packed" if packed else "objects"
    benchmark.group = (
        f"durable create_transfers: {count:,} transfers in batches of {BATCH_MAX} ({what})"
    )

    def setup() -> tuple[tuple[Ledger], dict[str, Any]]:
        return (open_with_accounts(fresh(directory), engine, snapshot_every=None),), {}

    def post(ledger: Ledger) -> None:
        for batch in batches:
            ledger.create_transfers(batch)
        ledger.close()

    benchmark.pedantic(post, setup=setup, rounds=ROUNDS)  # type: ignore[no-untyped-call]
    benchmark.extra_info["transfers_per_s"] = round(count / benchmark.stats.stats.mean)


@pytest.mark.parametrize("threads", [16, 64])
def test_threads_posting_single_transfers(
    benchmark: BenchmarkFixture, engine: str, directory: Path, threads: int
) -> None:
    """Every thread posts one transfer per call, durably; group commit shares the fsyncs."""
    count = threads * CALLS_PER_THREAD
    benchmark.group = f"durable single-transfer calls from {threads} threads: {count:,} calls"
    work = [transfers(1 + t * CALLS_PER_THREAD, CALLS_PER_THREAD, t) for t in range(threads)]
    latencies_ns: list[int] = []

    def setup() -> tuple[tuple[Ledger], dict[str, Any]]:
        latencies_ns.clear()
        return (open_with_accounts(fresh(directory), engine, snapshot_every=None),), {}

    def post(ledger: Ledger) -> None:
        def worker(mine: list[Transfer]) -> None:
            for t in mine:
                start = time.perf_counter_ns()
                ledger.create_transfers([t])
                latencies_ns.append(time.perf_counter_ns() - start)

        pool = [threading.Thread(target=worker, args=(w,)) for w in work]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        ledger.close()

    benchmark.pedantic(post, setup=setup, rounds=ROUNDS)  # type: ignore[no-untyped-call]
    latencies_ns.sort()
    benchmark.extra_info["transfers_per_s"] = round(count / benchmark.stats.stats.mean)
    benchmark.extra_info["latency_us_p50"] = latencies_ns[len(latencies_ns) // 2] // 1000
    benchmark.extra_info["latency_us_p99"] = latencies_ns[len(latencies_ns) * 99 // 100] // 1000


@pytest.fixture(scope="module")
def large_ledger() -> Iterator[dict[str, Path]]:
    """One journal of REOPEN_TRANSFERS transfers, copied with and without a snapshot."""
    root = Path(tempfile.mkdtemp(prefix="fastledger-bench-reopen-"))
    journal_only = root / "journal-only"
    ledger = open_with_accounts(
        journal_only, "python", durability="unsafe_no_fsync", snapshot_every=None
    )
    for first in range(1, REOPEN_TRANSFERS + 1, BATCH_MAX):
        count = min(BATCH_MAX, REOPEN_TRANSFERS + 1 - first)
        ledger.create_transfers(pack_transfers(transfers(first, count, first)))
    ledger.close()
    with_snapshot = root / "with-snapshot"
    shutil.copytree(journal_only, with_snapshot)
    with Ledger.open(with_snapshot, engine="python", snapshot_every=None) as ledger:
        ledger.snapshot()
    yield {"journal": journal_only, "snapshot": with_snapshot}
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("start", ["journal", "snapshot"])
def test_reopen_a_large_ledger(
    benchmark: BenchmarkFixture, engine: str, large_ledger: dict[str, Path], start: str
) -> None:
    """Open replays the whole journal, or imports the snapshot and checksums the journal."""
    benchmark.group = f"reopen: {REOPEN_TRANSFERS:,} transfers, {ACCOUNTS:,} accounts"
    path = large_ledger[start]

    def reopen() -> None:
        Ledger.open(path, engine=engine, snapshot_every=None).close()

    benchmark.pedantic(reopen, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info["journal_bytes"] = (path / "journal").stat().st_size
