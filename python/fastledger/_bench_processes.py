"""`fastledger bench --processes N`: several processes posting into one ledger at once.

Each process opens the same ledger (a directory or a `postgresql://` URL), builds its whole load
before the start, waits for the others, then posts back to back: packed batches from one
thread, or single transfers from `threads` threads. The figures are the aggregate rate over
the span from the first start to the last finish, and the latency of every call.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from ._ledger import Ledger
from ._records import pack_transfers
from ._types import Account, Transfer

__all__ = ["ProcessesReport", "bench_follower", "bench_processes", "random_move"]

LEDGER = 1
CODE = 1
# The largest amount of a bench transfer.
AMOUNT_MAX = 1000


@dataclass(frozen=True, slots=True)
class ProcessesReport:
    processes: int
    threads: int
    transfers: int
    elapsed_ns: int
    latencies_ns: list[int]

    @property
    def transfers_per_s(self) -> float:
        return self.transfers * 1e9 / max(self.elapsed_ns, 1)

    def percentile_ns(self, per_mille: int) -> int:
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, len(ordered) * per_mille // 1000)]


def bench_processes(
    path: str,
    *,
    engine: str,
    processes: int,
    threads: int,
    packed: bool,
    transfers_each: int,
    accounts: int = 10_000,
    batch_size: int = 8189,
    reserve: bool = False,
) -> ProcessesReport:
    """Runs the load and returns its figures; `path` must hold no ledger yet. With `reserve`,
    each process maps the memory of the whole load before the start (`reserve_transfers`):
    every process applies every batch, its own and the others'. Each process (and each thread)
    posts ids of its own range, which come to the journal interleaved, out of order: so the
    reservation includes their index."""
    with Ledger.open(path, engine=engine) as ledger:
        for start in range(1, accounts + 1, batch_size):
            ids = range(start, min(start + batch_size, accounts + 1))
            ledger.create_accounts([Account(id=n, ledger=LEDGER, code=CODE) for n in ids])
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=_worker,
            args=(path, engine, n, threads, packed, transfers_each, accounts, batch_size),
            kwargs={
                "reserved": transfers_each * processes if reserve else 0,
                "ready": ready,
                "results": results,
            },
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    ready.wait()
    reports = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"a posting process failed with exit code {worker.exitcode}")
    start = min(r[0] for r in reports)
    end = max(r[1] for r in reports)
    latencies = [ns for r in reports for ns in r[2]]
    total = sum(r[3] for r in reports)
    return ProcessesReport(processes, threads, total, end - start, latencies)


def _worker(
    path: str,
    engine: str,
    number: int,
    threads: int,
    packed: bool,
    transfers_each: int,
    accounts: int,
    batch_size: int,
    *,
    reserved: int,
    ready: threading.Barrier,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    rng = random.Random(number)
    first_id = 10**12 * (number + 1)
    with Ledger.open(path, engine=engine) as ledger:
        if packed:
            loads = [_packed_batches(rng, first_id, transfers_each, accounts, batch_size)]
        else:
            each = transfers_each // threads
            loads = [
                _single_transfers(rng, first_id + t * each, each, accounts) for t in range(threads)
            ]
        latencies: list[list[int]] = [[] for _ in loads]
        posters = [
            threading.Thread(target=_post, args=(ledger, load, latencies[n]))
            for n, load in enumerate(loads)
        ]
        if reserved:
            ledger.reserve_transfers(reserved, ids_in_order=False)
        ready.wait()
        start = time.time_ns()
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join()
        end = time.time_ns()
        posted = sum(len(load) for load in loads) if not packed else transfers_each
        results.put((start, end, [ns for part in latencies for ns in part], posted))


def _post(ledger: Ledger, load: list[object], latencies: list[int]) -> None:
    for batch in load:
        start = time.perf_counter_ns()
        ledger.create_transfers(batch)  # type: ignore[call-overload]
        latencies.append(time.perf_counter_ns() - start)


def random_move(rng: random.Random, accounts: int) -> tuple[int, int, int]:
    """The debit account, credit account and amount of a random transfer: 1..1000 between
    two different accounts of 1..accounts. Every load of `fastledger bench` is made of these."""
    debit = int(rng.random() * accounts)
    credit = int(rng.random() * (accounts - 1))
    # Skipping the debit account keeps the credit account uniform over the others.
    if credit >= debit:
        credit += 1
    return debit + 1, credit + 1, 1 + int(rng.random() * AMOUNT_MAX)


def _transfer(rng: random.Random, id_: int, accounts: int) -> Transfer:
    return Transfer(id_, *random_move(rng, accounts), ledger=LEDGER, code=CODE)


def _packed_batches(
    rng: random.Random, first_id: int, count: int, accounts: int, batch_size: int
) -> list[object]:
    return [
        pack_transfers(
            [_transfer(rng, first_id + n, accounts) for n in range(s, min(s + batch_size, count))]
        )
        for s in range(0, count, batch_size)
    ]


def _single_transfers(rng: random.Random, first_id: int, count: int, accounts: int) -> list[object]:
    return [[_transfer(rng, first_id + n, accounts)] for n in range(count)]


def bench_follower(path: str, *, engine: str, batches: int, pause_s: float = 0.002) -> list[int]:
    """How long after a batch was acknowledged a read-only process had applied it: this
    process posts `batches` single transfers, one every `pause_s`, while a follower process
    waits for them; returns each batch's lag in ns (wall clock, the same machine)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    seen = context.Queue()
    with Ledger.open(path, engine=engine) as ledger:
        ledger.create_accounts([Account(id=n, ledger=LEDGER, code=CODE) for n in (1, 2)])
        follower = context.Process(
            target=_follow, args=(path, engine, ledger.sequence + batches, ready, seen)
        )
        follower.start()
        ready.wait()
        acknowledged: dict[int, int] = {}
        for n in range(batches):
            ledger.create_transfers(
                [
                    Transfer(
                        id=10 + n,
                        debit_account_id=1,
                        credit_account_id=2,
                        amount=1,
                        ledger=LEDGER,
                        code=CODE,
                    )
                ]
            )
            acknowledged[ledger.sequence] = time.time_ns()
            time.sleep(pause_s)
        applied: dict[int, int] = seen.get()
        follower.join()
    return [max(0, applied[s] - t) for s, t in acknowledged.items() if s in applied]


def _follow(path: str, engine: str, last: int, ready: Any, seen: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    applied: dict[int, int] = {}
    with Ledger.open(path, engine=engine, read_only=True) as ledger:
        ready.set()
        while ledger.sequence < last:
            before = ledger.sequence
            if ledger.wait_for_batches(before, timeout_s=1.0):
                now = time.time_ns()
                for sequence in range(before + 1, ledger.sequence + 1):
                    applied[sequence] = now
    seen.put(applied)
