"""The checks of an imported engine state, the twin of `rust/core/src/state_check.rs`.

A snapshot's checksums prove only that its bytes are the ones written; whoever can write them
can recompute them. So an engine imports a state only if it hangs together as a state that the
engine itself could have made: every field in range, every id once, every index consistent,
every balance the sum of the transfers that it holds. Both engines make these checks in the
same order, with the same messages, so that they accept and refuse exactly the same states;
the first that fails raises `ValueError`.

One check is stricter than the engine's own rules: replayed in log order, with each pending
transfer released at its expiry time, no balance may overflow. That is what `balances_at`
computes for the time of each transfer; a state for which it could overflow is refused.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ._state import EngineState
from ._types import (
    ACCOUNT_FLAGS_KNOWN,
    TIMESTAMP_MAX,
    TRANSFER_FLAGS_KNOWN,
    U128_MAX,
    Account,
    AccountFlags,
    Transfer,
    TransferFlags,
)

__all__ = ["check_state"]

NS_PER_S = 1_000_000_000

# The statuses of a pending transfer, as the state format stores them.
PENDING, POSTED, VOIDED, EXPIRED = 1, 2, 3, 4

_PENDING = TransferFlags.PENDING.value
_POST = TransferFlags.POST_PENDING_TRANSFER.value
_VOID = TransferFlags.VOID_PENDING_TRANSFER.value
_BALANCING = (TransferFlags.BALANCING_DEBIT | TransferFlags.BALANCING_CREDIT).value
_CLOSING_DEBIT = TransferFlags.CLOSING_DEBIT.value
_CLOSING_CREDIT = TransferFlags.CLOSING_CREDIT.value
_CLOSING = _CLOSING_DEBIT | _CLOSING_CREDIT
_IMPORTED = TransferFlags.IMPORTED.value
_LIMITS = (
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
).value
_HISTORY = AccountFlags.HISTORY.value
_CLOSED = AccountFlags.CLOSED.value


class _Replay:
    """The balances of each account, by index, as the transfers of the log make them in
    order: a pending transfer counts from its place until it is resolved or, if it has a
    timeout, until the first transfer stamped at or after its expiry."""

    def __init__(self, account_count: int) -> None:
        self.balances = [[0, 0, 0, 0] for _ in range(account_count)]
        self.expiry: list[tuple[int, int]] = []  # (expires_at, transfer index)
        self.counted: dict[int, tuple[int, int, int]] = {}  # index: (dr, cr, amount)

    def release_expired(self, timestamp: int) -> None:
        while self.expiry and self.expiry[0][0] <= timestamp:
            _, index = heapq.heappop(self.expiry)
            self.release(index)

    def release(self, index: int) -> None:
        counted = self.counted.pop(index, None)
        if counted is not None:
            dr, cr, amount = counted
            self.balances[dr][0] -= amount
            self.balances[cr][2] -= amount

    def add(self, index: int, t: Transfer, dr: int, cr: int) -> bool:
        """Counts transfer `index`; returns whether the balances of its accounts still fit."""
        if t.flags & _VOID:
            return True
        pending = t.flags & _PENDING
        self.balances[dr][0 if pending else 1] += t.amount
        self.balances[cr][2 if pending else 3] += t.amount
        if pending:
            self.counted[index] = (dr, cr, t.amount)
            if t.timeout:
                heapq.heappush(self.expiry, (_expires_at(t), index))
        return _balances_fit(self.balances[dr]) and _balances_fit(self.balances[cr])


def check_state(state: EngineState) -> None:
    """Raises ValueError, naming the first fault, unless `state` hangs together."""
    accounts = _check_accounts(state.accounts)
    pending_count = sum(1 for t in state.transfers if t.flags & _PENDING)
    if pending_count != len(state.pending):
        raise ValueError("the engine state holds a status for each pending transfer")
    transfers, resolved, touched = _check_transfers(state, accounts)
    _check_resolutions(state, resolved)
    _check_balances(state, accounts)
    _check_failed_ids(state.failed_ids, transfers)
    _check_history(state, touched)


def _check_accounts(accounts: Sequence[Account]) -> dict[int, int]:
    """Checks every account on its own; returns the index of each account by id."""
    index: dict[int, int] = {}
    previous = 0
    for i, a in enumerate(accounts):
        fault = _account_fault(a, previous, index)
        if fault is not None:
            raise ValueError(f"account {a.id} of the engine state {fault}")
        index[a.id] = i
        previous = a.timestamp
    return index


def _account_fault(a: Account, previous: int, index: dict[int, int]) -> str | None:
    if a.id in (0, U128_MAX):
        return "has an id no account may have"
    if a.id in index:
        return "appears twice"
    if a.reserved != 0:
        return "has a reserved field that is not zero"
    if a.flags & ~ACCOUNT_FLAGS_KNOWN:
        return "has a reserved flag"
    if a.flags & _LIMITS == _LIMITS:
        return "has mutually exclusive flags"
    if a.ledger == 0 or a.code == 0:
        return "has ledger or code zero"
    if not previous < a.timestamp <= TIMESTAMP_MAX:
        return "is not stamped after the account before it"
    return None


def _check_transfers(
    state: EngineState, accounts: dict[int, int]
) -> tuple[dict[int, int], set[int], list[int]]:
    """Checks every transfer in log order, replaying the balances it makes; returns the index
    of each transfer by id, the indexes of the resolved pending transfers, and how many
    transfers touch each account."""
    account_timestamps = {a.timestamp for a in state.accounts}
    index: dict[int, int] = {}
    statuses: dict[int, int] = {}
    resolved: set[int] = set()
    touched = [0] * len(state.accounts)
    replay = _Replay(len(state.accounts))
    pending_statuses = iter(state.pending)
    previous = 0
    for i, t in enumerate(state.transfers):
        replay.release_expired(t.timestamp)
        fault = _transfer_fault(state, t, previous, index, accounts, account_timestamps)
        if fault is None and t.flags & (_POST | _VOID):
            fault = _resolving_fault(state, t, index, statuses, resolved)
        elif fault is None:
            fault = _new_transfer_fault(t)
        if fault is None and t.flags & _PENDING:
            statuses[i] = next(pending_statuses)
            if statuses[i] == EXPIRED and not t.timeout:
                fault = "has expired without a timeout"
        dr, cr = accounts.get(t.debit_account_id, 0), accounts.get(t.credit_account_id, 0)
        if fault is None and t.flags & (_POST | _VOID):
            p = index[t.pending_id]
            resolved.add(p)
            replay.release(p)
        if fault is None and not replay.add(i, t, dr, cr):
            fault = "overflows the balances of its accounts"
        if fault is not None:
            raise ValueError(f"transfer {t.id} of the engine state {fault}")
        index[t.id] = i
        touched[dr] += 1
        touched[cr] += 1
        previous = t.timestamp
    return index, resolved, touched


def _transfer_fault(
    state: EngineState,
    t: Transfer,
    previous: int,
    index: dict[int, int],
    accounts: dict[int, int],
    account_timestamps: set[int],
) -> str | None:
    """What every transfer must be, pending, resolving or neither."""
    if t.id in (0, U128_MAX):
        return "has an id no transfer may have"
    if t.id in index:
        return "appears twice"
    if t.flags & ~TRANSFER_FLAGS_KNOWN:
        return "has a reserved flag"
    if not previous < t.timestamp <= TIMESTAMP_MAX:
        return "is not stamped after the transfer before it"
    if t.timestamp in account_timestamps:
        return "shares its timestamp with an account"
    if t.debit_account_id not in accounts or t.credit_account_id not in accounts:
        return "names a missing account"
    if t.debit_account_id == t.credit_account_id:
        return "has the same debit and credit account"
    dr = state.accounts[accounts[t.debit_account_id]]
    cr = state.accounts[accounts[t.credit_account_id]]
    if t.timestamp <= dr.timestamp or t.timestamp <= cr.timestamp:
        return "predates one of its accounts"
    if not t.ledger == dr.ledger == cr.ledger:
        return "is not on the ledger of its accounts"
    if t.code == 0:
        return "has code zero"
    return None


def _resolving_fault(
    state: EngineState,
    t: Transfer,
    index: dict[int, int],
    statuses: dict[int, int],
    resolved: set[int],
) -> str | None:
    """What a post or a void must be: the one resolution of an earlier pending transfer."""
    if (t.flags & _POST and t.flags & _VOID) or t.flags & (_PENDING | _BALANCING | _CLOSING):
        return "has mutually exclusive flags"
    if t.timeout != 0:
        return "has a timeout, which only a pending transfer may have"
    p_index = index.get(t.pending_id)
    if p_index is None:
        return "resolves no earlier transfer"
    p = state.transfers[p_index]
    if not p.flags & _PENDING:
        return "resolves a transfer that is not pending"
    if p_index in resolved:
        return "resolves a pending transfer resolved before"
    if (t.debit_account_id, t.credit_account_id, t.ledger, t.code) != (
        p.debit_account_id,
        p.credit_account_id,
        p.ledger,
        p.code,
    ):
        return "differs from the pending transfer it resolves"
    if t.amount > p.amount or (t.flags & _VOID and t.amount != p.amount):
        return "moves an amount that its pending transfer does not allow"
    if p.timeout and t.timestamp >= _expires_at(p):
        return "resolves its pending transfer after it expired"
    if statuses[p_index] != (POSTED if t.flags & _POST else VOIDED):
        return "resolves a pending transfer whose status says otherwise"
    return None


def _new_transfer_fault(t: Transfer) -> str | None:
    """What a transfer that resolves nothing must be."""
    if t.pending_id != 0:
        return "has a pending id, but resolves nothing"
    if not t.flags & _PENDING and t.timeout != 0:
        return "has a timeout, which only a pending transfer may have"
    if not t.flags & _PENDING and t.flags & _CLOSING:
        return "closes an account, which only a pending transfer may do"
    if t.flags & _IMPORTED and t.timeout != 0:
        return "is imported with a timeout"
    if _expires_at(t) > TIMESTAMP_MAX:
        return "expires after the last timestamp"
    return None


def _check_resolutions(state: EngineState, resolved: set[int]) -> None:
    """A pending transfer whose status says posted or voided has its post or void."""
    pending_statuses = iter(state.pending)
    for i, t in enumerate(state.transfers):
        if t.flags & _PENDING:
            status = next(pending_statuses)
            if status in (POSTED, VOIDED) and i not in resolved:
                raise ValueError(
                    f"transfer {t.id} of the engine state has status {status}, "
                    "but no transfer resolves it"
                )


def _check_balances(state: EngineState, accounts: dict[int, int]) -> None:
    """Each account holds the balances that its transfers make, and they fit."""
    expected = [[0, 0, 0, 0] for _ in state.accounts]
    still_pending = _still_pending(state)
    for t in state.transfers:
        dr, cr = accounts[t.debit_account_id], accounts[t.credit_account_id]
        if t.flags & _PENDING:
            if t.id in still_pending:
                expected[dr][0] += t.amount
                expected[cr][2] += t.amount
        elif not t.flags & _VOID:
            expected[dr][1] += t.amount
            expected[cr][3] += t.amount
    for a, balances in zip(state.accounts, expected, strict=True):
        held = [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted]
        if held != balances:
            raise ValueError(
                f"account {a.id} of the engine state does not hold the balances of its transfers"
            )
        if not _balances_fit(held):
            raise ValueError(f"account {a.id} of the engine state has balances that overflow")
    _check_closing(state, accounts, still_pending)


def _check_closing(state: EngineState, accounts: dict[int, int], still_pending: set[int]) -> None:
    """The accounts that a pending closing transfer closes are closed while it is pending."""
    for t in state.transfers:
        if t.id not in still_pending:
            continue
        debit = state.accounts[accounts[t.debit_account_id]]
        credit = state.accounts[accounts[t.credit_account_id]]
        for side, account in ((_CLOSING_DEBIT, debit), (_CLOSING_CREDIT, credit)):
            if t.flags & side and not account.flags & _CLOSED:
                raise ValueError(
                    f"transfer {t.id} of the engine state closes account {account.id}, "
                    "which is open"
                )


def _still_pending(state: EngineState) -> set[int]:
    """The ids of the pending transfers whose status is pending."""
    pending = (t for t in state.transfers if t.flags & _PENDING)
    return {t.id for t, status in zip(pending, state.pending, strict=True) if status == PENDING}


def _check_failed_ids(failed_ids: Sequence[int], transfers: dict[int, int]) -> None:
    previous = None
    for id_ in failed_ids:
        if id_ in (0, U128_MAX):
            raise ValueError(f"failed id {id_} of the engine state is an id no transfer may have")
        if previous is not None and id_ <= previous:
            raise ValueError("the failed ids of the engine state are not in ascending order")
        if id_ in transfers:
            raise ValueError(f"failed id {id_} of the engine state is the id of a transfer")
        previous = id_


def _check_history(state: EngineState, touched: list[int]) -> None:
    """An account flagged HISTORY holds a balance after each of its transfers, which fits."""
    with_history = [
        (a, n) for a, n in zip(state.accounts, touched, strict=True) if a.flags & _HISTORY
    ]
    if sum(n for _, n in with_history) != len(state.history):
        raise ValueError("the engine state holds a balance for each history transfer")
    entries = iter(state.history)
    for a, count in with_history:
        for _ in range(count):
            b = next(entries)
            balances = [b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted]
            if not _balances_fit(balances):
                raise ValueError(f"a history entry of account {a.id} of the engine state overflows")


def _balances_fit(balances: Sequence[int]) -> bool:
    """The invariant that makes posting safe: pending plus posted never overflows, on either
    side."""
    debits_pending, debits_posted, credits_pending, credits_posted = balances
    return (
        debits_pending + debits_posted <= U128_MAX and credits_pending + credits_posted <= U128_MAX
    )


def _expires_at(t: Transfer) -> int:
    return t.timestamp + t.timeout * NS_PER_S
