"""The engine contract (`fastledger._contract.Engine`): both engines expose the same methods,
check their input the same way, and own the rule that expires pending transfers before a batch.

These tests drive the engines directly, without the facade, with timestamps they choose.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fastledger import (
    Account,
    BatchTooLargeError,
    CreateTransferStatus,
    InvalidArgumentError,
    InvalidRecordError,
    RecordTypeError,
    Transfer,
    TransferFlags,
)
from fastledger._contract import Engine
from fastledger._records import pack_accounts_in_python, pack_transfers_in_python
from fastledger.engine import PythonEngine

from .conftest import ENGINE_NAMES, require_engine
from .helpers import LyingInt, new_engine

T = CreateTransferStatus
NS_PER_S = 1_000_000_000
START = 1_000 * NS_PER_S


@pytest.fixture(params=ENGINE_NAMES)
def make_engine(request: pytest.FixtureRequest) -> Callable[[], Engine]:
    name: str = request.param
    require_engine(name)
    return lambda: new_engine(name)


def accounts(*ids: int) -> list[Account]:
    return [Account(id=i, ledger=1, code=1) for i in ids]


def transfer(id_: int, amount: int = 1, **fields: int) -> Transfer:
    return Transfer(id=id_, debit_account_id=1, credit_account_id=2, amount=amount, **fields)


def plain(id_: int, amount: int = 1, **fields: int) -> Transfer:
    return transfer(id_, amount, ledger=1, code=1, **fields)


def opened(make_engine: Callable[[], Engine]) -> Engine:
    engine = make_engine()
    engine.create_accounts(accounts(1, 2), START)
    return engine


def contract_methods() -> set[str]:
    return {name for name in vars(Engine) if not name.startswith("_")} | {"name"}


def public_names(engine_type: type) -> set[str]:
    return {name for name in dir(engine_type) if not name.startswith("_")}


def test_both_engines_expose_exactly_the_methods_of_the_contract() -> None:
    assert public_names(PythonEngine) == contract_methods()
    require_engine("rust")
    from fastledger import _native

    assert public_names(_native.Engine) == contract_methods()


# -- packed and object batches --------------------------------------------------------------


def test_packed_batches_give_the_results_and_state_of_the_same_objects(
    make_engine: Callable[[], Engine],
) -> None:
    batches = [
        [plain(10), plain(11, 5, flags=TransferFlags.PENDING, timeout=1), plain(10)],
        [plain(12, pending_id=11, flags=TransferFlags.POST_PENDING_TRANSFER), transfer(13)],
    ]
    objects, from_packed, packed = make_engine(), make_engine(), make_engine()
    records = memoryview(pack_accounts_in_python(accounts(1, 2)))
    expected = objects.create_accounts(accounts(1, 2), START)
    assert from_packed.create_accounts_from_packed(records, START) == expected
    statuses, timestamps = packed.create_accounts_packed(records, START)
    assert statuses == b"".join(r.status.to_bytes(4, "little") for r in expected)
    assert timestamps == b"".join(r.timestamp.to_bytes(8, "little") for r in expected)
    for i, batch in enumerate(batches):
        timestamp = START + (1 + i) * NS_PER_S
        records = memoryview(pack_transfers_in_python(batch))
        expected_transfers = objects.create_transfers(batch, timestamp)
        assert from_packed.create_transfers_from_packed(records, timestamp) == expected_transfers
        statuses, _ = packed.create_transfers_packed(records, timestamp)
        assert statuses == b"".join(r.status.to_bytes(4, "little") for r in expected_transfers)
    state = objects.export_state()
    assert from_packed.export_state() == state
    assert packed.export_state() == state


# -- expiry, a rule of the engines ------------------------------------------------------------


def test_a_batch_of_transfers_first_releases_what_expired_by_its_first_timestamp(
    make_engine: Callable[[], Engine],
) -> None:
    engine = opened(make_engine)
    [created] = engine.create_transfers(
        [plain(10, 7, flags=TransferFlags.PENDING, timeout=2)], START + 1
    )
    expires_at = created.timestamp + 2 * NS_PER_S
    # A batch of two whose first event takes the very time of the expiry.
    post = plain(12, pending_id=10, flags=TransferFlags.POST_PENDING_TRANSFER)
    results = engine.create_transfers([plain(11), post], expires_at + 1)
    assert [r.status for r in results] == [T.CREATED, T.PENDING_TRANSFER_EXPIRED]
    [account] = engine.lookup_accounts([1])
    assert (account.debits_pending, account.debits_posted) == (0, 1)


def test_expiry_due_says_whether_a_pending_transfer_expires_by_then_and_changes_nothing(
    make_engine: Callable[[], Engine],
) -> None:
    engine = opened(make_engine)
    assert not engine.expiry_due(2**63 - 1)
    [created] = engine.create_transfers(
        [plain(10, 7, flags=TransferFlags.PENDING, timeout=2)], START + 1
    )
    expires_at = created.timestamp + 2 * NS_PER_S
    assert not engine.expiry_due(expires_at - 1)
    state = engine.export_state()
    assert engine.expiry_due(expires_at)
    assert engine.export_state() == state
    assert engine.expire_pending_transfers(expires_at) == 1
    assert not engine.expiry_due(2**63 - 1)


# -- input checks -----------------------------------------------------------------------------


def error_of(call: Callable[[], object]) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:
        call()
    return type(caught.value), str(caught.value)


BAD_BATCHES: list[tuple[str, object, type]] = [
    ("not a list", "transfers", RecordTypeError),
    ("not a record", [Account(id=1)], RecordTypeError),
    ("not an int", [Transfer(id=1, amount="1")], RecordTypeError),  # type: ignore[arg-type]
    ("a bool", [Transfer(id=1, ledger=True)], RecordTypeError),
    ("negative", [Transfer(id=1, code=-1)], InvalidRecordError),
    ("too wide", [Transfer(id=1, timeout=2**32)], InvalidRecordError),
    ("a lying int too wide", [Transfer(id=1, amount=LyingInt(2**200))], InvalidRecordError),
    ("a lying negative int", [Transfer(id=LyingInt(-1))], InvalidRecordError),
    ("too many", [plain(1)] * 8190, BatchTooLargeError),
]


@pytest.mark.parametrize(("case", "batch", "error"), BAD_BATCHES, ids=[c[0] for c in BAD_BATCHES])
def test_both_engines_refuse_a_bad_batch_with_the_same_error_and_change_nothing(
    case: str, batch: object, error: type
) -> None:
    refusals = []
    for name in ENGINE_NAMES:
        engine = new_engine(name)
        engine.create_accounts(accounts(1, 2), START)
        state = engine.export_state()
        refusals.append(error_of(lambda: engine.create_transfers(batch, START + 10_000)))  # type: ignore[arg-type]  # noqa: B023
        assert engine.export_state() == state
    assert refusals[0][0] is error
    assert refusals[0] == refusals[1]


BAD_TIMESTAMPS = [0, 1, 2**63]


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
def test_both_engines_refuse_a_batch_timestamp_out_of_range_alike(timestamp: int) -> None:
    refusals = []
    for name in ENGINE_NAMES:
        engine = new_engine(name)
        refusals.append(error_of(lambda: engine.create_accounts(accounts(1, 2), timestamp)))  # noqa: B023
    assert refusals[0][0] is InvalidArgumentError
    assert refusals[0] == refusals[1]


def test_both_engines_refuse_a_packed_batch_of_partial_records_alike() -> None:
    refusals = []
    for name in ENGINE_NAMES:
        engine = new_engine(name)
        records = memoryview(bytes(129))
        refusals.append(error_of(lambda: engine.create_transfers_from_packed(records, START)))  # noqa: B023
    assert refusals[0][0] is RecordTypeError
    assert refusals[0] == refusals[1]


def test_a_lying_int_that_fits_is_stored_as_its_exact_value_by_both_engines() -> None:
    """Its `>>` says that the high half of the amount is zero; the exact value says not."""
    amount = 2**100 + 3
    batch = [plain(10, LyingInt(amount)), plain(LyingInt(11), 1, flags=LyingInt(0))]
    states = []
    for name in ENGINE_NAMES:
        engine = new_engine(name)
        engine.create_accounts(accounts(1, 2), START)
        results = engine.create_transfers(batch, START + 10)
        assert [r.status for r in results] == [T.CREATED, T.CREATED]
        stored = engine.lookup_transfers([10, LyingInt(11)])
        assert [t.amount for t in stored] == [amount, 1]
        assert all(type(t.amount) is int and type(t.id) is int for t in stored)
        states.append(engine.export_state())
    assert states[0] == states[1]


def test_both_engines_refuse_a_batch_not_stamped_after_their_newest_event() -> None:
    """The engines' asserts rely on it: a transfer comes after its accounts."""
    refusals = []
    for name in ENGINE_NAMES:
        engine = new_engine(name)
        engine.create_accounts(accounts(1, 2), START)
        state = engine.export_state()
        refusals.append(error_of(lambda: engine.create_transfers([plain(10)], START)))  # noqa: B023
        assert engine.export_state() == state
        [result] = engine.create_transfers([plain(10)], START + 1)
        assert result.status == T.CREATED
    assert refusals[0][0] is InvalidArgumentError
    assert refusals[0] == refusals[1]
