"""An int subclass is judged by its exact value, never by its own methods.

A subclass may override the operators that a width check or a packer uses (`<`, `>>`, `&`), so
that a value too wide would pass the check and then be cut, and differently by each engine's
packer. Every check and packer reads the exact value instead (`int.__index__` in Python,
`PyNumber_Index` in the Rust binding) and hands on plain ints.
"""

from __future__ import annotations

import pytest

from fastledger import Account, InvalidRecordError, Transfer, TransferFlags
from fastledger._check import check_ids, check_u64, checked_transfers
from fastledger._records import pack_accounts_in_python, pack_transfers_in_python

from .conftest import require_engine
from .helpers import LyingInt

WIDE = 2**100 + 3


def transfer(amount: int) -> Transfer:
    return Transfer(id=10, debit_account_id=1, credit_account_id=2, amount=amount, ledger=1, code=1)


def test_a_lying_int_too_wide_for_its_field_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match=r"transfers\[0\]\.amount does not fit in 128"):
        checked_transfers([transfer(LyingInt(2**200))], "transfers")
    with pytest.raises(InvalidRecordError, match=r"is negative \(-1\)"):
        checked_transfers([transfer(LyingInt(-1))], "transfers")
    with pytest.raises(InvalidRecordError, match=r"ids\[0\] does not fit in 128 bits"):
        check_ids([LyingInt(2**128)], "ids", 10)
    with pytest.raises(InvalidRecordError, match="does not fit in 64 unsigned bits"):
        check_u64(LyingInt(2**64), "timestamp")


def test_the_checks_hand_on_plain_ints_of_the_exact_values() -> None:
    [checked] = checked_transfers([transfer(LyingInt(WIDE))], "transfers")
    assert type(checked.amount) is int and checked.amount == WIDE
    [flagged] = checked_transfers([Transfer(id=1, flags=TransferFlags.PENDING)], "transfers")
    assert type(flagged.flags) is int and flagged.flags == TransferFlags.PENDING
    assert check_ids([LyingInt(WIDE)], "ids", 10) == [WIDE]
    assert type(check_u64(LyingInt(5), "timestamp")) is int


def test_plain_records_are_handed_on_as_they_are() -> None:
    batch = [transfer(5)]
    assert checked_transfers(batch, "transfers") is batch


def test_both_packers_pack_the_exact_value_of_a_lying_int() -> None:
    expected = pack_transfers_in_python([transfer(WIDE)])
    assert pack_transfers_in_python([transfer(LyingInt(WIDE))]) == expected
    require_engine("rust")
    from fastledger import _native

    assert _native.pack_transfers([transfer(LyingInt(WIDE))]) == expected


def test_both_packers_refuse_a_lying_int_too_wide_in_the_same_words() -> None:
    accounts = [Account(id=LyingInt(2**128), ledger=1, code=1)]
    with pytest.raises(InvalidRecordError) as python_error:
        pack_accounts_in_python(accounts)
    require_engine("rust")
    from fastledger import _native

    with pytest.raises(InvalidRecordError) as rust_error:
        _native.pack_accounts(accounts)
    assert str(python_error.value) == str(rust_error.value)
