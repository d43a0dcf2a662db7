"""The engine contract: the methods that both engines expose, with the same results.

`PythonEngine` and the Rust engine `_native.Engine` both provide exactly these methods (a test
compares their method sets with this protocol, and mypy checks their signatures against it).
Every create and lookup checks its whole input first and raises `RecordTypeError`,
`InvalidRecordError`, `BatchTooLargeError` or `InvalidArgumentError` with the same messages in
both engines, changing nothing. A batch of transfers first releases the pending transfers that
expired by its first timestamp: expiry is a rule of the engines, not of their caller.

Batches come as objects (`create_accounts`, `create_transfers`) or as packed 128-byte records;
a caller that packs a batch once, for its journal, hands the same bytes to either engine:
`create_*_from_packed` answers with result records, `create_*_packed` with packed columns.
`counts` tells what `create_accounts` and `create_transfers` applied (calls, events, and the
results other than CREATED by status code), which a `Ledger` in memory reports in its metrics
without counting anything itself on the path of one transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._types import (
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateTransferResult,
    QueryFilter,
    Transfer,
)

__all__ = ["Engine"]


class Engine(Protocol):
    """What an engine provides; see the module's docstring for what both promise."""

    name: str

    def create_accounts(
        self, accounts: Sequence[Account], timestamp: int
    ) -> list[CreateAccountResult]: ...

    def create_transfers(
        self, transfers: Sequence[Transfer], timestamp: int
    ) -> list[CreateTransferResult]: ...

    def create_accounts_packed(
        self, records: memoryview, timestamp: int
    ) -> tuple[bytes, bytes]: ...

    def create_transfers_packed(
        self, records: memoryview, timestamp: int
    ) -> tuple[bytes, bytes]: ...

    def create_accounts_from_packed(
        self, records: memoryview, timestamp: int
    ) -> list[CreateAccountResult]: ...

    def create_transfers_from_packed(
        self, records: memoryview, timestamp: int
    ) -> list[CreateTransferResult]: ...

    def counts(
        self,
    ) -> tuple[tuple[int, int, dict[int, int]], tuple[int, int, dict[int, int]]]: ...

    def expiry_due(self, now_ns: int) -> bool: ...

    def reserve_transfers(self, transfers: int, ids_in_order: bool) -> None: ...

    def expire_pending_transfers(self, timestamp: int) -> int: ...

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]: ...

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]: ...

    def lookup_accounts_packed(self, ids: Sequence[int]) -> bytes: ...

    def lookup_transfers_packed(self, ids: Sequence[int]) -> bytes: ...

    def get_account_transfers(self, f: AccountFilter) -> list[Transfer]: ...

    def get_account_balances(self, f: AccountFilter) -> list[AccountBalance]: ...

    def query_accounts(self, f: QueryFilter) -> list[Account]: ...

    def query_transfers(self, f: QueryFilter) -> list[Transfer]: ...

    def balances_at(
        self, timestamp: int, account_ids: Sequence[int] | None, ledger: int
    ) -> tuple[tuple[bytes, bytes, bytes, bytes, bytes], tuple[int, int, int, int]]: ...

    def export_state(self) -> bytes: ...

    def import_state(self, state: bytes) -> None: ...
