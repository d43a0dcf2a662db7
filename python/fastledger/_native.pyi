# Hand-written stub for the Rust extension module built from rust/python. Keep it in step with
# rust/python/src/lib.rs: `python -m mypy.stubtest fastledger._native` compares the two.

from collections.abc import Sequence
from typing import Final, final

from ._types import (
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateTransferResult,
    QueryFilter,
    Transfer,
)

# PyO3 lists every name the module adds in __all__; stubtest checks that the stub lists the same.
__all__ = ["RECORD_SIZE", "Engine", "__version__", "pack_accounts", "pack_transfers"]

__version__: Final[str]
RECORD_SIZE: Final[int]

@final
class Engine:
    """The Rust engine: the methods of the engine contract (`fastledger._contract.Engine`),
    with the same results as `PythonEngine`.

    Creates and lookups check their whole input first and raise `RecordTypeError`,
    `InvalidRecordError` or `BatchTooLargeError` with the messages of `_check.py`, changing
    nothing; a batch timestamp outside `len(batch)..=2**63 - 1` raises
    `InvalidArgumentError`. A batch of transfers first releases what expired by its first
    timestamp.
    """

    # A class attribute ("rust"); declared as a plain attribute to match `Engine.name` of the
    # facade's protocol.
    name: str
    def __init__(self) -> None: ...
    # The results are `CreateAccountResult` and `CreateTransferResult` records, which are
    # (status, timestamp) tuples of ints; typed as the facade's `Engine` protocol has them.
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
    # A packed batch with the results of `create_accounts` and `create_transfers`.
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

# The batch as 128-byte records for the journal, checked as `Engine.create_accounts` and
# `Engine.create_transfers` check them, with the same exceptions and messages.
def pack_accounts(accounts: Sequence[Account]) -> bytes: ...
def pack_transfers(transfers: Sequence[Transfer]) -> bytes: ...
