"""fastledger: an embedded double-entry ledger with TigerBeetle's data model.

import fastledger
ledger = fastledger.Ledger()
ledger.create_accounts([fastledger.Account(id=1, ledger=1, code=1)])
"""

from __future__ import annotations

from ._async import AsyncLedger
from ._balances import Balances, TrialBalance
from ._id import id
from ._ledger import ENGINES, Ledger, rust_engine_available
from ._types import (
    AMOUNT_MAX,
    BATCH_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    CreateAccountResult,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    QueryFilter,
    QueryFilterFlags,
    Transfer,
    TransferFlags,
)
from .errors import (
    BatchTooLargeError,
    EngineUnavailableError,
    FastledgerError,
    InvalidAmountError,
    InvalidArgumentError,
    InvalidRecordError,
    JournalCorruptError,
    JournalOutcomeUnknownError,
    JournalUnavailableError,
    JournalWriteError,
    LedgerClosedError,
    LedgerForkedError,
    ReadOnlyLedgerError,
    RecordTypeError,
)

__version__ = "0.1.0"

__all__ = [
    "AMOUNT_MAX",
    "BATCH_MAX",
    "ENGINES",
    "Account",
    "AccountBalance",
    "AccountFilter",
    "AccountFilterFlags",
    "AccountFlags",
    "AsyncLedger",
    "Balances",
    "BatchTooLargeError",
    "CreateAccountResult",
    "CreateAccountStatus",
    "CreateTransferResult",
    "CreateTransferStatus",
    "EngineUnavailableError",
    "FastledgerError",
    "InvalidAmountError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "JournalCorruptError",
    "JournalOutcomeUnknownError",
    "JournalUnavailableError",
    "JournalWriteError",
    "Ledger",
    "LedgerClosedError",
    "LedgerForkedError",
    "QueryFilter",
    "QueryFilterFlags",
    "ReadOnlyLedgerError",
    "RecordTypeError",
    "Transfer",
    "TransferFlags",
    "TrialBalance",
    "id",
    "rust_engine_available",
]
