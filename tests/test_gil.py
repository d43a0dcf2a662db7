"""The Rust engine releases the GIL while it works on a batch of 64 events or more, and leaves
the interpreter's state as it found it."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

import fastledger
from fastledger import Account, Transfer
from fastledger.packed import transfers_from_columns

from .conftest import require_engine


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    """With a long switch interval, another thread runs only when the GIL is released, so
    progress seen during a call proves that the call released it."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("long_switch_interval")
def test_another_thread_makes_progress_while_a_batch_is_posted() -> None:
    require_engine("rust")
    ledger = fastledger.Ledger(engine="rust")
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    count = fastledger.BATCH_MAX
    batches = [
        transfers_from_columns(
            id=np.arange(n * count + 1, (n + 1) * count + 1, dtype=np.uint64),
            debit_account_id=np.full(count, 1, dtype=np.uint64),
            credit_account_id=np.full(count, 2, dtype=np.uint64),
            amount=np.full(count, 1, dtype=np.uint64),
            ledger=np.full(count, 1, dtype=np.uint32),
            code=np.full(count, 1, dtype=np.uint16),
        )
        # Enough batches that a busy machine schedules the other thread during one of them.
        for n in range(12)
    ]
    ticks: list[int] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter_ns())

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.01)  # The counter waits for the GIL; the long interval keeps it waiting.
    inside: list[int] = []
    for batch in batches:
        start = time.perf_counter_ns()
        results = ledger.create_transfers(batch)
        end = time.perf_counter_ns()
        assert results.all_created()
        inside += [t for t in ticks if start < t < end]
        if inside:
            break
    stop.set()
    counter.join()
    assert inside, "no tick of the other thread fell inside a call: the GIL was held"


@pytest.mark.parametrize("enabled", [True, False])
def test_posting_leaves_the_garbage_collector_as_it_found_it(engine: str, enabled: bool) -> None:
    # The Rust engine pauses the collector while it makes a batch's results.
    ledger = fastledger.Ledger(engine=engine)
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    batch = [
        Transfer(id=i, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)
        for i in range(1, 3_000)
    ]
    (gc.enable if enabled else gc.disable)()
    try:
        results = ledger.create_transfers(batch)
        after = gc.isenabled()
    finally:
        gc.enable()
    assert after is enabled
    assert len(results) == len(batch)


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_a_single_call_gets_in_between_large_batches_posted_back_to_back(engine: str) -> None:
    """The ledger's lock favours no one, so a thread posting large batches back to back took
    it again before a waiting single call could: that call waited behind the whole load. A
    large batch now lets a waiting caller in before it takes the lock again."""
    require_engine(engine)
    ledger = fastledger.Ledger(engine=engine)
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    count, batches = (8189, 60) if engine == "rust" else (1024, 20)
    load = [
        transfers_from_columns(
            id=np.arange(n * count + 1, (n + 1) * count + 1, dtype=np.uint64),
            debit_account_id=np.ones(count, dtype=np.uint64),
            credit_account_id=np.full(count, 2, dtype=np.uint64),
            amount=np.ones(count, dtype=np.uint64),
            ledger=np.ones(count, dtype=np.uint32),
            code=np.ones(count, dtype=np.uint16),
        )
        for n in range(batches)
    ]
    posted = [0]
    started = threading.Event()

    def post() -> None:
        for batch in load:
            ledger.create_transfers(batch)
            posted[0] += 1
            started.set()

    poster = threading.Thread(target=post)
    poster.start()
    started.wait(5)
    waited = []
    for n in range(5):
        before = posted[0]
        single = Transfer(
            id=10**9 + n, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1
        )
        ledger.create_transfers([single])
        waited.append(posted[0] - before)
    poster.join()
    # Each call waits for the batch in flight, and maybe the next: never for a tenth of them.
    assert max(waited) < batches // 10, waited
