"""The `Ledger` facade's contract, read as a specification.

What both engines share lives in the facade: choosing the engine, the clock and its strictly
increasing timestamps, the batch limit, refusing input that a record cannot hold, the lock
that makes a ledger safe to share between threads, and the shape of every answer. The
queries and the point-in-time balances are specified here too.
Scenarios run on both engines through the `ledger` fixture.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import FrozenInstanceError, replace
from itertools import pairwise
from typing import Any

import pytest

import fastledger
from fastledger import (
    AMOUNT_MAX,
    BATCH_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    Balances,
    BatchTooLargeError,
    CreateAccountStatus,
    CreateTransferStatus,
    EngineUnavailableError,
    FastledgerError,
    InvalidArgumentError,
    InvalidRecordError,
    Ledger,
    QueryFilter,
    QueryFilterFlags,
    RecordTypeError,
    Transfer,
    TransferFlags,
    TrialBalance,
)

from .conftest import FakeClock
from .helpers import (
    NS_PER_S,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    U128_MAX,
    Amounts,
    account,
    apply_transfers,
    balances,
    create_accounts,
    create_transfers,
    open_accounts,
    pending,
    post,
    snapshot,
    transfer,
    void,
)

A = CreateAccountStatus
T = CreateTransferStatus
DEBITS = AccountFilterFlags.DEBITS
CREDITS = AccountFilterFlags.CREDITS
REVERSED = AccountFilterFlags.REVERSED


def ids(records: Sequence[Account] | Sequence[Transfer]) -> list[int]:
    return [record.id for record in records]


# -- Engine selection ------------------------------------------------------------------------


def test_auto_picks_rust_whenever_it_is_available() -> None:
    expected = "rust" if fastledger.rust_engine_available() else "python"
    assert Ledger().engine == expected
    assert Ledger(engine="auto").engine == expected


def test_an_engine_chosen_by_name_is_the_one_in_use(engine: str) -> None:
    assert Ledger(engine=engine).engine == engine


def test_rust_by_name_without_the_extension_raises_engine_unavailable() -> None:
    if fastledger.rust_engine_available():
        pytest.skip("the Rust engine is built: it cannot be unavailable")
    with pytest.raises(EngineUnavailableError, match="python"):
        Ledger(engine="rust")


@pytest.mark.parametrize("name", ["", "Rust", "PYTHON", "pypy", "native"])
def test_an_unknown_engine_name_raises_invalid_argument(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="engine"):
        Ledger(engine=name)


def test_exceptions_are_exported_and_catchable_as_builtins() -> None:
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidRecordError, ValueError)
    assert issubclass(BatchTooLargeError, ValueError)
    assert issubclass(RecordTypeError, TypeError)
    assert issubclass(EngineUnavailableError, ImportError)
    for error in (InvalidArgumentError, InvalidRecordError, BatchTooLargeError, RecordTypeError):
        assert issubclass(error, FastledgerError)
        assert getattr(fastledger, error.__name__) is error
        assert error.__name__ in fastledger.__all__


# -- Timestamps ------------------------------------------------------------------------------


def test_timestamps_strictly_increase_even_when_the_clock_goes_backwards(
    ledger: Ledger, clock: FakeClock
) -> None:
    stamps: list[int] = []
    next_id = 1
    # The clock stands still, steps back, jumps ahead, and falls back to the epoch and before.
    for step_ns in (0, -5 * NS_PER_S, 10 * NS_PER_S, -3600 * NS_PER_S, -1, -clock.now_ns, -1):
        clock.advance(ns=step_ns)
        results = ledger.create_accounts([account(next_id), account(next_id + 1)])
        stamps += [r.timestamp for r in results]
        results = ledger.create_transfers([transfer(next_id, next_id, next_id + 1, 1)])
        stamps += [r.timestamp for r in results]
        next_id += 2
    assert all(earlier < later for earlier, later in pairwise(stamps))


def test_a_clock_that_returns_no_int_is_refused(engine: str) -> None:
    bad = Ledger(engine=engine, clock=lambda: 1.5)  # type: ignore[arg-type, return-value]
    with pytest.raises(RecordTypeError, match="clock"):
        bad.create_accounts([account(1)])


# -- The batch limit -------------------------------------------------------------------------


def test_a_batch_of_batch_max_events_is_accepted(ledger: Ledger) -> None:
    assert BATCH_MAX == 8189
    results = ledger.create_accounts([account(i) for i in range(1, BATCH_MAX + 1)])
    assert [r.status for r in results] == [A.CREATED] * BATCH_MAX
    results = ledger.create_transfers([transfer(i, 1, 2, 1) for i in range(1, BATCH_MAX + 1)])
    assert [r.status for r in results] == [T.CREATED] * BATCH_MAX
    assert balances(ledger, 1) == Amounts(debits_posted=BATCH_MAX)


def test_a_batch_over_the_limit_raises_and_changes_nothing(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2))
    before = snapshot(ledger)
    with pytest.raises(BatchTooLargeError, match="8189"):
        ledger.create_accounts([account(i) for i in range(3, BATCH_MAX + 4)])
    with pytest.raises(BatchTooLargeError, match="8189"):
        ledger.create_transfers([transfer(i, 1, 2, 1) for i in range(1, BATCH_MAX + 2)])
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    ("transfers", "ids_in_order"),
    [(-1, False), (1.5, False), (True, False), (2**63, False), (10, 1), (10, None)],
)
def test_a_bad_reservation_raises_invalid_argument_and_changes_nothing(
    ledger: Ledger, transfers: Any, ids_in_order: Any
) -> None:
    open_accounts(ledger, account(1), account(2))
    before = snapshot(ledger)
    with pytest.raises(InvalidArgumentError, match=r"transfers|ids_in_order"):
        ledger.reserve_transfers(transfers, ids_in_order=ids_in_order)
    assert snapshot(ledger) == before


@pytest.mark.parametrize("ids_in_order", [True, False])
def test_a_reservation_changes_no_result_whatever_the_order_of_the_ids(
    make_ledger: Callable[[], Ledger], ids_in_order: bool
) -> None:
    reserved, plain = make_ledger(), make_ledger()
    reserved.reserve_transfers(20_000, ids_in_order=ids_in_order)
    # Ids in order, then out of order (and one again), so that both indexes of ids are used.
    batches = [range(1, 3001), range(10**30, 10**30 - 3000, -1), [1, 10**30, 77]]
    for ledger in (reserved, plain):
        open_accounts(ledger, account(1), account(2))
    for batch in batches:
        events = [transfer(id_, 1, 2, 1 + id_ % 5) for id_ in batch]
        assert reserved.create_transfers(events) == plain.create_transfers(events)
    every_id = [id_ for batch in batches[:2] for id_ in batch]
    assert reserved.lookup_transfers(every_id[:8000]) == plain.lookup_transfers(every_id[:8000])


def test_an_empty_batch_has_no_results(ledger: Ledger) -> None:
    assert ledger.create_accounts([]) == []
    assert ledger.create_transfers([]) == []


# -- Bad input: exceptions, and nothing applied ---------------------------------------------


def bad_account(**fields: Any) -> Account:
    """An account with fields that no 128-byte record can hold (type checkers agree)."""
    return replace(account(3), **fields)


def bad_transfer(**fields: Any) -> Transfer:
    return replace(transfer(101, 1, 2, 1), **fields)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param(transfer(101, 1, 2, 1), RecordTypeError, id="a transfer for an account"),
        pytest.param(bad_account(ledger="1"), RecordTypeError, id="str field"),
        pytest.param(bad_account(flags=True), RecordTypeError, id="bool flags"),
        pytest.param(bad_account(code=True), RecordTypeError, id="bool code"),
        pytest.param(bad_account(user_data_64=1.0), RecordTypeError, id="float field"),
        pytest.param(bad_account(user_data_128=None), RecordTypeError, id="None field"),
        pytest.param(bad_account(id=-1), InvalidRecordError, id="negative id"),
        pytest.param(bad_account(user_data_32=-1), InvalidRecordError, id="negative u32"),
        pytest.param(bad_account(id=2**128), InvalidRecordError, id="u128 too large"),
        pytest.param(bad_account(user_data_128=2**128), InvalidRecordError, id="u128 field"),
        pytest.param(bad_account(user_data_64=2**64), InvalidRecordError, id="u64 too large"),
        pytest.param(bad_account(timestamp=2**64), InvalidRecordError, id="u64 timestamp"),
        pytest.param(bad_account(ledger=2**32), InvalidRecordError, id="u32 too large"),
        pytest.param(bad_account(reserved=2**32), InvalidRecordError, id="u32 reserved"),
        pytest.param(bad_account(code=2**16), InvalidRecordError, id="u16 too large"),
        pytest.param(bad_account(flags=2**16), InvalidRecordError, id="u16 flags"),
    ],
)
def test_a_bad_account_raises_and_the_batch_changes_nothing(
    ledger: Ledger, bad: Any, error: type[Exception]
) -> None:
    open_accounts(ledger, account(1), account(2))
    before = snapshot(ledger)
    with pytest.raises(error, match=r"accounts\[1\]"):
        ledger.create_accounts([account(4), bad, account(5)])
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param(account(3), RecordTypeError, id="an account for a transfer"),
        pytest.param(bad_transfer(amount="1"), RecordTypeError, id="str amount"),
        pytest.param(bad_transfer(flags=False), RecordTypeError, id="bool flags"),
        pytest.param(bad_transfer(pending_id=None), RecordTypeError, id="None field"),
        pytest.param(bad_transfer(amount=-1), InvalidRecordError, id="negative amount"),
        pytest.param(bad_transfer(amount=AMOUNT_MAX + 1), InvalidRecordError, id="u128 amount"),
        pytest.param(bad_transfer(debit_account_id=2**128), InvalidRecordError, id="u128 id"),
        pytest.param(bad_transfer(user_data_64=U64_MAX + 1), InvalidRecordError, id="u64"),
        pytest.param(bad_transfer(timeout=U32_MAX + 1), InvalidRecordError, id="u32 timeout"),
        pytest.param(bad_transfer(ledger=U32_MAX + 1), InvalidRecordError, id="u32 ledger"),
        pytest.param(bad_transfer(code=U16_MAX + 1), InvalidRecordError, id="u16 code"),
        pytest.param(bad_transfer(flags=U16_MAX + 1), InvalidRecordError, id="u16 flags"),
    ],
)
def test_a_bad_transfer_raises_and_the_batch_changes_nothing(
    ledger: Ledger, bad: Any, error: type[Exception]
) -> None:
    open_accounts(ledger, account(1), account(2))
    before = snapshot(ledger)
    with pytest.raises(error, match=r"transfers\[1\]"):
        ledger.create_transfers([transfer(100, 1, 2, 5), bad])
    assert snapshot(ledger) == before


def a_generator() -> Iterator[Account]:
    yield account(1)


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(account(1), id="a record"),
        pytest.param(a_generator(), id="a generator"),
        pytest.param({account(1)}, id="a set"),
        pytest.param({1: account(1)}, id="a dict"),
        pytest.param(None, id="None"),
        pytest.param("accounts", id="a str"),
        pytest.param(42, id="an int"),
    ],
)
def test_a_batch_that_is_not_a_list_raises_record_type_error(ledger: Ledger, batch: Any) -> None:
    with pytest.raises(RecordTypeError):
        ledger.create_accounts(batch)
    with pytest.raises(RecordTypeError):
        ledger.create_transfers(batch)
    assert snapshot(ledger) == ([], [])


@pytest.mark.parametrize(
    ("ids_", "error"),
    [
        pytest.param([1, -1], InvalidRecordError, id="negative id"),
        pytest.param([2**128], InvalidRecordError, id="id too large"),
        pytest.param([1, "2"], RecordTypeError, id="str id"),
        pytest.param([True], RecordTypeError, id="bool id"),
        pytest.param(1, RecordTypeError, id="not a list"),
    ],
)
def test_a_lookup_with_a_bad_id_raises(ledger: Ledger, ids_: Any, error: type[Exception]) -> None:
    open_accounts(ledger, account(1))
    with pytest.raises(error):
        ledger.lookup_accounts(ids_)
    with pytest.raises(error):
        ledger.lookup_transfers(ids_)


def test_a_bad_filter_raises(ledger: Ledger) -> None:
    with pytest.raises(RecordTypeError):
        ledger.get_account_transfers(QueryFilter())  # type: ignore[arg-type]
    with pytest.raises(RecordTypeError):
        ledger.query_accounts(AccountFilter(account_id=1))  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError):
        ledger.get_account_transfers(AccountFilter(account_id=-1))
    with pytest.raises(InvalidRecordError):
        ledger.query_transfers(QueryFilter(code=2**16))


def test_semantic_failures_are_statuses_never_exceptions(ledger: Ledger) -> None:
    # Everything a record can hold is judged per event.
    statuses = create_accounts(ledger, account(0), account(U128_MAX), account(1, flags=1 << 15))
    assert statuses == [A.ID_MUST_NOT_BE_ZERO, A.ID_MUST_NOT_BE_INT_MAX, A.RESERVED_FLAG]
    statuses = create_transfers(ledger, transfer(1, 8, 9, 1), transfer(2, 0, 0, 0, flags=1 << 15))
    assert statuses == [T.DEBIT_ACCOUNT_NOT_FOUND, T.RESERVED_FLAG]


# -- Results and lookups ---------------------------------------------------------------------


def test_results_are_dense_and_in_event_order(ledger: Ledger) -> None:
    statuses = create_accounts(
        ledger, account(1), account(0), account(2), account(2), account(3, code=0), account(4)
    )
    assert statuses == [
        A.CREATED,
        A.ID_MUST_NOT_BE_ZERO,
        A.CREATED,
        A.EXISTS,
        A.CODE_MUST_NOT_BE_ZERO,
        A.CREATED,
    ]
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 1),
        transfer(102, 1, 3, 1),
        transfer(101, 1, 2, 1),
        transfer(103, 2, 4, 1),
    )
    assert statuses == [T.CREATED, T.CREDIT_ACCOUNT_NOT_FOUND, T.EXISTS, T.CREATED]


def test_lookups_leave_missing_ids_out_and_keep_the_asked_order(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, transfer(101, 1, 2, 1), transfer(102, 2, 3, 1))
    assert ids(ledger.lookup_accounts([3, 99, 1, 0, U128_MAX, 2])) == [3, 1, 2]
    assert ids(ledger.lookup_transfers([102, 7, 101])) == [102, 101]
    assert ledger.lookup_accounts([]) == []
    assert ledger.lookup_transfers([1, 2, 3]) == []


def test_lookups_return_what_was_created_with_its_timestamp(ledger: Ledger) -> None:
    first, second = account(1, user_data_128=5, flags=AccountFlags.HISTORY), account(2)
    results = ledger.create_accounts([first, second])
    assert ledger.lookup_accounts([1, 2]) == [
        replace(first, timestamp=results[0].timestamp),
        replace(second, timestamp=results[1].timestamp),
    ]
    event = transfer(101, 1, 2, 7, user_data_32=3, flags=TransferFlags.PENDING, timeout=9)
    [result] = ledger.create_transfers([event])
    assert ledger.lookup_transfers([101]) == [replace(event, timestamp=result.timestamp)]


# -- Records are values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        Account(id=1, ledger=2, code=3),
        Transfer(id=1, debit_account_id=2, credit_account_id=3, amount=4, ledger=5, code=6),
        AccountBalance(debits_posted=1),
        AccountFilter(account_id=1),
        QueryFilter(ledger=1),
    ],
)
def test_records_are_comparable_frozen_values(record: Any) -> None:
    twin = replace(record)
    assert twin == record and twin is not record
    assert hash(twin) == hash(record)
    assert len({record, twin}) == 1
    field = "timestamp" if hasattr(record, "timestamp") else "limit"
    changed = replace(record, **{field: 7})
    assert changed != record
    assert getattr(changed, field) == 7
    assert getattr(record, field) != 7
    with pytest.raises(FrozenInstanceError):
        setattr(record, field, 7)


def test_a_transfer_built_from_its_required_fields_is_whole() -> None:
    t = Transfer(id=1, debit_account_id=2, credit_account_id=3, amount=4, ledger=5, code=6)
    assert (t.pending_id, t.user_data_128, t.user_data_64, t.user_data_32) == (0, 0, 0, 0)
    assert (t.timeout, t.flags, t.timestamp) == (0, 0, 0)
    a = Account(id=1, ledger=2, code=3)
    assert (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) == (0,) * 4
    assert (a.user_data_128, a.reserved, a.flags, a.timestamp) == (0,) * 4


# -- fastledger.id() -------------------------------------------------------------------------


def test_id_is_strictly_increasing_and_unique_over_10000_calls() -> None:
    made = [fastledger.id() for _ in range(10_000)]
    assert all(earlier < later for earlier, later in pairwise(made))
    assert len(set(made)) == len(made)
    assert all(0 < i < U128_MAX for i in made)


def test_id_is_unique_across_threads() -> None:
    made: list[list[int]] = [[] for _ in range(4)]

    def make(into: list[int]) -> None:
        into.extend(fastledger.id() for _ in range(2_500))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for into in made for i in into]
    assert len(set(every)) == 10_000
    for into in made:
        assert all(earlier < later for earlier, later in pairwise(into))


# -- Thread safety ---------------------------------------------------------------------------


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Makes the interpreter switch threads far more often, to shake out races."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_threads_sharing_a_ledger_lose_nothing(ledger: Ledger) -> None:
    threads_count, per_thread, accounts_count = 8, 1_000, 5
    open_accounts(ledger, *(account(i) for i in range(1, accounts_count + 1)))
    results: list[list[tuple[CreateTransferStatus, int]]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count)

    def post_transfers(thread_index: int) -> None:
        start.wait()
        for i in range(per_thread):
            debit = 1 + (thread_index + i) % accounts_count
            credit = 1 + (debit % accounts_count)
            event = transfer(1 + thread_index * per_thread + i, debit, credit, 1 + i % 7)
            [result] = ledger.create_transfers([event])
            results[thread_index].append((result.status, result.timestamp))

    threads = [threading.Thread(target=post_transfers, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [result for per in results for result in per]
    assert [status for status, _ in every] == [T.CREATED] * threads_count * per_thread
    assert len({timestamp for _, timestamp in every}) == len(every)
    transfer_ids = list(range(1, threads_count * per_thread + 1))
    found = [
        t
        for chunk in range(0, len(transfer_ids), BATCH_MAX)
        for t in ledger.lookup_transfers(transfer_ids[chunk : chunk + BATCH_MAX])
    ]
    assert ids(found) == transfer_ids
    accounts = ledger.lookup_accounts(list(range(1, accounts_count + 1)))
    moved = sum(t.amount for t in found)
    assert sum(a.debits_posted for a in accounts) == moved
    assert sum(a.credits_posted for a in accounts) == moved


# -- get_account_transfers -------------------------------------------------------------------


@pytest.fixture
def history(ledger: Ledger) -> dict[int, Transfer]:
    """Accounts 1 and 2 (with HISTORY) and 3 (without), and five transfers of account 1:

    101: 1 -> 2, 10, user data 1000/10/1, code 1
    102: 2 -> 1, 11, user data 1001/10/2, code 2
    103: 1 -> 2, 12, user data 1000/20/2, code 1
    104: 2 -> 1, 13, user data 1001/20/1, code 2
    105: 1 -> 3, 14, no user data, code 1

    Returns them by id, as stored.
    """
    hist = AccountFlags.HISTORY
    open_accounts(ledger, account(1, flags=hist), account(2, flags=hist), account(3))
    apply_transfers(
        ledger,
        transfer(101, 1, 2, 10, user_data_128=1000, user_data_64=10, user_data_32=1),
        transfer(102, 2, 1, 11, user_data_128=1001, user_data_64=10, user_data_32=2, code=2),
        transfer(103, 1, 2, 12, user_data_128=1000, user_data_64=20, user_data_32=2),
        transfer(104, 2, 1, 13, user_data_128=1001, user_data_64=20, user_data_32=1, code=2),
        transfer(105, 1, 3, 14),
    )
    return {t.id: t for t in ledger.lookup_transfers([101, 102, 103, 104, 105])}


def transfers_of(ledger: Ledger, **fields: Any) -> list[int]:
    """The ids that get_account_transfers answers for account 1 and these filter fields."""
    return ids(ledger.get_account_transfers(AccountFilter(account_id=1, **fields)))


def test_get_account_transfers_by_direction_and_order(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    assert transfers_of(ledger) == [101, 102, 103, 104, 105]
    assert transfers_of(ledger, flags=DEBITS) == [101, 103, 105]
    assert transfers_of(ledger, flags=CREDITS) == [102, 104]
    assert transfers_of(ledger, flags=DEBITS | CREDITS | REVERSED) == [105, 104, 103, 102, 101]
    assert transfers_of(ledger, flags=CREDITS | REVERSED) == [104, 102]
    assert ledger.get_account_transfers(AccountFilter(account_id=1)) == list(history.values())


def test_get_account_transfers_by_limit_and_timestamp_bounds(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    ts = {i: t.timestamp for i, t in history.items()}
    assert transfers_of(ledger, limit=2) == [101, 102]
    assert transfers_of(ledger, limit=2, flags=DEBITS | CREDITS | REVERSED) == [105, 104]
    assert transfers_of(ledger, timestamp_min=ts[103]) == [103, 104, 105]
    assert transfers_of(ledger, timestamp_max=ts[102]) == [101, 102]
    assert transfers_of(ledger, timestamp_min=ts[102], timestamp_max=ts[103]) == [102, 103]
    assert transfers_of(ledger, timestamp_min=ts[103], timestamp_max=ts[103]) == [103]


def test_get_account_transfers_by_user_data_and_code(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    assert transfers_of(ledger, user_data_128=1001) == [102, 104]
    assert transfers_of(ledger, user_data_64=10) == [101, 102]
    assert transfers_of(ledger, user_data_32=1) == [101, 104]
    assert transfers_of(ledger, code=1) == [101, 103, 105]
    assert transfers_of(ledger, user_data_128=1000, user_data_64=10, user_data_32=1) == [101]
    assert transfers_of(ledger, user_data_128=1000, code=2) == []


def test_get_account_transfers_pages_by_moving_timestamp_min(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    pages: list[list[int]] = []
    timestamp_min = 0
    while page := ledger.get_account_transfers(
        AccountFilter(account_id=1, limit=2, timestamp_min=timestamp_min)
    ):
        pages.append(ids(page))
        timestamp_min = page[-1].timestamp + 1
    assert pages == [[101, 102], [103, 104], [105]]


def test_get_account_transfers_pages_backwards_by_moving_timestamp_max(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    pages: list[list[int]] = []
    timestamp_max = 0
    flags = DEBITS | CREDITS | REVERSED
    while page := ledger.get_account_transfers(
        AccountFilter(account_id=1, limit=2, timestamp_max=timestamp_max, flags=flags)
    ):
        pages.append(ids(page))
        timestamp_max = page[-1].timestamp - 1
    assert pages == [[105, 104], [103, 102], [101]]


@pytest.mark.parametrize(
    "invalid",
    [
        pytest.param({"account_id": 0}, id="zero account id"),
        pytest.param({"account_id": U128_MAX}, id="int max account id"),
        pytest.param({"account_id": 99}, id="unknown account"),
        pytest.param({"limit": 0}, id="limit 0"),
        pytest.param({"flags": AccountFilterFlags.NONE}, id="no flags"),
        pytest.param({"flags": REVERSED}, id="neither debits nor credits"),
        pytest.param({"timestamp_min": 2, "timestamp_max": 1}, id="min after max"),
    ],
)
def test_an_invalid_account_filter_matches_nothing(
    ledger: Ledger, history: dict[int, Transfer], invalid: dict[str, int]
) -> None:
    account_filter = replace(AccountFilter(account_id=1), **invalid)
    assert ledger.get_account_transfers(account_filter) == []
    assert ledger.get_account_balances(account_filter) == []


def test_a_query_limit_over_the_batch_maximum_raises(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    assert len(ledger.get_account_transfers(AccountFilter(account_id=1, limit=BATCH_MAX))) == 5
    with pytest.raises(InvalidArgumentError, match="limit"):
        ledger.get_account_transfers(AccountFilter(account_id=1, limit=BATCH_MAX + 1))
    with pytest.raises(InvalidArgumentError, match="limit"):
        ledger.get_account_balances(AccountFilter(account_id=1, limit=BATCH_MAX + 1))
    with pytest.raises(InvalidArgumentError, match="limit"):
        ledger.query_accounts(QueryFilter(limit=BATCH_MAX + 1))
    with pytest.raises(InvalidArgumentError, match="limit"):
        ledger.query_transfers(QueryFilter(limit=U32_MAX))


# -- get_account_balances --------------------------------------------------------------------


def test_get_account_balances_gives_the_balances_after_each_transfer(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    ts = {i: t.timestamp for i, t in history.items()}
    assert ledger.get_account_balances(AccountFilter(account_id=1)) == [
        AccountBalance(debits_posted=10, timestamp=ts[101]),
        AccountBalance(debits_posted=10, credits_posted=11, timestamp=ts[102]),
        AccountBalance(debits_posted=22, credits_posted=11, timestamp=ts[103]),
        AccountBalance(debits_posted=22, credits_posted=24, timestamp=ts[104]),
        AccountBalance(debits_posted=36, credits_posted=24, timestamp=ts[105]),
    ]
    debits_reversed = AccountFilter(account_id=1, limit=2, flags=DEBITS | REVERSED)
    assert ledger.get_account_balances(debits_reversed) == [
        AccountBalance(debits_posted=36, credits_posted=24, timestamp=ts[105]),
        AccountBalance(debits_posted=22, credits_posted=11, timestamp=ts[103]),
    ]
    assert ledger.get_account_balances(AccountFilter(account_id=1, user_data_128=1001)) == [
        AccountBalance(debits_posted=10, credits_posted=11, timestamp=ts[102]),
        AccountBalance(debits_posted=22, credits_posted=24, timestamp=ts[104]),
    ]


def test_get_account_balances_only_for_accounts_with_history(
    ledger: Ledger, history: dict[int, Transfer]
) -> None:
    # Account 3 has a transfer, but no HISTORY flag.
    assert ids(ledger.get_account_transfers(AccountFilter(account_id=3))) == [105]
    assert ledger.get_account_balances(AccountFilter(account_id=3)) == []


def test_get_account_balances_follows_two_phase_transfers(ledger: Ledger) -> None:
    hist = AccountFlags.HISTORY
    open_accounts(ledger, account(1, flags=hist), account(2, flags=hist))
    [pend, posted] = apply_transfers(ledger, pending(101, 1, 2, 2), post(102, 101, 1))
    assert ledger.get_account_balances(AccountFilter(account_id=1)) == [
        AccountBalance(debits_pending=2, timestamp=pend.timestamp),
        AccountBalance(debits_posted=1, timestamp=posted.timestamp),
    ]


# -- query_accounts and query_transfers ------------------------------------------------------


def test_query_accounts_by_user_data_ledger_and_code(ledger: Ledger) -> None:
    open_accounts(
        ledger,
        account(1, user_data_128=1000, user_data_64=10, user_data_32=1, ledger=1, code=1),
        account(2, user_data_128=1000, user_data_64=11, user_data_32=2, ledger=2, code=2),
        account(3, user_data_128=1000, user_data_64=10, user_data_32=3, ledger=3, code=3),
        account(4, user_data_128=2000, user_data_64=11, user_data_32=1, ledger=2, code=1),
        account(5, user_data_128=1000, user_data_64=10, user_data_32=1, ledger=1, code=1),
    )

    def query(**fields: Any) -> list[int]:
        return ids(ledger.query_accounts(QueryFilter(**fields)))

    assert query() == [1, 2, 3, 4, 5]
    assert query(flags=QueryFilterFlags.REVERSED) == [5, 4, 3, 2, 1]
    assert query(user_data_128=1000) == [1, 2, 3, 5]
    assert query(user_data_64=10, user_data_32=3) == [3]
    assert query(ledger=2) == [2, 4]
    assert query(code=1) == [1, 4, 5]
    assert query(user_data_128=1000, user_data_64=10, user_data_32=1, ledger=1, code=1) == [1, 5]
    assert query(user_data_128=3000) == []
    assert query(limit=2, flags=QueryFilterFlags.REVERSED) == [5, 4]
    [three] = ledger.lookup_accounts([3])
    assert query(timestamp_min=three.timestamp) == [3, 4, 5]
    assert query(timestamp_max=three.timestamp) == [1, 2, 3]
    assert query(limit=0) == []
    assert query(timestamp_min=three.timestamp, timestamp_max=three.timestamp - 1) == []


def test_query_transfers_by_user_data_ledger_and_code(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3, ledger=2), account(4, ledger=2))
    apply_transfers(
        ledger,
        transfer(101, 1, 2, 1, user_data_128=1000, user_data_64=10, user_data_32=1),
        transfer(102, 3, 4, 2, user_data_128=1000, user_data_64=11, ledger=2, code=2),
        transfer(103, 2, 1, 3, user_data_128=2000, user_data_64=10, user_data_32=1, code=3),
        transfer(104, 4, 3, 4, user_data_128=1000, user_data_32=2, ledger=2, code=2),
    )

    def query(**fields: Any) -> list[int]:
        return ids(ledger.query_transfers(QueryFilter(**fields)))

    assert query() == [101, 102, 103, 104]
    assert query(flags=QueryFilterFlags.REVERSED, limit=3) == [104, 103, 102]
    assert query(user_data_128=1000) == [101, 102, 104]
    assert query(user_data_64=10, user_data_32=1) == [101, 103]
    assert query(ledger=2) == [102, 104]
    assert query(ledger=2, code=2, user_data_32=2) == [104]
    assert query(code=3) == [103]
    assert query(code=4) == []
    [second] = ledger.lookup_transfers([102])
    assert query(timestamp_min=second.timestamp, ledger=1) == [103]


# -- balances_at -----------------------------------------------------------------------------


def test_balances_at_a_past_timestamp(ledger: Ledger, clock: FakeClock) -> None:
    [opened, _] = open_accounts(ledger, account(1), account(2))
    [single] = apply_transfers(ledger, transfer(101, 1, 2, 10))
    [reserved] = apply_transfers(ledger, pending(102, 1, 2, 5))
    [posted] = apply_transfers(ledger, post(103, 102, 3))
    [to_void] = apply_transfers(ledger, pending(104, 1, 2, 7))
    [voided] = apply_transfers(ledger, void(105, 104))
    [expiring] = apply_transfers(ledger, pending(106, 1, 2, 20, timeout=1))
    expires_at = expiring.timestamp + NS_PER_S
    clock.now_ns = expires_at + NS_PER_S

    def at(timestamp: int) -> Amounts:
        balance = ledger.balances_at(timestamp)[1]
        assert balance.timestamp == timestamp
        return Amounts(
            balance.debits_pending,
            balance.debits_posted,
            balance.credits_pending,
            balance.credits_posted,
        )

    assert at(opened.timestamp) == Amounts()
    # Events at the timestamp asked for are included.
    assert at(single.timestamp - 1) == Amounts()
    assert at(single.timestamp) == Amounts(debits_posted=10)
    # A pending transfer counts until it is posted ...
    assert at(reserved.timestamp) == Amounts(debits_pending=5, debits_posted=10)
    assert at(posted.timestamp - 1) == Amounts(debits_pending=5, debits_posted=10)
    assert at(posted.timestamp) == Amounts(debits_posted=13)
    # ... or voided ...
    assert at(to_void.timestamp) == Amounts(debits_pending=7, debits_posted=13)
    assert at(voided.timestamp) == Amounts(debits_posted=13)
    # ... or expired.
    assert at(expiring.timestamp) == Amounts(debits_pending=20, debits_posted=13)
    assert at(expires_at - 1) == Amounts(debits_pending=20, debits_posted=13)
    assert at(expires_at) == Amounts(debits_posted=13)
    # The balances of now are those that lookups report.
    assert at(clock.now_ns) == balances(ledger, 1)
    assert ledger.balances_at(voided.timestamp)[2].credits_posted == 13


def test_balances_at_maps_the_accounts_that_existed_then(ledger: Ledger) -> None:
    [first] = open_accounts(ledger, account(1))
    open_accounts(ledger, account(2), account(3))
    apply_transfers(ledger, transfer(101, 1, 2, 4))
    then = ledger.balances_at(first.timestamp)
    assert isinstance(then, Balances)
    assert list(then) == [1] and len(then) == 1 and 2 not in then
    with pytest.raises(KeyError):
        then[2]
    assert ledger.balances_at(first.timestamp - 1) == {}
    now = ledger.balances_at(U64_MAX)
    assert list(now) == [1, 2, 3]
    assert now.columns() == {
        "account_id": [1, 2, 3],
        "debits_pending": [0, 0, 0],
        "debits_posted": [4, 0, 0],
        "credits_pending": [0, 0, 0],
        "credits_posted": [0, 4, 0],
    }
    # Only the accounts asked for, in the order asked; unknown ids are left out.
    assert list(ledger.balances_at(U64_MAX, account_ids=[3, 99, 1])) == [3, 1]
    assert list(ledger.balances_at(first.timestamp, account_ids=[3, 1])) == [1]


def test_balances_at_refuses_a_timestamp_that_is_not_a_u64(ledger: Ledger) -> None:
    with pytest.raises(InvalidRecordError):
        ledger.balances_at(-1)
    with pytest.raises(InvalidRecordError):
        ledger.balances_at(2**64)
    with pytest.raises(RecordTypeError):
        ledger.balances_at(1.5)  # type: ignore[arg-type]


# -- trial_balance ---------------------------------------------------------------------------


def test_trial_balance_sums_one_ledger(ledger: Ledger, clock: FakeClock) -> None:
    open_accounts(
        ledger, account(1), account(2), account(3), account(4, ledger=2), account(5, ledger=2)
    )
    [first] = apply_transfers(ledger, transfer(101, 1, 2, 10))
    apply_transfers(
        ledger,
        transfer(102, 2, 3, 4),
        pending(103, 3, 1, 6),
        transfer(104, 4, 5, 1000, ledger=2),
    )
    clock.advance(seconds=1)
    trial = ledger.trial_balance(1)
    assert isinstance(trial, TrialBalance)
    assert trial.ledger == 1
    assert list(trial.accounts) == [1, 2, 3]
    assert (trial.debits_posted, trial.credits_posted) == (14, 14)
    assert (trial.debits_pending, trial.credits_pending) == (6, 6)
    assert trial.balanced
    for account_id in (1, 2, 3):
        entry = trial.accounts[account_id]
        assert balances(ledger, account_id) == Amounts(
            entry.debits_pending, entry.debits_posted, entry.credits_pending, entry.credits_posted
        )
    earlier = ledger.trial_balance(1, at=first.timestamp)
    assert earlier.timestamp == first.timestamp
    assert (earlier.debits_posted, earlier.credits_posted, earlier.debits_pending) == (10, 10, 0)
    other = ledger.trial_balance(2)
    assert list(other.accounts) == [4, 5]
    assert (other.debits_posted, other.credits_posted, other.balanced) == (1000, 1000, True)
    assert ledger.trial_balance(3).accounts == {}


def test_trial_balance_of_now_includes_every_event_even_when_the_clock_lags(
    ledger: Ledger,
) -> None:
    # The fake clock stands still, so the ledger stamps events after it, one nanosecond apart.
    open_accounts(ledger, account(1), account(2))
    [_, last] = apply_transfers(ledger, transfer(101, 1, 2, 1), transfer(102, 1, 2, 2))
    assert balances(ledger, 1) == Amounts(debits_posted=3)
    trial = ledger.trial_balance(1)
    assert trial.timestamp >= last.timestamp
    assert (trial.debits_posted, trial.credits_posted) == (3, 3)


def test_trial_balance_is_balanced_only_when_debits_equal_credits() -> None:
    no_accounts = Balances(0, (b"", b"", b"", b"", b""))
    fields = {"ledger": 1, "timestamp": 0, "accounts": no_accounts}
    even = TrialBalance(
        **fields, debits_pending=1, debits_posted=2, credits_pending=1, credits_posted=2
    )
    assert even.balanced
    assert not replace(even, credits_posted=3).balanced
    assert not replace(even, debits_pending=0).balanced


@pytest.mark.parametrize("ledger_id", [0, 2**32])
def test_trial_balance_refuses_a_ledger_out_of_range(ledger: Ledger, ledger_id: int) -> None:
    with pytest.raises(InvalidArgumentError):
        ledger.trial_balance(ledger_id)
