"""Posting throughput of both engines: the same transfers, a fresh ledger each round.

The ledger and its accounts are made in each round's setup, outside the timed function; the
transfers are built once per module and shared by the rounds and the engines, which is safe
because records are immutable. Groups put the engines side by side in pytest-benchmark's table.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from fastledger import (
    AMOUNT_MAX,
    BATCH_MAX,
    Account,
    CreateTransferResult,
    CreateTransferStatus,
    Ledger,
    Transfer,
    TransferFlags,
)
from fastledger.packed import PackedResults, transfers_from_columns

ACCOUNTS = 10_000
TRANSFERS = 100_000
BATCH_SIZE = BATCH_MAX
ROUNDS = 3
SEED = 42
AMOUNT_LIMIT = 1000

Batches = list[list[Transfer]]


def random_transfers(count: int, first_id: int = 1, **fields: Any) -> list[Transfer]:
    """`count` transfers of 1..1000 between two different random accounts, with ids from
    `first_id` on; `fields` are set on every one."""
    rng = random.Random(SEED)
    transfers = []
    for id_ in range(first_id, first_id + count):
        debit, credit = rng.sample(range(1, ACCOUNTS + 1), 2)
        amount = rng.randint(1, AMOUNT_LIMIT)
        transfers.append(
            Transfer(
                id=id_,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                ledger=1,
                code=1,
                **fields,
            )
        )
    return transfers


def in_batches(transfers: list[Transfer]) -> Batches:
    return [transfers[i : i + BATCH_SIZE] for i in range(0, len(transfers), BATCH_SIZE)]


def packed(batch: list[Transfer]) -> np.ndarray[Any, Any]:
    """The batch as packed 128-byte records, built from NumPy columns."""
    columns = ("id", "debit_account_id", "credit_account_id", "amount", "ledger", "code")
    return transfers_from_columns(
        **{name: np.array([getattr(t, name) for t in batch], dtype=np.uint64) for name in columns}
    )


@pytest.fixture(scope="module")
def transfer_batches() -> Batches:
    return in_batches(random_transfers(TRANSFERS))


@pytest.fixture(scope="module")
def two_phase_batches() -> Batches:
    """Pending transfers, then a post of the whole amount of each, in that order."""
    pending = random_transfers(TRANSFERS, flags=TransferFlags.PENDING)
    posts = [
        Transfer(
            id=TRANSFERS + p.id,
            pending_id=p.id,
            amount=AMOUNT_MAX,
            flags=TransferFlags.POST_PENDING_TRANSFER,
        )
        for p in pending
    ]
    return in_batches(pending) + in_batches(posts)


def ledger_with_accounts(engine: str) -> Ledger:
    ledger = Ledger(engine=engine)
    ids = range(1, ACCOUNTS + 1)
    for first in range(0, ACCOUNTS, BATCH_MAX):
        accounts = [Account(id=i, ledger=1, code=1) for i in ids[first : first + BATCH_MAX]]
        assert all(r.status.name == "CREATED" for r in ledger.create_accounts(accounts))
    return ledger


def post_all(ledger: Ledger, batches: list[Any]) -> list[Any]:
    """The timed function: every batch, one create_transfers call each."""
    return [ledger.create_transfers(batch) for batch in batches]


def assert_all_created(results: list[list[CreateTransferResult] | PackedResults[Any]]) -> None:
    for batch_results in results:
        if isinstance(batch_results, PackedResults):
            assert batch_results.all_created()
        else:
            assert all(r.status is CreateTransferStatus.CREATED for r in batch_results)


def run(benchmark: BenchmarkFixture, engine: str, batches: list[Any], transfers: int) -> None:
    benchmark.extra_info["transfers"] = transfers

    def setup() -> tuple[tuple[Ledger, list[Any]], dict[str, Any]]:
        return (ledger_with_accounts(engine), batches), {}

    # pytest-benchmark leaves `pedantic` unannotated.
    results = benchmark.pedantic(post_all, setup=setup, rounds=ROUNDS)  # type: ignore[no-untyped-call]
    assert_all_created(results)


def test_create_transfers_objects(
    benchmark: BenchmarkFixture, engine: str, transfer_batches: Batches
) -> None:
    benchmark.group = (
        f"create_transfers, Transfer objects: {TRANSFERS:,} transfers in batches of "
        f"{BATCH_SIZE}, {ACCOUNTS:,} accounts"
    )
    run(benchmark, engine, transfer_batches, TRANSFERS)


def test_create_transfers_packed(
    benchmark: BenchmarkFixture, engine: str, transfer_batches: Batches
) -> None:
    benchmark.group = (
        f"create_transfers, packed records: {TRANSFERS:,} transfers in batches of "
        f"{BATCH_SIZE}, {ACCOUNTS:,} accounts"
    )
    run(benchmark, engine, [packed(batch) for batch in transfer_batches], TRANSFERS)


def test_two_phase_pending_then_post(
    benchmark: BenchmarkFixture, engine: str, two_phase_batches: Batches
) -> None:
    benchmark.group = (
        f"two-phase, Transfer objects: {TRANSFERS:,} pending then {TRANSFERS:,} posts in "
        f"batches of {BATCH_SIZE}, {ACCOUNTS:,} accounts"
    )
    run(benchmark, engine, two_phase_batches, 2 * TRANSFERS)
