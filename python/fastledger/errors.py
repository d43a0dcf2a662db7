"""The one exception hierarchy of fastledger.

Semantic failures of a create (an overdraft, an unknown account, a reused id) are never
exceptions: they come back as per-event statuses. Exceptions are for programming errors: input
that a 128-byte record cannot hold, a batch over the limit, a misuse of the API. Every class
here derives from both `FastledgerError` and the built-in exception a Python programmer would
expect (`ValueError`, `TypeError`), so either can be caught.
"""

from __future__ import annotations

__all__ = [
    "BatchTooLargeError",
    "EngineUnavailableError",
    "FastledgerError",
    "InvalidAmountError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "JournalCorruptError",
    "JournalOutcomeUnknownError",
    "JournalReadOnlyError",
    "JournalUnavailableError",
    "JournalWriteError",
    "LedgerClosedError",
    "LedgerLockedError",
    "RecordTypeError",
]


class FastledgerError(Exception):
    """Base class of every exception raised by fastledger."""


class InvalidRecordError(FastledgerError, ValueError):
    """A field holds a value its record cannot store (negative, or too large for its width).

    Nothing was applied: fix the named field and send the batch again.
    """


class RecordTypeError(FastledgerError, TypeError):
    """A batch, a record or a field has the wrong Python type.

    Nothing was applied: pass `Account`/`Transfer` records (or a packed buffer) with `int`
    fields.
    """


class BatchTooLargeError(FastledgerError, ValueError):
    """A batch holds more events than the ledger accepts in one call.

    Nothing was applied: split the batch into chunks of at most the batch limit.
    """


class InvalidAmountError(FastledgerError, ValueError):
    """A money amount cannot be converted exactly (sub-unit precision, a float, out of range).

    Name a rounding mode to accept rounding, or pass a `Decimal`/`int`/`str` amount.
    """


class InvalidArgumentError(FastledgerError, ValueError):
    """An argument of the API (not a record) is out of its range, such as an unknown engine
    name or a query limit over the batch maximum."""


class EngineUnavailableError(FastledgerError, ImportError):
    """The Rust engine was asked for by name but the native extension cannot be imported.

    Install a wheel built for this platform, or choose `engine="python"`.
    """


class JournalCorruptError(FastledgerError):
    """A ledger directory holds damage that recovery must not paper over: a bad checksum or a
    broken hash chain before the last write, or a snapshot that does not match its journal.

    Nothing was opened. The message names the file and the byte offset; `fastledger verify`
    reports every problem of the directory.
    """

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        super().__init__(f"{path} at byte offset {offset}: {message}")
        self.path = path
        self.offset = offset


class JournalWriteError(FastledgerError, OSError):
    """Memory and the journal may differ: the journal could not be written or flushed to disk
    (memory is then ahead of it), or the engine failed on a batch that the journal had already
    taken (the journal is then ahead).

    The batches involved may or may not be on disk, and the ledger refuses every further call:
    close it, open the directory again, which replays the journal, and retry the batches with
    the same ids (a batch that was kept answers `EXISTS`).
    """


class LedgerClosedError(FastledgerError, RuntimeError):
    """A durable ledger was used after `close()`: open its directory again."""


class LedgerLockedError(FastledgerError, OSError):
    """Another ledger (in this process or another) has the directory open for writing.

    One writer at a time keeps the journal a single hash chain: close the other ledger first.
    """


class JournalOutcomeUnknownError(JournalWriteError):
    """The connection to the journal was lost while a write was being committed: the batches
    may or may not be in the journal, and nothing was acknowledged.

    Find out from the journal before going on: take the append lock again (which connects
    anew) and read after the tip that the write started from. A batch found there is kept and
    applied once; one not found was never written.
    """


class JournalUnavailableError(FastledgerError, OSError):
    """The journal cannot be reached or read: its server is down, the connection was lost and
    could not be made again, or its tables are missing.

    Nothing was changed by the call that failed: retry it once the journal is back.
    """


class JournalReadOnlyError(FastledgerError, PermissionError):
    """A journal opened read-only was asked to take the append lock or to write.

    Nothing was written: open the journal without `read_only` to append to it.
    """
