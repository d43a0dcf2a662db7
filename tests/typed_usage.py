"""The public API as a typed program would use it, for `mypy --strict` to check.

Every variable is annotated with a public type, and `assert_type` pins what each call returns,
so a change to an annotation or an overload that would break a typed caller fails the type
check. The module also runs (`tests/test_examples.py` calls `main()`), so what it claims is true.
"""

from __future__ import annotations

import decimal
import importlib.util
from dataclasses import replace
from decimal import Decimal
from typing import assert_type

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
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    FastledgerError,
    InvalidAmountError,
    Ledger,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
    TrialBalance,
    money,
    packed,
)
from fastledger.money import Asset
from fastledger.packed import PackedResults

LEDGER_USD = 1
CODE = 1
NS_PER_S = 1_000_000_000


class Clock:
    """A clock in nanoseconds that moves one microsecond each time it is read."""

    def __init__(self) -> None:
        self.now_ns: int = 1_700_000_000 * NS_PER_S

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns


def creates(ledger: Ledger, bank: int, alice: int) -> list[Transfer]:
    accounts: list[Account] = [
        Account(id=bank, ledger=LEDGER_USD, code=CODE),
        Account(
            id=alice,
            ledger=LEDGER_USD,
            code=CODE,
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY,
            user_data_64=7,
        ),
    ]
    account_results = assert_type(ledger.create_accounts(accounts), list[CreateAccountResult])
    account_status: CreateAccountStatus = account_results[0].status
    assert account_status == CreateAccountStatus.CREATED

    usd: Asset = money.currency("USD")
    hold = Transfer(
        id=fastledger.id(),
        debit_account_id=bank,
        credit_account_id=alice,
        amount=usd.to_minor("25.00"),
        ledger=LEDGER_USD,
        code=CODE,
        flags=TransferFlags.PENDING | TransferFlags.LINKED,
        timeout=60,
    )
    post = Transfer(
        id=fastledger.id(),
        pending_id=hold.id,
        amount=AMOUNT_MAX,
        flags=TransferFlags.POST_PENDING_TRANSFER,
    )
    direct = replace(hold, id=fastledger.id(), flags=TransferFlags.NONE, timeout=0)
    transfers: list[Transfer] = [hold, post, direct]
    results = assert_type(ledger.create_transfers(transfers), list[CreateTransferResult])
    result: CreateTransferResult = results[0]
    status: CreateTransferStatus = result.status
    timestamp: int = result.timestamp
    assert status == CreateTransferStatus.CREATED and timestamp > 0
    assert all(r.status == CreateTransferStatus.CREATED for r in results), results
    return transfers


def lookups_and_queries(ledger: Ledger, alice: int, transfers: list[Transfer]) -> None:
    found: list[Account] = ledger.lookup_accounts([alice])
    assert_type(found, list[Account])
    account: Account = found[0]
    assert account.credits_posted == 2 * money.to_minor("25.00", "USD")

    stored = assert_type(ledger.lookup_transfers([t.id for t in transfers]), list[Transfer])
    assert [t.id for t in stored] == [t.id for t in transfers]

    account_filter = AccountFilter(
        account_id=alice,
        limit=BATCH_MAX,
        flags=AccountFilterFlags.CREDITS | AccountFilterFlags.REVERSED,
    )
    by_account: list[Transfer] = ledger.get_account_transfers(account_filter)
    history: list[AccountBalance] = ledger.get_account_balances(account_filter)
    assert len(by_account) == len(history) == 3

    query = QueryFilter(user_data_64=7, ledger=LEDGER_USD, flags=QueryFilterFlags.NONE)
    accounts: list[Account] = ledger.query_accounts(query)
    assert [a.id for a in accounts] == [alice]
    by_ledger: list[Transfer] = ledger.query_transfers(QueryFilter(ledger=LEDGER_USD, limit=10))
    assert len(by_ledger) == 3


def balances(ledger: Ledger, alice: int) -> None:
    (account,) = ledger.lookup_accounts([alice])
    at: Balances = ledger.balances_at(account.timestamp)
    assert_type(at, Balances)
    opened: AccountBalance = at[alice]
    assert opened.credits_posted == 0
    ids: list[int] = at.column("account_id")
    columns: dict[str, list[int]] = at.columns()
    raw: bytes = at.column_bytes("credits_posted")
    assert alice in ids and len(columns) == 5 and len(raw) == 16 * len(at)

    trial: TrialBalance = ledger.trial_balance(LEDGER_USD)
    balanced: bool = trial.balanced
    assert balanced and trial.accounts[alice].credits_posted == account.credits_posted


def amounts() -> None:
    usd: Asset = money.currency("usd")
    eth: Asset = money.asset("ETH", 18)
    minor: int = usd.to_minor(Decimal("12.345"), rounding=decimal.ROUND_HALF_EVEN)
    whole: Decimal = money.to_decimal(minor, "USD")
    text: str = eth.format(eth.to_minor("0.000000000000000001"))
    assert minor == 1234 and whole == Decimal("12.34") and text == "0.000000000000000001 ETH"
    try:
        usd.to_minor("0.001")
    except InvalidAmountError as error:
        assert "finer than one minor unit" in str(error)
    else:
        raise AssertionError("a sub-cent amount was accepted")


def limits(ledger: Ledger) -> None:
    too_many = [Transfer(id=i + 1) for i in range(ledger.batch_max + 1)]
    try:
        ledger.create_transfers(too_many)
    except BatchTooLargeError as error:
        caught: FastledgerError = error
        assert str(caught)
    else:
        raise AssertionError("a batch over the limit was accepted")


def packed_batches(ledger: Ledger, bank: int, alice: int) -> None:
    """Packed batches need NumPy to build from columns."""
    import numpy as np
    import numpy.typing as npt

    count = 3

    def u128_column(value: int) -> npt.NDArray[np.uint64]:
        """A u128 column of `count` copies of `value`, as [low, high] 64-bit halves."""
        return np.tile(np.array([value % 2**64, value >> 64], dtype=np.uint64), (count, 1))

    batch: npt.NDArray[np.void] = packed.transfers_from_columns(
        id=np.arange(1, count + 1, dtype=np.uint64),
        debit_account_id=u128_column(bank),
        credit_account_id=u128_column(alice),
        amount=np.full(count, 100, dtype=np.uint64),
        ledger=np.full(count, LEDGER_USD, dtype=np.uint32),
        code=np.full(count, CODE, dtype=np.uint16),
    )
    assert batch.dtype == packed.transfer_dtype()
    results = assert_type(
        ledger.create_transfers(batch.tobytes()), PackedResults[CreateTransferResult]
    )
    first: CreateTransferResult = results[0]
    some: list[CreateTransferResult] = results[1:]
    statuses: npt.NDArray[np.uint32]
    timestamps: npt.NDArray[np.uint64]
    statuses, timestamps = results.to_numpy()
    assert first.status == CreateTransferStatus.CREATED and len(some) == count - 1
    assert results.all_created() and len(statuses) == len(timestamps) == count


def main() -> None:
    clock = Clock()
    ledger = Ledger(clock=clock)
    engine: str = ledger.engine
    assert engine in fastledger.ENGINES
    bank: int = fastledger.id()
    alice: int = fastledger.id()
    transfers = creates(ledger, bank, alice)
    lookups_and_queries(ledger, alice, transfers)
    balances(ledger, alice)
    amounts()
    limits(ledger)
    if importlib.util.find_spec("numpy") is not None:
        packed_batches(ledger, bank, alice)
    print("typed usage: ok")


if __name__ == "__main__":
    main()
