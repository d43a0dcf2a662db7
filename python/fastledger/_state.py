"""The engine state format: what a snapshot holds so that reopening can skip the journal prefix.

Both engines export and import these exact bytes, so a snapshot written by one opens in the
other. The encoding is deterministic (the same state always gives the same bytes), which lets
`fastledger verify` compare a snapshot with a replay of the journal byte for byte.

Layout, all integers little-endian:

    offset  size  field
    0       8     magic b"FLSTATE\\0"
    8       4     u32 format version (1)
    12      4     u32 reserved, 0
    16      8     u64 account_count
    24      8     u64 transfer_count
    32      8     u64 pending_count: transfers in the log flagged PENDING
    40      8     u64 failed_count: transfer ids that failed with a transient status
    48      8     u64 history_count: balance entries of accounts flagged HISTORY
    56      8     u64 reserved, 0
    64            accounts: account_count 128-byte Account records in creation order, with
                  their current balances and flags (CLOSED included)
    ...           transfers: transfer_count 128-byte Transfer records in log (timestamp) order,
                  as stored (after balancing clamps and post/void inheritance)
    ...           pending: pending_count u8 statuses (1 pending, 2 posted, 3 voided, 4 expired),
                  one per PENDING-flagged transfer in log order, then zero bytes up to a
                  multiple of 16 from the start of the state
    ...           failed: failed_count u128 ids, ascending
    ...           history: history_count entries of four u128 (debits_pending, debits_posted,
                  credits_pending, credits_posted): for each HISTORY account in creation order,
                  the balances after each of its transfers in log order. The timestamp of an
                  entry is its transfer's, so it is not stored.

Everything else an engine keeps (id indexes, the expiry heap, per-account
transfer lists) is rebuilt on import from these sections.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._records import (
    RECORD_SIZE,
    pack_accounts,
    pack_transfers,
    unpack_accounts,
    unpack_transfers,
)
from ._types import Account, AccountBalance, Transfer, TransferFlags

__all__ = ["STATE_MAGIC", "STATE_VERSION", "EngineState", "decode_state", "encode_state"]

STATE_MAGIC = b"FLSTATE\0"
STATE_VERSION = 1

_HEADER = struct.Struct("<8sII6Q")
assert _HEADER.size == 64
_U128 = 16
_BALANCE = 4 * _U128


@dataclass(frozen=True, slots=True)
class EngineState:
    """The sections of an exported state, decoded. History entries carry timestamp 0: the
    importer takes each from its transfer."""

    accounts: list[Account]
    transfers: list[Transfer]
    pending: bytes
    failed_ids: list[int]
    history: list[AccountBalance]


def encode_state(state: EngineState) -> bytes:
    header = _HEADER.pack(
        STATE_MAGIC,
        STATE_VERSION,
        0,
        len(state.accounts),
        len(state.transfers),
        len(state.pending),
        len(state.failed_ids),
        len(state.history),
        0,
    )
    parts = [header, pack_accounts(state.accounts), pack_transfers(state.transfers)]
    parts.append(state.pending)
    parts.append(bytes(_padding(sum(map(len, parts)))))
    parts.append(b"".join(i.to_bytes(_U128, "little") for i in state.failed_ids))
    parts.append(b"".join(map(_pack_balance, state.history)))
    return b"".join(parts)


def decode_state(data: bytes | bytearray | memoryview) -> EngineState:
    """Decodes `encode_state`'s bytes; raises ValueError if they are not laid out as that.
    Whether the decoded state hangs together is for `_state_check.check_state` to say."""
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise ValueError("the engine state is shorter than its header")
    header = _HEADER.unpack_from(view)
    magic, version, reserved, accounts, transfers, pending, failed, history, reserved_64 = header
    if magic != STATE_MAGIC or version != STATE_VERSION:
        raise ValueError(f"not an engine state of format {STATE_VERSION}")
    if reserved != 0 or reserved_64 != 0:
        raise ValueError("the reserved fields of the engine state's header are not zero")
    offset = _HEADER.size
    sizes = (accounts * RECORD_SIZE, transfers * RECORD_SIZE, pending)
    end_of_pending = offset + sum(sizes)
    expected = end_of_pending + _padding(end_of_pending) + failed * _U128 + history * _BALANCE
    if len(view) != expected:
        raise ValueError(f"the engine state holds {len(view)} bytes, its header says {expected}")
    sections = []
    for size in sizes:
        sections.append(view[offset : offset + size])
        offset += size
    if any(view[offset : offset + _padding(offset)]):
        raise ValueError("the padding of the engine state is not zero")
    offset += _padding(offset)
    failed_ids = [
        int.from_bytes(view[i : i + _U128], "little")
        for i in range(offset, offset + failed * _U128, _U128)
    ]
    offset += failed * _U128
    transfers_decoded = list(unpack_transfers(sections[1]))
    pending_decoded = bytes(sections[2])
    # Each status pairs, in order, with a pending transfer; the importer checks their count.
    pending_transfers = (t for t in transfers_decoded if t.flags & TransferFlags.PENDING)
    for t, status in zip(pending_transfers, pending_decoded, strict=False):
        if not 1 <= status <= 4:
            raise ValueError(f"pending transfer {t.id} has status {status}")
    return EngineState(
        accounts=list(unpack_accounts(sections[0])),
        transfers=transfers_decoded,
        pending=pending_decoded,
        failed_ids=failed_ids,
        history=[
            _unpack_balance(view[i : i + _BALANCE]) for i in range(offset, expected, _BALANCE)
        ],
    )


def _padding(length: int) -> int:
    return -length % _U128


def _pack_balance(b: AccountBalance) -> bytes:
    return b"".join(
        v.to_bytes(_U128, "little")
        for v in (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted)
    )


def _unpack_balance(view: memoryview) -> AccountBalance:
    dp, dpo, cp, cpo = (int.from_bytes(view[i : i + _U128], "little") for i in range(0, 64, 16))
    return AccountBalance(
        debits_pending=dp, debits_posted=dpo, credits_pending=cp, credits_posted=cpo
    )
