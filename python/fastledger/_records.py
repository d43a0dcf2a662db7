"""The binary layout of records: one 128-byte little-endian record each, in TigerBeetle's field
order. It is the format of packed batches and of the journal.

Python's `struct` has no 128-bit integer, so each u128 is packed as its low and high u64.

`pack_accounts` and `pack_transfers` pack a batch for the journal. They check it as the engines
do, and refuse what the engines refuse with the same exceptions and messages. Where the Rust
extension imports, they are its converters, which check and pack in one pass, several times
faster than `struct`; the pure-Python ones below are the fallback and give the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence

from . import _check
from ._types import Account, Transfer

__all__ = [
    "RECORD_SIZE",
    "pack_account",
    "pack_accounts",
    "pack_transfer",
    "pack_transfers",
    "unpack_accounts",
    "unpack_transfers",
]

RECORD_SIZE = 128

# Both records share one shape: six u128 (as lo/hi u64), then a u64, three u32, two u16 and
# the u64 timestamp. Account: id, debits_pending, debits_posted, credits_pending,
# credits_posted, user_data_128 | user_data_64, user_data_32, reserved, ledger, code, flags.
# Transfer: id, debit_account_id, credit_account_id, amount, pending_id, user_data_128 |
# user_data_64, user_data_32, timeout, ledger, code, flags.
_RECORD = struct.Struct("<12QQIIIHHQ")
assert _RECORD.size == RECORD_SIZE
# Where the u16 flags of either record sit.
FLAGS_OFFSET = struct.calcsize("<12QQIIIH")

_U64 = (1 << 64) - 1
# The low half of a u128 is `value % _LOW_END`, the same as `value & _U64` for the unsigned
# values that records hold: for a value below 2**64, as most are, `%` hands back the value
# itself, where `&` makes a new int. The packers of the engine's hot path use it.
_LOW_END = 1 << 64


def pack_account(a: Account) -> bytes:
    return _RECORD.pack(
        *_split(a.id),
        *_split(a.debits_pending),
        *_split(a.debits_posted),
        *_split(a.credits_pending),
        *_split(a.credits_posted),
        *_split(a.user_data_128),
        a.user_data_64,
        a.user_data_32,
        a.reserved,
        a.ledger,
        a.code,
        a.flags,
        a.timestamp,
    )


def pack_transfer(t: Transfer) -> bytes:
    return pack_transfer_with(t, t.amount, t.pending_id, t.timestamp)


def pack_accounts_in_python(accounts: Sequence[Account]) -> bytes:
    accounts = _check.check_batch(accounts, "accounts", _UNLIMITED)
    accounts = _check.checked_accounts(accounts, "accounts")
    return b"".join(map(pack_account, accounts))


def pack_transfers_in_python(transfers: Sequence[Transfer]) -> bytes:
    transfers = _check.check_batch(transfers, "transfers", _UNLIMITED)
    transfers = _check.checked_transfers(transfers, "transfers")
    return b"".join(map(pack_transfer, transfers))


# Packing has no batch limit of its own: an engine state packs every record the engine holds.
_UNLIMITED = 2**63 - 1

pack_accounts: Callable[[Sequence[Account]], bytes]
pack_transfers: Callable[[Sequence[Transfer]], bytes]
try:
    from ._native import pack_accounts, pack_transfers
except ImportError:
    pack_accounts, pack_transfers = pack_accounts_in_python, pack_transfers_in_python


def unpack_accounts(buffer: bytes | bytearray | memoryview) -> Iterator[Account]:
    for f in _RECORD.iter_unpack(buffer):
        yield Account(
            id=f[0] | f[1] << 64,
            debits_pending=f[2] | f[3] << 64,
            debits_posted=f[4] | f[5] << 64,
            credits_pending=f[6] | f[7] << 64,
            credits_posted=f[8] | f[9] << 64,
            user_data_128=f[10] | f[11] << 64,
            user_data_64=f[12],
            user_data_32=f[13],
            reserved=f[14],
            ledger=f[15],
            code=f[16],
            flags=f[17],
            timestamp=f[18],
        )


def unpack_transfers(buffer: bytes | bytearray | memoryview) -> Iterator[Transfer]:
    for fields in iter_transfer_fields(buffer):
        yield Transfer(*fields)


# The fields of a transfer in record order, as plain ints: how the Python engine reads the
# transfers it keeps packed.
TransferFields = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int]


def pack_transfer_fields(f: TransferFields) -> bytes:
    """The record of a transfer given as its fields; they must fit, as checked transfers do."""
    # Unpacked into names whole: slicing or a starred target costs more than the packing.
    (
        id_,
        debit_account_id,
        credit_account_id,
        amount,
        pending_id,
        user_data_128,
        user_data_64,
        user_data_32,
        timeout,
        ledger,
        code,
        flags,
        timestamp,
    ) = f
    return _RECORD.pack(
        id_ % _LOW_END,
        id_ >> 64,
        debit_account_id % _LOW_END,
        debit_account_id >> 64,
        credit_account_id % _LOW_END,
        credit_account_id >> 64,
        amount % _LOW_END,
        amount >> 64,
        pending_id % _LOW_END,
        pending_id >> 64,
        user_data_128 % _LOW_END,
        user_data_128 >> 64,
        user_data_64,
        user_data_32,
        timeout,
        ledger,
        code,
        flags,
        timestamp,
    )


def pack_transfer_with(t: Transfer, amount: int, pending_id: int, timestamp: int) -> bytes:
    """The record of `t` with these three fields in place of its own: how the engine stores
    a transfer it created. `t` must fit, as a checked transfer does.

    It spells the record out again rather than build on `pack_transfer_fields`: it is the
    Python engine's hot path, where a tuple of the fields and a second call cost more than
    the packing (`tests/test_packing.py` holds both to the Rust packer's bytes)."""
    id_, debit_account_id, credit_account_id = t.id, t.debit_account_id, t.credit_account_id
    user_data_128 = t.user_data_128
    return _RECORD.pack(
        id_ % _LOW_END,
        id_ >> 64,
        debit_account_id % _LOW_END,
        debit_account_id >> 64,
        credit_account_id % _LOW_END,
        credit_account_id >> 64,
        amount % _LOW_END,
        amount >> 64,
        pending_id % _LOW_END,
        pending_id >> 64,
        user_data_128 % _LOW_END,
        user_data_128 >> 64,
        t.user_data_64,
        t.user_data_32,
        t.timeout,
        t.ledger,
        t.code,
        t.flags,
        timestamp,
    )


def transfer_fields_at(buffer: bytes | bytearray | memoryview, offset: int) -> TransferFields:
    f = _RECORD.unpack_from(buffer, offset)
    return (
        f[0] | f[1] << 64,
        f[2] | f[3] << 64,
        f[4] | f[5] << 64,
        f[6] | f[7] << 64,
        f[8] | f[9] << 64,
        f[10] | f[11] << 64,
        f[12],
        f[13],
        f[14],
        f[15],
        f[16],
        f[17],
        f[18],
    )


def iter_transfer_fields(buffer: bytes | bytearray | memoryview) -> Iterator[TransferFields]:
    for offset in range(0, len(buffer), RECORD_SIZE):
        yield transfer_fields_at(buffer, offset)


def _split(value: int) -> tuple[int, int]:
    return value & _U64, value >> 64
