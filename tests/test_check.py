"""The checks at the edge: the one-pass check of transfers refuses exactly what the
field-by-field check refuses, with the same exception and message."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastledger import Transfer, TransferFlags, _check
from fastledger._types import TRANSFER_FIELD_BITS


class Count(int):
    """An int subclass that is not a flag: welcome in any field."""


def outcome(check: Callable[[], object]) -> tuple[str, str] | None:
    try:
        check()
    except Exception as error:
        return type(error).__name__, str(error)
    return None


def edges(bits: int) -> list[Any]:
    """Values in a field of `bits`, at and past its edges, and of the wrong type."""
    ints = [0, 1, 2**bits - 1, 2**bits, -1, 2**64 - 1, 2**64, 2**128 - 1, 2**128, -(2**128)]
    flags = [TransferFlags.PENDING, TransferFlags(2**bits), TransferFlags(2**128)]
    return [*ints, Count(1), Count(-1), Count(2**bits), *flags, True, False, 1.0, None, "1"]


def field_values(bits: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(edges(bits)),
        st.integers(min_value=0, max_value=2**bits - 1),
        st.integers(min_value=-(2**130), max_value=2**130),
    )


# A zero transfer hides no edge of a field behind the bits of the others.
ZERO = Transfer(id=0)
PLAIN = Transfer(id=7, debit_account_id=1, credit_account_id=2, amount=3, ledger=1, code=1)
WIDTHS = dict(TRANSFER_FIELD_BITS)


def judged_alike(batch: list[Any]) -> bool:
    fast = outcome(lambda: _check.checked_transfers(batch, "transfers"))
    fields = TRANSFER_FIELD_BITS
    slow = outcome(lambda: _check.check_records(batch, Transfer, "transfers", fields))
    return fast == slow


@pytest.mark.parametrize("base", [ZERO, PLAIN], ids=["zero", "plain"])
@pytest.mark.parametrize(("name", "bits"), TRANSFER_FIELD_BITS)
def test_the_one_pass_transfer_check_judges_each_field_edge_as_the_field_by_field_check(
    base: Transfer, name: str, bits: int
) -> None:
    for value in edges(bits):
        assert judged_alike([PLAIN, dataclasses.replace(base, **{name: value})]), value


@st.composite
def transfers(draw: st.DrawFn) -> Any:
    """A zero or plain transfer with a few of its fields drawn."""
    names = draw(st.lists(st.sampled_from(list(WIDTHS)), max_size=3, unique=True))
    fields = {name: draw(field_values(WIDTHS[name])) for name in names}
    return dataclasses.replace(draw(st.sampled_from([ZERO, PLAIN])), **fields)


batches = st.lists(st.one_of(transfers(), transfers(), st.just("transfer")), max_size=4)


@given(batches)
def test_the_one_pass_transfer_check_refuses_what_the_field_by_field_check_refuses(
    batch: list[Any],
) -> None:
    assert judged_alike(batch)


def test_the_one_pass_transfer_check_accepts_flags_given_as_transfer_flags() -> None:
    flags = TransferFlags.PENDING | TransferFlags.LINKED
    _check.checked_transfers([Transfer(id=1, flags=flags)], "transfers")
