"""Packed batches and lookups: the same results and records as with objects,
with no Python object per event, NumPy builders and views, and a clear error for a buffer that
is not whole records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

import fastledger
from fastledger import (
    BATCH_MAX,
    Account,
    AccountFlags,
    BatchTooLargeError,
    CreateTransferStatus,
    RecordTypeError,
    Transfer,
    TransferFlags,
)
from fastledger._records import pack_transfers, unpack_accounts, unpack_transfers
from fastledger.packed import PackedResults, transfer_dtype, transfers_from_columns


def test_packed_lookups_hold_the_records_the_object_lookups_return(
    ledger: fastledger.Ledger,
) -> None:
    ledger.create_accounts(
        [Account(id=i, ledger=1, code=1, flags=AccountFlags.HISTORY) for i in (1, 2, 3)]
    )
    ledger.create_transfers(
        [
            Transfer(
                id=10,
                debit_account_id=1,
                credit_account_id=2,
                amount=2**100,
                ledger=1,
                code=1,
                user_data_128=2**127 + 5,
            ),
            Transfer(
                id=11,
                debit_account_id=2,
                credit_account_id=3,
                amount=7,
                ledger=1,
                code=2,
                flags=TransferFlags.PENDING,
                timeout=60,
            ),
        ]
    )
    ids = [3, 99, 1, 2]
    accounts = ledger.lookup_accounts(ids, packed=True)
    assert len(accounts) == 3
    assert list(unpack_accounts(accounts.buffer)) == ledger.lookup_accounts(ids)
    assert accounts.records() == ledger.lookup_accounts(ids)
    transfers = ledger.lookup_transfers([11, 12, 10], packed=True)
    assert transfers.records() == ledger.lookup_transfers([11, 12, 10])
    assert list(unpack_transfers(transfers.buffer)) == transfers.records()


def test_packed_lookups_view_as_numpy_columns(ledger: fastledger.Ledger) -> None:
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    amount = 2**64 + 3
    ledger.create_transfers(
        [Transfer(id=5, debit_account_id=1, credit_account_id=2, amount=amount, ledger=1, code=4)]
    )
    view = ledger.lookup_transfers([5], packed=True).to_numpy()
    assert view["id"].tolist() == [[5, 0]]
    assert view["amount"].tolist() == [[3, 1]]  # low and high u64 of the u128
    assert view["code"].tolist() == [4]
    accounts = ledger.lookup_accounts([1, 2], packed=True).to_numpy()
    assert accounts["debits_posted"][:, 0].tolist() == [3, 0]
    assert np.all(accounts["ledger"] == 1)


def test_a_packed_lookup_of_nothing_is_empty(ledger: fastledger.Ledger) -> None:
    assert len(ledger.lookup_transfers([1, 2], packed=True)) == 0
    assert ledger.lookup_accounts([], packed=True).records() == []


def test_async_lookups_answer_packed_too(engine: str) -> None:
    async def scenario() -> None:
        async with fastledger.AsyncLedger(fastledger.Ledger(engine=engine)) as ledger:
            await ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
            accounts = await ledger.lookup_accounts([2, 1], packed=True)
            assert accounts.records() == await ledger.lookup_accounts([2, 1])
            transfers = await ledger.lookup_transfers([1], packed=True)
            assert len(transfers) == 0

    asyncio.run(scenario())


# -- Packed batches ---------------------------------------------------------------------------


def test_a_batch_built_from_columns_creates_what_the_same_objects_create(engine: str) -> None:
    # A clock that stands still: both ledgers give the same timestamps.
    packed_ledger = fastledger.Ledger(engine=engine, clock=lambda: 10**12)
    object_ledger = fastledger.Ledger(engine=engine, clock=lambda: 10**12)
    for ledger in (packed_ledger, object_ledger):
        ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    big = 2**64 + 7
    objects = [
        Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=big, ledger=1, code=1),
        Transfer(id=11, debit_account_id=2, credit_account_id=9, amount=1, ledger=1, code=1),
        Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=big, ledger=1, code=1),
    ]
    batch = transfers_from_columns(
        id=[10, 11, 10],
        debit_account_id=[1, 2, 1],
        credit_account_id=[2, 9, 2],
        amount=np.array([[7, 1], [1, 0], [7, 1]], dtype=np.uint64),
        ledger=[1, 1, 1],
        code=[1, 1, 1],
    )
    assert bytes(batch) == pack_transfers(objects)
    packed_results = packed_ledger.create_transfers(batch)
    object_results = object_ledger.create_transfers(objects)
    assert isinstance(packed_results, PackedResults)
    assert packed_results == object_results
    statuses, _ = packed_results.to_numpy()
    assert statuses.tolist() == [
        CreateTransferStatus.CREATED,
        CreateTransferStatus.CREDIT_ACCOUNT_NOT_FOUND,
        CreateTransferStatus.EXISTS,
    ]
    ids = [1, 2, 10, 11]
    assert packed_ledger.lookup_accounts(ids) == object_ledger.lookup_accounts(ids)
    assert packed_ledger.lookup_transfers(ids) == object_ledger.lookup_transfers(ids)


@pytest.mark.parametrize("failing", [None, 0, 4, 8188])
def test_all_created_is_false_when_any_result_of_a_full_batch_failed(
    engine: str, failing: int | None
) -> None:
    ledger = fastledger.Ledger(engine=engine)
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    credits = np.full(8189, 2, dtype=np.uint64)
    if failing is not None:
        credits[failing] = 9
    results = ledger.create_transfers(
        transfers_from_columns(
            id=np.arange(1, 8190, dtype=np.uint64),
            debit_account_id=np.ones(8189, dtype=np.uint64),
            credit_account_id=credits,
            amount=np.ones(8189, dtype=np.uint64),
            ledger=np.ones(8189, dtype=np.uint32),
            code=np.ones(8189, dtype=np.uint16),
        )
    )
    assert isinstance(results, PackedResults)
    assert results.all_created() is (failing is None)
    failed = ledger.metrics().create_transfers.statuses
    assert failed == ({} if failing is None else {"CREDIT_ACCOUNT_NOT_FOUND": 1})


def _transfers_of_every_outcome() -> list[Transfer]:
    def move(id_: int, debit: int, credit: int, **fields: int) -> Transfer:
        return Transfer(
            id=id_, debit_account_id=debit, credit_account_id=credit, ledger=1, code=1, **fields
        )

    return [
        move(10, 1, 2, amount=5),
        move(11, 1, 2, amount=7, flags=TransferFlags.PENDING),
        Transfer(id=12, pending_id=11, amount=2, flags=TransferFlags.POST_PENDING_TRANSFER),
        move(10, 1, 2, amount=5),
        move(13, 1, 2, amount=1, flags=TransferFlags.LINKED),
        move(14, 2, 9, amount=1),
        move(15, 2, 1, amount=3),
    ]


@pytest.mark.parametrize(
    "as_buffer",
    [
        pytest.param(lambda records: records, id="bytes"),
        pytest.param(memoryview, id="a memoryview of bytes"),
        pytest.param(lambda records: memoryview(b"\0" * 128 + records)[128:], id="part of bytes"),
        pytest.param(bytearray, id="bytearray"),
        pytest.param(lambda records: np.frombuffer(records, dtype=transfer_dtype()), id="numpy"),
    ],
)
def test_every_kind_of_buffer_of_the_same_records_creates_what_the_objects_create(
    engine: str, as_buffer: Callable[[bytes], object]
) -> None:
    # Whole bytes objects are read in place by the Rust engine, other buffers copied first.
    packed_ledger = fastledger.Ledger(engine=engine, clock=lambda: 10**12)
    object_ledger = fastledger.Ledger(engine=engine, clock=lambda: 10**12)
    for ledger in (packed_ledger, object_ledger):
        ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    transfers = _transfers_of_every_outcome()
    batch = as_buffer(pack_transfers(transfers))
    packed_results = packed_ledger.create_transfers(batch)  # type: ignore[call-overload]
    assert packed_results == object_ledger.create_transfers(transfers)
    assert len({result.status for result in packed_results}) == 4
    ids = [1, 2, *range(10, 16)]
    assert packed_ledger.lookup_accounts(ids) == object_ledger.lookup_accounts(ids)
    assert packed_ledger.lookup_transfers(ids) == object_ledger.lookup_transfers(ids)


def _one_transfer() -> bytes:
    return pack_transfers(
        [Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)]
    )


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        pytest.param(
            _one_transfer() + b"\0",
            "whole 128-byte records: 129 bytes is 1 records and 1 bytes",
            id="a byte too many",
        ),
        pytest.param(
            bytearray(_one_transfer()[:100]),
            "whole 128-byte records: 100 bytes is 0 records and 100 bytes",
            id="part of a record",
        ),
        pytest.param(
            np.frombuffer(_one_transfer() * 3, dtype=transfer_dtype())[::2],
            "must be C-contiguous",
            id="every other record",
        ),
        pytest.param(3.5, "a buffer of 128-byte records, not float", id="not a buffer"),
    ],
)
def test_a_buffer_that_is_not_whole_records_is_refused_and_changes_nothing(
    ledger: fastledger.Ledger, batch: object, message: str
) -> None:
    ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in (1, 2)])
    with pytest.raises(RecordTypeError, match=message):
        ledger.create_transfers(batch)  # type: ignore[call-overload]
    assert ledger.lookup_transfers([10]) == []
    assert ledger.lookup_accounts([1])[0].debits_posted == 0


def test_a_packed_batch_over_the_limit_is_refused(ledger: fastledger.Ledger) -> None:
    with pytest.raises(BatchTooLargeError):
        ledger.create_transfers(bytes(128 * (BATCH_MAX + 1)))


def test_the_rust_engine_itself_refuses_a_buffer_that_is_not_contiguous() -> None:
    native = pytest.importorskip("fastledger._native")
    every_other_byte = memoryview(_one_transfer() * 2)[::2]
    with pytest.raises(RecordTypeError, match="must be C-contiguous"):
        native.Engine().create_transfers_packed(every_other_byte, 2)
