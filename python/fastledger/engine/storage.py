"""What the Python engine holds and how it reads it back: the accounts, the transfer log and
its index, the statuses of pending transfers, the expiry heap and the undo record of a chain.

The rules (`rules.py`), the queries (`query.py`) and the state exchange (`state.py`) all read
the same storage, so it is written once here; the Rust engine keeps the same fields in the
`Engine` struct of `rust/core/src/engine.rs`.
"""

from __future__ import annotations

import array
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter

from .._records import RECORD_SIZE, TransferFields, transfer_fields_at
from .._types import Account, AccountBalance, AccountFlags, Transfer

NS_PER_S = 1_000_000_000

# The life of a pending transfer: it resolves at most once.
PENDING = 1
POSTED = 2
VOIDED = 3
EXPIRED = 4

_HISTORY = AccountFlags.HISTORY.value


class AccountState:
    """An account as the engine keeps it: the balances and flags change, the rest does not."""

    __slots__ = (
        "code",
        "credits_pending",
        "credits_posted",
        "debits_pending",
        "debits_posted",
        "flags",
        "history",
        "id",
        "ledger",
        "timestamp",
        "transfers",
        "user_data_32",
        "user_data_64",
        "user_data_128",
    )

    def __init__(self, a: Account, timestamp: int) -> None:
        self.id = a.id
        self.debits_pending = 0
        self.debits_posted = 0
        self.credits_pending = 0
        self.credits_posted = 0
        self.user_data_128 = a.user_data_128
        self.user_data_64 = a.user_data_64
        self.user_data_32 = a.user_data_32
        self.ledger = a.ledger
        self.code = a.code
        self.flags = int(a.flags)
        self.timestamp = timestamp
        # The position in the transfer log of every transfer that debits or credits this
        # account, in timestamp order: an array of ints, which the garbage collector never
        # scans, where a list of the transfers made it visit each one at every collection.
        self.transfers = array.array("Q")
        # With `HISTORY`: the balances after each of those transfers, beside it.
        self.history: list[AccountBalance] | None = [] if a.flags & _HISTORY else None

    def balance(self, timestamp: int) -> AccountBalance:
        return AccountBalance(
            debits_pending=self.debits_pending,
            debits_posted=self.debits_posted,
            credits_pending=self.credits_pending,
            credits_posted=self.credits_posted,
            timestamp=timestamp,
        )

    def record(self) -> Account:
        return Account(
            id=self.id,
            debits_pending=self.debits_pending,
            debits_posted=self.debits_posted,
            credits_pending=self.credits_pending,
            credits_posted=self.credits_posted,
            user_data_128=self.user_data_128,
            user_data_64=self.user_data_64,
            user_data_32=self.user_data_32,
            reserved=0,
            ledger=self.ledger,
            code=self.code,
            flags=self.flags,
            timestamp=self.timestamp,
        )

    def saved(self) -> tuple[int, int, int, int, int]:
        return (
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            self.flags,
        )

    def restore(self, saved: tuple[int, int, int, int, int]) -> None:
        (
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            self.flags,
        ) = saved

    def debits_exceed_credits(self, amount: int) -> bool:
        """Whether debiting `amount` more would take the debits past the posted credits."""
        return self.debits_pending + self.debits_posted + amount > self.credits_posted

    def credits_exceed_debits(self, amount: int) -> bool:
        """Whether crediting `amount` more would take the credits past the posted debits."""
        return self.credits_pending + self.credits_posted + amount > self.debits_posted


def account_timestamp(account: AccountState) -> int:
    return account.timestamp


@dataclass(slots=True)
class Undo:
    """What a linked chain changed, so that a broken chain can be rolled back."""

    accounts_created: list[int]
    transfers_created: list[int]
    accounts_saved: list[tuple[AccountState, tuple[int, int, int, int, int]]]
    pending_saved: list[tuple[int, int]]


# The engine keeps its transfers as their 128-byte records, one after the
# other in a bytearray, as the Rust engine keeps a vector of them. The garbage collector never
# scans bytes: a million stored `Transfer` objects made its collections a third of the posting
# time, and even a list of tuples of ints costs a visit to each at every full collection.
# A stored transfer is read back as the tuple of its fields, in record order, indexed by these
# names; lookups and queries make `Transfer` records of them.
StoredTransfer = TransferFields
(
    ID,
    DEBIT_ACCOUNT_ID,
    CREDIT_ACCOUNT_ID,
    AMOUNT,
    PENDING_ID,
    USER_DATA_128,
    USER_DATA_64,
    USER_DATA_32,
    TIMEOUT,
    LEDGER,
    CODE,
    FLAGS,
    TIMESTAMP,
) = range(13)

# The timestamp is the last field of a record: binary searches of the log read it alone.
_TIMESTAMP_FIELD = struct.Struct("<Q")
_TIMESTAMP_OFFSET = RECORD_SIZE - _TIMESTAMP_FIELD.size


def expires_at(p: StoredTransfer) -> int:
    return p[TIMESTAMP] + p[TIMEOUT] * NS_PER_S


# The fields of a `Transfer` in record order, as a stored transfer holds them.
stored_transfer: Callable[[Transfer], StoredTransfer] = attrgetter(
    *(f.name for f in fields(Transfer))
)

# The setters of a Transfer's slots, in field order. A frozen dataclass's `__init__` sets each
# field through `object.__setattr__`, which costs more than a lookup itself; the engine makes
# the records it returns through these instead.
(
    _set_id,
    _set_debit_account_id,
    _set_credit_account_id,
    _set_amount,
    _set_pending_id,
    _set_user_data_128,
    _set_user_data_64,
    _set_user_data_32,
    _set_timeout,
    _set_ledger,
    _set_code,
    _set_flags,
    _set_timestamp,
) = (Transfer.__dict__[f.name].__set__ for f in fields(Transfer))


def transfer_record(stored: StoredTransfer) -> Transfer:
    """`Transfer(*stored)`, built without the frozen dataclass's `__init__`."""
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
    ) = stored
    t: Transfer = object.__new__(Transfer)
    _set_id(t, id_)
    _set_debit_account_id(t, debit_account_id)
    _set_credit_account_id(t, credit_account_id)
    _set_amount(t, amount)
    _set_pending_id(t, pending_id)
    _set_user_data_128(t, user_data_128)
    _set_user_data_64(t, user_data_64)
    _set_user_data_32(t, user_data_32)
    _set_timeout(t, timeout)
    _set_ledger(t, ledger)
    _set_code(t, code)
    _set_flags(t, flags)
    _set_timestamp(t, timestamp)
    return t


assert transfer_record(tuple(range(1, 14))) == Transfer(*range(1, 14))  # type: ignore[arg-type]
assert stored_transfer(Transfer(*range(1, 14))) == tuple(range(1, 14))


class Storage:
    """The engine's state, which the rules change, the queries read and the state exchange
    exports and imports. Not thread-safe: the `Ledger` facade holds the lock."""

    def __init__(self) -> None:
        self._accounts: dict[int, AccountState] = {}
        # Creation order is timestamp order (imported events must not regress), so these
        # lists are sorted by timestamp, and a binary search finds the record of a timestamp.
        self._account_log: list[AccountState] = []
        self._transfer_log = bytearray()
        # The position of each transfer in the log, by id: a dict of ints alone, which the
        # garbage collector does not track.
        self._transfer_index: dict[int, int] = {}
        self._pending_status: dict[int, int] = {}
        self._expiry: list[tuple[int, int, int]] = []  # (expires_at, timestamp, pending id)
        self._failed_ids: set[int] = set()
        self._undo: Undo | None = None

    def _transfer(self, id_: int) -> StoredTransfer | None:
        position = self._transfer_index.get(id_)
        return None if position is None else self._transfer_at(position)

    def _transfer_at(self, position: int) -> StoredTransfer:
        return transfer_fields_at(self._transfer_log, position * RECORD_SIZE)

    def _transfer_timestamp(self, position: int) -> int:
        offset = position * RECORD_SIZE + _TIMESTAMP_OFFSET
        timestamp: int = _TIMESTAMP_FIELD.unpack_from(self._transfer_log, offset)[0]
        return timestamp

    def _transfer_count(self) -> int:
        return len(self._transfer_log) // RECORD_SIZE

    def reserve_transfers(self, transfers: int, ids_in_order: bool) -> None:
        """Room for `transfers` more transfers: nothing to do here. The Rust engine maps the
        memory of its logs ahead; a `bytearray` has no room to set aside beyond its length."""
