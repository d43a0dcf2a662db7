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
    "LedgerForkedError",
    "ReadOnlyLedgerError",
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
    """A journal holds damage that recovery must not paper over: a bad checksum, a broken hash
    chain, batches missing from its end, a header from another ledger or other rules, or a
    snapshot that does not match its journal.

    Nothing was opened. The message names the file (or table) and the byte offset;
    `fastledger verify` reports every problem of a journal.
    """

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        super().__init__(f"{path} at byte offset {offset}: {message}")
        self.path = path
        self.offset = offset


class JournalWriteError(FastledgerError, OSError):
    """A batch could not be made durable, or it is unknown whether it was: the disk failed, the
    journal's file was deleted or replaced, the connection to PostgreSQL was lost during a
    commit. Or the engine failed on a batch that the journal had already taken.

    No batch involved was acknowledged. A ledger on a directory then refuses every further
    call: open it again, which replays the journal, and retry the batches with the same ids (a
    batch that was kept answers `EXISTS`). A ledger on PostgreSQL finds out from the journal
    which batches are there before it accepts the next call, and goes on.
    """


class JournalOutcomeUnknownError(JournalWriteError):
    """The connection was lost while a commit was in flight: the batches may or may not be in
    the journal. The ledger reads the journal before its next call; retrying them with the same
    ids is safe (a batch that was kept answers `EXISTS`)."""


class LedgerClosedError(FastledgerError, RuntimeError):
    """A durable ledger was used after `close()`: open it again."""


class LedgerForkedError(FastledgerError, RuntimeError):
    """A durable ledger opened before `os.fork()` was used in the child process.

    The child has a copy of the ledger's memory but none of its threads, so it cannot commit:
    open the ledger in the child after forking (as pre-fork servers such as gunicorn expect of
    every connection), or open it in a worker's start hook.
    """


class ReadOnlyLedgerError(FastledgerError, RuntimeError):
    """A create was called on a ledger opened with `read_only=True`: it follows the journal
    and never writes."""


class JournalUnavailableError(FastledgerError, OSError):
    """The journal cannot be reached or read: its server is down, the connection was lost and
    could not be made again, or its tables are missing.

    Nothing was changed by the call that failed: retry it once the journal is back.
    """


class JournalReadOnlyError(FastledgerError, PermissionError):
    """A journal opened read-only was asked to take the append lock or to write.

    Nothing was written: open the journal without `read_only` to append to it.
    """
