"""Builders and probes that keep the scenario tests short enough to read as specifications.

Every builder fills in a valid default for what the scenario does not care about (ledger 1,
code 1, no flags), so a test names only the fields its rule is about.
"""

from __future__ import annotations

from typing import NamedTuple

from fastledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    Ledger,
    Transfer,
    TransferFlags,
)
from fastledger._contract import Engine
from fastledger.engine import PythonEngine

from .conftest import require_engine

LEDGER = 1
CODE = 1
U128_MAX = 2**128 - 1
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
U16_MAX = 2**16 - 1
TIMESTAMP_MAX = 2**63 - 1
NS_PER_S = 1_000_000_000

# A flag bit that neither AccountFlags nor TransferFlags defines.
RESERVED_FLAG_BIT = 1 << 15

# Scenarios give their accounts and transfers ids below 1000, so that looking up these ids (and
# the two ids no record may have) shows everything a scenario's ledger holds.
SCENARIO_IDS = [0, *range(1, 1000), U128_MAX]


class Amounts(NamedTuple):
    """The four balance fields of an account; name only the ones that are not zero."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


class Snapshot(NamedTuple):
    """Everything a ledger holds: every account (with balances and flags) and every transfer."""

    accounts: list[Account]
    transfers: list[Transfer]


def account(
    id_: int,
    *,
    ledger: int = LEDGER,
    code: int = CODE,
    flags: int = AccountFlags.NONE,
    **fields: int,
) -> Account:
    """An account that is valid unless the caller says otherwise."""
    return Account(id=id_, ledger=ledger, code=code, flags=flags, **fields)


def transfer(
    id_: int,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    *,
    ledger: int = LEDGER,
    code: int = CODE,
    flags: int = TransferFlags.NONE,
    **fields: int,
) -> Transfer:
    """A single-phase transfer that is valid unless the caller says otherwise."""
    return Transfer(
        id=id_,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=ledger,
        code=code,
        flags=flags,
        **fields,
    )


def pending(
    id_: int,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    *,
    timeout: int = 0,
    flags: int = TransferFlags.NONE,
    **fields: int,
) -> Transfer:
    """A pending transfer: the first phase of a two-phase transfer."""
    return transfer(
        id_,
        debit_account_id,
        credit_account_id,
        amount,
        timeout=timeout,
        flags=TransferFlags.PENDING | flags,
        **fields,
    )


def post(
    id_: int,
    pending_id: int,
    amount: int = AMOUNT_MAX,
    *,
    flags: int = TransferFlags.NONE,
    **fields: int,
) -> Transfer:
    """Posts a pending transfer. Accounts, ledger and code are 0: they come from the pending
    transfer. `AMOUNT_MAX` posts the whole pending amount."""
    return Transfer(
        id=id_,
        pending_id=pending_id,
        amount=amount,
        flags=TransferFlags.POST_PENDING_TRANSFER | flags,
        **fields,
    )


def void(
    id_: int,
    pending_id: int,
    amount: int = 0,
    *,
    flags: int = TransferFlags.NONE,
    **fields: int,
) -> Transfer:
    """Voids a pending transfer; an amount of 0 means the pending amount."""
    return Transfer(
        id=id_,
        pending_id=pending_id,
        amount=amount,
        flags=TransferFlags.VOID_PENDING_TRANSFER | flags,
        **fields,
    )


def create_accounts(ledger: Ledger, *accounts: Account) -> list[CreateAccountStatus]:
    """The statuses of one create_accounts call."""
    return [result.status for result in ledger.create_accounts(list(accounts))]


def create_transfers(ledger: Ledger, *transfers: Transfer) -> list[CreateTransferStatus]:
    """The statuses of one create_transfers call."""
    return [result.status for result in ledger.create_transfers(list(transfers))]


def open_accounts(ledger: Ledger, *accounts: Account) -> list[CreateAccountResult]:
    """Creates accounts that the scenario needs; they must all be created."""
    results = ledger.create_accounts(list(accounts))
    statuses = [r.status for r in results]
    assert statuses == [CreateAccountStatus.CREATED] * len(accounts), statuses
    return results


def apply_transfers(ledger: Ledger, *transfers: Transfer) -> list[CreateTransferResult]:
    """Creates transfers that set the scene; they must all be created."""
    results = ledger.create_transfers(list(transfers))
    statuses = [r.status for r in results]
    assert statuses == [CreateTransferStatus.CREATED] * len(transfers), statuses
    return results


def balances(ledger: Ledger, account_id: int) -> Amounts:
    """The current balances of an account, as lookup_accounts reports them."""
    found = stored_account(ledger, account_id)
    return Amounts(
        found.debits_pending, found.debits_posted, found.credits_pending, found.credits_posted
    )


def stored_transfer(ledger: Ledger, transfer_id: int) -> Transfer:
    [found] = ledger.lookup_transfers([transfer_id])
    return found


def stored_account(ledger: Ledger, account_id: int) -> Account:
    [found] = ledger.lookup_accounts([account_id])
    return found


def is_closed(ledger: Ledger, account_id: int) -> bool:
    return bool(stored_account(ledger, account_id).flags & AccountFlags.CLOSED)


def snapshot(ledger: Ledger) -> Snapshot:
    """Every account and transfer of a scenario (see `SCENARIO_IDS`), by lookups only, so that
    the status scenarios need nothing of an engine but creates and lookups.

    Like every read, it releases the pending transfers that have expired by the clock's time,
    so the next batch is stamped after that time.
    """
    return Snapshot(ledger.lookup_accounts(SCENARIO_IDS), ledger.lookup_transfers(SCENARIO_IDS))


def assert_account_fails(
    ledger: Ledger, event: Account, status: CreateAccountStatus
) -> CreateAccountResult:
    """Creates one account that must fail with `status` and leave the ledger as it was."""
    before = snapshot(ledger)
    [result] = ledger.create_accounts([event])
    assert result.status == status, f"expected {status!r}, got {result.status!r}"
    assert snapshot(ledger) == before, "a failed create changed the ledger"
    return result


def assert_transfer_fails(
    ledger: Ledger, event: Transfer, status: CreateTransferStatus
) -> CreateTransferResult:
    """Creates one transfer that must fail with `status` and leave the ledger as it was."""
    before = snapshot(ledger)
    [result] = ledger.create_transfers([event])
    assert result.status == status, f"expected {status!r}, got {result.status!r}"
    assert snapshot(ledger) == before, "a failed create changed the ledger"
    return result


def assert_transfer_created(ledger: Ledger, event: Transfer) -> Transfer:
    """Creates one transfer that must succeed; returns it as the ledger stored it, after
    checking that the result's timestamp is the stored one."""
    [result] = ledger.create_transfers([event])
    assert result.status == CreateTransferStatus.CREATED, f"got {result.status!r}"
    stored = stored_transfer(ledger, event.id)
    assert stored.timestamp == result.timestamp
    return stored


class LyingInt(int):
    """An int whose operators and conversions say that it is small and not negative: what a
    check that trusts an int subclass's methods lets through, whatever its exact value."""

    def __rshift__(self, other: object) -> int:
        return 0

    def __lt__(self, other: object) -> bool:
        return False

    def __and__(self, other: object) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    def __int__(self) -> int:
        return 0


def new_engine(name: str) -> Engine:
    """A fresh engine of that name, driven directly, without the facade; a missing Rust engine
    skips the test (or fails it, where CI requires it)."""
    require_engine(name)
    if name == "python":
        return PythonEngine()
    from fastledger import _native

    engine: Engine = _native.Engine()
    return engine
