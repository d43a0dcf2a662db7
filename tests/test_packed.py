"""Packed lookups (SPEC section 5): the same records as the object lookups, with no Python
object per record, and a NumPy view of them."""

from __future__ import annotations

import asyncio

import numpy as np

import fastledger
from fastledger import Account, AccountFlags, Transfer, TransferFlags
from fastledger._records import unpack_accounts, unpack_transfers


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
