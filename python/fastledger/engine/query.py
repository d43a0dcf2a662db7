"""The read side of the Python engine: lookups by id, the queries of accounts and transfers by
filter, and the balances of every account at a point in time.

The queries and `balances_at` are the twins of `rust/core/src/query.rs`, with the same helper
names; the Rust engine keeps its two lookups in `engine.rs`. Filters follow TigerBeetle's rules:
an invalid filter matches nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import TypeVar

from .. import _check
from .._balances import pack_u128
from .._records import RECORD_SIZE, iter_transfer_fields, pack_accounts
from .._types import (
    BATCH_MAX,
    U64_MAX,
    U128_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
)
from .storage import (
    AMOUNT,
    CODE,
    CREDIT_ACCOUNT_ID,
    DEBIT_ACCOUNT_ID,
    FLAGS,
    ID,
    LEDGER,
    PENDING_ID,
    TIMEOUT,
    USER_DATA_32,
    USER_DATA_64,
    USER_DATA_128,
    AccountState,
    Storage,
    StoredTransfer,
    account_timestamp,
    expires_at,
    transfer_record,
)

K = TypeVar("K")
R = TypeVar("R")

# The most ids that `balances_at` takes, as the facade allows them.
BALANCES_AT_IDS_MAX = 1 << 32

_PENDING = TransferFlags.PENDING.value
_POST = TransferFlags.POST_PENDING_TRANSFER.value
_VOID = TransferFlags.VOID_PENDING_TRANSFER.value


class Queries(Storage):
    """The reads of the engine contract: lookups, queries and balances at a timestamp."""

    # -- lookups ---------------------------------------------------------------------------

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        """The accounts with these ids, in the order asked; missing ids are left out."""
        accounts = self._accounts
        ids = _check.check_ids(ids, "ids", BATCH_MAX)
        return [accounts[i].record() for i in ids if i in accounts]

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        """The transfers with these ids, in the order asked; missing ids are left out."""
        found = map(self._transfer, _check.check_ids(ids, "ids", BATCH_MAX))
        return [transfer_record(t) for t in found if t is not None]

    def lookup_accounts_packed(self, ids: Sequence[int]) -> bytes:
        """`lookup_accounts` as packed 128-byte records."""
        return pack_accounts(self.lookup_accounts(ids))

    def lookup_transfers_packed(self, ids: Sequence[int]) -> bytes:
        """`lookup_transfers` as packed 128-byte records."""
        ids = _check.check_ids(ids, "ids", BATCH_MAX)
        log, index = self._transfer_log, self._transfer_index
        found = (index[i] * RECORD_SIZE for i in ids if i in index)
        return b"".join(log[offset : offset + RECORD_SIZE] for offset in found)

    # -- queries ---------------------------------------------------------------------------

    def get_account_transfers(self, f: AccountFilter) -> list[Transfer]:
        """The account's transfers that match the filter, by timestamp (REVERSED: newest
        first), at most `limit`. An invalid filter matches nothing, as in TigerBeetle."""
        account = self._accounts.get(f.account_id)
        if account is None or not _account_filter_valid(f):
            return []
        picks = self._select_account_transfers(account, f)
        return [transfer_record(t) for _, t in picks]

    def get_account_balances(self, f: AccountFilter) -> list[AccountBalance]:
        """The balances after each matching transfer of an account flagged `HISTORY`."""
        account = self._accounts.get(f.account_id)
        if account is None or account.history is None or not _account_filter_valid(f):
            return []
        picks = self._select_account_transfers(account, f)
        history = account.history
        return [history[i] for i, _ in picks]

    def _select_account_transfers(
        self, account: AccountState, f: AccountFilter
    ) -> list[tuple[int, StoredTransfer]]:
        return _select(
            account.transfers,
            f,
            self._transfer_timestamp,
            self._transfer_at,
            _transfer_matches_account_filter(f),
        )

    def query_accounts(self, f: QueryFilter) -> list[Account]:
        if not _query_filter_valid(f):
            return []
        picks = _select(
            self._account_log,
            f,
            account_timestamp,
            _same_account,
            _account_matches_query_filter(f),
        )
        return [a.record() for _, a in picks]

    def query_transfers(self, f: QueryFilter) -> list[Transfer]:
        if not _query_filter_valid(f):
            return []
        picks = _select(
            range(self._transfer_count()),
            f,
            self._transfer_timestamp,
            self._transfer_at,
            _transfer_matches_query_filter(f),
        )
        return [transfer_record(t) for _, t in picks]

    def balances_at(
        self, timestamp: int, account_ids: Sequence[int] | None, ledger: int
    ) -> tuple[tuple[bytes, bytes, bytes, bytes, bytes], tuple[int, int, int, int]]:
        """Every account's balances as of `timestamp`, events at that timestamp included.

        Replays the transfer log up to `timestamp`: a pending transfer counts while it is
        neither resolved by then nor expired (its expiry time is at or before `timestamp`).
        Returns packed u128 columns (account ids in creation order, or as asked, then debits
        pending, debits posted, credits pending, credits posted) and the four column sums.
        `ledger` > 0 keeps only the accounts of that ledger.
        """
        if account_ids is not None:
            account_ids = _check.check_ids(account_ids, "account_ids", BALANCES_AT_IDS_MAX)
        existing = bisect.bisect_right(self._account_log, timestamp, key=account_timestamp)
        if account_ids is None:
            chosen = self._account_log[:existing]
        else:
            # Each account once, in the order first asked.
            chosen = [
                a
                for a in map(self._accounts.get, dict.fromkeys(account_ids))
                if a is not None and a.timestamp <= timestamp
            ]
        if ledger:
            chosen = [a for a in chosen if a.ledger == ledger]
        position = {a.id: i for i, a in enumerate(chosen)}
        columns: tuple[list[int], list[int], list[int], list[int]] = (
            [0] * len(chosen),
            [0] * len(chosen),
            [0] * len(chosen),
            [0] * len(chosen),
        )
        debits_pending, debits_posted, credits_pending, credits_posted = columns
        end = bisect.bisect_right(
            range(self._transfer_count()), timestamp, key=self._transfer_timestamp
        )
        log = list(iter_transfer_fields(self._transfer_log[: end * RECORD_SIZE]))
        resolved = {t[PENDING_ID] for t in log if t[FLAGS] & (_POST | _VOID)}
        for t in log:
            if t[FLAGS] & _VOID:
                continue
            dr = position.get(t[DEBIT_ACCOUNT_ID])
            cr = position.get(t[CREDIT_ACCOUNT_ID])
            if t[FLAGS] & _PENDING:
                if t[ID] in resolved or (t[TIMEOUT] and expires_at(t) <= timestamp):
                    continue
                if dr is not None:
                    debits_pending[dr] += t[AMOUNT]
                if cr is not None:
                    credits_pending[cr] += t[AMOUNT]
            else:
                if dr is not None:
                    debits_posted[dr] += t[AMOUNT]
                if cr is not None:
                    credits_posted[cr] += t[AMOUNT]
        packed = (
            pack_u128([a.id for a in chosen]),
            pack_u128(debits_pending),
            pack_u128(debits_posted),
            pack_u128(credits_pending),
            pack_u128(credits_posted),
        )
        totals = (
            sum(debits_pending),
            sum(debits_posted),
            sum(credits_pending),
            sum(credits_posted),
        )
        return packed, totals


def _timestamps_valid(timestamp_min: int, timestamp_max: int) -> bool:
    if timestamp_min == U64_MAX or timestamp_max == U64_MAX:
        return False
    return timestamp_max == 0 or timestamp_min <= timestamp_max


def _account_filter_valid(f: AccountFilter) -> bool:
    """TigerBeetle's rules: a usable account id, ordered bounds, a limit, and at least one of
    DEBITS and CREDITS with no unknown flag."""
    return (
        f.account_id not in (0, U128_MAX)
        and _timestamps_valid(f.timestamp_min, f.timestamp_max)
        and f.limit > 0
        and bool(f.flags & (AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS))
        and not f.flags & ~_ACCOUNT_FILTER_FLAGS_KNOWN
    )


def _query_filter_valid(f: QueryFilter) -> bool:
    return (
        _timestamps_valid(f.timestamp_min, f.timestamp_max)
        and f.limit > 0
        and not f.flags & ~_QUERY_FILTER_FLAGS_KNOWN
    )


_ACCOUNT_FILTER_FLAGS_KNOWN = sum(AccountFilterFlags)
_QUERY_FILTER_FLAGS_KNOWN = sum(QueryFilterFlags)


def _transfer_matches_account_filter(f: AccountFilter) -> Callable[[StoredTransfer], bool]:
    debits = bool(f.flags & AccountFilterFlags.DEBITS)
    credits = bool(f.flags & AccountFilterFlags.CREDITS)

    def matches(t: StoredTransfer) -> bool:
        return (
            (
                (debits and t[DEBIT_ACCOUNT_ID] == f.account_id)
                or (credits and t[CREDIT_ACCOUNT_ID] == f.account_id)
            )
            and (f.user_data_128 == 0 or t[USER_DATA_128] == f.user_data_128)
            and (f.user_data_64 == 0 or t[USER_DATA_64] == f.user_data_64)
            and (f.user_data_32 == 0 or t[USER_DATA_32] == f.user_data_32)
            and (f.code == 0 or t[CODE] == f.code)
        )

    return matches


def _transfer_matches_query_filter(f: QueryFilter) -> Callable[[StoredTransfer], bool]:
    def matches(t: StoredTransfer) -> bool:
        return (
            (f.user_data_128 == 0 or t[USER_DATA_128] == f.user_data_128)
            and (f.user_data_64 == 0 or t[USER_DATA_64] == f.user_data_64)
            and (f.user_data_32 == 0 or t[USER_DATA_32] == f.user_data_32)
            and (f.ledger == 0 or t[LEDGER] == f.ledger)
            and (f.code == 0 or t[CODE] == f.code)
        )

    return matches


def _account_matches_query_filter(f: QueryFilter) -> Callable[[AccountState], bool]:
    def matches(a: AccountState) -> bool:
        return (
            (f.user_data_128 == 0 or a.user_data_128 == f.user_data_128)
            and (f.user_data_64 == 0 or a.user_data_64 == f.user_data_64)
            and (f.user_data_32 == 0 or a.user_data_32 == f.user_data_32)
            and (f.ledger == 0 or a.ledger == f.ledger)
            and (f.code == 0 or a.code == f.code)
        )

    return matches


def _same_account(account: AccountState) -> AccountState:
    return account


def _select(
    records: Sequence[K],
    f: AccountFilter | QueryFilter,
    timestamp_of: Callable[[K], int],
    read: Callable[[K], R],
    matches: Callable[[R], bool],
) -> list[tuple[int, R]]:
    """The records (sorted by timestamp) within the filter's timestamp bounds that match, in
    the filter's order, at most `limit` of them: each as its index in `records` and what
    `read` made of it, which is what `matches` judges. Each record is read once."""
    low = bisect.bisect_left(records, f.timestamp_min, key=timestamp_of)
    high = (
        bisect.bisect_right(records, f.timestamp_max, key=timestamp_of)
        if f.timestamp_max
        else len(records)
    )
    reversed_ = f.flags & (
        AccountFilterFlags.REVERSED if isinstance(f, AccountFilter) else QueryFilterFlags.REVERSED
    )
    positions = range(high - 1, low - 1, -1) if reversed_ else range(low, high)
    picks: list[tuple[int, R]] = []
    for i in positions:
        record = read(records[i])
        if matches(record):
            picks.append((i, record))
            if len(picks) == f.limit:
                break
    return picks
