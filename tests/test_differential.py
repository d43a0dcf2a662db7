"""The backbone: both engines, driven by the same random operations, agree on everything.

A Hypothesis state machine sends the same batches, valid and invalid, to a Python-engine
ledger and a Rust-engine ledger that share one clock. After every step the results, the
lookups and the ledger-wide invariants must agree: per ledger, debits equal credits (posted
and pending), and the pending balances equal the sum of pending transfers that are neither
resolved nor expired.
"""

from __future__ import annotations

from collections import defaultdict

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fastledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    Ledger,
    Transfer,
    TransferFlags,
)

from .conftest import FakeClock, require_engine

U128_MAX = 2**128 - 1
ACCOUNT_IDS = [*range(1, 13), 0, U128_MAX]
TRANSFER_IDS = [*range(1, 41), 0, U128_MAX]
RESERVED_FLAG = 1 << 15

amounts = st.one_of(
    st.integers(0, 1000),
    st.sampled_from([0, 1, AMOUNT_MAX, AMOUNT_MAX - 1, 2**127, 2**64]),
    st.integers(0, U128_MAX),
)


def flag_subset(flags: type[AccountFlags] | type[TransferFlags]) -> st.SearchStrategy[int]:
    members = [int(f) for f in flags if f.value]
    return st.lists(st.sampled_from(members), max_size=3).map(lambda fs: sum(set(fs)))


@st.composite
def accounts(draw: st.DrawFn, now: int) -> Account:
    imported = draw(st.integers(0, 9)) == 0
    flags = draw(flag_subset(AccountFlags)) & ~int(AccountFlags.IMPORTED)
    if imported:
        flags |= AccountFlags.IMPORTED
    if draw(st.integers(0, 30)) == 0:
        flags |= RESERVED_FLAG
    return Account(
        id=draw(st.sampled_from(ACCOUNT_IDS)),
        debits_posted=draw(st.sampled_from([0] * 20 + [1])),
        user_data_128=draw(st.integers(0, 2)),
        user_data_64=draw(st.integers(0, 2)),
        user_data_32=draw(st.integers(0, 2)),
        reserved=draw(st.sampled_from([0] * 30 + [1])),
        ledger=draw(st.sampled_from([1, 1, 1, 2, 0])),
        code=draw(st.sampled_from([1, 1, 1, 2, 0])),
        flags=flags,
        timestamp=draw(st.integers(now - 2000, now + 5)) if imported else 0,
    )


@st.composite
def transfers(draw: st.DrawFn, now: int) -> Transfer:
    imported = draw(st.integers(0, 9)) == 0
    kind = draw(st.sampled_from(["single", "single", "pending", "post", "void", "any"]))
    flags = {
        "single": 0,
        "pending": TransferFlags.PENDING,
        "post": TransferFlags.POST_PENDING_TRANSFER,
        "void": TransferFlags.VOID_PENDING_TRANSFER,
        "any": draw(flag_subset(TransferFlags)),
    }[kind] | draw(
        st.sampled_from(
            [0] * 6
            + [
                TransferFlags.LINKED,
                TransferFlags.BALANCING_DEBIT,
                TransferFlags.BALANCING_CREDIT,
                TransferFlags.CLOSING_DEBIT | TransferFlags.PENDING,
                RESERVED_FLAG,
            ]
        )
    )
    flags &= ~int(TransferFlags.IMPORTED)
    if imported:
        flags |= TransferFlags.IMPORTED
    resolving = kind in ("post", "void")
    return Transfer(
        id=draw(st.sampled_from(TRANSFER_IDS)),
        debit_account_id=draw(st.sampled_from([0, *ACCOUNT_IDS] if resolving else ACCOUNT_IDS)),
        credit_account_id=draw(st.sampled_from([0, *ACCOUNT_IDS] if resolving else ACCOUNT_IDS)),
        amount=draw(amounts),
        pending_id=draw(st.sampled_from(TRANSFER_IDS)) if resolving else 0,
        user_data_128=draw(st.integers(0, 2)),
        user_data_64=draw(st.integers(0, 2)),
        user_data_32=draw(st.integers(0, 2)),
        timeout=draw(st.sampled_from([0, 0, 1, 2, 2**32 - 1])) if kind == "pending" else 0,
        ledger=draw(st.sampled_from([1, 1, 1, 2, 0])),
        code=draw(st.sampled_from([1, 1, 1, 0])),
        flags=int(flags),
        timestamp=draw(st.integers(now - 2000, now + 5)) if imported else 0,
    )


class TwoEngines(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.python = Ledger(engine="python", clock=self.clock)
        self.rust = Ledger(engine="rust", clock=self.clock)

    @rule(data=st.data(), count=st.integers(1, 8))
    def create_accounts(self, data: st.DataObject, count: int) -> None:
        batch = data.draw(st.lists(accounts(self.clock.now_ns), min_size=count, max_size=count))
        assert self.python.create_accounts(batch) == self.rust.create_accounts(batch)

    @rule(data=st.data(), count=st.integers(1, 8))
    def create_transfers(self, data: st.DataObject, count: int) -> None:
        batch = data.draw(st.lists(transfers(self.clock.now_ns), min_size=count, max_size=count))
        assert self.python.create_transfers(batch) == self.rust.create_transfers(batch)

    @rule(seconds=st.sampled_from([0, 1, 2, 3]), ns=st.integers(0, 1000))
    def advance_clock(self, seconds: int, ns: int) -> None:
        self.clock.advance(seconds=seconds, ns=ns)

    @rule(back_ns=st.integers(1, 10**10))
    def clock_goes_backwards(self, back_ns: int) -> None:
        self.clock.now_ns -= back_ns

    @invariant()
    def lookups_agree(self) -> None:
        accounts_py = self.python.lookup_accounts(ACCOUNT_IDS)
        assert accounts_py == self.rust.lookup_accounts(ACCOUNT_IDS)
        transfers_py = self.python.lookup_transfers(TRANSFER_IDS)
        assert transfers_py == self.rust.lookup_transfers(TRANSFER_IDS)
        self.check_ledger_invariants(accounts_py, transfers_py)

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


@pytest.mark.slow
def test_python_and_rust_engines_agree_on_random_operations() -> None:
    require_engine("rust")
    TwoEngines.TestCase.settings = settings(
        max_examples=150,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    TwoEngines.TestCase().runTest()
