"""Input checks at the edge: whatever a 128-byte record cannot hold is refused here, once.

The Rust engine's binding makes the same checks while it converts a batch, with the same
messages, so that both engines refuse the same input in the same words. What a record *can*
hold (an unknown flag bit, a zero id) is not refused here: the engines judge it per event with
a status.

Every check judges a value by its exact value: for an instance of an int subclass, a plain int
of it, read by `int.__index__` without calling any of the subclass's methods. A subclass may
override the operators a check would use (`<`, `>>`), so that a value too wide would pass and
then be cut by packing; the checks hand back records and ids that hold only plain ints, so
what was checked is what the engines and the journal read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields as dataclass_fields
from typing import Any

from ._types import (
    ACCOUNT_FIELD_BITS,
    TRANSFER_FIELD_BITS,
    Account,
    AccountFilter,
    QueryFilter,
    Transfer,
)
from .errors import (
    BatchTooLargeError,
    InvalidArgumentError,
    InvalidRecordError,
    RecordTypeError,
)


def check_batch(events: object, kind: str, limit: int) -> Sequence[Any]:
    """Checks the container of a batch and its size; returns it as a sequence."""
    if isinstance(events, (str, bytes, bytearray, memoryview)) or not isinstance(events, Sequence):
        if isinstance(events, (bytes, bytearray, memoryview)):
            raise RecordTypeError(
                f"{kind} must be a list of records; packed buffers go through the packed API"
            )
        raise RecordTypeError(f"{kind} must be a list of records, not {type(events).__name__}")
    check_count(len(events), kind, limit)
    return events


def check_count(count: int, kind: str, limit: int) -> None:
    if count > limit:
        raise BatchTooLargeError(
            f"a batch holds at most {limit} events, got {count}: split {kind} into "
            f"chunks of at most {limit}"
        )


def check_records(
    records: Sequence[Any], record_type: type, kind: str, fields: tuple[tuple[str, int], ...]
) -> Sequence[Any]:
    """Checks that every record has the right type and every field fits its width; returns
    the records with plain ints in every field (the same sequence if they already were)."""
    exact = records
    for index, record in enumerate(records):
        checked = check_record(index, record, record_type, kind, fields)
        if checked is not record:
            exact = _replaced(exact, records, index, checked)
    return exact


def check_record(
    index: int, record: object, record_type: type, kind: str, fields: tuple[tuple[str, int], ...]
) -> Any:
    """Checks record `index` of a batch field by field; the first fault raises, named. Returns
    the record, or a copy with the exact value of each int subclass in its fields.

    `fields` are all the record's fields, in order, so the copy is made from the exact values
    by the record's own `__init__`. `dataclasses.replace`, which reads every field again and
    passes them by name, took longer than the checks: a transfer whose flags are
    `TransferFlags`, as most flagged transfers are, took 3.6 µs here instead of 2.4."""
    if type(record) is not record_type:
        raise RecordTypeError(
            f"{kind}[{index}] must be a {record_type.__name__}, not {type(record).__name__}"
        )
    values: list[int] = []
    inexact = False
    for name, bits in fields:
        value = getattr(record, name)
        if type(value) is not int:
            if not _is_int(value):
                raise RecordTypeError(
                    f"{kind}[{index}].{name} must be an int, not {type(value).__name__}"
                )
            value = int.__index__(value)
            inexact = True
        if value < 0 or value >> bits:
            raise InvalidRecordError(field_message(kind, index, name, value, bits))
        values.append(value)
    return record_type(*values) if inexact else record


# `check_record` copies a record from its values in order: each table names every field.
assert [name for name, _ in ACCOUNT_FIELD_BITS] == [f.name for f in dataclass_fields(Account)]
assert [name for name, _ in TRANSFER_FIELD_BITS] == [f.name for f in dataclass_fields(Transfer)]


def _replaced(exact: Sequence[Any], records: Sequence[Any], index: int, value: Any) -> list[Any]:
    """`exact` with `value` at `index`: a list copied from `records` the first time."""
    copy = list(records) if exact is records else exact
    assert isinstance(copy, list)
    copy[index] = value
    return copy


def checked_accounts(accounts: Sequence[Any], kind: str) -> Sequence[Account]:
    """`check_records` for accounts, which come in small numbers."""
    return check_records(accounts, Account, kind, ACCOUNT_FIELD_BITS)


def checked_transfers(transfers: Sequence[Any], kind: str) -> Sequence[Transfer]:
    """`check_records` for transfers, with the common case judged in one expression each.

    That case is a `Transfer` whose fields are all plain ints, where the fields of each width,
    OR-ed together, fit that width: the OR of non-negative ints is as wide as the widest, and
    a negative field makes it negative. Field by field, the check took about a sixth of the
    time the Python engine's path spent on a transfer. Any other transfer (an `IntFlag` in
    `flags`, or a fault) goes to `check_record`, which returns it with plain ints or names the
    field at fault.
    """
    exact = transfers
    for index, t in enumerate(transfers):
        if not (
            type(t) is Transfer
            and type(t.id) is int
            and type(t.debit_account_id) is int
            and type(t.credit_account_id) is int
            and type(t.amount) is int
            and type(t.pending_id) is int
            and type(t.user_data_128) is int
            and type(t.user_data_64) is int
            and type(t.user_data_32) is int
            and type(t.timeout) is int
            and type(t.ledger) is int
            and type(t.code) is int
            and type(t.flags) is int
            and type(t.timestamp) is int
            and 0 <= t.id | t.debit_account_id | t.credit_account_id < _END_128
            and 0 <= t.amount | t.pending_id | t.user_data_128 < _END_128
            and 0 <= t.user_data_64 | t.timestamp < _END_64
            and 0 <= t.user_data_32 | t.timeout | t.ledger < _END_32
            and 0 <= t.code | t.flags < _END_16
        ):
            checked = check_record(index, t, Transfer, kind, TRANSFER_FIELD_BITS)
            if checked is not t:
                exact = _replaced(exact, transfers, index, checked)
    return exact


_END_128 = 1 << 128
_END_64 = 1 << 64
_END_32 = 1 << 32
_END_16 = 1 << 16
# The widths `checked_transfers` tests, field by field in record order.
assert [bits for _, bits in TRANSFER_FIELD_BITS] == [128] * 6 + [64, 32, 32, 32, 16, 16, 64]


def check_ids(ids: object, kind: str, limit: int) -> Sequence[int]:
    """Checks a list of ids for a lookup; returns them as plain ints."""
    checked = check_batch(ids, kind, limit)
    exact = checked
    for index, value in enumerate(checked):
        if type(value) is not int:
            if not _is_int(value):
                raise RecordTypeError(f"{kind}[{index}] must be an int, not {type(value).__name__}")
            exact = _replaced(exact, checked, index, int.__index__(value))
            value = exact[index]
        if value < 0 or value >> 128:
            raise InvalidRecordError(field_message(kind, index, None, value, 128))
    return exact


def check_u64(value: object, name: str) -> int:
    """Checks an unsigned 64-bit argument; returns it as a plain int."""
    if type(value) is not int:
        if not _is_int(value):
            raise RecordTypeError(f"{name} must be an int, not {type(value).__name__}")
        assert isinstance(value, int)
        value = int.__index__(value)
    assert isinstance(value, int)
    if value < 0 or value >> 64:
        raise InvalidRecordError(f"{name} does not fit in 64 unsigned bits: {value}")
    return value


def field_message(kind: str, index: int, name: str | None, value: int, bits: int) -> str:
    where = f"{kind}[{index}]" + (f".{name}" if name else "")
    if value < 0:
        return f"{where} is negative ({value}): fields are unsigned"
    return f"{where} does not fit in {bits} bits ({value} > {2**bits - 1})"


def _is_int(value: object) -> bool:
    # Int subclasses such as `IntFlag` are welcome; `bool` is an int only by accident.
    return isinstance(value, int) and not isinstance(value, bool)


def check_filter(
    f: object, filter_type: type, fields: tuple[tuple[str, int], ...], limit_max: int
) -> None:
    """Checks a query filter's type and field widths; a limit over the batch maximum is an
    error here (TigerBeetle would silently clamp it)."""
    name = filter_type.__name__
    if type(f) is not filter_type:
        raise RecordTypeError(f"the filter must be a {name}, not {type(f).__name__}")
    for field, bits in fields:
        value = getattr(f, field)
        if type(value) is not int:
            if not _is_int(value):
                raise RecordTypeError(f"{name}.{field} must be an int, not {type(value).__name__}")
            value = int.__index__(value)
        if value < 0 or value >> bits:
            raise InvalidRecordError(
                f"{name}.{field} does not fit in {bits} unsigned bits: {value}"
            )
    assert isinstance(f, (AccountFilter, QueryFilter))
    if f.limit > limit_max:
        raise InvalidArgumentError(
            f"{name}.limit is {f.limit}, over the most one query returns "
            f"({limit_max}): page with timestamp_min/timestamp_max instead"
        )
