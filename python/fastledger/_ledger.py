"""The `Ledger` facade: the clock, the argument checks and the lock, over one engine.

Both engines are deterministic state machines that never read a clock. The facade reads the
clock once per call, turns it into strictly increasing timestamps (never going backwards, even
when the clock does), checks the input at the edge, and serialises calls with a lock so that a
ledger can be shared between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload

from . import _check, packed
from ._balances import Balances, TrialBalance
from ._engine import PythonEngine
from ._records import RECORD_SIZE
from ._types import (
    ACCOUNT_FIELD_BITS,
    ACCOUNT_FILTER_FIELD_BITS,
    BATCH_MAX,
    QUERY_FILTER_FIELD_BITS,
    TIMESTAMP_MAX,
    TRANSFER_FIELD_BITS,
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    QueryFilter,
    Transfer,
)
from .errors import EngineUnavailableError, InvalidArgumentError, RecordTypeError
from .packed import PackedResults

__all__ = ["ENGINES", "Ledger"]

ENGINES = ("auto", "rust", "python")


PackedBatch = bytes | bytearray | memoryview | packed.PackedAccounts | packed.PackedTransfers


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between creating accounts and creating transfers."""

    name: str
    record: type
    fields: tuple[tuple[str, int], ...]
    result: type
    status_enum: type[CreateAccountStatus] | type[CreateTransferStatus]
    status: dict[int, Any]
    create: str
    create_packed: str


_ACCOUNTS = _Kind(
    "accounts",
    Account,
    ACCOUNT_FIELD_BITS,
    CreateAccountResult,
    CreateAccountStatus,
    {s.value: s for s in CreateAccountStatus},
    "create_accounts",
    "create_accounts_packed",
)
_TRANSFERS = _Kind(
    "transfers",
    Transfer,
    TRANSFER_FIELD_BITS,
    CreateTransferResult,
    CreateTransferStatus,
    {s.value: s for s in CreateTransferStatus},
    "create_transfers",
    "create_transfers_packed",
)


class Engine(Protocol):
    """What the facade needs of an engine; `PythonEngine` and `_native.Engine` provide it."""

    name: str

    def create_accounts(
        self, accounts: Sequence[Account], timestamp: int
    ) -> list[tuple[int, int]]: ...

    def create_transfers(
        self, transfers: Sequence[Transfer], timestamp: int
    ) -> list[tuple[int, int]]: ...

    def create_accounts_packed(
        self, records: memoryview, timestamp: int
    ) -> tuple[bytes, bytes]: ...

    def create_transfers_packed(
        self, records: memoryview, timestamp: int
    ) -> tuple[bytes, bytes]: ...

    def expire_pending_transfers(self, timestamp: int) -> int: ...

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]: ...

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]: ...

    def get_account_transfers(self, f: AccountFilter) -> list[Transfer]: ...

    def get_account_balances(self, f: AccountFilter) -> list[AccountBalance]: ...

    def query_accounts(self, f: QueryFilter) -> list[Account]: ...

    def query_transfers(self, f: QueryFilter) -> list[Transfer]: ...

    def balances_at(
        self, timestamp: int, account_ids: Sequence[int] | None, ledger: int
    ) -> tuple[tuple[bytes, bytes, bytes, bytes, bytes], tuple[int, int, int, int]]: ...


def rust_engine_available() -> bool:
    try:
        from . import _native  # noqa: F401
    except ImportError:
        return False
    return True


def _make_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise InvalidArgumentError(f"engine must be one of {ENGINES}, not {name!r}")
    if name == "python":
        return PythonEngine()
    try:
        from . import _native
    except ImportError as error:
        if name == "auto":
            return PythonEngine()
        raise EngineUnavailableError(
            f"the Rust engine cannot be imported ({error}); install a wheel built for this "
            'platform or choose engine="python"'
        ) from error
    engine: Engine = _native.Engine()
    return engine


class Ledger:
    """An in-memory ledger of accounts and immutable transfers.

    `engine` chooses the state machine: "rust" (the default whenever the native extension can
    be imported), "python", or "auto". `clock` returns nanoseconds since the epoch and can be
    injected by tests. `batch_max` bounds the events of one call.
    """

    def __init__(
        self,
        engine: str = "auto",
        *,
        clock: Callable[[], int] | None = None,
        batch_max: int = BATCH_MAX,
    ) -> None:
        if type(batch_max) is not int or not 1 <= batch_max <= BATCH_MAX:
            raise InvalidArgumentError(f"batch_max must be an int in 1..{BATCH_MAX}")
        self._engine = _make_engine(engine)
        self._clock = clock if clock is not None else time.time_ns
        self._batch_max = batch_max
        self._lock = threading.Lock()
        # The last timestamp given to an event, and the time through which pending
        # transfers have been expired: every later event is stamped after both.
        self._timestamp = 0
        self._expired_through = 0

    @property
    def engine(self) -> str:
        """The engine in use: "rust" or "python"."""
        return self._engine.name

    @property
    def batch_max(self) -> int:
        return self._batch_max

    # -- creates ---------------------------------------------------------------------------

    @overload
    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]: ...
    @overload
    def create_accounts(self, accounts: PackedBatch) -> PackedResults[CreateAccountResult]: ...
    def create_accounts(
        self, accounts: Sequence[Account] | PackedBatch
    ) -> list[CreateAccountResult] | PackedResults[CreateAccountResult]:
        """Creates accounts; returns one result per event, in order.

        `accounts` is a list of `Account` records, or a packed batch (see `fastledger.packed`)
        whose results then come back packed too.
        """
        return self._create(_ACCOUNTS, accounts)

    @overload
    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]: ...
    @overload
    def create_transfers(self, transfers: PackedBatch) -> PackedResults[CreateTransferResult]: ...
    def create_transfers(
        self, transfers: Sequence[Transfer] | PackedBatch
    ) -> list[CreateTransferResult] | PackedResults[CreateTransferResult]:
        """Creates transfers; returns one result per event, in order.

        `transfers` is a list of `Transfer` records, or a packed batch (see
        `fastledger.packed`) whose results then come back packed too.
        """
        return self._create(_TRANSFERS, transfers)

    def _create(self, kind: _Kind, events: object) -> list[Any] | PackedResults[Any]:
        if not isinstance(events, Sequence) or isinstance(events, (bytes, bytearray)):
            return self._create_packed(kind, events)
        events = _check.check_batch(events, kind.name, self._batch_max)
        if not events:
            return []
        if self._engine.name == "python":
            _check.check_records(events, kind.record, kind.name, kind.fields)
        with self._lock:
            timestamp = self._begin_batch(kind, len(events))
            raw = getattr(self._engine, kind.create)(events, timestamp)
        status = kind.status
        return [kind.result(status[s], ts) for s, ts in raw]

    def _create_packed(self, kind: _Kind, events: object) -> PackedResults[Any]:
        records = packed.as_records(events, kind.name)
        count = len(records) // RECORD_SIZE
        _check.check_count(count, kind.name, self._batch_max)
        if count == 0:
            return PackedResults(b"", b"", kind.result, kind.status_enum)
        with self._lock:
            timestamp = self._begin_batch(kind, count)
            statuses, timestamps = getattr(self._engine, kind.create_packed)(records, timestamp)
        return PackedResults(statuses, timestamps, kind.result, kind.status_enum)

    def _begin_batch(self, kind: _Kind, count: int) -> int:
        """Stamps a batch; before transfers, releases the pending transfers that expired."""
        timestamp = self._batch_timestamp(count)
        if kind is _TRANSFERS:
            self._engine.expire_pending_transfers(timestamp - count + 1)
        return timestamp

    # -- lookups ---------------------------------------------------------------------------

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        """The accounts with these ids, in the order asked; missing ids are left out."""
        ids = _check.check_ids(ids, "ids", self._batch_max)
        with self._lock:
            self._expire_now()
            return self._engine.lookup_accounts(ids)

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        """The transfers with these ids, in the order asked; missing ids are left out."""
        ids = _check.check_ids(ids, "ids", self._batch_max)
        with self._lock:
            self._expire_now()
            return self._engine.lookup_transfers(ids)

    # -- queries ---------------------------------------------------------------------------

    def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]:
        """The transfers of one account that match the filter, as TigerBeetle answers it."""
        self._check_account_filter(account_filter)
        with self._lock:
            self._expire_now()
            return self._engine.get_account_transfers(account_filter)

    def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]:
        """The balances after each matching transfer of an account flagged `HISTORY`."""
        self._check_account_filter(account_filter)
        with self._lock:
            self._expire_now()
            return self._engine.get_account_balances(account_filter)

    def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        """The accounts whose fields match the filter, by timestamp."""
        self._check_query_filter(query_filter)
        with self._lock:
            self._expire_now()
            return self._engine.query_accounts(query_filter)

    def query_transfers(self, query_filter: QueryFilter) -> list[Transfer]:
        """The transfers whose fields match the filter, by timestamp."""
        self._check_query_filter(query_filter)
        with self._lock:
            self._expire_now()
            return self._engine.query_transfers(query_filter)

    def balances_at(self, timestamp: int, account_ids: Sequence[int] | None = None) -> Balances:
        """The balances of accounts as they were at `timestamp`, events at that timestamp
        included: a read-only mapping from account id to `AccountBalance`.

        With `account_ids` None, every account that existed at `timestamp`; otherwise those
        of the given ids that existed then. No flag is needed on the accounts.
        """
        timestamp = _check.check_u64(timestamp, "timestamp")
        if account_ids is not None:
            account_ids = _check.check_ids(account_ids, "account_ids", 2**32)
        with self._lock:
            self._expire_now()
            columns, _ = self._engine.balances_at(timestamp, account_ids, 0)
        return Balances(timestamp, columns)

    def trial_balance(self, ledger: int, at: int | None = None) -> TrialBalance:
        """Per-account totals of one ledger as of `at` (default: now) and their sums."""
        if at is not None:
            at = _check.check_u64(at, "at")
        ledger = _check.check_u64(ledger, "ledger")
        if not 0 < ledger < 2**32:
            raise InvalidArgumentError(f"ledger must be in 1..{2**32 - 1}, not {ledger}")
        with self._lock:
            self._expire_now()
            timestamp = self._expired_through if at is None else at
            columns, totals = self._engine.balances_at(timestamp, None, ledger)
        debits_pending, debits_posted, credits_pending, credits_posted = totals
        return TrialBalance(
            ledger=ledger,
            timestamp=timestamp,
            accounts=Balances(timestamp, columns),
            debits_pending=debits_pending,
            debits_posted=debits_posted,
            credits_pending=credits_pending,
            credits_posted=credits_posted,
        )

    def _check_account_filter(self, account_filter: object) -> None:
        _check.check_filter(
            account_filter, AccountFilter, ACCOUNT_FILTER_FIELD_BITS, self._batch_max
        )

    def _check_query_filter(self, query_filter: object) -> None:
        _check.check_filter(query_filter, QueryFilter, QUERY_FILTER_FIELD_BITS, self._batch_max)

    # -- time ------------------------------------------------------------------------------

    def _read_clock(self) -> int:
        now: Any = self._clock()
        if type(now) is not int:
            raise RecordTypeError(f"the clock must return an int of nanoseconds, not {now!r}")
        return min(max(now, 0), TIMESTAMP_MAX)

    def _batch_timestamp(self, count: int) -> int:
        """The timestamp of the last event of a batch of `count`; event i of the batch takes
        `timestamp - count + i + 1`, so every event gets its own, after all earlier ones."""
        timestamp = max(self._read_clock(), self._timestamp + count, self._expired_through + count)
        assert timestamp <= TIMESTAMP_MAX, "the ledger has run out of timestamps"
        self._timestamp = timestamp
        self._expired_through = timestamp - count + 1
        return timestamp

    def _expire_now(self) -> None:
        now = max(self._read_clock(), self._expired_through)
        self._engine.expire_pending_transfers(now)
        self._expired_through = now
