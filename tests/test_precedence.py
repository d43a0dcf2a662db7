"""Executable precedence, in TigerBeetle's style: one row per status, in the order of its enum,
with the smallest change of a valid event that earns it; and for each two adjacent statuses,
an event with both changes, which must earn the earlier one.

Every row runs on both engines, on a fresh copy of one world (`open_world`). The rows are the
spec that the guard sequences are read against: a status added to a table needs its row here
(and in `rust/core/tests/statuses.rs`), else the first test fails.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from fastledger import (
    Account,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Transfer,
    TransferFlags,
)

from .conftest import ENGINE_NAMES
from .helpers import new_engine

A = CreateAccountStatus
T = CreateTransferStatus
AF = AccountFlags
TF = TransferFlags
U128_MAX = 2**128 - 1
U32_MAX = 2**32 - 1
HALF = 2**127

# The world is made early on; each row's batch is stamped late enough for a timeout of
# U32_MAX seconds to overflow the last timestamp (OVERFLOWS_TIMEOUT).
WORLD_NS = 10**12
EVENT_NS = 5 * 10**18
LATE_ACCOUNT_NS = WORLD_NS + 1_000
# The id of the event under test, which the world does not hold.
NEW = 1000


def open_world(name: str) -> Any:
    """An engine holding what the rows refer to:

    accounts 1 and 2 (plain), 3 (debits must not exceed credits), 4 (credits must not exceed
    debits), 5 (ledger 2), 6 and 13 (closed), 7 to 12 (balances on the brink of overflow),
    then 14 and 15, made after every transfer; transfers 100 (pending), 101 (pending, posted
    by 111), 102 (pending, voided by 112 before its timeout passed), 103 (pending, expired by
    the rows' time), 104 (not pending) and 200 (the valid transfer but for its id); transfer
    id 300, spent by a transient failure.
    """
    engine = new_engine(name)
    plain = [Account(id=i, ledger=1, code=1) for i in (1, 2, 7, 8, 9, 10, 11, 12)]
    special = [
        Account(id=3, ledger=1, code=1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
        Account(id=4, ledger=1, code=1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS),
        Account(id=5, ledger=2, code=1),
        Account(id=6, ledger=1, code=1, flags=AF.CLOSED),
        Account(id=13, ledger=1, code=1, flags=AF.CLOSED),
    ]
    engine.create_accounts(plain + special, WORLD_NS)

    def t(id_: int, dr: int, cr: int, amount: int, **fields: int) -> Transfer:
        return Transfer(id_, dr, cr, amount, ledger=1, code=1, **fields)

    first = [
        t(100, 1, 2, 10, flags=TF.PENDING),
        t(101, 1, 2, 10, flags=TF.PENDING),
        t(102, 1, 2, 10, flags=TF.PENDING, timeout=1),
        t(103, 1, 2, 10, flags=TF.PENDING, timeout=1),
        t(104, 1, 2, 10),
        t(200, 1, 2, 1),
        t(300, 99, 2, 1),
        t(105, 7, 8, U128_MAX, flags=TF.PENDING),
        t(106, 9, 10, U128_MAX),
        t(107, 11, 12, HALF, flags=TF.PENDING),
        t(108, 11, 12, HALF - 1),
    ]
    then = [
        Transfer(111, pending_id=101, flags=TF.POST_PENDING_TRANSFER),
        Transfer(112, pending_id=102, flags=TF.VOID_PENDING_TRANSFER),
    ]
    engine.create_transfers(first, WORLD_NS + 100)
    engine.create_transfers(then, WORLD_NS + 200)
    late = [Account(id=14, ledger=1, code=1), Account(id=15, ledger=1, code=1)]
    engine.create_accounts(late, LATE_ACCOUNT_NS)
    return engine


@dataclass(frozen=True)
class Place:
    """Where the event under test sits in its batch, when that decides its status."""

    # The event before it: "imported", "plain", or none.
    after: str | None = None
    linked: bool = False
    # Whether it is the last event of its batch, or a failing event follows it.
    last: bool = False
    before_a_failure: bool = False


ALONE = Place()
LINKED_BEFORE_A_FAILURE = Place(linked=True, before_a_failure=True)
LINKED_LAST = Place(linked=True, last=True)
AFTER_AN_IMPORTED_EVENT = Place(after="imported")
AFTER_A_PLAIN_EVENT = Place(after="plain")


@dataclass(frozen=True)
class Row:
    status: enum.IntEnum
    # Fields of the valid event to set; `flags` are OR-ed into the event's.
    change: dict[str, int] = field(default_factory=dict)
    place: Place = ALONE


POST = {"flags": TF.POST_PENDING_TRANSFER, "pending_id": 100}
IMPORTED = TF.IMPORTED

ACCOUNT_ROWS = [
    Row(A.CREATED),
    Row(A.LINKED_EVENT_FAILED, place=LINKED_BEFORE_A_FAILURE),
    Row(A.LINKED_EVENT_CHAIN_OPEN, place=LINKED_LAST),
    Row(A.IMPORTED_EVENT_EXPECTED, place=AFTER_AN_IMPORTED_EVENT),
    Row(
        A.IMPORTED_EVENT_NOT_EXPECTED,
        {"flags": AF.IMPORTED, "timestamp": EVENT_NS - 50},
        AFTER_A_PLAIN_EVENT,
    ),
    Row(A.TIMESTAMP_MUST_BE_ZERO, {"timestamp": 1}),
    Row(A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, {"flags": AF.IMPORTED, "timestamp": 0}),
    Row(
        A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE,
        {"flags": AF.IMPORTED, "timestamp": EVENT_NS},
    ),
    Row(A.RESERVED_FIELD, {"reserved": 1}),
    Row(A.RESERVED_FLAG, {"flags": 1 << 15}),
    Row(A.ID_MUST_NOT_BE_ZERO, {"id": 0}),
    Row(A.ID_MUST_NOT_BE_INT_MAX, {"id": U128_MAX}),
    Row(A.EXISTS_WITH_DIFFERENT_FLAGS, {"id": 1, "flags": AF.HISTORY}),
    Row(A.EXISTS_WITH_DIFFERENT_USER_DATA_128, {"id": 1, "user_data_128": 1}),
    Row(A.EXISTS_WITH_DIFFERENT_USER_DATA_64, {"id": 1, "user_data_64": 1}),
    Row(A.EXISTS_WITH_DIFFERENT_USER_DATA_32, {"id": 1, "user_data_32": 1}),
    Row(A.EXISTS_WITH_DIFFERENT_LEDGER, {"id": 1, "ledger": 2}),
    Row(A.EXISTS_WITH_DIFFERENT_CODE, {"id": 1, "code": 2}),
    Row(A.EXISTS, {"id": 1}),
    Row(
        A.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        {"flags": AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS},
    ),
    Row(A.DEBITS_PENDING_MUST_BE_ZERO, {"debits_pending": 1}),
    Row(A.DEBITS_POSTED_MUST_BE_ZERO, {"debits_posted": 1}),
    Row(A.CREDITS_PENDING_MUST_BE_ZERO, {"credits_pending": 1}),
    Row(A.CREDITS_POSTED_MUST_BE_ZERO, {"credits_posted": 1}),
    Row(A.LEDGER_MUST_NOT_BE_ZERO, {"ledger": 0}),
    Row(A.CODE_MUST_NOT_BE_ZERO, {"code": 0}),
    Row(A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, {"flags": AF.IMPORTED, "timestamp": 1}),
]

TRANSFER_ROWS = [
    Row(T.CREATED),
    Row(T.LINKED_EVENT_FAILED, place=LINKED_BEFORE_A_FAILURE),
    Row(T.LINKED_EVENT_CHAIN_OPEN, place=LINKED_LAST),
    Row(T.IMPORTED_EVENT_EXPECTED, place=AFTER_AN_IMPORTED_EVENT),
    Row(
        T.IMPORTED_EVENT_NOT_EXPECTED,
        {"flags": IMPORTED, "timestamp": EVENT_NS - 50},
        AFTER_A_PLAIN_EVENT,
    ),
    Row(T.TIMESTAMP_MUST_BE_ZERO, {"timestamp": 1}),
    Row(T.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, {"flags": IMPORTED, "timestamp": 0}),
    Row(T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE, {"flags": IMPORTED, "timestamp": EVENT_NS}),
    Row(T.RESERVED_FLAG, {"flags": 1 << 15}),
    Row(T.ID_MUST_NOT_BE_ZERO, {"id": 0}),
    Row(T.ID_MUST_NOT_BE_INT_MAX, {"id": U128_MAX}),
    Row(T.EXISTS_WITH_DIFFERENT_FLAGS, {"id": 200, "flags": TF.PENDING}),
    Row(T.EXISTS_WITH_DIFFERENT_PENDING_ID, {"id": 200, "pending_id": 100}),
    Row(T.EXISTS_WITH_DIFFERENT_TIMEOUT, {"id": 200, "timeout": 1}),
    Row(T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID, {"id": 200, "debit_account_id": 3}),
    Row(T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID, {"id": 200, "credit_account_id": 3}),
    Row(T.EXISTS_WITH_DIFFERENT_AMOUNT, {"id": 200, "amount": 2}),
    Row(T.EXISTS_WITH_DIFFERENT_USER_DATA_128, {"id": 200, "user_data_128": 1}),
    Row(T.EXISTS_WITH_DIFFERENT_USER_DATA_64, {"id": 200, "user_data_64": 1}),
    Row(T.EXISTS_WITH_DIFFERENT_USER_DATA_32, {"id": 200, "user_data_32": 1}),
    Row(T.EXISTS_WITH_DIFFERENT_LEDGER, {"id": 200, "ledger": 2}),
    Row(T.EXISTS_WITH_DIFFERENT_CODE, {"id": 200, "code": 2}),
    Row(T.EXISTS, {"id": 200}),
    Row(T.ID_ALREADY_FAILED, {"id": 300}),
    Row(
        T.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        {"flags": TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER},
    ),
    Row(T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, {"debit_account_id": 0}),
    Row(T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX, {"debit_account_id": U128_MAX}),
    Row(T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, {"credit_account_id": 0}),
    Row(T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX, {"credit_account_id": U128_MAX}),
    Row(T.ACCOUNTS_MUST_BE_DIFFERENT, {"credit_account_id": 1}),
    Row(T.PENDING_ID_MUST_BE_ZERO, {"pending_id": 100}),
    Row(T.PENDING_ID_MUST_NOT_BE_ZERO, {"flags": TF.POST_PENDING_TRANSFER}),
    Row(T.PENDING_ID_MUST_NOT_BE_INT_MAX, {**POST, "pending_id": U128_MAX}),
    Row(T.PENDING_ID_MUST_BE_DIFFERENT, {**POST, "pending_id": NEW}),
    Row(T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, {"timeout": 1}),
    Row(T.CLOSING_TRANSFER_MUST_BE_PENDING, {"flags": TF.CLOSING_DEBIT}),
    Row(T.LEDGER_MUST_NOT_BE_ZERO, {"ledger": 0}),
    Row(T.CODE_MUST_NOT_BE_ZERO, {"code": 0}),
    Row(T.DEBIT_ACCOUNT_NOT_FOUND, {"debit_account_id": 99}),
    Row(T.CREDIT_ACCOUNT_NOT_FOUND, {"credit_account_id": 98}),
    Row(T.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER, {"credit_account_id": 5}),
    Row(T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS, {"ledger": 2}),
    Row(T.PENDING_TRANSFER_NOT_FOUND, {**POST, "pending_id": 99}),
    Row(T.PENDING_TRANSFER_NOT_PENDING, {**POST, "pending_id": 104}),
    Row(T.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID, {**POST, "debit_account_id": 3}),
    Row(T.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID, {**POST, "credit_account_id": 3}),
    Row(T.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER, {**POST, "ledger": 2}),
    Row(T.PENDING_TRANSFER_HAS_DIFFERENT_CODE, {**POST, "code": 2}),
    Row(T.EXCEEDS_PENDING_TRANSFER_AMOUNT, {**POST, "amount": 11}),
    Row(
        T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        {"flags": TF.VOID_PENDING_TRANSFER, "pending_id": 100},
    ),
    Row(T.PENDING_TRANSFER_ALREADY_POSTED, {**POST, "pending_id": 101}),
    Row(T.PENDING_TRANSFER_ALREADY_VOIDED, {**POST, "pending_id": 102}),
    Row(T.PENDING_TRANSFER_EXPIRED, {**POST, "pending_id": 103}),
    Row(T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, {"flags": IMPORTED, "timestamp": 1}),
    Row(
        T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT,
        {"flags": IMPORTED, "timestamp": LATE_ACCOUNT_NS - 2, "debit_account_id": 14},
    ),
    Row(
        T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT,
        {"flags": IMPORTED, "timestamp": LATE_ACCOUNT_NS - 2, "credit_account_id": 15},
    ),
    Row(
        T.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO,
        {"flags": IMPORTED | TF.PENDING, "timestamp": EVENT_NS - 50, "timeout": 1},
    ),
    Row(T.DEBIT_ACCOUNT_ALREADY_CLOSED, {"debit_account_id": 6}),
    Row(T.CREDIT_ACCOUNT_ALREADY_CLOSED, {"credit_account_id": 13}),
    Row(T.OVERFLOWS_DEBITS_PENDING, {"flags": TF.PENDING, "debit_account_id": 7}),
    Row(T.OVERFLOWS_CREDITS_PENDING, {"flags": TF.PENDING, "credit_account_id": 8}),
    Row(T.OVERFLOWS_DEBITS_POSTED, {"debit_account_id": 9}),
    Row(T.OVERFLOWS_CREDITS_POSTED, {"credit_account_id": 10}),
    Row(T.OVERFLOWS_DEBITS, {"debit_account_id": 11}),
    Row(T.OVERFLOWS_CREDITS, {"credit_account_id": 12}),
    Row(T.OVERFLOWS_TIMEOUT, {"flags": TF.PENDING, "timeout": U32_MAX}),
    Row(T.EXCEEDS_CREDITS, {"debit_account_id": 3}),
    Row(T.EXCEEDS_DEBITS, {"credit_account_id": 4}),
]


# The adjacent pairs that no event earns together, and why; and those whose changes each set
# one field, where one value earns both. Keyed by the statuses' names: the two enums share
# codes, and so IntEnum members of either compare equal.
ACCOUNT_NOT_TOGETHER = {
    ("LINKED_EVENT_FAILED", "LINKED_EVENT_CHAIN_OPEN"): "the later wins: a chain left open at "
    "the end of its batch says so even if it failed before, as TigerBeetle checks it first "
    "(test_an_open_chain_at_the_end_of_a_batch_wins_over_a_failed_chain)",
    ("IMPORTED_EVENT_EXPECTED", "IMPORTED_EVENT_NOT_EXPECTED"): "the first event of a batch "
    "decides whether it imports: the event under test is imported or not",
    ("IMPORTED_EVENT_NOT_EXPECTED", "TIMESTAMP_MUST_BE_ZERO"): "an event is imported or not",
    ("TIMESTAMP_MUST_BE_ZERO", "IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE"): "an event is imported "
    "or not",
    ("ID_MUST_NOT_BE_ZERO", "ID_MUST_NOT_BE_INT_MAX"): "an event has one id",
    ("ID_MUST_NOT_BE_INT_MAX", "EXISTS_WITH_DIFFERENT_FLAGS"): "no record has the id 2**128 - 1",
    ("EXISTS", "FLAGS_ARE_MUTUALLY_EXCLUSIVE"): "no account holds mutually exclusive flags, so a "
    "retry with them differs in its flags",
}
TRANSFER_NOT_TOGETHER = {
    **{pair: reason for pair, reason in ACCOUNT_NOT_TOGETHER.items() if pair[0] != "EXISTS"},
    ("EXISTS", "ID_ALREADY_FAILED"): "an id that failed was never created",
    ("DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO", "DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX"): "one id",
    ("CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO", "CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX"): "one id",
    ("CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX", "ACCOUNTS_MUST_BE_DIFFERENT"): "the accounts are "
    "the same only if the debit account id is 2**128 - 1 too, which precedes both",
    ("PENDING_ID_MUST_BE_ZERO", "PENDING_ID_MUST_NOT_BE_ZERO"): "the first is a rule of a new "
    "transfer, the second of a post or void",
    ("PENDING_ID_MUST_NOT_BE_ZERO", "PENDING_ID_MUST_NOT_BE_INT_MAX"): "one pending id",
    ("PENDING_ID_MUST_NOT_BE_INT_MAX", "PENDING_ID_MUST_BE_DIFFERENT"): "the pending id is the "
    "id only if the id is 2**128 - 1 too, which precedes both",
    ("CREDIT_ACCOUNT_NOT_FOUND", "ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER"): "the ledgers of two "
    "accounts compare only once both are found",
    ("TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS", "PENDING_TRANSFER_NOT_FOUND"): "the first "
    "is a rule of a new transfer, the second of a post or void",
    ("PENDING_TRANSFER_NOT_FOUND", "PENDING_TRANSFER_NOT_PENDING"): "the pending transfer "
    "exists or not",
    ("PENDING_TRANSFER_ALREADY_POSTED", "PENDING_TRANSFER_ALREADY_VOIDED"): "a pending transfer "
    "is resolved once",
}

ACCOUNT_TOGETHER = {
    # A timestamp past the last is also at or after the batch's.
    ("IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE", "IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE"): Row(
        A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, {"flags": AF.IMPORTED, "timestamp": 2**63}
    ),
}
TRANSFER_TOGETHER = {
    ("IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE", "IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE"): Row(
        T.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, {"flags": IMPORTED, "timestamp": 2**63}
    ),
    # Transfer 104 is not pending, and its debit account is not 3.
    ("PENDING_TRANSFER_NOT_PENDING", "PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID"): Row(
        T.PENDING_TRANSFER_NOT_PENDING, {**POST, "pending_id": 104, "debit_account_id": 3}
    ),
    # A void of more than the pending amount.
    ("EXCEEDS_PENDING_TRANSFER_AMOUNT", "PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT"): Row(
        T.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        {"flags": TF.VOID_PENDING_TRANSFER, "pending_id": 100, "amount": 11},
    ),
    # A void of less than the amount of a posted transfer.
    ("PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT", "PENDING_TRANSFER_ALREADY_POSTED"): Row(
        T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        {"flags": TF.VOID_PENDING_TRANSFER, "pending_id": 101},
    ),
    # Transfer 102 was voided, and its timeout has passed since.
    ("PENDING_TRANSFER_ALREADY_VOIDED", "PENDING_TRANSFER_EXPIRED"): Row(
        T.PENDING_TRANSFER_ALREADY_VOIDED, {**POST, "pending_id": 102}
    ),
    # Timestamp 1 is before the last transfer and before account 14.
    (
        "IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS",
        "IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT",
    ): Row(
        T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        {"flags": IMPORTED, "timestamp": 1, "debit_account_id": 14},
    ),
    (
        "IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT",
        "IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO",
    ): Row(
        T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT,
        {
            "flags": IMPORTED | TF.PENDING,
            "timestamp": LATE_ACCOUNT_NS - 2,
            "credit_account_id": 15,
            "timeout": 1,
        },
    ),
}


@dataclass(frozen=True)
class Kind:
    """What differs between the rows of accounts and those of transfers."""

    rows: list[Row]
    valid: Any
    failing: Any
    imported: Any
    create: Callable[[Any, list[Any], int], list[Any]]
    not_together: dict[tuple[str, str], str]
    together: dict[tuple[str, str], Row]


ACCOUNTS = Kind(
    ACCOUNT_ROWS,
    valid=Account(id=NEW, ledger=1, code=1),
    failing=Account(id=0, ledger=1, code=1),
    imported=Account(id=NEW + 1, ledger=1, code=1, flags=AF.IMPORTED, timestamp=EVENT_NS - 90),
    create=lambda engine, batch, timestamp: engine.create_accounts(batch, timestamp),
    not_together=ACCOUNT_NOT_TOGETHER,
    together=ACCOUNT_TOGETHER,
)
TRANSFERS = Kind(
    TRANSFER_ROWS,
    valid=Transfer(id=NEW, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1),
    failing=Transfer(id=0, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1),
    imported=Transfer(
        NEW + 1, 1, 2, 1, ledger=1, code=1, flags=TF.IMPORTED, timestamp=EVENT_NS - 90
    ),
    create=lambda engine, batch, timestamp: engine.create_transfers(batch, timestamp),
    not_together=TRANSFER_NOT_TOGETHER,
    together=TRANSFER_TOGETHER,
)
KINDS = {"account": ACCOUNTS, "transfer": TRANSFERS}


def batch_of(kind: Kind, row: Row) -> tuple[list[Any], int]:
    """The batch that earns the row's status, and the place in it of the event under test."""
    flags = kind.valid.flags | row.change.get("flags", 0) | (TF.LINKED if row.place.linked else 0)
    event = replace(kind.valid, **{**row.change, "flags": flags})
    before = {"imported": [kind.imported], "plain": [replace(kind.failing, id=NEW + 1)]}
    batch = [*before.get(row.place.after or "", []), event]
    place = len(batch) - 1
    if row.place.before_a_failure:
        batch.append(kind.failing)
    return batch, place


def status_of(name: str, kind: Kind, row: Row) -> enum.IntEnum:
    engine = open_world(name)
    batch, place = batch_of(kind, row)
    results = kind.create(engine, batch, EVENT_NS)
    status: enum.IntEnum = results[place].status
    return status


def combined(earlier: Row, later: Row) -> Row | None:
    """One row with the changes of both, or None where they cannot be made together: each
    sets one field to different values, or each puts the event in a place of its own."""
    change = dict(later.change)
    for name, value in earlier.change.items():
        if name == "flags":
            value |= change.get("flags", 0)
        elif change.get(name, value) != value:
            return None
        change[name] = value
    a, b = earlier.place, later.place
    if a.after and b.after and a.after != b.after:
        return None
    place = Place(
        after=a.after or b.after,
        linked=a.linked or b.linked,
        last=a.last or b.last,
        before_a_failure=a.before_a_failure or b.before_a_failure,
    )
    if place.last and place.before_a_failure:
        return None
    return Row(earlier.status, change, place)


def adjacent_pairs(kind: Kind) -> list[tuple[Row, Row]]:
    """Each status but CREATED with the one after it."""
    return list(zip(kind.rows[1:], kind.rows[2:], strict=False))


def pair_names(earlier: Row, later: Row) -> tuple[str, str]:
    return earlier.status.name, later.status.name


ROW_CASES = [
    pytest.param(kind, row, id=f"{kind_name}-{row.status.name}")
    for kind_name, kind in KINDS.items()
    for row in kind.rows
]


@pytest.mark.parametrize(("kind_name", "enum_type"), [("account", A), ("transfer", T)])
def test_the_rows_list_every_status_once_in_the_order_of_its_enum(
    kind_name: str, enum_type: type[enum.IntEnum]
) -> None:
    assert [row.status for row in KINDS[kind_name].rows] == list(enum_type)


@pytest.mark.parametrize("name", ENGINE_NAMES)
@pytest.mark.parametrize(("kind", "row"), ROW_CASES)
def test_the_smallest_change_of_a_valid_event_earns_its_status(
    name: str, kind: Kind, row: Row
) -> None:
    assert status_of(name, kind, row) == row.status


PAIR_CASES = [
    pytest.param(
        kind,
        kind.together.get(pair_names(earlier, later)) or combined(earlier, later),
        later.status,
        id=f"{kind_name}-{earlier.status.name}",
    )
    for kind_name, kind in KINDS.items()
    for earlier, later in adjacent_pairs(kind)
    if pair_names(earlier, later) not in kind.not_together
]


@pytest.mark.parametrize("name", ENGINE_NAMES)
@pytest.mark.parametrize(("kind", "both", "later"), PAIR_CASES)
def test_of_two_adjacent_statuses_the_earlier_wins(
    name: str, kind: Kind, both: Row | None, later: enum.IntEnum
) -> None:
    assert both is not None, f"the changes that earn {later.name} and the status before it clash"
    assert status_of(name, kind, both) == both.status


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_the_exceptions_name_adjacent_pairs_only(kind: Kind) -> None:
    pairs = {pair_names(earlier, later) for earlier, later in adjacent_pairs(kind)}
    assert kind.not_together.keys() <= pairs
    assert kind.together.keys() <= pairs
    assert not kind.not_together.keys() & kind.together.keys()


@pytest.mark.parametrize("name", ENGINE_NAMES)
@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_an_open_chain_at_the_end_of_a_batch_wins_over_a_failed_chain(
    name: str, kind: Kind
) -> None:
    engine = open_world(name)
    linked = TF.LINKED
    batch = [replace(kind.failing, flags=linked), replace(kind.valid, flags=linked)]
    results = kind.create(engine, batch, EVENT_NS)
    assert [r.status.name for r in results] == ["ID_MUST_NOT_BE_ZERO", "LINKED_EVENT_CHAIN_OPEN"]
