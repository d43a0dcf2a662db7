"""Builders and probes that keep the scenario tests short enough to read as specifications.

Every builder fills in a valid default for what the scenario does not care about (ledger 1,
code 1, no flags), so a test names only the fields its rule is about.
"""

from __future__ import annotations

from collections.abc import Iterable
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

LEDGER = 1
CODE = 1
U128_MAX = 2**128 - 1
U64_MAX = 2**64 - 1
TIMESTAMP_MAX = 2**63 - 1
NS_PER_S = 1_000_000_000

# Scenarios use ids below this bound, so that a snapshot of them is a snapshot of the ledger.
SCENARIO_IDS = range(1, 1000)


class Balances(NamedTuple):
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class Snapshot(NamedTuple):
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


def open_accounts(ledger: Ledger, *accounts: Account) -> None:
    """Creates accounts that the scenario needs; they must all be created."""
    assert create_accounts(ledger, *accounts) == [CreateAccountStatus.CREATED] * len(accounts)


def apply_transfers(ledger: Ledger, *transfers: Transfer) -> None:
    """Creates transfers that set the scene; they must all be created."""
    statuses = create_transfers(ledger, *transfers)
    assert statuses == [CreateTransferStatus.CREATED] * len(transfers)


def balances(ledger: Ledger, account_id: int) -> Balances:
    [found] = ledger.lookup_accounts([account_id])
    return Balances(
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


def snapshot(ledger: Ledger, ids: Iterable[int] = SCENARIO_IDS) -> Snapshot:
    """Every account and transfer of a scenario, with balances and flags."""
    wanted = list(ids)
    return Snapshot(ledger.lookup_accounts(wanted), ledger.lookup_transfers(wanted))


def assert_account_fails(
    ledger: Ledger, event: Account, status: CreateAccountStatus
) -> CreateAccountResult:
    """Creates one account that must fail with `status` and leave the ledger as it was."""
    before = snapshot(ledger)
    existing = ledger.lookup_accounts([event.id])
    [result] = ledger.create_accounts([event])
    assert result.status == status
    assert snapshot(ledger) == before
    assert ledger.lookup_accounts([event.id]) == existing
    return result


def assert_transfer_fails(
    ledger: Ledger, event: Transfer, status: CreateTransferStatus
) -> CreateTransferResult:
    """Creates one transfer that must fail with `status` and leave the ledger as it was."""
    before = snapshot(ledger)
    existing = ledger.lookup_transfers([event.id])
    [result] = ledger.create_transfers([event])
    assert result.status == status
    assert snapshot(ledger) == before
    assert ledger.lookup_transfers([event.id]) == existing
    return result
