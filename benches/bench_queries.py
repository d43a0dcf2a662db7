"""Queries over a large ledger: point-in-time balances of every account, and one account's
latest transfers.

Each engine gets one ledger per module, built with packed batches: ACCOUNTS accounts and
FASTLEDGER_BENCH_QUERY_TRANSFERS transfers (default 1,000,000) between random accounts, one in
ten of them to or from the busy account 1, so that it has a tenth of all transfers. One in a
hundred transfers is pending, and a later one in its batch posts it. Building the Python
engine's ledger takes a while (tens of seconds for a million transfers); the timed queries do
not include it.

pytest-benchmark's table shows means and their ratio between the engines; the latency
percentiles of `get_account_transfers` (from a loop of LATENCY_CALLS calls timed one by one)
go to the benchmark's extra_info, which `--benchmark-json` keeps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from fastledger import (
    AMOUNT_MAX,
    BATCH_MAX,
    AccountFilter,
    AccountFilterFlags,
    Ledger,
    TransferFlags,
)
from fastledger.packed import accounts_from_columns, transfers_from_columns

ACCOUNTS = 100_000
TRANSFERS = int(os.environ.get("FASTLEDGER_BENCH_QUERY_TRANSFERS", "1000000"))
BUSY_ACCOUNT = 1
BUSY_EVERY = 10
PENDING_EVERY = 100
LATENCY_CALLS = 10_000
SEED = 42

_ledgers: dict[str, Ledger] = {}


def account_batches() -> Iterator[Any]:
    for first in range(1, ACCOUNTS + 1, BATCH_MAX):
        ids = np.arange(first, min(first + BATCH_MAX, ACCOUNTS + 1), dtype=np.uint64)
        ones = np.ones(len(ids), dtype=np.uint64)
        yield accounts_from_columns(id=ids, ledger=ones, code=ones)


def transfer_batches() -> Iterator[Any]:
    """TRANSFERS transfers in batches of BATCH_MAX: each batch's last hundredth posts its first
    transfers, which are pending; the others move 1..1000 between two random accounts, the
    busy one in one of every BUSY_EVERY."""
    rng = np.random.default_rng(SEED)
    for first in range(1, TRANSFERS + 1, BATCH_MAX):
        size = min(BATCH_MAX, TRANSFERS + 1 - first)
        posts = size // PENDING_EVERY
        ids = np.arange(first, first + size - posts, dtype=np.uint64)
        count = len(ids)
        debit = rng.integers(2, ACCOUNTS + 1, count, dtype=np.uint64)
        credit = rng.integers(2, ACCOUNTS, count, dtype=np.uint64)
        credit = np.where(credit >= debit, credit + 1, credit)
        busy = ids % BUSY_EVERY == 0
        debit = np.where(busy & (ids % 2 == 0), BUSY_ACCOUNT, debit)
        credit = np.where(busy & (ids % 2 == 1), BUSY_ACCOUNT, credit)
        flags = np.zeros(count, dtype=np.uint16)
        flags[:posts] = int(TransferFlags.PENDING)
        ones = np.ones(count, dtype=np.uint64)
        transfers = transfers_from_columns(
            id=ids,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=rng.integers(1, 1001, count, dtype=np.uint64),
            ledger=ones,
            code=ones,
            flags=flags,
        )
        post_ids = np.arange(first + count, first + size, dtype=np.uint64)
        yield np.concatenate([transfers, posts_of(ids[:posts], post_ids)])


def posts_of(pending_ids: Any, ids: Any) -> Any:
    """Posts of the whole amount of each pending transfer."""
    count = len(pending_ids)
    return transfers_from_columns(
        id=ids,
        pending_id=pending_ids,
        amount=np.array([[AMOUNT_MAX & (2**64 - 1), AMOUNT_MAX >> 64]] * count, dtype=np.uint64),
        flags=np.full(count, int(TransferFlags.POST_PENDING_TRANSFER), dtype=np.uint16),
    )


def large_ledger(engine: str) -> Ledger:
    """The module's ledger of `engine`, built on first use."""
    if engine not in _ledgers:
        ledger = Ledger(engine=engine)
        for batch in account_batches():
            assert ledger.create_accounts(batch).all_created()
        for batch in transfer_batches():
            assert ledger.create_transfers(batch).all_created()
        _ledgers[engine] = ledger
    return _ledgers[engine]


def latest_timestamp(ledger: Ledger) -> int:
    latest = ledger.get_account_transfers(
        AccountFilter(account_id=BUSY_ACCOUNT, limit=1, flags=_BOTH | AccountFilterFlags.REVERSED)
    )
    return latest[0].timestamp


_BOTH = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS


def test_balances_at_every_account(benchmark: BenchmarkFixture, engine: str) -> None:
    ledger = large_ledger(engine)
    at = latest_timestamp(ledger)
    benchmark.group = (
        f"balances_at(timestamp), every account: {ACCOUNTS:,} accounts, {TRANSFERS:,} transfers"
    )
    rounds = 2 if engine == "python" else 20
    balances = benchmark.pedantic(ledger.balances_at, args=(at,), rounds=rounds)  # type: ignore[no-untyped-call]
    assert len(balances) == ACCOUNTS
    benchmark.extra_info["accounts"] = len(balances)
    benchmark.extra_info["transfers"] = TRANSFERS


def test_get_account_transfers_of_a_busy_account(benchmark: BenchmarkFixture, engine: str) -> None:
    """The latest 100 transfers of an account with a tenth of all transfers, newest first."""
    ledger = large_ledger(engine)
    f = AccountFilter(account_id=BUSY_ACCOUNT, limit=100, flags=_BOTH | AccountFilterFlags.REVERSED)
    benchmark.group = (
        f"get_account_transfers, limit 100, of an account with {TRANSFERS // BUSY_EVERY:,} "
        f"transfers"
    )
    found = benchmark(ledger.get_account_transfers, f)
    assert len(found) == 100
    latencies_ns = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter_ns()
        ledger.get_account_transfers(f)
        latencies_ns.append(time.perf_counter_ns() - start)
    latencies_ns.sort()
    benchmark.extra_info["latency_us_p50"] = latencies_ns[LATENCY_CALLS // 2] / 1000
    benchmark.extra_info["latency_us_p99"] = latencies_ns[LATENCY_CALLS * 99 // 100] / 1000
    benchmark.extra_info["latency_calls"] = LATENCY_CALLS


@pytest.fixture(autouse=True, scope="module")
def _release_ledgers() -> Iterator[None]:
    yield
    _ledgers.clear()
