"""`AsyncLedger`: the ledger for asyncio services.

Every call runs in a thread of the ledger's own executor, so neither the engine work nor the
wait for the disk ever blocks the event loop. Concurrent awaits become concurrent calls of one
`Ledger`, whose group commit gives them one write and one fsync between them; the executor's
size bounds how many share one.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from ._balances import Balances, TrialBalance
from ._ledger import Ledger
from ._types import (
    Account,
    AccountBalance,
    AccountFilter,
    CreateAccountResult,
    CreateTransferResult,
    QueryFilter,
    Transfer,
)
from .packed import PackedAccounts, PackedBatch, PackedResults, PackedTransfers

__all__ = ["WORKERS", "AsyncLedger"]

# The most calls in flight at once: every waiting caller holds a thread, and all of those that
# wait together share a group commit.
WORKERS = 64

R = TypeVar("R")


class AsyncLedger:
    """An asyncio front of a `Ledger`: the same methods, awaited.

    Make one with `await AsyncLedger.open(path, ...)` (the arguments of `Ledger.open`) or
    around an existing ledger with `AsyncLedger(ledger)`; use it as `async with`.
    """

    def __init__(self, ledger: Ledger, *, workers: int = WORKERS) -> None:
        self.ledger = ledger
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="fastledger")

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, workers: int = WORKERS, **options: Any
    ) -> AsyncLedger:
        """Opens a durable ledger (replaying its journal) without blocking the event loop.
        The options are those of `Ledger.open`; a `progress` callback is called on the
        thread that opens the ledger, not in the event loop (`loop.call_soon_threadsafe`
        hands a report over to it)."""
        ledger = await asyncio.to_thread(functools.partial(Ledger.open, path, **options))
        return cls(ledger, workers=workers)

    async def close(self) -> None:
        """Closes the ledger, then the executor; an in-memory ledger only loses its threads."""
        await self._run(self.ledger.close)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncLedger:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, call: Callable[..., R], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call, *args)

    @overload
    async def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]: ...
    @overload
    async def create_accounts(
        self, accounts: PackedBatch
    ) -> PackedResults[CreateAccountResult]: ...
    async def create_accounts(
        self, accounts: Sequence[Account] | PackedBatch
    ) -> list[CreateAccountResult] | PackedResults[CreateAccountResult]:
        return await self._run(self.ledger.create_accounts, accounts)

    @overload
    async def create_transfers(
        self, transfers: Sequence[Transfer]
    ) -> list[CreateTransferResult]: ...
    @overload
    async def create_transfers(
        self, transfers: PackedBatch
    ) -> PackedResults[CreateTransferResult]: ...
    async def create_transfers(
        self, transfers: Sequence[Transfer] | PackedBatch
    ) -> list[CreateTransferResult] | PackedResults[CreateTransferResult]:
        return await self._run(self.ledger.create_transfers, transfers)

    @overload
    async def lookup_accounts(
        self, ids: Sequence[int], *, packed: Literal[False] = False
    ) -> list[Account]: ...
    @overload
    async def lookup_accounts(
        self, ids: Sequence[int], *, packed: Literal[True]
    ) -> PackedAccounts: ...
    async def lookup_accounts(
        self, ids: Sequence[int], *, packed: bool = False
    ) -> list[Account] | PackedAccounts:
        if packed:
            lookup = functools.partial(self.ledger.lookup_accounts, packed=True)
            return await self._run(lookup, ids)
        return await self._run(self.ledger.lookup_accounts, ids)

    @overload
    async def lookup_transfers(
        self, ids: Sequence[int], *, packed: Literal[False] = False
    ) -> list[Transfer]: ...
    @overload
    async def lookup_transfers(
        self, ids: Sequence[int], *, packed: Literal[True]
    ) -> PackedTransfers: ...
    async def lookup_transfers(
        self, ids: Sequence[int], *, packed: bool = False
    ) -> list[Transfer] | PackedTransfers:
        if packed:
            lookup = functools.partial(self.ledger.lookup_transfers, packed=True)
            return await self._run(lookup, ids)
        return await self._run(self.ledger.lookup_transfers, ids)

    async def get_account_transfers(self, account_filter: AccountFilter) -> list[Transfer]:
        return await self._run(self.ledger.get_account_transfers, account_filter)

    async def get_account_balances(self, account_filter: AccountFilter) -> list[AccountBalance]:
        return await self._run(self.ledger.get_account_balances, account_filter)

    async def query_accounts(self, query_filter: QueryFilter) -> list[Account]:
        return await self._run(self.ledger.query_accounts, query_filter)

    async def query_transfers(self, query_filter: QueryFilter) -> list[Transfer]:
        return await self._run(self.ledger.query_transfers, query_filter)

    async def balances_at(
        self, timestamp: int, account_ids: Sequence[int] | None = None
    ) -> Balances:
        return await self._run(self.ledger.balances_at, timestamp, account_ids)

    async def trial_balance(self, ledger: int, at: int | None = None) -> TrialBalance:
        return await self._run(self.ledger.trial_balance, ledger, at)

    async def snapshot(self) -> bool:
        return await self._run(self.ledger.snapshot)
