"""What the journal in PostgreSQL costs, at the journal's interface (no engine applies anything):

- appends of full batches (8189 transfers, about 1 MiB) from 1 and from N processes at once,
  each append under the lock after catching up on what the others appended, as a ledger does;
- appends of single-transfer batches, one at a time;
- how soon after an append's commit returned a follower process wakes from `wait`.

    python benches/postgres_journal.py --url postgresql://postgres@127.0.0.1:55432/postgres

The URL defaults to FASTLEDGER_POSTGRES_URL. Each run uses tables of its own, dropped after.
The server's settings decide what a commit costs: print them with the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import time
from typing import Any

import psycopg

from fastledger import BATCH_MAX, Transfer
from fastledger._records import pack_transfers
from fastledger.journal.format import KIND_TRANSFERS
from fastledger.journal.postgres import PostgresJournal

DEFAULT_URL = "postgresql://postgres@127.0.0.1:55432/postgres"
BODIES = 4


def bodies(count: int, seed: int) -> list[bytes]:
    """A few batches of `count` transfers with random 128-bit ids, to append in turn."""
    rng = random.Random(seed)
    return [
        pack_transfers(
            [
                Transfer(
                    id=rng.getrandbits(128) | 1,
                    debit_account_id=rng.randint(1, 10_000),
                    credit_account_id=rng.randint(10_001, 20_000),
                    amount=rng.randint(1, 10**9),
                    ledger=1,
                    code=1,
                )
                for _ in range(count)
            ]
        )
        for _ in range(BODIES)
    ]


def append_for(url: str, count: int, seconds: float, seed: int, start_at: float) -> dict[str, Any]:
    """Appends batches of `count` transfers for `seconds`; how long each append waited for the
    lock, caught up, and wrote."""
    journal = PostgresJournal.open(url)
    records = bodies(count, seed)
    tip = journal.header.empty_tip(journal.checksums)
    spans_ns: dict[str, list[int]] = {"lock": [], "catch-up": [], "write": []}
    time.sleep(max(0.0, start_at - time.time()))
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        began = time.perf_counter_ns()
        journal.lock()
        locked = time.perf_counter_ns()
        for batch in journal.read(tip, locked=True):
            tip = batch.tip
        caught_up = time.perf_counter_ns()
        body = records[len(spans_ns["write"]) % BODIES]
        tip = journal.write([(tip.sequence + 1, KIND_TRANSFERS, tip.sequence + 1, body)], tip)[-1]
        written = time.perf_counter_ns()
        journal.unlock()
        spans_ns["lock"].append(locked - began)
        spans_ns["catch-up"].append(caught_up - locked)
        spans_ns["write"].append(written - caught_up)
    journal.close()
    return {"spans_ns": spans_ns, "bytes": len(records[0]) + 128}


def appenders(url: str, processes: int, count: int, seconds: float) -> None:
    start_at = time.time() + 2.0
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(
            append_for, [(url, count, seconds, p, start_at) for p in range(processes)]
        )
    appends = sum(len(r["spans_ns"]["write"]) for r in results)
    size = results[0]["bytes"]
    spans = ", ".join(
        f"{span} p50 {ms(merged, 50)} p99 {ms(merged, 99)}"
        for span in ("lock", "catch-up", "write")
        for merged in [sorted(ns for r in results for ns in r["spans_ns"][span])]
    )
    print(
        f"  {processes} process(es), batches of {count}: {appends / seconds:,.0f} appends/s, "
        f"{appends * count / seconds:,.0f} transfers/s, {appends * size / seconds / 2**20:,.0f} "
        f"MiB/s; {spans}"
    )


def ms(sorted_ns: list[int], percentile: int) -> str:
    return f"{sorted_ns[min(len(sorted_ns) - 1, len(sorted_ns) * percentile // 100)] / 1e6:.2f} ms"


def follow(url: str, ready: Any, woken: Any, batches: int) -> None:
    """Waits for each batch in turn and says when it woke, by the machine's monotonic clock."""
    journal = PostgresJournal.open(url, read_only=True)
    tip = journal.header.empty_tip(journal.checksums)
    ready.set()
    while tip.sequence < batches:
        if journal.wait(tip, 5.0):
            now = time.monotonic_ns()
            for batch in journal.read(tip, locked=False):
                tip = batch.tip
                woken.put((batch.sequence, now))
    journal.close()


def follower_latency(url: str, batches: int) -> None:
    context = multiprocessing.get_context("spawn")
    journal = PostgresJournal.open(url)
    ready, woken = context.Event(), context.Queue()
    follower = context.Process(target=follow, args=(url, ready, woken, batches))
    follower.start()
    ready.wait()
    time.sleep(0.5)
    body = bodies(1, 0)[0]
    tip = journal.header.empty_tip(journal.checksums)
    committed: dict[int, int] = {}
    for _ in range(batches):
        journal.lock()
        tip = journal.write([(tip.sequence + 1, KIND_TRANSFERS, tip.sequence + 1, body)], tip)[-1]
        committed[tip.sequence] = time.monotonic_ns()
        journal.unlock()
        # Apart, so that each wake-up is measured alone rather than batched with the next.
        time.sleep(0.005)
    latencies = sorted(max(0, woke - committed[s]) for s, woke in (woken.get() for _ in committed))
    follower.join()
    journal.close()
    print(f"  follower wakes after a commit: p50 {ms(latencies, 50)} p99 {ms(latencies, 99)}")


def fresh(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}table=bench_{secrets.token_hex(4)}"


def drop(url: str, table_url: str) -> None:
    table = table_url.rsplit("table=", 1)[1]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}_batches, {table}_head")


def settings(url: str) -> str:
    with psycopg.connect(url) as connection:
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        return ", ".join(
            f"{name}={connection.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in names
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("FASTLEDGER_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--follower-batches", type=int, default=500)
    args = parser.parse_args()
    print(f"server: {settings(args.url)}")
    runs = [(p, BATCH_MAX) for p in args.processes] + [(1, 1)]
    for processes, count in runs:
        url = fresh(args.url)
        try:
            appenders(url, processes, count, args.seconds)
        finally:
            drop(args.url, url)
    url = fresh(args.url)
    try:
        follower_latency(url, args.follower_batches)
    finally:
        drop(args.url, url)


if __name__ == "__main__":
    main()
