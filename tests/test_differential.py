"""The backbone: both engines, driven by the same random operations, agree on everything.

A Hypothesis state machine sends the same batches, valid and invalid, to a Python-engine
ledger and a Rust-engine ledger that share one clock. After every step the results, the
lookups and the ledger-wide invariants must agree: per ledger, debits equal credits (posted
and pending), and the pending balances equal the sum of pending transfers that are neither
resolved nor expired.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fastledger import (
    AMOUNT_MAX,
    Account,
    AccountFilter,
    AccountFlags,
    Ledger,
    QueryFilter,
    Transfer,
    TransferFlags,
)
from fastledger._records import pack_accounts, pack_transfers

from .conftest import FakeClock, require_engine

U128_MAX = 2**128 - 1
ACCOUNT_IDS = [*range(1, 13), 0, U128_MAX]
TRANSFER_IDS = [*range(1, 301), 0, U128_MAX]
RESERVED_FLAG = 1 << 15

# Mostly small amounts, so that limits and balances interact; sometimes amounts at the edge
# of u128, so that every overflow status is reached.
amounts = st.one_of(
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 100),
    st.sampled_from([0, 1, AMOUNT_MAX, AMOUNT_MAX - 1, 2**127, 2**64]),
)


def rarely(strategy: st.SearchStrategy[int], odds: int = 10) -> st.SearchStrategy[int]:
    """`strategy` once in `odds` draws, else 0."""
    return st.integers(1, odds).flatmap(lambda n: strategy if n == 1 else st.just(0))


@st.composite
def accounts(draw: st.DrawFn, imported_at: int | None) -> Account:
    flags = draw(
        st.sampled_from(
            [
                *([0] * 3),
                AccountFlags.HISTORY,
                AccountFlags.LINKED,
                AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
                AccountFlags.CLOSED,
            ]
        )
    )
    flags |= draw(rarely(st.sampled_from([*AccountFlags, RESERVED_FLAG]), 15))
    flags &= ~int(AccountFlags.IMPORTED)
    if imported_at is not None:
        flags |= AccountFlags.IMPORTED
    return Account(
        id=draw(st.sampled_from(ACCOUNT_IDS)),
        debits_posted=draw(rarely(st.just(1), 30)),
        user_data_128=draw(st.integers(0, 2)),
        user_data_64=draw(st.integers(0, 2)),
        user_data_32=draw(st.integers(0, 2)),
        reserved=draw(rarely(st.just(1), 30)),
        ledger=draw(st.sampled_from([1, 1, 1, 1, 2, 0])),
        code=draw(st.sampled_from([1, 1, 1, 1, 2, 0])),
        flags=int(flags),
        timestamp=draw(st.integers(imported_at - 50, imported_at + 2)) if imported_at else 0,
    )


@st.composite
def transfers(draw: st.DrawFn, imported_at: int | None, pending: list[int]) -> Transfer:
    kind = draw(st.sampled_from(["single"] * 6 + ["pending"] * 3 + ["post"] * 2 + ["void", "any"]))
    flags = {
        "single": 0,
        "pending": TransferFlags.PENDING,
        "post": TransferFlags.POST_PENDING_TRANSFER,
        "void": TransferFlags.VOID_PENDING_TRANSFER,
        "any": draw(st.integers(0, 2**9 - 1)),
    }[kind]
    flags |= draw(
        rarely(
            st.sampled_from(
                [
                    TransferFlags.LINKED,
                    TransferFlags.LINKED,
                    TransferFlags.BALANCING_DEBIT,
                    TransferFlags.BALANCING_CREDIT,
                    TransferFlags.CLOSING_DEBIT | TransferFlags.PENDING,
                    TransferFlags.CLOSING_CREDIT | TransferFlags.PENDING,
                    RESERVED_FLAG,
                ]
            ),
            3,
        )
    )
    flags &= ~int(TransferFlags.IMPORTED)
    if imported_at is not None:
        flags |= TransferFlags.IMPORTED
    resolving = kind in ("post", "void")
    accounts_ = [*range(1, 9), *range(1, 7), 9, 0, U128_MAX] if not resolving else [0, 0, 0, 1, 2]
    return Transfer(
        id=draw(st.sampled_from(TRANSFER_IDS)),
        debit_account_id=draw(st.sampled_from(accounts_)),
        credit_account_id=draw(st.sampled_from(accounts_)),
        amount=draw(amounts),
        pending_id=(
            draw(
                st.sampled_from(pending)
                if pending and draw(st.booleans())
                else st.sampled_from(TRANSFER_IDS)
            )
            if resolving
            else draw(rarely(st.just(1), 30))
        ),
        user_data_128=draw(st.integers(0, 2)),
        user_data_64=draw(st.integers(0, 2)),
        user_data_32=draw(st.integers(0, 2)),
        timeout=(
            draw(st.sampled_from([0, 0, 1, 2, 2**32 - 1]))
            if kind == "pending"
            else draw(rarely(st.just(1), 30))
        ),
        ledger=draw(st.sampled_from([1, 1, 1, 1, 2, 0])),
        code=draw(st.sampled_from([1, 1, 1, 1, 0])),
        flags=int(flags),
        timestamp=(
            draw(st.integers(imported_at - 50, imported_at + 2))
            if imported_at
            else draw(rarely(st.just(1), 50))
        ),
    )


@st.composite
def account_filters(draw: st.DrawFn, now: int) -> AccountFilter:
    return AccountFilter(
        account_id=draw(st.sampled_from(ACCOUNT_IDS)),
        user_data_128=draw(st.sampled_from([0, 0, 1, 2])),
        user_data_64=draw(st.sampled_from([0, 0, 1])),
        user_data_32=draw(st.sampled_from([0, 0, 1])),
        code=draw(st.sampled_from([0, 0, 1, 2])),
        timestamp_min=draw(st.sampled_from([0, 0, now - 10**9, now, 2**64 - 1])),
        timestamp_max=draw(st.sampled_from([0, 0, now, now + 10**10, now - 10**10])),
        limit=draw(st.sampled_from([0, 1, 3, 100])),
        flags=draw(st.integers(0, 15)),
    )


@st.composite
def query_filters(draw: st.DrawFn, now: int) -> QueryFilter:
    return QueryFilter(
        user_data_128=draw(st.sampled_from([0, 0, 1, 2])),
        user_data_64=draw(st.sampled_from([0, 0, 1])),
        user_data_32=draw(st.sampled_from([0, 0, 1])),
        ledger=draw(st.sampled_from([0, 0, 1, 2])),
        code=draw(st.sampled_from([0, 0, 1, 2])),
        timestamp_min=draw(st.sampled_from([0, 0, now - 10**9, now])),
        timestamp_max=draw(st.sampled_from([0, 0, now, now + 10**10, now - 10**10])),
        limit=draw(st.sampled_from([0, 1, 3, 100])),
        flags=draw(st.integers(0, 3)),
    )


class TwoEngines(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.python = Ledger(engine="python", clock=self.clock)
        self.rust = Ledger(engine="rust", clock=self.clock)
        self.pending: list[int] = []
        self.last_transfers: list[Transfer] = []

    @initialize()
    def open_accounts(self) -> None:
        """Accounts 1-6 on ledger 1 and 7-8 on ledger 2, two of them with balance limits, so
        that most random transfers have somewhere to go."""
        flags = [0, 0, AccountFlags.HISTORY, 0, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS]
        flags += [AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS, 0, AccountFlags.HISTORY]
        batch = [
            Account(id=i, ledger=1 if i <= 6 else 2, code=1, flags=flags[i - 1])
            for i in range(1, 9)
        ]
        assert self.python.create_accounts(batch) == self.rust.create_accounts(batch)

    def imported_at(self, data: st.DataObject) -> int | None:
        """One batch in eight imports user timestamps, most of them in the recent past."""
        if data.draw(st.integers(1, 8)) > 1:
            return None
        return max(self.clock.now_ns, self.python._timestamp) - data.draw(st.integers(0, 40))

    @rule(data=st.data(), count=st.integers(1, 8))
    def create_accounts(self, data: st.DataObject, count: int) -> None:
        imported_at = self.imported_at(data)
        batch = data.draw(st.lists(accounts(imported_at), min_size=count, max_size=count))
        packed_for = data.draw(st.sampled_from(["neither", "python", "rust", "both"]))
        results = list(self.python.create_accounts(self.maybe_packed(batch, packed_for, "python")))
        assert results == list(
            self.rust.create_accounts(self.maybe_packed(batch, packed_for, "rust"))
        )

    @staticmethod
    def maybe_packed(batch: list[Any], packed_for: str, engine: str) -> Any:
        """The batch as objects, or as 128-byte records: both must give the same results."""
        if packed_for not in (engine, "both"):
            return batch
        if isinstance(batch[0], Account):
            return pack_accounts(batch)
        return pack_transfers(batch)

    @rule(data=st.data(), count=st.integers(1, 8))
    def create_transfers(self, data: st.DataObject, count: int) -> None:
        imported_at = self.imported_at(data)
        strategy = transfers(imported_at, self.pending)
        batch = data.draw(st.lists(strategy, min_size=count, max_size=count))
        packed_for = data.draw(st.sampled_from(["neither", "python", "rust", "both"]))
        results = list(self.python.create_transfers(self.maybe_packed(batch, packed_for, "python")))
        assert results == list(
            self.rust.create_transfers(self.maybe_packed(batch, packed_for, "rust"))
        )
        self.last_transfers = batch
        self.pending.extend(
            t.id
            for t, r in zip(batch, results, strict=True)
            if r.status.name == "CREATED" and t.flags & TransferFlags.PENDING
        )

    @rule()
    def retry_last_transfers(self) -> None:
        """Idempotency: the same batch again answers EXISTS (or why not) the same way."""
        if self.last_transfers:
            batch = self.last_transfers
            assert self.python.create_transfers(batch) == self.rust.create_transfers(batch)

    @rule(seconds=st.sampled_from([0, 1, 2, 3]), ns=st.integers(0, 1000))
    def advance_clock(self, seconds: int, ns: int) -> None:
        self.clock.advance(seconds=seconds, ns=ns)

    @rule(back_ns=st.integers(1, 10**10))
    def clock_goes_backwards(self, back_ns: int) -> None:
        self.clock.now_ns -= back_ns

    @rule(data=st.data())
    def account_queries_agree(self, data: st.DataObject) -> None:
        f = data.draw(account_filters(self.clock.now_ns))
        assert self.python.get_account_transfers(f) == self.rust.get_account_transfers(f)
        assert self.python.get_account_balances(f) == self.rust.get_account_balances(f)

    @rule(data=st.data())
    def queries_agree(self, data: st.DataObject) -> None:
        f = data.draw(query_filters(self.clock.now_ns))
        assert self.python.query_accounts(f) == self.rust.query_accounts(f)
        assert self.python.query_transfers(f) == self.rust.query_transfers(f)

    @rule(back_ns=st.integers(0, 5 * 10**9), ids=st.none() | st.lists(st.sampled_from(ACCOUNT_IDS)))
    def balances_at_agree(self, back_ns: int, ids: list[int] | None) -> None:
        at = max(0, self.clock.now_ns - back_ns)
        chosen = dict(self.python.balances_at(at, ids))
        assert chosen == dict(self.rust.balances_at(at, ids))
        every = dict(self.python.balances_at(at))
        assert chosen == {i: every[i] for i in (every if ids is None else ids) if i in every}
        assert every == replayed_balances(self.python, at)
        for ledger_id in (1, 2):
            trial = self.python.trial_balance(ledger_id, at)
            assert trial.balanced
            assert trial == self.rust.trial_balance(ledger_id, at)

    @invariant()
    def balances_now_are_the_current_balances(self) -> None:
        for ledger in (self.python, self.rust):
            accounts_ = ledger.lookup_accounts(ACCOUNT_IDS)
            latest = max(self.clock.now_ns, ledger._timestamp, ledger._expired_through)
            now = ledger.balances_at(latest)
            for a in accounts_:
                b = now[a.id]
                assert (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted) == (
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                )

    @invariant()
    def lookups_agree(self) -> None:
        accounts_py = self.python.lookup_accounts(ACCOUNT_IDS)
        assert accounts_py == self.rust.lookup_accounts(ACCOUNT_IDS)
        transfers_py = self.python.lookup_transfers(TRANSFER_IDS)
        assert transfers_py == self.rust.lookup_transfers(TRANSFER_IDS)
        for ids, lookup in ((ACCOUNT_IDS, "lookup_accounts"), (TRANSFER_IDS, "lookup_transfers")):
            packed_py = getattr(self.python, lookup)(ids, packed=True).buffer
            assert packed_py == getattr(self.rust, lookup)(ids, packed=True).buffer
        self.check_ledger_invariants(accounts_py, transfers_py)

    @invariant()
    def metrics_agree(self) -> None:
        # Each engine counts the creates of objects it applied, the facade the rest. (The
        # lookups differ: the invariants read the Python ledger more.)
        python, rust = self.python.metrics(), self.rust.metrics()
        assert python.create_accounts == rust.create_accounts
        assert python.create_transfers == rust.create_transfers
        assert python.transfers_created == rust.transfers_created

    def check_ledger_invariants(self, accounts_: list[Account], transfers_: list[Transfer]) -> None:
        sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for a in accounts_:
            s = sums[a.ledger]
            s[0] += a.debits_posted
            s[1] += a.credits_posted
            s[2] += a.debits_pending
            s[3] += a.credits_pending
        for ledger_id, (dr_posted, cr_posted, dr_pending, cr_pending) in sums.items():
            assert dr_posted == cr_posted, f"ledger {ledger_id}: posted debits != credits"
            assert dr_pending == cr_pending, f"ledger {ledger_id}: pending debits != credits"
        resolved = {t.pending_id for t in transfers_ if t.pending_id}
        expired_through = self.python._expired_through
        debits_pending: dict[int, int] = defaultdict(int)
        credits_pending: dict[int, int] = defaultdict(int)
        for t in transfers_:
            expired = t.timeout and t.timestamp + t.timeout * 10**9 <= expired_through
            if t.flags & TransferFlags.PENDING and t.id not in resolved and not expired:
                debits_pending[t.debit_account_id] += t.amount
                credits_pending[t.credit_account_id] += t.amount
        for a in accounts_:
            assert a.debits_pending == debits_pending[a.id], f"account {a.id} debits pending"
            assert a.credits_pending == credits_pending[a.id], f"account {a.id} credits pending"


def replayed_balances(ledger: Ledger, at: int) -> dict[int, object]:
    """The balances at `at` of a fresh ledger that replayed, each at its original timestamp,
    the accounts and transfers the ledger holds up to `at`: an independent check of
    `balances_at`, through the create path."""
    accounts_ = [a for a in ledger.lookup_accounts(ACCOUNT_IDS) if a.timestamp <= at]
    transfers_ = [t for t in ledger.lookup_transfers(TRANSFER_IDS) if t.timestamp <= at]
    events: list[Account | Transfer] = sorted([*accounts_, *transfers_], key=lambda e: e.timestamp)
    clock = FakeClock(0)
    fresh = Ledger(engine="python", clock=clock)
    for event in events:
        clock.now_ns = event.timestamp
        if isinstance(event, Account):
            flags = event.flags & ~(
                AccountFlags.LINKED | AccountFlags.IMPORTED | AccountFlags.CLOSED
            )
            replayed = Account(id=event.id, ledger=event.ledger, code=event.code, flags=flags)
            results: list[object] = list(fresh.create_accounts([replayed]))
        else:
            flags = event.flags & ~(
                TransferFlags.LINKED
                | TransferFlags.IMPORTED
                | TransferFlags.BALANCING_DEBIT
                | TransferFlags.BALANCING_CREDIT
            )
            replayed_transfer = Transfer(
                id=event.id,
                debit_account_id=event.debit_account_id,
                credit_account_id=event.credit_account_id,
                amount=event.amount,
                pending_id=event.pending_id,
                timeout=event.timeout,
                ledger=event.ledger,
                code=event.code,
                flags=flags,
            )
            results = list(fresh.create_transfers([replayed_transfer]))
        assert [(r.status.name, r.timestamp) for r in results] == [("CREATED", event.timestamp)]
    return dict(fresh.balances_at(at))


@pytest.mark.slow
def test_python_and_rust_engines_agree_on_random_operations() -> None:
    """400 random runs of 40 steps by default; FASTLEDGER_DIFFERENTIAL_EXAMPLES asks for more."""
    require_engine("rust")
    TwoEngines.TestCase.settings = settings(
        max_examples=int(os.environ.get("FASTLEDGER_DIFFERENTIAL_EXAMPLES", "400")),
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    TwoEngines.TestCase().runTest()
