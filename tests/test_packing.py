"""The record the Python engine stores for a created transfer: the transfer's own record with
the three fields the engine decides, byte for byte as the Rust packer writes it."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from fastledger import Transfer, TransferFlags, _records

from .conftest import require_engine


def u(bits: int) -> st.SearchStrategy[int]:
    edges = st.sampled_from([0, 1, 2**bits - 1, 2**64 - 1 if bits > 64 else 0])
    return st.one_of(edges, st.integers(min_value=0, max_value=2**bits - 1))


transfers = st.builds(
    Transfer,
    id=u(128),
    debit_account_id=u(128),
    credit_account_id=u(128),
    amount=u(128),
    pending_id=u(128),
    user_data_128=u(128),
    user_data_64=u(64),
    user_data_32=u(32),
    timeout=u(32),
    ledger=u(32),
    code=u(16),
    flags=st.one_of(u(16), st.sampled_from(list(TransferFlags))),
    timestamp=u(64),
)


@given(transfers, u(128), u(128), u(64))
def test_a_transfer_packed_with_the_engine_fields_is_the_record_of_the_transfer_with_them(
    t: Transfer, amount: int, pending_id: int, timestamp: int
) -> None:
    require_engine("rust")
    from fastledger import _native

    stored = dataclasses.replace(t, amount=amount, pending_id=pending_id, timestamp=timestamp)
    packed = _records.pack_transfer_with(t, amount, pending_id, timestamp)
    assert packed == _native.pack_transfers([stored])
    assert packed == _records.pack_transfer(stored)
    fields = tuple(getattr(stored, field.name) for field in dataclasses.fields(stored))
    assert packed == _records.pack_transfer_fields(fields)  # type: ignore[arg-type]
