"""The records, flags and statuses of the ledger.

The data model is TigerBeetle's. An `Account` and a `Transfer` are each one 128-byte record;
the field order of the dataclasses below is the order of that binary layout. Records are plain
frozen value objects: compare them with `==`, copy them with `dataclasses.replace`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

# The statuses are generated from the Rust engine's tables, their one source.
from ._statuses import CreateAccountStatus, CreateTransferStatus

__all__ = [
    "AMOUNT_MAX",
    "BATCH_MAX",
    "Account",
    "AccountBalance",
    "AccountFilter",
    "AccountFilterFlags",
    "AccountFlags",
    "CreateAccountResult",
    "CreateAccountStatus",
    "CreateTransferResult",
    "CreateTransferStatus",
    "QueryFilter",
    "QueryFilterFlags",
    "Transfer",
    "TransferFlags",
]

U128_MAX = 2**128 - 1
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
U16_MAX = 2**16 - 1

# Posting a pending transfer with this amount posts the whole pending amount.
AMOUNT_MAX = U128_MAX

# The most events one call accepts, as TigerBeetle's default message size allows.
BATCH_MAX = 8189

# User-defined timestamps of imported events must lie in [1, 2**63 - 1].
TIMESTAMP_MAX = 2**63 - 1


class AccountFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1 << 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    HISTORY = 1 << 3
    IMPORTED = 1 << 4
    CLOSED = 1 << 5


class TransferFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5
    CLOSING_DEBIT = 1 << 6
    CLOSING_CREDIT = 1 << 7
    IMPORTED = 1 << 8


class AccountFilterFlags(enum.IntFlag):
    NONE = 0
    DEBITS = 1 << 0
    CREDITS = 1 << 1
    REVERSED = 1 << 2


class QueryFilterFlags(enum.IntFlag):
    NONE = 0
    REVERSED = 1 << 0


# Every bit that a flags field may carry; any other bit is a reserved flag.
ACCOUNT_FLAGS_KNOWN = sum(AccountFlags)
TRANSFER_FLAGS_KNOWN = sum(TransferFlags)


@dataclass(frozen=True, slots=True)
class Account:
    """An account. Balances are maintained by the ledger and are 0 at creation.

    `reserved` is the record's reserved field: it must be 0 (else `RESERVED_FIELD`).
    """

    id: int
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    reserved: int = 0
    ledger: int = 0
    code: int = 0
    flags: int = 0
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class Transfer:
    """An immutable movement of `amount` from the debit account to the credit account."""

    id: int
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount: int = 0
    pending_id: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    timeout: int = 0
    ledger: int = 0
    code: int = 0
    flags: int = 0
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's balances as of `timestamp`."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """Selects the transfers (or balances) of one account; zero fields do not filter."""

    account_id: int
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    code: int = 0
    timestamp_min: int = 0
    timestamp_max: int = 0
    limit: int = BATCH_MAX
    flags: int = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """Selects accounts or transfers by their secondary fields; zero fields do not filter."""

    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    ledger: int = 0
    code: int = 0
    timestamp_min: int = 0
    timestamp_max: int = 0
    limit: int = BATCH_MAX
    flags: int = 0


class CreateAccountResult(NamedTuple):
    """The outcome of one account create: its status and the timestamp the ledger gave it."""

    status: CreateAccountStatus
    timestamp: int


class CreateTransferResult(NamedTuple):
    """The outcome of one transfer create: its status and the timestamp the ledger gave it."""

    status: CreateTransferStatus
    timestamp: int


# Field widths in bits, in record order: the facade checks every field against them.
ACCOUNT_FIELD_BITS: tuple[tuple[str, int], ...] = (
    ("id", 128),
    ("debits_pending", 128),
    ("debits_posted", 128),
    ("credits_pending", 128),
    ("credits_posted", 128),
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
    ("reserved", 32),
    ("ledger", 32),
    ("code", 16),
    ("flags", 16),
    ("timestamp", 64),
)

TRANSFER_FIELD_BITS: tuple[tuple[str, int], ...] = (
    ("id", 128),
    ("debit_account_id", 128),
    ("credit_account_id", 128),
    ("amount", 128),
    ("pending_id", 128),
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
    ("timeout", 32),
    ("ledger", 32),
    ("code", 16),
    ("flags", 16),
    ("timestamp", 64),
)

ACCOUNT_FILTER_FIELD_BITS: tuple[tuple[str, int], ...] = (
    ("account_id", 128),
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
    ("code", 16),
    ("timestamp_min", 64),
    ("timestamp_max", 64),
    ("limit", 32),
    ("flags", 32),
)

QUERY_FILTER_FIELD_BITS: tuple[tuple[str, int], ...] = (
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
    ("ledger", 32),
    ("code", 16),
    ("timestamp_min", 64),
    ("timestamp_max", 64),
    ("limit", 32),
    ("flags", 32),
)
