"""The binary layouts both engines share: 128-byte records and the engine state of snapshots."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from fastledger import (
    AccountFlags,
    Ledger,
    Transfer,
    TransferFlags,
    _durable,
    _records,
)
from fastledger._types import TRANSFER_FIELD_BITS

from .conftest import FakeClock, require_engine
from .helpers import U16_MAX, U128_MAX, account, pending, transfer

ENGINE_NAMES = ("python", "rust")


def native_packers() -> tuple[Callable[[Any], bytes], Callable[[Any], bytes]]:
    require_engine("rust")
    from fastledger import _native

    return _native.pack_accounts, _native.pack_transfers


def outcome(pack: Callable[[Any], bytes], batch: object) -> tuple[str, str] | bytes:
    """The bytes a packer gives, or the type and message of what it raises."""
    try:
        return pack(batch)
    except Exception as error:
        return type(error).__name__, str(error)


ACCOUNT_BATCHES = {
    "plain": [account(1), account(2)],
    "widest": [
        dataclasses.replace(
            account(U128_MAX - 1, flags=AccountFlags.HISTORY | AccountFlags.CLOSED),
            debits_pending=U128_MAX,
            user_data_128=U128_MAX,
            user_data_64=2**64 - 1,
            user_data_32=2**32 - 1,
            reserved=2**32 - 1,
            code=U16_MAX,
            timestamp=2**64 - 1,
        )
    ],
    "empty": [],
    "a tuple": (account(1),),
    "negative": [account(1), dataclasses.replace(account(2), ledger=-1)],
    "too wide": [dataclasses.replace(account(1), code=U16_MAX + 1)],
    "a float": [dataclasses.replace(account(1), user_data_64=1.0)],
    "a bool": [dataclasses.replace(account(1), flags=True)],
    "a transfer": [transfer(1, 1, 2, 3)],
    "not a list": 7,
    "bytes": b"x" * 128,
}

TRANSFER_BATCHES = {
    "plain": [transfer(1, 1, 2, 3), pending(2, 1, 2, 5, timeout=9)],
    "widest": [
        dataclasses.replace(
            transfer(U128_MAX, U128_MAX, U128_MAX, U128_MAX),
            pending_id=U128_MAX,
            flags=TransferFlags.IMPORTED | TransferFlags.LINKED,
            timeout=2**32 - 1,
            timestamp=2**64 - 1,
        )
    ],
    "an id past u128": [transfer(2**128, 1, 2, 3)],
    "a string amount": [
        transfer(1, 1, 2, 3),
        dataclasses.replace(transfer(2, 1, 2, 3), amount="3"),
    ],
    "none": [None],
    "an account": [account(1)],
    "a generator": (transfer(i, 1, 2, 3) for i in range(1, 3)),
    "a string": "transfers",
    # Made without `__init__`, so that its slots hold no value: reading one raises.
    "unset fields": [transfer(1, 1, 2, 3), object.__new__(Transfer)],
}


class Count(int):
    """An int subclass, welcome in any field."""


@pytest.mark.parametrize(("name", "bits"), TRANSFER_FIELD_BITS)
def test_native_and_python_transfer_packers_agree_on_each_field_at_its_edges(
    name: str, bits: int
) -> None:
    # The native packer reads plain ints below 2**63 on a path of its own: these values lie
    # on either side of that bound and of the field's width, of either type.
    _, native = native_packers()
    values = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**bits - 1, 2**bits, 2**128, -1, -(2**64)]
    for value in [*values, *map(Count, values), True, 1.5, None]:
        batch = [transfer(1, 1, 2, 3), dataclasses.replace(transfer(2, 1, 2, 3), **{name: value})]
        assert outcome(native, batch) == outcome(_records.pack_transfers_in_python, batch), value


@pytest.mark.parametrize("name", ACCOUNT_BATCHES)
def test_native_and_python_account_packers_give_the_same_bytes_and_errors(name: str) -> None:
    native, _ = native_packers()
    batch = ACCOUNT_BATCHES[name]
    assert outcome(native, batch) == outcome(_records.pack_accounts_in_python, batch)


@pytest.mark.parametrize("name", TRANSFER_BATCHES)
def test_native_and_python_transfer_packers_give_the_same_bytes_and_errors(name: str) -> None:
    _, native = native_packers()
    batch = TRANSFER_BATCHES[name]
    if name == "a generator":
        # A generator is used up by the first packer; each gets its own.
        again = (transfer(i, 1, 2, 3) for i in range(1, 3))
        assert outcome(native, batch) == outcome(_records.pack_transfers_in_python, again)
        return
    assert outcome(native, batch) == outcome(_records.pack_transfers_in_python, batch)


def test_packed_records_unpack_to_the_records() -> None:
    transfers = TRANSFER_BATCHES["plain"] + TRANSFER_BATCHES["widest"]
    assert isinstance(transfers, list)
    packed = _records.pack_transfers(transfers)
    assert packed == b"".join(map(_records.pack_transfer, transfers))
    assert list(_records.unpack_transfers(packed)) == transfers
    accounts = ACCOUNT_BATCHES["plain"] + ACCOUNT_BATCHES["widest"]
    assert isinstance(accounts, list)
    assert list(_records.unpack_accounts(_records.pack_accounts(accounts))) == accounts


def state_with_one_pending_transfer(engine: str) -> bytes:
    ledger = Ledger(engine=engine, clock=FakeClock())
    ledger.create_accounts([account(1), account(2)])
    ledger.create_transfers([pending(10, 1, 2, 5, timeout=1)])
    exporter = _durable._snapshot_engine(ledger._engine)
    assert exporter is not None
    return exporter.export_state()


def import_error(engine: str, state: bytes) -> str:
    importer = _durable._snapshot_engine(Ledger(engine=engine)._engine)
    assert importer is not None
    with pytest.raises(ValueError) as error:
        importer.import_state(state)
    return str(error.value)


@pytest.mark.parametrize("status", [0, 5, 255])
def test_both_engines_refuse_a_pending_status_outside_1_to_4_alike(status: int) -> None:
    for name in ENGINE_NAMES:
        require_engine(name)
    state = bytearray(state_with_one_pending_transfer("python"))
    assert state_with_one_pending_transfer("rust") == state
    # The one pending status byte follows the header, two accounts and one transfer.
    at = 64 + 3 * 128
    assert state[at] == 1
    state[at] = status
    messages = {name: import_error(name, bytes(state)) for name in ENGINE_NAMES}
    assert messages == {name: f"pending transfer 10 has status {status}" for name in ENGINE_NAMES}
