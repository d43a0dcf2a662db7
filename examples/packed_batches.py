"""Batches built from NumPy columns, posted packed, with packed results.

For large batches, a list of `Transfer` objects costs a Python object per event on the way in
and a result object per event on the way out. A packed batch avoids both: build a NumPy array
of 128-byte records from columns with `fastledger.packed.transfers_from_columns`, post it, and
read the statuses and timestamps as NumPy columns from `results.to_numpy()`.

NumPy is optional for fastledger; without it this example says so and stops.
Run it with `python examples/packed_batches.py`.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from fastledger import (
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    CreateTransferStatus,
    Ledger,
    packed,
)
from fastledger.money import currency
from fastledger.packed import PackedResults

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

USD = currency("USD")
LEDGER_USD = 1
CODE_BANK = 100
CODE_CUSTOMER = 200
CODE_FUNDING = 1
CODE_PAYMENT = 2

CUSTOMERS = 5_000
BANK = 1
FIRST_CUSTOMER = 2
# Every OVERDRAWN_EVERY-th customer tries to pay more than it holds.
OVERDRAWN_EVERY = 7

# A NumPy array of records is a packed batch as it is, without a copy.


def main() -> None:
    if importlib.util.find_spec("numpy") is None:
        print("NumPy is not installed: skipping the packed batch example")
        return
    import numpy as np

    ledger = Ledger()
    customers = np.arange(FIRST_CUSTOMER, FIRST_CUSTOMER + CUSTOMERS, dtype=np.uint64)
    open_accounts(ledger, customers)
    fund(ledger, customers)
    pay(ledger, customers)

    # A refused payment moved nothing: the first customer only received the last one's 10.00.
    first, second = ledger.lookup_accounts([int(customers[0]), int(customers[1])])
    assert first.debits_posted == 0
    assert first.credits_posted == USD.to_minor("100.00") + USD.to_minor("10.00")
    assert second.debits_posted == USD.to_minor("10.00")
    trial = ledger.trial_balance(LEDGER_USD)
    assert trial.balanced
    print(f"Trial balance: {USD.format(trial.debits_posted)} each side, balanced")


def open_accounts(ledger: Ledger, customers: npt.NDArray[np.uint64]) -> None:
    """One bank account and a wallet per customer that cannot be overdrawn, in one batch."""
    import numpy as np

    ids = np.concatenate([np.array([BANK], dtype=np.uint64), customers])
    wallet = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    accounts = packed.accounts_from_columns(
        id=ids,
        ledger=np.full(len(ids), LEDGER_USD, dtype=np.uint32),
        code=np.where(ids == BANK, CODE_BANK, CODE_CUSTOMER).astype(np.uint16),
        flags=np.where(ids == BANK, 0, wallet).astype(np.uint16),
    )
    results: PackedResults[CreateAccountResult]
    results = ledger.create_accounts(accounts)
    assert len(results) == len(ids) and results.all_created()
    print(f"Opened {len(results)} accounts from one packed batch")


def fund(ledger: Ledger, customers: npt.NDArray[np.uint64]) -> None:
    """Funds every wallet from the bank: 100.00 USD plus as many cents as its position."""
    import numpy as np

    count = len(customers)
    funding = packed.transfers_from_columns(
        id=np.arange(1, count + 1, dtype=np.uint64),
        debit_account_id=np.full(count, BANK, dtype=np.uint64),
        credit_account_id=customers,
        amount=USD.to_minor("100.00") + np.arange(count, dtype=np.uint64),
        ledger=np.full(count, LEDGER_USD, dtype=np.uint32),
        code=np.full(count, CODE_FUNDING, dtype=np.uint16),
    )
    results: PackedResults[CreateTransferResult]
    results = ledger.create_transfers(funding)
    assert results.all_created()
    print(f"Funded {len(results)} wallets in one packed batch of {funding.nbytes} bytes")


def pay(ledger: Ledger, customers: npt.NDArray[np.uint64]) -> None:
    """Each customer pays the next one 10.00 USD, except that every seventh tries 1000.00."""
    import numpy as np

    count = len(customers)
    overdrawn = np.arange(count) % OVERDRAWN_EVERY == 0
    amounts = np.where(overdrawn, USD.to_minor("1000.00"), USD.to_minor("10.00"))
    payments = packed.transfers_from_columns(
        id=np.arange(count + 1, 2 * count + 1, dtype=np.uint64),
        debit_account_id=customers,
        credit_account_id=np.roll(customers, -1),
        amount=amounts.astype(np.uint64),
        ledger=np.full(count, LEDGER_USD, dtype=np.uint32),
        code=np.full(count, CODE_PAYMENT, dtype=np.uint16),
    )
    results: PackedResults[CreateTransferResult]
    results = ledger.create_transfers(payments)

    # The results stay packed: two NumPy columns, no Python object per event.
    statuses, timestamps = results.to_numpy()
    failed = np.flatnonzero(statuses != CreateTransferStatus.CREATED)
    assert np.array_equal(failed, np.flatnonzero(overdrawn)), failed
    assert (statuses[failed] == CreateTransferStatus.EXCEEDS_CREDITS).all()
    assert (np.diff(timestamps.astype(np.int64)) > 0).all(), "timestamps must increase"
    print(
        f"Posted {len(results)} payments: {len(results) - len(failed)} CREATED, "
        f"{len(failed)} {CreateTransferStatus.EXCEEDS_CREDITS.name}"
    )
    first_refused = results[int(failed[0])]
    print(f"  e.g. event {failed[0]}: {first_refused.status.name}")


if __name__ == "__main__":
    main()
