"""The create semantics, one scenario per status: TigerBeetle 0.17's rules, read as a spec.

Every member of `CreateAccountStatus` and `CreateTransferStatus` has a test named after it
(`test_create_account_<status>`, `test_create_transfer_<status>`); the last test of this module
checks that none is missing. Each scenario asserts the exact status and the state afterwards:
what a success stored, and that a failure changed nothing. The sections after the statuses
cover what needs more than one status to state: precedence, linked chains, two-phase
transfers, balancing, closing, imported events and result timestamps.

Every test runs on both engines through the `ledger` fixture.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Ledger,
    Transfer,
    TransferFlags,
)

from .conftest import FakeClock
from .helpers import (
    NS_PER_S,
    RESERVED_FLAG_BIT,
    TIMESTAMP_MAX,
    U32_MAX,
    U64_MAX,
    U128_MAX,
    Amounts,
    account,
    apply_transfers,
    assert_account_fails,
    assert_transfer_created,
    assert_transfer_fails,
    balances,
    create_accounts,
    create_transfers,
    is_closed,
    open_accounts,
    pending,
    post,
    snapshot,
    stored_account,
    stored_transfer,
    transfer,
    void,
)

A = CreateAccountStatus
T = CreateTransferStatus
AF = AccountFlags
TF = TransferFlags


def imported_account(id_: int, timestamp: int, *, flags: int = AF.NONE, **fields: int) -> Account:
    return account(id_, flags=AF.IMPORTED | flags, timestamp=timestamp, **fields)


def imported_transfer(
    id_: int,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    timestamp: int,
    *,
    flags: int = TF.NONE,
    **fields: int,
) -> Transfer:
    return transfer(
        id_,
        debit_account_id,
        credit_account_id,
        amount,
        flags=TF.IMPORTED | flags,
        timestamp=timestamp,
        **fields,
    )


def open_two_accounts(ledger: Ledger) -> None:
    """Accounts 1 and 2 on ledger 1, without limits."""
    open_accounts(ledger, account(1), account(2))


def ids(records: list[Account] | list[Transfer]) -> list[int]:
    return [record.id for record in records]


# -- CreateAccountStatus: one scenario per status ---------------------------------------------


def test_create_account_created(ledger: Ledger) -> None:
    event = account(
        1, user_data_128=2, user_data_64=3, user_data_32=4, ledger=5, code=6, flags=AF.HISTORY
    )
    [result] = ledger.create_accounts([event])
    assert result.status == A.CREATED
    assert result.timestamp > 0
    # Stored as given, with zero balances and the timestamp of the result.
    assert stored_account(ledger, 1) == replace(event, timestamp=result.timestamp)


def test_create_account_linked_event_failed(ledger: Ledger) -> None:
    statuses = create_accounts(
        ledger,
        account(1),
        account(2, flags=AF.LINKED),
        account(3, flags=AF.LINKED),
        account(4, ledger=0),
        account(5),
    )
    # The event that broke the chain keeps its own status; the rest of its chain is undone.
    assert statuses == [
        A.CREATED,
        A.LINKED_EVENT_FAILED,
        A.LINKED_EVENT_FAILED,
        A.LEDGER_MUST_NOT_BE_ZERO,
        A.CREATED,
    ]
    assert ids(ledger.lookup_accounts([1, 2, 3, 4, 5])) == [1, 5]


def test_create_account_linked_event_chain_open(ledger: Ledger) -> None:
    assert create_accounts(ledger, account(1, flags=AF.LINKED)) == [A.LINKED_EVENT_CHAIN_OPEN]
    statuses = create_accounts(
        ledger, account(1), account(2, flags=AF.LINKED), account(3, flags=AF.LINKED)
    )
    assert statuses == [A.CREATED, A.LINKED_EVENT_FAILED, A.LINKED_EVENT_CHAIN_OPEN]
    assert ids(ledger.lookup_accounts([1, 2, 3])) == [1]


def test_create_account_imported_event_expected(ledger: Ledger, clock: FakeClock) -> None:
    past = clock.now_ns - 100
    # The first event imports, so the whole batch must.
    statuses = create_accounts(
        ledger, imported_account(1, past), account(2), imported_account(3, past + 1)
    )
    assert statuses == [A.CREATED, A.IMPORTED_EVENT_EXPECTED, A.CREATED]
    assert [(a.id, a.timestamp) for a in ledger.lookup_accounts([1, 2, 3])] == [
        (1, past),
        (3, past + 1),
    ]


def test_create_account_imported_event_not_expected(ledger: Ledger, clock: FakeClock) -> None:
    past = clock.now_ns - 100
    # The first event does not import, so no event of the batch may.
    statuses = create_accounts(ledger, account(1), imported_account(2, past), account(3))
    assert statuses == [A.CREATED, A.IMPORTED_EVENT_NOT_EXPECTED, A.CREATED]
    assert ids(ledger.lookup_accounts([1, 2, 3])) == [1, 3]


def test_create_account_timestamp_must_be_zero(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(1, timestamp=1), A.TIMESTAMP_MUST_BE_ZERO)


@pytest.mark.parametrize("timestamp", [0, 2**63, U64_MAX])
def test_create_account_imported_event_timestamp_out_of_range(
    ledger: Ledger, timestamp: int
) -> None:
    event = imported_account(1, timestamp)
    assert_account_fails(ledger, event, A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE)


def test_create_account_imported_event_timestamp_must_not_advance(
    ledger: Ledger, clock: FakeClock
) -> None:
    must_not_advance = A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE
    # On a fresh ledger a batch of one event takes the clock's time: an imported event must
    # be strictly before it.
    now = clock.now_ns
    [result] = ledger.create_accounts([imported_account(1, now)])
    assert result.status == must_not_advance
    assert ledger.lookup_accounts([1]) == []
    # The next batch takes the next nanosecond.
    assert_account_fails(ledger, imported_account(1, now + 1), must_not_advance)
    assert_account_fails(ledger, imported_account(1, now + NS_PER_S), must_not_advance)
    [result] = ledger.create_accounts([imported_account(1, now - 1)])
    assert result == (A.CREATED, now - 1)


@pytest.mark.parametrize("reserved", [1, U32_MAX])
def test_create_account_reserved_field(ledger: Ledger, reserved: int) -> None:
    assert_account_fails(ledger, account(1, reserved=reserved), A.RESERVED_FIELD)


@pytest.mark.parametrize("flag", [1 << 6, RESERVED_FLAG_BIT])
def test_create_account_reserved_flag(ledger: Ledger, flag: int) -> None:
    assert_account_fails(ledger, account(1, flags=flag), A.RESERVED_FLAG)


def test_create_account_id_must_not_be_zero(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(0), A.ID_MUST_NOT_BE_ZERO)


def test_create_account_id_must_not_be_int_max(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(U128_MAX), A.ID_MUST_NOT_BE_INT_MAX)


# The account that the EXISTS_* scenarios retry, and a different value for each field that
# the retry compares, in precedence order.
ORIGINAL_ACCOUNT = account(
    1, user_data_128=10, user_data_64=20, user_data_32=30, ledger=40, code=50, flags=AF.HISTORY
)
ACCOUNT_CHANGES: dict[str, int] = {
    "flags": AF.HISTORY | AF.DEBITS_MUST_NOT_EXCEED_CREDITS,
    "user_data_128": 11,
    "user_data_64": 21,
    "user_data_32": 31,
    "ledger": 41,
    "code": 51,
}


def retry_of_original_account(first_changed: str) -> Account:
    """`ORIGINAL_ACCOUNT` with `first_changed` and every field after it changed, so that the
    scenario also shows that the first difference in precedence order is the one reported."""
    names = list(ACCOUNT_CHANGES)
    changes = {name: ACCOUNT_CHANGES[name] for name in names[names.index(first_changed) :]}
    return replace(ORIGINAL_ACCOUNT, **changes)


def test_create_account_exists_with_different_flags(ledger: Ledger) -> None:
    open_accounts(ledger, ORIGINAL_ACCOUNT)
    event = retry_of_original_account("flags")
    assert_account_fails(ledger, event, A.EXISTS_WITH_DIFFERENT_FLAGS)


def test_create_account_exists_with_different_user_data_128(ledger: Ledger) -> None:
    open_accounts(ledger, ORIGINAL_ACCOUNT)
    event = retry_of_original_account("user_data_128")
    assert_account_fails(ledger, event, A.EXISTS_WITH_DIFFERENT_USER_DATA_128)


def test_create_account_exists_with_different_user_data_64(ledger: Ledger) -> None:
    open_accounts(ledger, ORIGINAL_ACCOUNT)
    event = retry_of_original_account("user_data_64")
    assert_account_fails(ledger, event, A.EXISTS_WITH_DIFFERENT_USER_DATA_64)


def test_create_account_exists_with_different_user_data_32(ledger: Ledger) -> None:
    open_accounts(ledger, ORIGINAL_ACCOUNT)
    event = retry_of_original_account("user_data_32")
    assert_account_fails(ledger, event, A.EXISTS_WITH_DIFFERENT_USER_DATA_32)


def test_create_account_exists_with_different_ledger(ledger: Ledger) -> None:
    open_accounts(ledger, ORIGINAL_ACCOUNT)
    event = retry_of_original_account("ledger")
    assert_account_fails(ledger, event, A.EXISTS_WITH_DIFFERENT_LEDGER)


def test_create_account_exists_with_different_code(ledger: Ledger) -> None:
    open_accounts(ledger, ORIGINAL_ACCOUNT)
    event = retry_of_original_account("code")
    assert_account_fails(ledger, event, A.EXISTS_WITH_DIFFERENT_CODE)


def test_create_account_exists(ledger: Ledger) -> None:
    [created] = open_accounts(ledger, ORIGINAL_ACCOUNT)
    result = assert_account_fails(ledger, ORIGINAL_ACCOUNT, A.EXISTS)
    # EXISTS reports the timestamp of the account that exists.
    assert result.timestamp == created.timestamp


def test_create_account_flags_are_mutually_exclusive(ledger: Ledger) -> None:
    both_limits = AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS
    assert_account_fails(
        ledger, account(1, flags=both_limits, ledger=0), A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    )


def test_create_account_debits_pending_must_be_zero(ledger: Ledger) -> None:
    event = account(1, debits_pending=1, debits_posted=1, credits_pending=1, credits_posted=1)
    assert_account_fails(ledger, event, A.DEBITS_PENDING_MUST_BE_ZERO)


def test_create_account_debits_posted_must_be_zero(ledger: Ledger) -> None:
    event = account(1, debits_posted=1, credits_pending=1, credits_posted=1)
    assert_account_fails(ledger, event, A.DEBITS_POSTED_MUST_BE_ZERO)


def test_create_account_credits_pending_must_be_zero(ledger: Ledger) -> None:
    event = account(1, credits_pending=1, credits_posted=1)
    assert_account_fails(ledger, event, A.CREDITS_PENDING_MUST_BE_ZERO)


def test_create_account_credits_posted_must_be_zero(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(1, credits_posted=1), A.CREDITS_POSTED_MUST_BE_ZERO)


def test_create_account_ledger_must_not_be_zero(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(1, ledger=0, code=0), A.LEDGER_MUST_NOT_BE_ZERO)


def test_create_account_code_must_not_be_zero(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(1, code=0), A.CODE_MUST_NOT_BE_ZERO)


def test_create_account_imported_event_timestamp_must_not_regress(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 10))
    regress = A.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
    # Before, or equal to, the last account's timestamp.
    assert_account_fails(ledger, imported_account(3, t + 5), regress)
    assert_account_fails(ledger, imported_account(3, t + 10), regress)
    # Equal to an existing transfer's timestamp.
    apply_transfers(ledger, imported_transfer(101, 1, 2, 1, t + 20))
    assert_account_fails(ledger, imported_account(3, t + 20), regress)
    [result] = ledger.create_accounts([imported_account(3, t + 21)])
    assert result == (A.CREATED, t + 21)


# -- CreateTransferStatus: one scenario per status --------------------------------------------


def test_create_transfer_created(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 1, 2, 10, user_data_128=7, user_data_64=8, user_data_32=9, code=3)
    stored = assert_transfer_created(ledger, event)
    assert stored == replace(event, timestamp=stored.timestamp)
    assert balances(ledger, 1) == Amounts(debits_posted=10)
    assert balances(ledger, 2) == Amounts(credits_posted=10)


def test_create_transfer_linked_event_failed(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 10, flags=TF.LINKED),
        pending(102, 1, 2, 20, flags=TF.LINKED),
        transfer(103, 1, 2, 30, ledger=0),
        transfer(104, 1, 2, 40),
    )
    assert statuses == [
        T.LINKED_EVENT_FAILED,
        T.LINKED_EVENT_FAILED,
        T.LEDGER_MUST_NOT_BE_ZERO,
        T.CREATED,
    ]
    assert ids(ledger.lookup_transfers([101, 102, 103, 104])) == [104]
    assert balances(ledger, 1) == Amounts(debits_posted=40)
    assert balances(ledger, 2) == Amounts(credits_posted=40)


def test_create_transfer_linked_event_chain_open(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 10),
        transfer(102, 1, 2, 20, flags=TF.LINKED),
        transfer(103, 1, 2, 30, flags=TF.LINKED),
    )
    assert statuses == [T.CREATED, T.LINKED_EVENT_FAILED, T.LINKED_EVENT_CHAIN_OPEN]
    assert ids(ledger.lookup_transfers([101, 102, 103])) == [101]
    assert balances(ledger, 1) == Amounts(debits_posted=10)


def test_create_transfer_imported_event_expected(ledger: Ledger, clock: FakeClock) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 1))
    statuses = create_transfers(
        ledger,
        imported_transfer(101, 1, 2, 10, t + 10),
        transfer(102, 1, 2, 20),
        imported_transfer(103, 1, 2, 30, t + 11),
    )
    assert statuses == [T.CREATED, T.IMPORTED_EVENT_EXPECTED, T.CREATED]
    assert ids(ledger.lookup_transfers([101, 102, 103])) == [101, 103]
    assert balances(ledger, 1) == Amounts(debits_posted=40)


def test_create_transfer_imported_event_not_expected(ledger: Ledger, clock: FakeClock) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 1))
    statuses = create_transfers(
        ledger, transfer(101, 1, 2, 10), imported_transfer(102, 1, 2, 20, t + 10)
    )
    assert statuses == [T.CREATED, T.IMPORTED_EVENT_NOT_EXPECTED]
    assert ids(ledger.lookup_transfers([101, 102])) == [101]
    assert balances(ledger, 1) == Amounts(debits_posted=10)


def test_create_transfer_timestamp_must_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, timestamp=1), T.TIMESTAMP_MUST_BE_ZERO)


@pytest.mark.parametrize("timestamp", [0, 2**63, U64_MAX])
def test_create_transfer_imported_event_timestamp_out_of_range(
    ledger: Ledger, clock: FakeClock, timestamp: int
) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 1))
    event = imported_transfer(101, 1, 2, 10, timestamp)
    assert_transfer_fails(ledger, event, T.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE)


def test_create_transfer_imported_event_timestamp_must_not_advance(
    ledger: Ledger, clock: FakeClock
) -> None:
    must_not_advance = T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE
    open_two_accounts(ledger)
    clock.advance(seconds=1)
    # A batch of one event takes the clock's time, now after every earlier timestamp.
    now = clock.now_ns
    [result] = ledger.create_transfers([imported_transfer(101, 1, 2, 10, now)])
    assert result.status == must_not_advance
    assert ledger.lookup_transfers([101]) == []
    assert_transfer_fails(ledger, imported_transfer(101, 1, 2, 10, now + 1), must_not_advance)
    assert_transfer_fails(ledger, imported_transfer(101, 1, 2, 10, now + 5), must_not_advance)
    [result] = ledger.create_transfers([imported_transfer(101, 1, 2, 10, now - 1)])
    assert result == (T.CREATED, now - 1)
    assert balances(ledger, 1) == Amounts(debits_posted=10)


@pytest.mark.parametrize("flag", [1 << 9, RESERVED_FLAG_BIT])
def test_create_transfer_reserved_flag(ledger: Ledger, flag: int) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, flags=flag), T.RESERVED_FLAG)


def test_create_transfer_id_must_not_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(0, 1, 2, 10), T.ID_MUST_NOT_BE_ZERO)


def test_create_transfer_id_must_not_be_int_max(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(U128_MAX, 1, 2, 10), T.ID_MUST_NOT_BE_INT_MAX)


# The transfer that the EXISTS_* scenarios retry, and a different value for each field that
# the retry compares, in precedence order. Accounts 3 and 4 need not exist: the comparison
# with the existing transfer comes first.
ORIGINAL_TRANSFER = pending(101, 1, 2, 10, timeout=60, user_data_128=1, user_data_64=2)
TRANSFER_CHANGES: dict[str, int] = {
    "flags": TF.NONE,
    "pending_id": 555,
    "timeout": 61,
    "debit_account_id": 3,
    "credit_account_id": 4,
    "amount": 11,
    "user_data_128": 11,
    "user_data_64": 12,
    "user_data_32": 13,
    "ledger": 2,
    "code": 2,
}


def retry_of_original_transfer(first_changed: str) -> Transfer:
    """`ORIGINAL_TRANSFER` with `first_changed` and every field after it changed."""
    names = list(TRANSFER_CHANGES)
    changes = {name: TRANSFER_CHANGES[name] for name in names[names.index(first_changed) :]}
    return replace(ORIGINAL_TRANSFER, **changes)


@pytest.mark.parametrize(
    ("first_changed", "status"),
    [
        ("flags", T.EXISTS_WITH_DIFFERENT_FLAGS),
        ("pending_id", T.EXISTS_WITH_DIFFERENT_PENDING_ID),
        ("timeout", T.EXISTS_WITH_DIFFERENT_TIMEOUT),
        ("debit_account_id", T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
        ("credit_account_id", T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
        ("amount", T.EXISTS_WITH_DIFFERENT_AMOUNT),
        ("user_data_128", T.EXISTS_WITH_DIFFERENT_USER_DATA_128),
        ("user_data_64", T.EXISTS_WITH_DIFFERENT_USER_DATA_64),
        ("user_data_32", T.EXISTS_WITH_DIFFERENT_USER_DATA_32),
        ("ledger", T.EXISTS_WITH_DIFFERENT_LEDGER),
        ("code", T.EXISTS_WITH_DIFFERENT_CODE),
    ],
)
def test_exists_with_different_fields_reports_the_first_difference(
    ledger: Ledger, first_changed: str, status: CreateTransferStatus
) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, ORIGINAL_TRANSFER)
    assert_transfer_fails(ledger, retry_of_original_transfer(first_changed), status)


def test_create_transfer_exists_with_different_flags(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, ORIGINAL_TRANSFER)
    event = replace(ORIGINAL_TRANSFER, flags=TF.PENDING | TF.BALANCING_DEBIT)
    assert_transfer_fails(ledger, event, T.EXISTS_WITH_DIFFERENT_FLAGS)


def test_create_transfer_exists_with_different_pending_id(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10), pending(102, 1, 2, 10), post(103, 101))
    assert_transfer_fails(ledger, post(103, 102), T.EXISTS_WITH_DIFFERENT_PENDING_ID)
    assert balances(ledger, 1) == Amounts(debits_pending=10, debits_posted=10)


def test_create_transfer_exists_with_different_timeout(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, ORIGINAL_TRANSFER)
    event = replace(ORIGINAL_TRANSFER, timeout=0)
    assert_transfer_fails(ledger, event, T.EXISTS_WITH_DIFFERENT_TIMEOUT)


def test_create_transfer_exists_with_different_debit_account_id(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    assert_transfer_fails(ledger, transfer(101, 2, 1, 10), T.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID)


def test_create_transfer_exists_with_different_credit_account_id(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    assert_transfer_fails(
        ledger, transfer(101, 1, 3, 10), T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    )


def test_create_transfer_exists_with_different_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 9), T.EXISTS_WITH_DIFFERENT_AMOUNT)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 11), T.EXISTS_WITH_DIFFERENT_AMOUNT)


def test_create_transfer_exists_with_different_user_data_128(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10, user_data_128=1))
    event = transfer(101, 1, 2, 10, user_data_128=2)
    assert_transfer_fails(ledger, event, T.EXISTS_WITH_DIFFERENT_USER_DATA_128)


def test_create_transfer_exists_with_different_user_data_64(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10, user_data_64=1))
    event = transfer(101, 1, 2, 10, user_data_64=2)
    assert_transfer_fails(ledger, event, T.EXISTS_WITH_DIFFERENT_USER_DATA_64)


def test_create_transfer_exists_with_different_user_data_32(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10, user_data_32=1))
    event = transfer(101, 1, 2, 10, user_data_32=2)
    assert_transfer_fails(ledger, event, T.EXISTS_WITH_DIFFERENT_USER_DATA_32)


def test_create_transfer_exists_with_different_ledger(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, ledger=2), T.EXISTS_WITH_DIFFERENT_LEDGER)


def test_create_transfer_exists_with_different_code(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, code=2), T.EXISTS_WITH_DIFFERENT_CODE)


def test_create_transfer_exists(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    [created] = apply_transfers(ledger, ORIGINAL_TRANSFER)
    result = assert_transfer_fails(ledger, ORIGINAL_TRANSFER, T.EXISTS)
    # EXISTS reports the timestamp of the transfer that exists, and moves nothing again.
    assert result.timestamp == created.timestamp
    assert balances(ledger, 1) == Amounts(debits_pending=10)


def test_create_transfer_id_already_failed(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 1, 9, 10), T.CREDIT_ACCOUNT_NOT_FOUND)
    # The id failed for a reason that depends on the ledger's state: it is spent for good.
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.ID_ALREADY_FAILED)


@pytest.mark.parametrize(
    "flags",
    [
        TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER,
        TF.POST_PENDING_TRANSFER | TF.PENDING,
        TF.VOID_PENDING_TRANSFER | TF.PENDING,
        TF.POST_PENDING_TRANSFER | TF.BALANCING_DEBIT,
        TF.VOID_PENDING_TRANSFER | TF.BALANCING_CREDIT,
        TF.POST_PENDING_TRANSFER | TF.CLOSING_DEBIT,
        TF.VOID_PENDING_TRANSFER | TF.CLOSING_CREDIT,
    ],
)
def test_create_transfer_flags_are_mutually_exclusive(ledger: Ledger, flags: int) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    event = Transfer(id=102, pending_id=101, flags=flags)
    assert_transfer_fails(ledger, event, T.FLAGS_ARE_MUTUALLY_EXCLUSIVE)


def test_create_transfer_debit_account_id_must_not_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 0, 0, 10)
    assert_transfer_fails(ledger, event, T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO)


def test_create_transfer_debit_account_id_must_not_be_int_max(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, U128_MAX, 0, 10)
    assert_transfer_fails(ledger, event, T.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX)


def test_create_transfer_credit_account_id_must_not_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 1, 0, 10)
    assert_transfer_fails(ledger, event, T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO)


def test_create_transfer_credit_account_id_must_not_be_int_max(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 1, U128_MAX, 10)
    assert_transfer_fails(ledger, event, T.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX)


def test_create_transfer_accounts_must_be_different(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 1, 1, 10), T.ACCOUNTS_MUST_BE_DIFFERENT)


def test_create_transfer_pending_id_must_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    # Only a post or a void names a pending transfer.
    event = transfer(102, 1, 2, 10, pending_id=101)
    assert_transfer_fails(ledger, event, T.PENDING_ID_MUST_BE_ZERO)


def test_create_transfer_pending_id_must_not_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, post(102, 0), T.PENDING_ID_MUST_NOT_BE_ZERO)
    assert_transfer_fails(ledger, void(102, 0), T.PENDING_ID_MUST_NOT_BE_ZERO)


def test_create_transfer_pending_id_must_not_be_int_max(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, post(102, U128_MAX), T.PENDING_ID_MUST_NOT_BE_INT_MAX)


def test_create_transfer_pending_id_must_be_different(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, post(102, 102), T.PENDING_ID_MUST_BE_DIFFERENT)


def test_create_transfer_timeout_reserved_for_pending_transfer(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    status = T.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    assert_transfer_fails(ledger, transfer(102, 1, 2, 10, timeout=1), status)
    assert_transfer_fails(ledger, post(102, 101, timeout=1), status)
    assert_transfer_fails(ledger, void(102, 101, timeout=1), status)


@pytest.mark.parametrize("closing", [TF.CLOSING_DEBIT, TF.CLOSING_CREDIT])
def test_create_transfer_closing_transfer_must_be_pending(ledger: Ledger, closing: int) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 1, 2, 0, flags=closing)
    assert_transfer_fails(ledger, event, T.CLOSING_TRANSFER_MUST_BE_PENDING)
    assert not is_closed(ledger, 1) and not is_closed(ledger, 2)


def test_create_transfer_ledger_must_not_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 1, 2, 10, ledger=0, code=0)
    assert_transfer_fails(ledger, event, T.LEDGER_MUST_NOT_BE_ZERO)


def test_create_transfer_code_must_not_be_zero(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, code=0), T.CODE_MUST_NOT_BE_ZERO)


def test_create_transfer_debit_account_not_found(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 8, 9, 10), T.DEBIT_ACCOUNT_NOT_FOUND)


def test_create_transfer_credit_account_not_found(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 1, 9, 10), T.CREDIT_ACCOUNT_NOT_FOUND)


def test_create_transfer_accounts_must_have_the_same_ledger(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2, ledger=2))
    event = transfer(101, 1, 2, 10)
    assert_transfer_fails(ledger, event, T.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER)


def test_create_transfer_transfer_must_have_the_same_ledger_as_accounts(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    event = transfer(101, 1, 2, 10, ledger=2)
    assert_transfer_fails(ledger, event, T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS)


def test_create_transfer_pending_transfer_not_found(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, post(102, 101), T.PENDING_TRANSFER_NOT_FOUND)
    assert_transfer_fails(ledger, void(103, 101), T.PENDING_TRANSFER_NOT_FOUND)


def test_create_transfer_pending_transfer_not_pending(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    assert_transfer_fails(ledger, post(102, 101), T.PENDING_TRANSFER_NOT_PENDING)
    assert_transfer_fails(ledger, void(102, 101), T.PENDING_TRANSFER_NOT_PENDING)


def test_create_transfer_pending_transfer_has_different_debit_account_id(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(101, 1, 2, 10))
    event = post(102, 101, debit_account_id=3, credit_account_id=3)
    assert_transfer_fails(ledger, event, T.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID)


def test_create_transfer_pending_transfer_has_different_credit_account_id(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(101, 1, 2, 10))
    event = void(102, 101, debit_account_id=1, credit_account_id=3, ledger=2)
    assert_transfer_fails(ledger, event, T.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID)


def test_create_transfer_pending_transfer_has_different_ledger(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    event = post(102, 101, ledger=2, code=2)
    assert_transfer_fails(ledger, event, T.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER)


def test_create_transfer_pending_transfer_has_different_code(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    event = post(102, 101, code=2)
    assert_transfer_fails(ledger, event, T.PENDING_TRANSFER_HAS_DIFFERENT_CODE)


def test_create_transfer_exceeds_pending_transfer_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    assert_transfer_fails(ledger, post(102, 101, 11), T.EXCEEDS_PENDING_TRANSFER_AMOUNT)
    assert_transfer_fails(ledger, void(102, 101, 11), T.EXCEEDS_PENDING_TRANSFER_AMOUNT)
    assert_transfer_fails(ledger, post(102, 101, AMOUNT_MAX - 1), T.EXCEEDS_PENDING_TRANSFER_AMOUNT)


def test_create_transfer_pending_transfer_has_different_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    # A void releases the whole pending amount: it may name it, but no other amount.
    assert_transfer_fails(ledger, void(102, 101, 9), T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT)
    assert_transfer_fails(ledger, void(102, 101, 1), T.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT)


def test_create_transfer_pending_transfer_already_posted(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10), post(102, 101, 4))
    assert_transfer_fails(ledger, post(103, 101, 4), T.PENDING_TRANSFER_ALREADY_POSTED)
    assert_transfer_fails(ledger, void(104, 101), T.PENDING_TRANSFER_ALREADY_POSTED)
    assert balances(ledger, 1) == Amounts(debits_posted=4)


def test_create_transfer_pending_transfer_already_voided(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10), void(102, 101))
    assert_transfer_fails(ledger, post(103, 101), T.PENDING_TRANSFER_ALREADY_VOIDED)
    assert_transfer_fails(ledger, void(104, 101), T.PENDING_TRANSFER_ALREADY_VOIDED)
    assert balances(ledger, 1) == Amounts()


def test_create_transfer_pending_transfer_expired(ledger: Ledger, clock: FakeClock) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10, timeout=1), pending(102, 1, 2, 20))
    assert balances(ledger, 1) == Amounts(debits_pending=30)
    clock.advance(seconds=2)
    # The expired reservation is released (lookups see it) and can no longer be resolved.
    assert balances(ledger, 1) == Amounts(debits_pending=20)
    assert balances(ledger, 2) == Amounts(credits_pending=20)
    assert_transfer_fails(ledger, post(103, 101), T.PENDING_TRANSFER_EXPIRED)
    assert_transfer_fails(ledger, void(104, 101), T.PENDING_TRANSFER_EXPIRED)
    # The expired transfer itself stays as it was created.
    assert stored_transfer(ledger, 101).flags == TF.PENDING


def test_create_transfer_imported_event_timestamp_must_not_regress(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    open_accounts(
        ledger, imported_account(1, t), imported_account(2, t + 10), imported_account(3, t + 50)
    )
    regress = T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
    # Equal to an account's timestamp: it regresses even where it would not postdate.
    assert_transfer_fails(ledger, imported_transfer(101, 1, 2, 10, t + 50), regress)
    assert_transfer_fails(ledger, imported_transfer(101, 1, 2, 10, t + 10), regress)
    apply_transfers(ledger, imported_transfer(101, 1, 2, 10, t + 100))
    # Before, or equal to, the last transfer's timestamp.
    assert_transfer_fails(ledger, imported_transfer(102, 1, 2, 10, t + 99), regress)
    assert_transfer_fails(ledger, imported_transfer(102, 1, 2, 10, t + 100), regress)
    apply_transfers(ledger, imported_transfer(102, 1, 2, 10, t + 101))


def test_create_transfer_imported_event_timestamp_must_postdate_debit_account(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 50))
    event = imported_transfer(101, 2, 1, 10, t + 20)
    assert_transfer_fails(ledger, event, T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT)


def test_create_transfer_imported_event_timestamp_must_postdate_credit_account(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 50))
    event = imported_transfer(101, 1, 2, 10, t + 20)
    assert_transfer_fails(ledger, event, T.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT)


def test_create_transfer_imported_event_timeout_must_be_zero(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 1))
    event = imported_transfer(101, 1, 2, 10, t + 10, flags=TF.PENDING, timeout=1)
    assert_transfer_fails(ledger, event, T.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO)
    apply_transfers(ledger, replace(event, timeout=0))
    assert balances(ledger, 1) == Amounts(debits_pending=10)


def test_create_transfer_debit_account_already_closed(ledger: Ledger) -> None:
    open_accounts(ledger, account(1, flags=AF.CLOSED), account(2))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.DEBIT_ACCOUNT_ALREADY_CLOSED)
    assert_transfer_fails(ledger, pending(102, 1, 2, 10), T.DEBIT_ACCOUNT_ALREADY_CLOSED)


def test_create_transfer_credit_account_already_closed(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2, flags=AF.CLOSED))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.CREDIT_ACCOUNT_ALREADY_CLOSED)
    assert_transfer_fails(ledger, pending(102, 1, 2, 10), T.CREDIT_ACCOUNT_ALREADY_CLOSED)


# The overflow scenarios fill balances to the edge of u128 with transfers between accounts
# that have no limits.


def test_create_transfer_overflows_debits_pending(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(101, 1, 2, AMOUNT_MAX))
    assert_transfer_fails(ledger, pending(102, 1, 3, 1), T.OVERFLOWS_DEBITS_PENDING)


def test_create_transfer_overflows_credits_pending(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(101, 1, 2, AMOUNT_MAX))
    assert_transfer_fails(ledger, pending(102, 3, 2, 1), T.OVERFLOWS_CREDITS_PENDING)


def test_create_transfer_overflows_debits_posted(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, transfer(101, 1, 2, AMOUNT_MAX))
    assert_transfer_fails(ledger, transfer(102, 1, 3, 1), T.OVERFLOWS_DEBITS_POSTED)
    # A pending transfer would post one day: it is checked against the posted balance too.
    assert_transfer_fails(ledger, pending(102, 1, 3, 1), T.OVERFLOWS_DEBITS_POSTED)


def test_create_transfer_overflows_credits_posted(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, transfer(101, 1, 2, AMOUNT_MAX))
    assert_transfer_fails(ledger, transfer(102, 3, 2, 1), T.OVERFLOWS_CREDITS_POSTED)
    assert_transfer_fails(ledger, pending(102, 3, 2, 1), T.OVERFLOWS_CREDITS_POSTED)


def test_create_transfer_overflows_debits(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    # Pending and posted debits each fit in u128; their sum would not.
    apply_transfers(ledger, pending(101, 1, 2, 2**127))
    assert_transfer_fails(ledger, transfer(102, 1, 3, 2**127), T.OVERFLOWS_DEBITS)
    apply_transfers(ledger, transfer(102, 1, 3, 2**127 - 1))
    assert balances(ledger, 1) == Amounts(debits_pending=2**127, debits_posted=2**127 - 1)


def test_create_transfer_overflows_credits(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(101, 1, 2, 2**127))
    assert_transfer_fails(ledger, transfer(102, 3, 2, 2**127), T.OVERFLOWS_CREDITS)
    apply_transfers(ledger, transfer(102, 3, 2, 2**127 - 1))
    assert balances(ledger, 2) == Amounts(credits_pending=2**127, credits_posted=2**127 - 1)


def test_create_transfer_overflows_timeout(ledger: Ledger, clock: FakeClock) -> None:
    # Ten seconds before the last timestamp there is: the pending transfer takes the next
    # nanosecond, and a timeout of ten seconds would expire after the end of time.
    clock.now_ns = TIMESTAMP_MAX - 10 * NS_PER_S
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, pending(101, 1, 2, 10, timeout=10), T.OVERFLOWS_TIMEOUT)
    assert_transfer_fails(ledger, pending(101, 1, 2, 10, timeout=U32_MAX), T.OVERFLOWS_TIMEOUT)
    apply_transfers(ledger, pending(101, 1, 2, 10, timeout=9))


def test_create_transfer_exceeds_credits(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2), account(3)
    )
    apply_transfers(ledger, transfer(101, 2, 1, 10), pending(102, 1, 3, 4))
    # Debits pending and posted together must stay within credits posted: 4 + 7 > 10.
    assert_transfer_fails(ledger, transfer(103, 1, 3, 7), T.EXCEEDS_CREDITS)
    apply_transfers(ledger, transfer(104, 1, 3, 6))
    assert balances(ledger, 1) == Amounts(debits_pending=4, debits_posted=6, credits_posted=10)


def test_create_transfer_exceeds_debits(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS), account(2), account(3)
    )
    apply_transfers(ledger, transfer(101, 1, 2, 10), pending(102, 3, 1, 4))
    assert_transfer_fails(ledger, transfer(103, 3, 1, 7), T.EXCEEDS_DEBITS)
    apply_transfers(ledger, transfer(104, 3, 1, 6))
    assert balances(ledger, 1) == Amounts(debits_posted=10, credits_pending=4, credits_posted=6)


# -- Precedence: when several statuses apply, the earlier one wins ---------------------------


def test_timestamp_must_be_zero_precedes_reserved_field_and_reserved_flag(ledger: Ledger) -> None:
    event = account(0, reserved=1, flags=RESERVED_FLAG_BIT, timestamp=1)
    assert_account_fails(ledger, event, A.TIMESTAMP_MUST_BE_ZERO)


def test_reserved_field_precedes_reserved_flag(ledger: Ledger) -> None:
    assert_account_fails(ledger, account(0, reserved=1, flags=RESERVED_FLAG_BIT), A.RESERVED_FIELD)


def test_reserved_flag_precedes_zero_id(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    assert_account_fails(ledger, account(0, flags=RESERVED_FLAG_BIT), A.RESERVED_FLAG)
    assert_transfer_fails(ledger, transfer(0, 0, 0, 10, flags=RESERVED_FLAG_BIT), T.RESERVED_FLAG)


def test_exists_precedes_flags_are_mutually_exclusive(ledger: Ledger) -> None:
    open_accounts(ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2))
    both_limits = AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS
    assert_account_fails(ledger, account(1, flags=both_limits), A.EXISTS_WITH_DIFFERENT_FLAGS)

    open_accounts(ledger, account(3))
    apply_transfers(ledger, transfer(100, 3, 1, 10), pending(101, 1, 2, 10), post(102, 101))
    post_and_void = TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER
    event = replace(post(102, 101), flags=post_and_void)
    assert_transfer_fails(ledger, event, T.EXISTS_WITH_DIFFERENT_FLAGS)


def test_exists_precedes_the_checks_of_a_new_transfer(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    # Retrying an existing id answers from the transfer that exists, not from the event.
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, code=0), T.EXISTS_WITH_DIFFERENT_CODE)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, ledger=0), T.EXISTS_WITH_DIFFERENT_LEDGER)
    assert_transfer_fails(
        ledger, transfer(101, 1, 9, 10), T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    )


# A transient status depends on the ledger's state at the time. Its id stays spent after the
# state has changed, so that a retry cannot succeed later by accident.


def test_id_already_failed_after_debit_account_not_found_even_once_it_exists(
    ledger: Ledger,
) -> None:
    open_two_accounts(ledger)
    assert_transfer_fails(ledger, transfer(101, 9, 2, 10), T.DEBIT_ACCOUNT_NOT_FOUND)
    open_accounts(ledger, account(9))
    assert_transfer_fails(ledger, transfer(101, 9, 2, 10), T.ID_ALREADY_FAILED)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.ID_ALREADY_FAILED)


def test_id_already_failed_after_exceeds_credits_even_once_funded(ledger: Ledger) -> None:
    open_accounts(ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.EXCEEDS_CREDITS)
    apply_transfers(ledger, transfer(102, 2, 1, 100))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.ID_ALREADY_FAILED)
    assert balances(ledger, 1) == Amounts(credits_posted=100)


def test_id_already_failed_after_an_account_was_closed_even_once_reopened(
    ledger: Ledger,
) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(100, 1, 2, 0, flags=TF.CLOSING_DEBIT))
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.DEBIT_ACCOUNT_ALREADY_CLOSED)
    apply_transfers(ledger, void(102, 100))
    assert not is_closed(ledger, 1)
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.ID_ALREADY_FAILED)


def test_id_already_failed_within_the_same_batch(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    statuses = create_transfers(ledger, transfer(101, 1, 9, 10), transfer(101, 1, 2, 10))
    assert statuses == [T.CREDIT_ACCOUNT_NOT_FOUND, T.ID_ALREADY_FAILED]


def test_an_id_that_failed_validation_can_be_used_again(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    # A status that depends on the event alone does not spend the id.
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10, code=0), T.CODE_MUST_NOT_BE_ZERO)
    assert_transfer_fails(
        ledger, transfer(101, 1, 2, 10, ledger=2), T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
    )
    assert_transfer_created(ledger, transfer(101, 1, 2, 10))


def test_exists_precedes_id_already_failed(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 10))
    # A retry of a created transfer that fails transiently would not burn the existing id.
    assert_transfer_fails(
        ledger, transfer(101, 1, 9, 10), T.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    )
    assert_transfer_fails(ledger, transfer(101, 1, 2, 10), T.EXISTS)


def test_linked_event_chain_open_precedes_every_other_status(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    # The last event of a batch may not leave a chain open, whatever else is wrong with it.
    assert create_transfers(ledger, transfer(0, 0, 0, 0, flags=TF.LINKED | RESERVED_FLAG_BIT)) == [
        T.LINKED_EVENT_CHAIN_OPEN
    ]
    assert create_accounts(ledger, account(0, flags=AF.LINKED, timestamp=1)) == [
        A.LINKED_EVENT_CHAIN_OPEN
    ]
    # Even when the chain has already failed before it.
    statuses = create_transfers(
        ledger, transfer(101, 1, 2, 10, flags=TF.LINKED), transfer(102, 1, 2, 10, flags=TF.LINKED)
    )
    assert statuses == [T.LINKED_EVENT_FAILED, T.LINKED_EVENT_CHAIN_OPEN]
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 9, 10, flags=TF.LINKED),
        transfer(102, 1, 2, 10, flags=TF.LINKED),
        transfer(103, 1, 2, 10, flags=TF.LINKED),
    )
    assert statuses == [
        T.CREDIT_ACCOUNT_NOT_FOUND,
        T.LINKED_EVENT_FAILED,
        T.LINKED_EVENT_CHAIN_OPEN,
    ]
    assert balances(ledger, 1) == Amounts()


def test_the_first_event_decides_whether_a_batch_imports(ledger: Ledger, clock: FakeClock) -> None:
    # An event that is valid on its own fails when it does not match the first event.
    statuses = create_accounts(ledger, imported_account(1, clock.now_ns - 10), account(2))
    assert statuses == [A.CREATED, A.IMPORTED_EVENT_EXPECTED]
    clock.advance(seconds=1)
    statuses = create_accounts(ledger, account(3), imported_account(4, clock.now_ns - 10))
    assert statuses == [A.CREATED, A.IMPORTED_EVENT_NOT_EXPECTED]
    # The mismatch precedes every status that the event itself would get.
    clock.advance(seconds=1)
    statuses = create_accounts(
        ledger, imported_account(5, clock.now_ns - 10), account(0, timestamp=1)
    )
    assert statuses == [A.CREATED, A.IMPORTED_EVENT_EXPECTED]
    assert ids(ledger.lookup_accounts([1, 2, 3, 4, 5])) == [1, 3, 5]


# -- Linked chains ---------------------------------------------------------------------------


def test_a_successful_chain_applies_every_event(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2), account(3)
    )
    # The second event sees the first: account 1 can spend what the chain just gave it.
    statuses = create_transfers(
        ledger, transfer(101, 2, 1, 10, flags=TF.LINKED), transfer(102, 1, 3, 10)
    )
    assert statuses == [T.CREATED, T.CREATED]
    assert balances(ledger, 1) == Amounts(debits_posted=10, credits_posted=10)


def test_a_failed_chain_rolls_back_every_effect_of_its_earlier_events(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(100, 1, 2, 5))
    before = snapshot(ledger)
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 10, flags=TF.LINKED),
        pending(102, 1, 3, 20, flags=TF.LINKED),
        post(103, 100, flags=TF.LINKED),
        pending(104, 2, 3, 0, flags=TF.LINKED | TF.CLOSING_DEBIT),
        transfer(105, 3, 1, 1, code=0),
    )
    assert statuses == [T.LINKED_EVENT_FAILED] * 4 + [T.CODE_MUST_NOT_BE_ZERO]
    assert snapshot(ledger) == before
    # The pending transfer is pending again and account 2 open again.
    assert not is_closed(ledger, 2)
    assert_transfer_created(ledger, void(106, 100))
    # The ids of rolled-back events are free.
    assert_transfer_created(ledger, transfer(101, 1, 2, 10))


def test_a_failed_chain_leaves_events_outside_it_alone(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 1),
        transfer(102, 1, 2, 2, flags=TF.LINKED),
        transfer(103, 1, 2, 3, ledger=2),
        transfer(104, 1, 2, 4, flags=TF.LINKED),
        transfer(105, 1, 2, 5),
    )
    assert statuses == [
        T.CREATED,
        T.LINKED_EVENT_FAILED,
        T.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
        T.CREATED,
        T.CREATED,
    ]
    assert balances(ledger, 1) == Amounts(debits_posted=10)


def test_a_failing_event_in_the_middle_fails_the_rest_of_its_chain(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 1, flags=TF.LINKED),
        transfer(102, 1, 2, 2, flags=TF.LINKED, code=0),
        transfer(103, 1, 2, 3, flags=TF.LINKED),
        transfer(104, 1, 2, 4),
        transfer(105, 1, 2, 5),
    )
    assert statuses == [
        T.LINKED_EVENT_FAILED,
        T.CODE_MUST_NOT_BE_ZERO,
        T.LINKED_EVENT_FAILED,
        T.LINKED_EVENT_FAILED,
        T.CREATED,
    ]
    assert balances(ledger, 1) == Amounts(debits_posted=5)


def test_an_exists_inside_a_chain_breaks_it(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    results = ledger.create_transfers(
        [
            transfer(101, 1, 2, 10, flags=TF.LINKED),
            transfer(102, 1, 2, 20, flags=TF.LINKED),
            transfer(101, 1, 2, 10, flags=TF.LINKED),
            transfer(103, 1, 2, 30),
        ]
    )
    assert [r.status for r in results] == [
        T.LINKED_EVENT_FAILED,
        T.LINKED_EVENT_FAILED,
        T.EXISTS,
        T.LINKED_EVENT_FAILED,
    ]
    # EXISTS reports the timestamp of the transfer it matched, though the chain undid it.
    assert results[2].timestamp == results[0].timestamp
    assert ledger.lookup_transfers([101, 102, 103]) == []
    assert balances(ledger, 1) == Amounts()


def test_an_exists_of_an_earlier_batch_inside_a_chain_breaks_it(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    [created] = apply_transfers(ledger, transfer(100, 1, 2, 1))
    results = ledger.create_transfers(
        [transfer(101, 1, 2, 10, flags=TF.LINKED), transfer(100, 1, 2, 1)]
    )
    assert [r.status for r in results] == [T.LINKED_EVENT_FAILED, T.EXISTS]
    assert results[1].timestamp == created.timestamp
    assert balances(ledger, 1) == Amounts(debits_posted=1)


def test_an_exists_inside_a_chain_of_accounts_breaks_it(ledger: Ledger) -> None:
    statuses = create_accounts(
        ledger,
        account(7),
        account(1, flags=AF.LINKED),
        account(2, flags=AF.LINKED),
        account(1, flags=AF.LINKED),
        account(3),
        account(1),
    )
    assert statuses == [
        A.CREATED,
        A.LINKED_EVENT_FAILED,
        A.LINKED_EVENT_FAILED,
        A.EXISTS,
        A.LINKED_EVENT_FAILED,
        A.CREATED,
    ]
    assert ids(ledger.lookup_accounts([1, 2, 3, 7])) == [1, 7]


def test_a_transient_failure_inside_a_chain_spends_only_its_own_id(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1), account(2), account(3, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    )
    statuses = create_transfers(
        ledger,
        transfer(101, 1, 2, 41, flags=TF.LINKED),
        pending(102, 2, 3, 1, flags=TF.LINKED),
        void(103, 102),
    )
    assert statuses == [T.LINKED_EVENT_FAILED, T.EXCEEDS_DEBITS, T.LINKED_EVENT_FAILED]
    statuses = create_transfers(
        ledger, transfer(101, 1, 2, 0), transfer(102, 2, 3, 0), transfer(103, 2, 3, 0)
    )
    assert statuses == [T.CREATED, T.ID_ALREADY_FAILED, T.CREATED]


# -- Two-phase transfers ---------------------------------------------------------------------


def test_post_with_amount_max_posts_the_whole_pending_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    assert balances(ledger, 1) == Amounts(debits_pending=10)
    assert balances(ledger, 2) == Amounts(credits_pending=10)
    assert assert_transfer_created(ledger, post(102, 101, AMOUNT_MAX)).amount == 10
    assert balances(ledger, 1) == Amounts(debits_posted=10)
    assert balances(ledger, 2) == Amounts(credits_posted=10)


def test_a_pending_amount_max_can_be_posted_whole(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, AMOUNT_MAX))
    assert assert_transfer_created(ledger, post(102, 101)).amount == AMOUNT_MAX
    assert balances(ledger, 1) == Amounts(debits_posted=AMOUNT_MAX)
    assert balances(ledger, 2) == Amounts(credits_posted=AMOUNT_MAX)


def test_a_partial_post_posts_its_amount_and_releases_the_rest(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10), pending(102, 1, 2, 1))
    assert assert_transfer_created(ledger, post(103, 101, 6)).amount == 6
    assert balances(ledger, 1) == Amounts(debits_pending=1, debits_posted=6)
    assert balances(ledger, 2) == Amounts(credits_pending=1, credits_posted=6)


def test_a_post_of_zero_posts_nothing_and_releases_everything(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    assert assert_transfer_created(ledger, post(102, 101, 0)).amount == 0
    assert balances(ledger, 1) == Amounts()
    assert balances(ledger, 2) == Amounts()


def test_a_void_releases_the_whole_pending_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    assert assert_transfer_created(ledger, void(102, 101)).amount == 10
    assert balances(ledger, 1) == Amounts()
    assert balances(ledger, 2) == Amounts()


def test_a_void_may_name_the_pending_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    assert assert_transfer_created(ledger, void(102, 101, 10)).amount == 10
    assert balances(ledger, 1) == Amounts()
    assert balances(ledger, 2) == Amounts()


def test_post_and_void_inherit_their_zero_fields_from_the_pending_transfer(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(
        ledger,
        pending(101, 1, 2, 10, user_data_128=7, user_data_64=8, user_data_32=9, code=5),
        pending(102, 1, 2, 20, user_data_128=7, user_data_64=8, user_data_32=9, code=5, timeout=60),
    )
    posted = assert_transfer_created(ledger, post(103, 101))
    assert posted == Transfer(
        id=103,
        debit_account_id=1,
        credit_account_id=2,
        amount=10,
        pending_id=101,
        user_data_128=7,
        user_data_64=8,
        user_data_32=9,
        timeout=0,
        ledger=1,
        code=5,
        flags=TF.POST_PENDING_TRANSFER,
        timestamp=posted.timestamp,
    )
    voided = assert_transfer_created(ledger, void(104, 102))
    assert voided == replace(
        posted,
        id=104,
        amount=20,
        pending_id=102,
        flags=TF.VOID_PENDING_TRANSFER,
        timestamp=voided.timestamp,
    )


def test_post_and_void_accept_given_fields_that_match_the_pending_transfer(
    ledger: Ledger,
) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10, code=5), pending(102, 1, 2, 20, code=5))
    matching = {"debit_account_id": 1, "credit_account_id": 2, "ledger": 1, "code": 5}
    assert_transfer_created(ledger, post(103, 101, 10, **matching))
    assert_transfer_created(ledger, void(104, 102, 20, **matching))
    assert balances(ledger, 1) == Amounts(debits_posted=10)


def test_post_and_void_may_carry_their_own_user_data(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10, user_data_128=7, user_data_64=8))
    posted = assert_transfer_created(ledger, post(102, 101, user_data_64=80, user_data_32=90))
    assert (posted.user_data_128, posted.user_data_64, posted.user_data_32) == (7, 80, 90)


def test_a_retried_post_compares_through_the_pending_transfer(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 7, user_data_64=3))
    [created] = apply_transfers(ledger, post(102, 101))
    # Zero fields and AMOUNT_MAX mean "as the pending transfer", so these are the same post.
    for retry in (
        post(102, 101),
        post(102, 101, 7),
        post(102, 101, 7, debit_account_id=1, credit_account_id=2, ledger=1, code=1),
        post(102, 101, user_data_64=3),
    ):
        assert assert_transfer_fails(ledger, retry, T.EXISTS).timestamp == created.timestamp
    for amount in (0, 6, 8):
        assert_transfer_fails(ledger, post(102, 101, amount), T.EXISTS_WITH_DIFFERENT_AMOUNT)
    assert_transfer_fails(
        ledger, post(102, 101, user_data_64=4), T.EXISTS_WITH_DIFFERENT_USER_DATA_64
    )


def test_a_retried_partial_post_must_name_the_posted_amount(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 7), post(102, 101, 5))
    assert_transfer_fails(ledger, post(102, 101, 5), T.EXISTS)
    assert_transfer_fails(ledger, post(102, 101), T.EXISTS_WITH_DIFFERENT_AMOUNT)


def test_a_retried_void_with_zero_amount_is_exists(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 7), void(102, 101))
    assert_transfer_fails(ledger, void(102, 101), T.EXISTS)
    assert_transfer_fails(ledger, void(102, 101, 7), T.EXISTS)
    assert_transfer_fails(ledger, void(102, 101, 6), T.EXISTS_WITH_DIFFERENT_AMOUNT)


def test_a_pending_transfer_expires_exactly_at_its_timeout(
    ledger: Ledger, clock: FakeClock
) -> None:
    open_two_accounts(ledger)
    created = assert_transfer_created(ledger, pending(101, 1, 2, 10, timeout=3))
    expires_at = created.timestamp + 3 * NS_PER_S
    # One nanosecond before the expiry it can still be posted.
    clock.now_ns = expires_at - 1
    assert assert_transfer_created(ledger, post(102, 101)).timestamp == expires_at - 1
    assert balances(ledger, 1) == Amounts(debits_posted=10)

    created = assert_transfer_created(ledger, pending(103, 1, 2, 10, timeout=3))
    clock.now_ns = created.timestamp + 3 * NS_PER_S
    assert balances(ledger, 1) == Amounts(debits_posted=10)
    assert_transfer_fails(ledger, void(104, 103), T.PENDING_TRANSFER_EXPIRED)


def test_a_pending_transfer_without_timeout_never_expires(ledger: Ledger, clock: FakeClock) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10))
    clock.advance(seconds=100 * 365 * 24 * 3600)
    assert balances(ledger, 1) == Amounts(debits_pending=10)
    assert_transfer_created(ledger, post(102, 101))


def test_balance_limits_count_pending_amounts(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2), account(3)
    )
    apply_transfers(ledger, transfer(101, 2, 1, 100), transfer(102, 1, 3, 70))
    # A pending transfer that the account could not afford fails now, not when posted.
    assert_transfer_fails(ledger, pending(103, 1, 3, 50), T.EXCEEDS_CREDITS)
    apply_transfers(ledger, pending(104, 1, 3, 30))
    assert_transfer_fails(ledger, transfer(105, 1, 3, 1), T.EXCEEDS_CREDITS)
    # Posting or voiding never breaks a limit.
    assert_transfer_created(ledger, post(106, 104, 20))
    assert balances(ledger, 1) == Amounts(debits_posted=90, credits_posted=100)


# -- Balancing transfers ---------------------------------------------------------------------


def test_balancing_debit_moves_at_most_what_the_debit_account_has(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2), account(3)
    )
    apply_transfers(ledger, transfer(101, 3, 1, 10), pending(102, 1, 3, 1))
    moved = assert_transfer_created(ledger, transfer(103, 1, 2, 100, flags=TF.BALANCING_DEBIT))
    # The stored amount is the amount actually moved: 10 credits - 1 pending debit.
    assert moved.amount == 9
    assert balances(ledger, 1) == Amounts(debits_pending=1, debits_posted=9, credits_posted=10)
    assert balances(ledger, 2) == Amounts(credits_posted=9)
    # Once the account is exhausted, a balancing transfer moves nothing, and still succeeds.
    empty = assert_transfer_created(ledger, transfer(104, 1, 2, 1, flags=TF.BALANCING_DEBIT))
    assert empty.amount == 0


def test_balancing_credit_moves_at_most_what_the_credit_account_takes(ledger: Ledger) -> None:
    open_accounts(
        ledger, account(1), account(2, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS), account(3)
    )
    apply_transfers(ledger, transfer(101, 2, 3, 10))
    moved = assert_transfer_created(ledger, transfer(102, 1, 2, 100, flags=TF.BALANCING_CREDIT))
    assert moved.amount == 10
    assert balances(ledger, 2) == Amounts(debits_posted=10, credits_posted=10)


def test_balancing_an_account_without_limits_stops_at_its_net_balance(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, transfer(101, 3, 1, 10), transfer(102, 1, 3, 4))
    moved = assert_transfer_created(ledger, transfer(103, 1, 2, 99, flags=TF.BALANCING_DEBIT))
    assert moved.amount == 6
    # An account whose debits already exceed its credits has nothing to give.
    moved = assert_transfer_created(ledger, transfer(104, 3, 2, 99, flags=TF.BALANCING_DEBIT))
    assert moved.amount == 0


def test_balancing_both_sides_moves_what_both_allow(ledger: Ledger) -> None:
    open_accounts(
        ledger,
        account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(2, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS),
        account(3),
    )
    apply_transfers(ledger, transfer(101, 3, 1, 20), transfer(102, 2, 3, 10))
    both = TF.BALANCING_DEBIT | TF.BALANCING_CREDIT
    assert assert_transfer_created(ledger, transfer(103, 1, 2, 12, flags=both)).amount == 10


def test_balancing_one_side_does_not_lift_the_other_sides_limit(ledger: Ledger) -> None:
    open_accounts(
        ledger,
        account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(2),
        account(3),
    )
    apply_transfers(ledger, transfer(101, 3, 1, 4), transfer(102, 2, 3, 5))
    # Balancing the credit account allows 5; account 1 can afford only 4.
    event = transfer(103, 1, 2, 10, flags=TF.BALANCING_CREDIT)
    assert_transfer_fails(ledger, event, T.EXCEEDS_CREDITS)


def test_a_pending_balancing_transfer_reserves_the_clamped_amount(ledger: Ledger) -> None:
    open_accounts(ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2))
    apply_transfers(ledger, transfer(101, 2, 1, 10))
    flags = TF.BALANCING_DEBIT
    assert assert_transfer_created(ledger, pending(102, 1, 2, 13, flags=flags)).amount == 10
    assert balances(ledger, 1) == Amounts(debits_pending=10, credits_posted=10)
    assert assert_transfer_created(ledger, post(103, 102, 5)).amount == 5


def test_a_retried_balancing_transfer_is_exists_if_its_amount_covers_what_moved(
    ledger: Ledger,
) -> None:
    open_accounts(ledger, account(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS), account(2))
    apply_transfers(ledger, transfer(100, 2, 1, 6))
    [created] = apply_transfers(ledger, transfer(101, 1, 2, 13, flags=TF.BALANCING_DEBIT))
    assert stored_transfer(ledger, 101).amount == 6
    for amount in (6, 7, 13, AMOUNT_MAX):
        retry = transfer(101, 1, 2, amount, flags=TF.BALANCING_DEBIT)
        assert assert_transfer_fails(ledger, retry, T.EXISTS).timestamp == created.timestamp
    for amount in (0, 5):
        retry = transfer(101, 1, 2, amount, flags=TF.BALANCING_DEBIT)
        assert_transfer_fails(ledger, retry, T.EXISTS_WITH_DIFFERENT_AMOUNT)


# -- Closing accounts ------------------------------------------------------------------------


def test_a_closing_debit_closes_the_debit_account_only(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, transfer(101, 1, 2, 15))
    closing = assert_transfer_created(ledger, pending(102, 1, 2, 0, flags=TF.CLOSING_DEBIT))
    assert closing.flags == TF.PENDING | TF.CLOSING_DEBIT
    assert is_closed(ledger, 1) and not is_closed(ledger, 2)
    assert balances(ledger, 1) == Amounts(debits_posted=15)


def test_a_closing_credit_closes_the_credit_account_only(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 0, flags=TF.CLOSING_CREDIT))
    assert is_closed(ledger, 2) and not is_closed(ledger, 1)


def test_a_closed_account_refuses_every_new_movement(ledger: Ledger) -> None:
    open_accounts(ledger, account(1), account(2), account(3))
    apply_transfers(ledger, pending(101, 1, 2, 10), pending(102, 1, 2, 0, flags=TF.CLOSING_DEBIT))
    closed = T.DEBIT_ACCOUNT_ALREADY_CLOSED
    assert_transfer_fails(ledger, transfer(103, 1, 3, 5), closed)
    assert_transfer_fails(ledger, pending(104, 1, 3, 5), closed)
    assert_transfer_fails(ledger, pending(105, 1, 3, 0, flags=TF.CLOSING_DEBIT), closed)
    assert_transfer_fails(ledger, transfer(106, 3, 1, 5), T.CREDIT_ACCOUNT_ALREADY_CLOSED)
    # Posting a pending transfer would move money: refused too, the closing one included.
    assert_transfer_fails(ledger, post(107, 101), closed)
    assert_transfer_fails(ledger, post(108, 102), closed)


def test_a_closed_account_accepts_a_void(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    apply_transfers(ledger, pending(101, 1, 2, 10), pending(102, 1, 2, 0, flags=TF.CLOSING_CREDIT))
    assert_transfer_created(ledger, void(103, 101))
    assert balances(ledger, 1) == Amounts()
    assert balances(ledger, 2) == Amounts()
    assert is_closed(ledger, 2)


def test_voiding_the_closing_transfer_reopens_the_accounts(ledger: Ledger) -> None:
    open_two_accounts(ledger)
    both = TF.CLOSING_DEBIT | TF.CLOSING_CREDIT
    apply_transfers(ledger, pending(101, 1, 2, 0, flags=both))
    assert is_closed(ledger, 1) and is_closed(ledger, 2)
    assert_transfer_created(ledger, void(102, 101))
    assert not is_closed(ledger, 1) and not is_closed(ledger, 2)
    assert_transfer_created(ledger, transfer(103, 1, 2, 5))


def test_the_expiry_of_a_closing_transfer_reopens_the_account(
    ledger: Ledger, clock: FakeClock
) -> None:
    open_two_accounts(ledger)
    closing = assert_transfer_created(
        ledger, pending(101, 1, 2, 0, timeout=2, flags=TF.CLOSING_CREDIT)
    )
    clock.now_ns = closing.timestamp + 2 * NS_PER_S - 1
    assert is_closed(ledger, 2)
    clock.advance(ns=1)
    assert not is_closed(ledger, 2)
    assert_transfer_created(ledger, transfer(102, 1, 2, 5))


def test_pending_amounts_of_a_closed_account_still_expire(ledger: Ledger, clock: FakeClock) -> None:
    open_two_accounts(ledger)
    apply_transfers(
        ledger, pending(101, 1, 2, 10, timeout=1), pending(102, 1, 2, 0, flags=TF.CLOSING_CREDIT)
    )
    clock.advance(seconds=2)
    assert balances(ledger, 2) == Amounts()
    assert is_closed(ledger, 2)


def test_an_account_can_be_created_closed(ledger: Ledger) -> None:
    open_accounts(ledger, account(1, flags=AF.CLOSED))
    assert is_closed(ledger, 1)


# -- Imported events -------------------------------------------------------------------------


def test_imported_results_carry_the_user_timestamp(ledger: Ledger, clock: FakeClock) -> None:
    t = clock.now_ns - 1000
    results = ledger.create_accounts([imported_account(1, t), imported_account(2, t + 1)])
    assert results == [(A.CREATED, t), (A.CREATED, t + 1)]
    results = ledger.create_transfers(
        [
            imported_transfer(101, 1, 2, 3, t + 2),
            imported_transfer(102, 1, 2, 4, t + 3, flags=TF.PENDING),
        ]
    )
    assert results == [(T.CREATED, t + 2), (T.CREATED, t + 3)]
    imported_post = post(103, 102, 4, flags=TF.IMPORTED, timestamp=t + 4)
    [result] = ledger.create_transfers([imported_post])
    assert result == (T.CREATED, t + 4)
    assert [a.timestamp for a in ledger.lookup_accounts([1, 2])] == [t, t + 1]
    assert [x.timestamp for x in ledger.lookup_transfers([101, 102, 103])] == [t + 2, t + 3, t + 4]
    assert balances(ledger, 1) == Amounts(debits_posted=7)


def test_an_imported_retry_is_exists_whatever_its_timestamp(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 10))
    apply_transfers(ledger, imported_transfer(101, 1, 2, 3, t + 20))
    for timestamp in (t + 1, t + 10, t + 15):
        result = assert_account_fails(ledger, imported_account(2, timestamp), A.EXISTS)
        assert result.timestamp == t + 10
    for timestamp in (t + 5, t + 20, t + 25):
        event = imported_transfer(101, 1, 2, 3, timestamp)
        assert assert_transfer_fails(ledger, event, T.EXISTS).timestamp == t + 20


def test_a_rolled_back_imported_chain_frees_its_timestamps(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    statuses = create_accounts(
        ledger,
        imported_account(1, t + 1, flags=AF.LINKED),
        imported_account(2, t + 2, flags=AF.LINKED),
        imported_account(3, 0),
    )
    assert statuses == [
        A.LINKED_EVENT_FAILED,
        A.LINKED_EVENT_FAILED,
        A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
    ]
    statuses = create_accounts(
        ledger,
        imported_account(1, t + 1, flags=AF.LINKED),
        imported_account(2, t + 2, flags=AF.LINKED),
        imported_account(3, t + 3),
    )
    assert statuses == [A.CREATED, A.CREATED, A.CREATED]


def test_failed_imported_events_take_the_timestamp_of_their_place_in_the_batch(
    ledger: Ledger, clock: FakeClock
) -> None:
    # As TigerBeetle: only a created event keeps its own timestamp (as do, below, the events a
    # chain created before it failed); a failure answers with the timestamp the ledger gave the
    # event's place in the batch, never with a user timestamp that may lie in the future or
    # beyond the range of timestamps.
    t = clock.now_ns - 1000
    open_accounts(ledger, imported_account(1, t), imported_account(2, t + 1))
    clock.advance(seconds=1)
    batch = [
        imported_transfer(101, 1, 2, 3, 0),
        imported_transfer(101, 1, 2, 3, 2**64 - 2),
        imported_transfer(101, 1, 2, 3, clock.now_ns + 5),
        imported_transfer(101, 1, 2, 3, t + 5, ledger=0),
        imported_transfer(101, 1, 2, 3, t),
        imported_transfer(102, 1, 2, 3, t + 6, flags=TF.LINKED),
    ]
    results = ledger.create_transfers(batch)
    assert [r.status for r in results] == [
        T.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
        T.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
        T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE,
        T.LEDGER_MUST_NOT_BE_ZERO,
        T.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        T.LINKED_EVENT_CHAIN_OPEN,
    ]
    first = clock.now_ns - len(batch) + 1
    assert [r.timestamp for r in results] == list(range(first, clock.now_ns + 1))
    clock.advance(seconds=1)
    results = ledger.create_accounts([account(3), imported_account(4, t + 7)])
    assert results == [(A.CREATED, clock.now_ns - 1), (A.IMPORTED_EVENT_NOT_EXPECTED, clock.now_ns)]


def test_a_failed_chain_keeps_the_timestamps_it_created_with_and_places_the_rest(
    ledger: Ledger, clock: FakeClock
) -> None:
    t = clock.now_ns - 1000
    batch = [
        imported_account(1, t + 1, flags=AF.LINKED),
        imported_account(2, 0, flags=AF.LINKED),
        imported_account(3, t + 3, flags=AF.LINKED),
        imported_account(4, t + 4),
    ]
    results = ledger.create_accounts(batch)
    first = clock.now_ns - len(batch) + 1
    assert results == [
        (A.LINKED_EVENT_FAILED, t + 1),
        (A.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE, first + 1),
        (A.LINKED_EVENT_FAILED, first + 2),
        (A.LINKED_EVENT_FAILED, first + 3),
    ]
    assert ledger.lookup_accounts([1, 2, 3, 4]) == []


def test_imported_transfers_may_use_accounts_that_were_not_imported(
    ledger: Ledger, clock: FakeClock
) -> None:
    open_two_accounts(ledger)
    created_at = stored_account(ledger, 2).timestamp
    clock.advance(seconds=1)
    [result] = ledger.create_transfers([imported_transfer(101, 1, 2, 10, created_at + 1)])
    assert result == (T.CREATED, created_at + 1)


# -- Result timestamps -----------------------------------------------------------------------


def test_created_results_carry_strictly_increasing_assigned_timestamps(ledger: Ledger) -> None:
    accounts = ledger.create_accounts([account(1), account(2), account(3)])
    transfers = ledger.create_transfers([transfer(101, 1, 2, 1), transfer(102, 2, 3, 1)])
    later = ledger.create_transfers([transfer(103, 3, 1, 1)])
    stamps = [r.timestamp for r in [*accounts, *transfers, *later]]
    assert stamps == sorted(set(stamps))
    # Each result's timestamp is the one the ledger stored.
    assert [a.timestamp for a in ledger.lookup_accounts([1, 2, 3])] == stamps[:3]
    assert [x.timestamp for x in ledger.lookup_transfers([101, 102, 103])] == stamps[3:]


def test_a_batch_of_one_takes_the_clock_time_when_it_is_later(
    ledger: Ledger, clock: FakeClock
) -> None:
    [result] = ledger.create_accounts([account(1)])
    assert result.timestamp == clock.now_ns
    clock.advance(seconds=1)
    [result] = ledger.create_accounts([account(2)])
    assert result.timestamp == clock.now_ns


def test_failed_events_take_a_timestamp_too(ledger: Ledger) -> None:
    results = ledger.create_accounts([account(1), account(0), account(2)])
    stamps = [r.timestamp for r in results]
    assert stamps == sorted(set(stamps))
    assert [a.timestamp for a in ledger.lookup_accounts([1, 2])] == [stamps[0], stamps[2]]


# -- Coverage ----------------------------------------------------------------------------------


def test_every_status_has_a_scenario_named_after_it() -> None:
    names = set(globals())
    missing = [
        f"test_create_account_{status.name.lower()}"
        for status in CreateAccountStatus
        if f"test_create_account_{status.name.lower()}" not in names
    ] + [
        f"test_create_transfer_{status.name.lower()}"
        for status in CreateTransferStatus
        if f"test_create_transfer_{status.name.lower()}" not in names
    ]
    assert missing == []
