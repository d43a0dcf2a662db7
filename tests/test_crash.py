"""Killing a process that posts durable batches, at random moments: after every reopen each
acknowledged transfer is there, no batch is half applied, and every ledger balances."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fastledger
from fastledger import Ledger
from fastledger._verify import verify

ROUNDS = 8
ACCOUNTS = 10

# The child: four threads post batches of 1..7 transfers with ids that say which batch they
# belong to; each prints TRY before a batch and ACK once the call returned, flushing at once.
CHILD = """
import sys, threading
import fastledger
from fastledger import Account, CreateTransferStatus, Transfer

path, engine, base, accounts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ledger = fastledger.Ledger.open(path, engine=engine, snapshot_every=20)
ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in range(1, accounts + 1)])
say_lock = threading.Lock()

def say(line):
    with say_lock:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

def work(worker):
    for n in range(1_000_000):
        first, count = base + worker * 1_000_000 + n * 10, 1 + n % 7
        batch = [
            Transfer(id=first + k, debit_account_id=1 + (first + k) % accounts,
                     credit_account_id=1 + (first + k + 1) % accounts, amount=1 + k,
                     ledger=1, code=1)
            for k in range(count)
        ]
        say(f"TRY {first} {count}")
        results = ledger.create_transfers(batch)
        assert all(r.status == CreateTransferStatus.CREATED for r in results), results
        say(f"ACK {first} {count}")

say("READY")
threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def engines() -> list[str]:
    return ["python", "rust"] if fastledger.rust_engine_available() else ["python"]


def run_and_kill(path: Path, engine: str, base: int, rng: random.Random) -> list[str]:
    """Runs the child until it has posted for a random while, kills it, returns its lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), engine, str(base), str(ACCOUNTS)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            ready.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert ready.wait(20), "the child never started"
    time.sleep(rng.uniform(0.02, 0.3))
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    # A line cut short by the kill was never fully said.
    return [line.strip() for line in lines if line.endswith("\n")]


def check(ledger: Ledger, lines: list[str], acknowledged: set[int]) -> None:
    tried: list[range] = []
    for line in lines:
        word, first, count = line.split() if line != "READY" else ("", "0", "0")
        batch = range(int(first), int(first) + int(count))
        if word == "TRY":
            tried.append(batch)
        elif word == "ACK":
            acknowledged.update(batch)
    for batch in tried:
        present = len(ledger.lookup_transfers(list(batch)))
        assert present in (0, len(batch)), f"batch {batch} is half applied: {present}"
    ids = sorted(acknowledged)
    for i in range(0, len(ids), 8000):
        chunk = ids[i : i + 8000]
        assert len(ledger.lookup_transfers(chunk)) == len(chunk), "an acknowledged transfer is lost"
    assert ledger.trial_balance(1).balanced


def test_killed_writers_lose_no_acknowledged_transfer_and_half_apply_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    acknowledged: set[int] = set()
    kinds = engines()
    for round_ in range(ROUNDS):
        lines = run_and_kill(tmp_path, kinds[round_ % len(kinds)], (round_ + 1) * 10**8, rng)
        assert any(line.startswith("ACK") for line in lines) or round_ == 0
        with Ledger.open(tmp_path, engine=rng.choice(kinds)) as ledger:
            check(ledger, lines, acknowledged)
    assert len(acknowledged) > 100
    report = verify(tmp_path)
    assert report.ok, report.summary()
