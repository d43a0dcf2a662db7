"""The Rust engine releases the GIL while it works on a batch (SPEC section 5)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import pytest

import fastledger
from fastledger import Account, Transfer
from fastledger._records import pack_transfers

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
    batches = [
        pack_transfers(
            [
                Transfer(
                    id=n * 10_000 + i + 1,
                    debit_account_id=1,
                    credit_account_id=2,
                    amount=1,
                    ledger=1,
                    code=1,
                )
                for i in range(fastledger.BATCH_MAX)
            ]
        )
        for n in range(3)
    ]
    ticks: list[int] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter_ns())

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.01)  # The counter waits for the GIL; the long interval keeps it waiting.
    windows = []
    for batch in batches:
        start = time.perf_counter_ns()
        results = ledger.create_transfers(batch)
        windows.append((start, time.perf_counter_ns()))
        assert results.all_created()
    stop.set()
    counter.join()
    inside = [t for t in ticks for start, end in windows if start < t < end]
    assert inside, "no tick of the other thread fell inside a call: the GIL was held"
