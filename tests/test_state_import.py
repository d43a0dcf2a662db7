"""Importing an engine state: both engines accept exactly the states that hang together, and
refuse every other one with the same `ValueError`; no state, however damaged, reaches a panic.

A snapshot's checksums can be recomputed by whoever edits it, so these tests edit states the
way such a party would: decoded, one field changed, encoded again, so that every check past
the layout's is reached. Each accepted state is then queried and written to by both engines,
which must answer alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastledger import (
    Account,
    AccountBalance,
    AccountFilter,
    AccountFlags,
    InvalidArgumentError,
    Transfer,
    TransferFlags,
)
from fastledger._state import EngineState, decode_state, encode_state

from .conftest import ENGINE_NAMES, require_engine
from .helpers import new_engine

NS_PER_S = 1_000_000_000
START = 1_000 * NS_PER_S
U128_MAX = 2**128 - 1
AF = AccountFlags
TF = TransferFlags


def rich_state() -> bytes:
    """A state with one of everything a state can hold: limits, history, a closed account, a
    balancing transfer, pending transfers posted, voided, expired and still pending (one of
    them closing an account), and an id spent by a transient failure."""
    engine = new_engine("python")
    accounts = [
        Account(id=1, ledger=1, code=1, flags=AF.HISTORY),
        Account(id=2, ledger=1, code=1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
        Account(id=3, ledger=1, code=1),
        Account(id=4, ledger=1, code=1, flags=AF.HISTORY),
        Account(id=5, ledger=2, code=7),
    ]
    engine.create_accounts(accounts, START)

    def t(id_: int, dr: int, cr: int, amount: int, flags: int = 0, **more: int) -> Transfer:
        return Transfer(id_, dr, cr, amount, ledger=1, code=1, flags=flags, **more)

    def resolve(id_: int, pending_id: int, flags: int, amount: int = 0) -> Transfer:
        return Transfer(id_, pending_id=pending_id, amount=amount, flags=flags)

    batches = [
        [t(10, 1, 2, 50), t(11, 3, 1, 20, TF.PENDING, timeout=1), t(12, 1, 3, 7, TF.PENDING)],
        [t(13, 3, 2, 100), t(14, 1, 4, 9, TF.PENDING, timeout=100)],
        [resolve(15, 12, TF.POST_PENDING_TRANSFER, 5), resolve(16, 14, TF.VOID_PENDING_TRANSFER)],
        [t(17, 2, 3, 1000, TF.BALANCING_DEBIT), t(18, 4, 3, 2, TF.PENDING | TF.CLOSING_DEBIT)],
        [t(19, 3, 9, 1)],
    ]
    for i, batch in enumerate(batches):
        # Each batch two seconds after the last: transfer 11 expires before the third.
        engine.create_transfers(batch, START + 2 * (i + 1) * NS_PER_S)
    return engine.export_state()


@pytest.fixture(scope="module")
def state() -> bytes:
    for name in ENGINE_NAMES:
        require_engine(name)
    return rich_state()


Outcome = tuple[str, Any]


def import_outcome(name: str, state: bytes) -> tuple[Outcome, Any]:
    """("accepted", the engine) or ("refused", the message); a panic fails the test."""
    engine = new_engine(name)
    try:
        engine.import_state(state)
    except ValueError as error:
        return ("refused", str(error)), None
    # A Rust panic is a BaseException, which `except Exception` would let through.
    except BaseException as error:
        pytest.fail(f"the {name} engine raised {type(error).__name__} on import: {error}")
    return ("accepted", engine.export_state()), engine


def probe(engine: Any, state: EngineState) -> list[Any]:
    """What every read answers on an imported state, then what a batch of writes does."""
    answers: list[Any] = []
    timestamps = sorted({0, *(t.timestamp for t in state.transfers), 2**63 - 1})
    for timestamp in timestamps:
        answers.append(engine.balances_at(timestamp, None, 0))
    ids = sorted({a.id for a in state.accounts} | {1, 2, 3, 4, 5})
    for id_ in ids:
        f = AccountFilter(account_id=id_)
        answers.append(engine.get_account_transfers(f))
        answers.append(engine.get_account_balances(f))
    answers.append(engine.balances_at(2**62, ids, 0))
    newest = max(
        [0, *(a.timestamp for a in state.accounts), *(t.timestamp for t in state.transfers)]
    )
    writes = [
        Transfer(900 + i, pending_id=t.id, flags=flags)
        for i, t in enumerate(state.transfers)
        if t.flags & TF.PENDING
        for flags in (TF.POST_PENDING_TRANSFER, TF.VOID_PENDING_TRANSFER)
    ]
    writes.append(Transfer(999, 1, 2, 1, ledger=1, code=1))
    answers.append(engine.create_transfers(writes[:8189], newest + 10 * NS_PER_S))
    answers.append(engine.export_state())
    return answers


def assert_engines_agree(state: bytes) -> None:
    outcomes = {}
    engines = {}
    for name in ENGINE_NAMES:
        outcomes[name], engines[name] = import_outcome(name, state)
    assert outcomes["python"] == outcomes["rust"]
    if outcomes["python"][0] == "accepted":
        decoded = decode_state(state)
        try:
            probes = {name: probe(engine, decoded) for name, engine in engines.items()}
        except BaseException as error:
            pytest.fail(f"an imported state failed a read or a write: {error!r}")
        assert probes["python"] == probes["rust"]


def test_both_engines_export_the_rich_state_alike_and_accept_it(state: bytes) -> None:
    rust = new_engine("rust")
    rust.import_state(state)
    assert rust.export_state() == state
    assert_engines_agree(state)


# -- edits of one field -----------------------------------------------------------------------

# Values that lie on the edges the checks draw: zero, one, the largest, the ids and timestamps
# of other records.
INTERESTING = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    9,
    10,
    11,
    12,
    14,
    100,
    2**16 - 1,
    2**32 - 1,
    2**63 - 1,
    2**64 - 1,
    U128_MAX,
]


def fits(value: int, bits: int) -> int:
    return value & ((1 << bits) - 1)


ACCOUNT_BITS = dict(
    zip(
        [f.name for f in fields(Account)],
        [128, 128, 128, 128, 128, 128, 64, 32, 32, 32, 16, 16, 64],
        strict=True,
    )
)
TRANSFER_BITS = dict(
    zip(
        [f.name for f in fields(Transfer)],
        [128, 128, 128, 128, 128, 128, 64, 32, 32, 32, 16, 16, 64],
        strict=True,
    )
)


def edit_record(record: Any, name: str, value: int, bits: dict[str, int]) -> Any:
    return replace(record, **{name: fits(value, bits[name])})


@st.composite
def edits(draw: st.DrawFn, state: EngineState) -> EngineState:
    """The state with one or two fields edited."""
    for _ in range(draw(st.integers(1, 2))):
        state = draw(one_edit(state))
    return state


def interesting_or_any(state: EngineState) -> st.SearchStrategy[int]:
    near = {t.timestamp + d for t in state.transfers for d in (-1, 0, 1)}
    near |= {a.timestamp + d for a in state.accounts for d in (-1, 0, 1)}
    return st.one_of(st.sampled_from(INTERESTING + sorted(near)), st.integers(0, U128_MAX))


@st.composite
def one_edit(draw: st.DrawFn, state: EngineState) -> EngineState:
    section = draw(st.sampled_from(["accounts", "transfers", "pending", "failed", "history"]))
    value = draw(interesting_or_any(state))
    if section == "accounts":
        i = draw(st.integers(0, len(state.accounts) - 1))
        name = draw(st.sampled_from(list(ACCOUNT_BITS)))
        accounts = list(state.accounts)
        accounts[i] = edit_record(accounts[i], name, value, ACCOUNT_BITS)
        return replace(state, accounts=accounts)
    if section == "transfers":
        i = draw(st.integers(0, len(state.transfers) - 1))
        name = draw(st.sampled_from(list(TRANSFER_BITS)))
        transfers = list(state.transfers)
        transfers[i] = edit_record(transfers[i], name, value, TRANSFER_BITS)
        return replace(state, transfers=transfers)
    if section == "pending":
        i = draw(st.integers(0, len(state.pending) - 1))
        pending = bytearray(state.pending)
        pending[i] = draw(st.integers(1, 4))
        return replace(state, pending=bytes(pending))
    if section == "failed":
        return replace(state, failed_ids=draw(st.lists(interesting_or_any(state), max_size=3)))
    i = draw(st.integers(0, len(state.history) - 1))
    name = draw(st.sampled_from([f.name for f in fields(AccountBalance)][:4]))
    history = list(state.history)
    history[i] = replace(history[i], **{name: value})
    return replace(state, history=history)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_engines_accept_or_refuse_each_edited_state_alike_and_never_panic(
    state: bytes, data: st.DataObject
) -> None:
    edited = data.draw(edits(decode_state(state)))
    assert_engines_agree(encode_state(edited))


# -- edits of the bytes -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_engines_accept_or_refuse_each_damaged_byte_string_alike_and_never_panic(
    state: bytes, data: st.DataObject
) -> None:
    damaged = bytearray(state)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([len(damaged), data.draw(st.integers(0, len(damaged)))]))
    assert_engines_agree(bytes(damaged[:cut]))


# -- one scenario per check -------------------------------------------------------------------


def edited(state: bytes, edit: Callable[[EngineState], EngineState]) -> bytes:
    return encode_state(edit(decode_state(state)))


def with_account(i: int, **changes: int) -> Callable[[EngineState], EngineState]:
    def edit(s: EngineState) -> EngineState:
        accounts = list(s.accounts)
        accounts[i] = replace(accounts[i], **changes)
        return replace(s, accounts=accounts)

    return edit


def with_transfer(i: int, **changes: int) -> Callable[[EngineState], EngineState]:
    def edit(s: EngineState) -> EngineState:
        transfers = list(s.transfers)
        transfers[i] = replace(transfers[i], **changes)
        return replace(s, transfers=transfers)

    return edit


# Each edit is refused with its message by both engines. Transfer indexes are log positions:
# 0 (10), 1 (11, pending, expired), 2 (12, pending, posted), 3 (13), 4 (14, pending, voided),
# 5 (15, the post of 12), 6 (16, the void of 14), 7 (17), 8 (18, closing, pending); 19 failed.
REFUSALS: dict[str, tuple[Callable[[EngineState], EngineState], str]] = {
    "a balance off by one": (
        with_account(0, debits_posted=1),
        "account 1 of the engine state does not hold the balances of its transfers",
    ),
    "an id twice": (with_account(1, id=1), "account 1 of the engine state appears twice"),
    "a reserved account field": (
        with_account(2, reserved=1),
        "account 3 of the engine state has a reserved field that is not zero",
    ),
    "accounts out of order": (
        with_account(1, timestamp=1),
        "account 2 of the engine state is not stamped after the account before it",
    ),
    "a transfer predating its account": (
        with_transfer(0, timestamp=1),
        "transfer 10 of the engine state predates one of its accounts",
    ),
    "a post of more than its pending amount": (
        with_transfer(5, amount=8),
        "transfer 15 of the engine state moves an amount that its pending transfer does not allow",
    ),
    "a post naming a transfer that is not pending": (
        with_transfer(5, pending_id=10),
        "transfer 15 of the engine state resolves a transfer that is not pending",
    ),
    "a void of a transfer resolved before": (
        with_transfer(6, pending_id=12),
        "transfer 16 of the engine state resolves a pending transfer resolved before",
    ),
    "a closing transfer whose account is open": (
        with_account(3, flags=AF.HISTORY),
        "transfer 18 of the engine state closes account 4, which is open",
    ),
    "a timeout past the last timestamp": (
        with_transfer(1, timeout=2**32 - 1, timestamp=2**63 - 2),
        "transfer 11 of the engine state expires after the last timestamp",
    ),
    "a failed id that is a transfer's": (
        lambda s: replace(s, failed_ids=[10]),
        "failed id 10 of the engine state is the id of a transfer",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_both_engines_refuse_a_state_that_does_not_hang_together(state: bytes, case: str) -> None:
    edit, message = REFUSALS[case]
    for name in ENGINE_NAMES:
        outcome, _ = import_outcome(name, edited(state, edit))
        assert outcome == ("refused", message), name


def test_a_state_whose_past_balances_would_overflow_is_refused(state: bytes) -> None:
    """Pending transfers 11 and 12 of half the range each, from one account, 12 made before 11
    expired: no valid history holds both, and `balances_at` of the time of 12 would overflow.
    The checks refuse it at 12, before any balance is compared."""
    half = 2**127

    def edit(s: EngineState) -> EngineState:
        transfers = list(s.transfers)
        like_11 = {"debit_account_id": 3, "credit_account_id": 1, "amount": half}
        transfers[1] = replace(transfers[1], amount=half)
        transfers[2] = replace(transfers[2], **like_11)
        transfers[5] = replace(transfers[5], **like_11)
        return replace(s, transfers=transfers)

    message = "transfer 12 of the engine state overflows the balances of its accounts"
    for name in ENGINE_NAMES:
        outcome, _ = import_outcome(name, edited(state, edit))
        assert outcome == ("refused", message), name


def test_a_batch_stamped_before_an_imported_account_is_refused_not_a_panic(state: bytes) -> None:
    """A snapshot whose header says an earlier time than its state holds would have the
    facade stamp a batch before the accounts it moves."""
    for name in ENGINE_NAMES:
        engine = new_engine(name)
        engine.import_state(state)
        with pytest.raises(InvalidArgumentError, match="after the newest event"):
            engine.create_transfers([Transfer(50, 1, 2, 1, ledger=1, code=1)], START)
