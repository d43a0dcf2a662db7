"""Where a ledger's journal lives: the one interface every place implements.

A ledger is its journal, an ordered sequence of batches; both engines are deterministic, so
every process that applied the same batches holds the same state. `format` gives the bytes of a
journal, the same wherever it is kept; `directory` keeps them in a local file that any number of
processes on one machine share; `postgres` keeps them in a PostgreSQL table that processes on
any number of machines share. `committer` appends batches with group commit through whichever
journal it is given.

The append protocol is the same for every journal: take the append lock, read what others
appended after this process's tip and apply it, stamp and append the new batches after the tip,
make them durable, apply them, release the lock, and only then acknowledge them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from .format import Batch, Checksums, JournalHeader, Queued, Tip

__all__ = ["Batch", "Checksums", "Journal", "JournalHeader", "Queued", "Tip", "read_ahead"]

_B = TypeVar("_B")

# How many batches `read_ahead` reads and checks before the replay asks for them (8 MiB of
# full batches at most).
READ_AHEAD_BATCHES = 8


class Journal(Protocol):
    """A journal shared by every process that opens it.

    Every method but `changed` may block on the disk or the network. None but `flush` is
    called by two threads at once: the ledger serialises reads, and appends run under the
    append lock, while the committer thread flushes its last write after letting the lock go.
    """

    # Where the journal is, for messages: a directory, or a URL without its password.
    location: str
    # The journal header: the ledger's id, its rules version, whether it is keyed.
    header: JournalHeader
    checksums: Checksums
    read_only: bool

    def read(self, after: Tip, *, locked: bool) -> Iterator[Batch]:
        """The batches after `after`, in order, each checked (checksums and hash chain).

        Unlocked, only batches that are durable and so may have been acknowledged. Locked
        (the caller holds the append lock), every batch there is; a directory journal then also
        cuts off the torn tail of a write that a crashed process never finished.
        """
        ...

    def changed(self, tip: Tip) -> bool:
        """Whether the journal holds a durable batch after `tip`. Cheap: called before every
        read, so that a read reflects every batch acknowledged to anyone before it began."""
        ...

    def lock(self) -> None:
        """Takes the append lock, waiting for it; held until `unlock`."""
        ...

    def contended(self) -> bool:
        """Whether another process waits for the append lock, as far as this one can tell
        cheaply; a journal that cannot tell says True, so that the lock is never kept idle."""
        ...

    def unlock(self) -> None: ...

    def write(self, group: list[Queued], after: Tip) -> list[Tip]:
        """Appends a group of batches after `after`, the journal's tip, as one write; returns
        the tip after each. Called under the append lock. Once it returns, the next holder of
        the lock reads the batches; they are durable once `flush` returns.

        Raises JournalWriteError when the batches were not written, or when it cannot be known
        whether they were (then `read` after `after`, under the lock, tells).
        """
        ...

    def flush(self, tip: Tip) -> None:
        """Makes every batch through `tip` durable, and so visible to unlocked reads; called
        without the append lock, so that the next process writes meanwhile. A journal whose
        writes are durable when they return, as a database's commits are, has nothing to do.

        Raises JournalWriteError when it cannot be known whether the batches are durable.
        """
        ...

    def wait(self, tip: Tip, timeout_s: float) -> bool:
        """Waits at most `timeout_s` for a durable batch after `tip`; whether one is there."""
        ...

    def close(self) -> None: ...


def read_ahead(batches: Iterable[_B], depth: int = READ_AHEAD_BATCHES) -> Iterator[_B]:
    """Yields `batches` in order while a thread reads and checks up to `depth` more.

    Reading and checksumming a journal took about a third of opening it; both let go of the
    GIL, as the engine does while it replays a batch, so on a second core they overlap the
    replay. An exception of the reading, such as JournalCorruptError, is raised here when the
    replay reaches the batch it stopped at, so what the replay applied is the same as without
    the thread.
    """
    ahead: queue.Queue[_B | BaseException | None] = queue.Queue(depth)
    stopped = threading.Event()

    def put(item: _B | BaseException | None) -> bool:
        # Gives up once the replay has stopped asking, so that the thread always ends.
        while not stopped.is_set():
            try:
                ahead.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as error:
            put(error)
            return
        put(None)

    reader = threading.Thread(target=read, name="fastledger-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
        reader.join()
