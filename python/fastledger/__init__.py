"""fastledger: an embedded double-entry ledger with TigerBeetle's data model.

import fastledger
ledger = fastledger.Ledger()
ledger.create_accounts([fastledger.Account(id=1, ledger=1, code=1)])
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._async import AsyncLedger
from ._balances import Balances, TrialBalance
from ._id import id
from ._ledger import ENGINES, Ledger, rust_engine_available
from ._metrics import HistogramSnapshot, Metrics, OperationMetrics
from ._progress import Progress
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

# Only for the types of `instrument`, which imports OpenTelemetry when it is called.
if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from . import otel

# A library leaves the configuration of logging to the program; without a handler of its own,
# the warnings of "fastledger" (slow journal writes, long lock waits, recovery) would go to
# stderr through logging's last resort.
logging.getLogger("fastledger").addHandler(logging.NullHandler())


def instrument(
    ledger: Ledger,
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    attributes: Mapping[str, str | bool | int | float] | None = None,
) -> otel.Instrumentation:
    """Exports the ledger's metrics to OpenTelemetry and traces its calls: see
    `fastledger.otel.instrument` for the options. Needs opentelemetry-api
    (`pip install 'fastledger[otel]'`), imported only here, so that a program that never
    instruments a ledger never loads it."""
    try:
        from . import otel
    except ImportError as error:
        if error.name is None or not error.name.startswith("opentelemetry"):
            raise
        raise ImportError(
            "fastledger.instrument needs opentelemetry-api: pip install 'fastledger[otel]'",
            name=error.name,
        ) from error
    return otel.instrument(
        ledger,
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        attributes=attributes,
    )


# Read on first use from the installed distribution, whose version maturin takes from the
# workspace Cargo.toml, the one place it is written. Lazily, because importing importlib.metadata
# takes about half as long as importing fastledger itself; hidden from type checkers, which
# would otherwise take every misspelt attribute of the module for a str.
__version__: str

if not TYPE_CHECKING:

    def __getattr__(name):
        if name != "__version__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("fastledger")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found


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
    "HistogramSnapshot",
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
    "Metrics",
    "OperationMetrics",
    "Progress",
    "QueryFilter",
    "QueryFilterFlags",
    "ReadOnlyLedgerError",
    "RecordTypeError",
    "Transfer",
    "TransferFlags",
    "TrialBalance",
    "id",
    "instrument",
    "rust_engine_available",
]
