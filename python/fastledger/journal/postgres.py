"""A journal kept in PostgreSQL, shared by processes on any number of machines.

`PostgresJournal.open("postgresql://user@host/db")` opens the journal named "fastledger" in
that database; `table=` or the URL's `?table=` names another (a lowercase identifier of at most
48 characters), so that one database can hold several ledgers. The rest of the URL is libpq's:
several hosts with `target_session_attrs=read-write` follow a failover to the new primary.

Tables. A journal named `t` is two tables in the connection's current schema, made by the first
process that opens it for writing (processes racing to make it queue on an advisory lock):

    t_batches  (sequence bigint primary key, batch bytea)
        one row per batch holding exactly the bytes a directory journal holds for it: its
        128-byte header, then its records. The column is STORAGE EXTERNAL: a large batch is
        kept out of line and never handed to pglz, which would spend time failing to shrink
        ids and amounts that are as good as random.
    t_head     (one row: sequence, end_offset, checksum, header)
        the 128-byte journal header, given when the journal was made, and the journal's tip:
        the last batch's sequence, the byte offset just after it in a directory journal, and its
        checksum. Offsets are those of a directory journal, so both places name a batch alike.

Order. An append is one statement, sent in one round trip on a session in autocommit, so that it
is its own transaction and commits as it ends: it moves the head from the tip its writer caught
up to (`UPDATE ... WHERE sequence = and end_offset = and checksum =`) to the new tip, and only
the rows of a head that moved notify and go in (`WITH moved AS (UPDATE ... RETURNING) ... INSERT
... SELECT ... FROM moved, (VALUES ...)`). Each batch is a binary parameter of its own (a group
of many, one binary array of bytea), so that it is stored as the very bytes given. The rows
inserted say whether the head moved. Every writer passes through the head row: a second writer's
update waits for the first's row lock and, once the first commits, finds the head moved, updates
nothing and inserts nothing. So sequences are dense and commit in sequence order, and a reader
that sees batch n has seen every batch before it. A bigserial would not do (it is given at
insert and seen at commit, so a reader tailing `id > last` skips a row that commits late), nor
would a table or advisory lock alone (a rollback still leaves a hole).

Append lock. `lock()` takes a session-level advisory lock, keyed by 64 bits derived from the
table name, on a connection of its own, so that writers queue instead of failing on the head.
`unlock()` sends the unlock without waiting for its reply, which the next `lock()` reads: the
server lets the lock go as it reads the unlock, after the append's commit, whose reply came
first, so the next writer finds every batch of this one.
The lock is for speed; the head check is what keeps appends right, even those of a writer whose
lock went with a lost session. Locks and LISTEN live in sessions: connect to PostgreSQL directly
or through a pooler in session mode, never one in transaction mode (pgbouncer's default), which
would hand the lock to whichever client's transaction runs next. The server is asked to probe
the append session, so the lock of a writer whose machine vanished is freed within about 25 s.

Durability. Nothing is acknowledged before the append's statement returned, committed, so
PostgreSQL's settings decide what survives: `synchronous_commit = on` keeps a batch through a
crash of the server, synchronous replication through the loss of its machine. A write that the
server refuses raises JournalWriteError: its transaction was rolled back, nothing was written,
and the session keeps the lock. A write whose session was found ended before the statement was
sent (the server says so when it ends an idle session, and that is read without a round trip)
raises it too: nothing was sent, and the lock went with the session. A connection lost once the
statement was sent raises JournalOutcomeUnknownError, for the statement commits as it ends: the
batches may be there; the session and its lock are gone, so `lock()` connects anew, and `read`
after the old tip tells what is there. That answer is final: the old session held the lock until
its backend ended, which is after its commit finished one way or the other, and `lock()` waits
for it. No statement timeout is set: cancelling a commit that waits for a synchronous standby
leaves it committed on the primary without a word.

Forks. With asynchronous replication a failover can lose committed batches and give their
sequences to others. Every read first checks the head and the batch at the reader's tip against
what the reader applied: a head behind that tip, or another batch at it, is a fork, raised as
JournalCorruptError, for the ledger must stop rather than diverge from its journal. The head and
that batch come with the first page of the batches after the tip, in one statement and so one
snapshot: the catch-up of a hold of the append lock, which mostly finds one small batch or none,
is then one round trip. `lock()` even saves that one: right behind the lock it asks for that
read after the furthest tip this journal read or wrote, in the same round trip (the server runs
it once the lock is granted, so it sees every batch of the last holder), and the catch-up that
follows uses it, from that tip or from a later one among the batches it read, checked as a read
checks them; from anywhere else the catch-up reads as any read does. In that read a batch of
more than 64 KiB comes as its header alone: it is mostly the last holder's, which this
process's follower applied while the lock was waited for, and its header is what checks the
chain there; the catch-up reads in full what it has yet to apply. Four processes posting full
batches went from 330,000-390,000 to 475,000-570,000 transfers/s with it.

Connections. Three, each made again once lost: one for reads and head checks, one for appends
(made by `lock()`), one that LISTENs (made by the first `wait`). A read or check that fails on a
lost connection connects anew and tries once more, then raises JournalUnavailableError. NOTIFY
is a wake-up: `wait` checks the head at least every second, and after each notification, which
names the sequence of the batch that committed, so that `changed` asked about an earlier tip
knows without a round trip (a read that finds the head behind that sequence, after a failover,
forgets it).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg import generators, sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.rows import TupleRow
except ImportError as error:
    raise ImportError(
        'a journal in PostgreSQL needs psycopg 3: pip install "fastledger[postgres]"'
    ) from error

from ..errors import (
    InvalidArgumentError,
    JournalCorruptError,
    JournalOutcomeUnknownError,
    JournalReadOnlyError,
    JournalUnavailableError,
    JournalWriteError,
    LedgerClosedError,
)
from .format import (
    CHECKSUM_SIZE,
    HEADER_SIZE,
    Batch,
    Checksums,
    JournalHeader,
    Queued,
    Tip,
    batch_size,
    decode_batch,
    encode_batches,
)

__all__ = ["DEFAULT_TABLE", "PostgresJournal"]

DEFAULT_TABLE = "fastledger"
# A lowercase identifier, so that it needs no quoting in messages or in `to_regclass`, short
# enough that "<table>_appended" stays within PostgreSQL's 63 bytes.
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
# A read fetches batches in pages: the first of a few rows (batches reach 1 MiB), then as many
# as fit in the byte budget going by the largest batch of the page before.
_PAGE_ROWS_FIRST = 32
_PAGE_ROWS_MAX = 4096
_PAGE_BYTES = 32 * 2**20
# The read behind the append lock brings batches up to this size whole, larger ones' headers.
_INLINE_BEHIND_LOCK_MAX = 64 * 2**10
# An append passes up to this many batches as parameters of their own, more as one array.
_ROWS_AS_VALUES_MAX = 32
# `wait` checks the head at least this often: a notification sent while the listening
# connection was being made again is lost.
_POLL_S = 1.0
# What every connection gets unless its URL says otherwise: a bounded connect, a name that
# shows in pg_stat_activity, and probes that notice a vanished server within about 25 s.
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": "fastledger",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]


class PostgresJournal:
    """A journal in two PostgreSQL tables; see the module's documentation for the design."""

    location: str
    header: JournalHeader
    checksums: Checksums
    read_only: bool

    def __init__(
        self, conninfo: str, table: str, location: str, checksums: Checksums, read_only: bool
    ) -> None:
        """Use `open`, which also makes or checks the tables."""
        self.location = location
        self.checksums = checksums
        self.read_only = read_only
        self.table = table
        self._sql = _Statements.of(table)
        self._append_key = _lock_key("append", table)
        self._append_key_text = str(self._append_key).encode()
        self._unlock_query = b"SELECT pg_advisory_unlock($1::bigint)"
        self._create_key = _lock_key("create", table)
        conninfo = _with_defaults(conninfo)
        self._reader = _Session(conninfo, location, _guard_reads if read_only else None)
        self._appender = _Session(conninfo, location, _probe_client)
        self._listener = _Session(conninfo, location, self._listen)
        # The connection on which this process holds the append lock; the lock goes with it.
        self._locked_on: Connection | None = None
        # The furthest sequence that a notification named.
        self._notified = 0
        # The furthest tip read or written, and what `lock` read after the tip it knew then.
        self._known = Tip()
        self._with_lock: tuple[Tip, _Fetched] | None = None
        # The connection on which an unlock was sent and its reply not read yet.
        self._unlocking: Connection | None = None
        self._header_block = b""
        self._new_header: JournalHeader | None = None

    @classmethod
    def open(
        cls,
        url: str,
        *,
        key: bytes | None = None,
        read_only: bool = False,
        table: str | None = None,
        header: JournalHeader | None = None,
    ) -> PostgresJournal:
        """Opens the journal at `url`, making its tables if they are absent (never when
        `read_only`), and checks its header: the rules version, and the key (`key` must be
        the journal's, or None for a journal without one). `table` names the journal, as the
        URL's `?table=` may; "fastledger" when neither does. A journal made here gets
        `header` (a copy's) or a new one."""
        conninfo, table, location = _parse_url(url, table)
        journal = cls(conninfo, table, location, Checksums(key), read_only)
        journal._new_header = header
        try:
            journal._attach()
        except BaseException:
            journal.close()
            raise
        return journal

    def read(self, after: Tip, *, locked: bool) -> Iterator[Batch]:
        # A row is seen only once its transaction committed, so whoever reads, holding the
        # append lock or not, sees durable batches only, and never a torn one.
        # The head comes with the first page, in one round trip: under the append lock that is
        # the whole read when the last holder appended one small batch, or none, and `lock`
        # has mostly fetched it already.
        fetched = self._fetched_with_lock(after) if locked else None
        if fetched is None:
            fetched = self._reader.run(
                "read the journal's head",
                partial(self._head_and_page, after.sequence, _PAGE_ROWS_FIRST),
            )
        head, rows, more = fetched
        # A sequence notified and then lost in a failover says nothing more once read.
        self._notified = min(self._notified, head.sequence)
        self._check_not_forked(head, after)
        tip = after
        while True:
            for sequence, data in rows:
                batch = decode_batch(data, tip, self.checksums, self.location)
                if batch.sequence != sequence:
                    raise self._refuse(f"row {sequence} holds batch {batch.sequence}", tip)
                tip = batch.tip
                self._learn(tip)
                yield batch
            if not more:
                break
            rows = self._reader.run("read the journal", partial(self._page, tip.sequence, more))
            more = _next_page_rows(len(data) for _, data in rows) if len(rows) == more else 0
        self._check_head(head, tip)

    def durable_extent(self) -> tuple[int, int]:
        """The sequence and end offset of the head, the last committed batch: the totals of
        a progress report, read without reading the batches."""
        head = self._reader.run("read the journal's head", partial(self._head, 0))
        return head.sequence, head.end

    def changed(self, tip: Tip) -> bool:
        if self._notified > tip.sequence:
            # A batch after `tip` committed: its notification says so, without a round trip.
            return True
        sequence, checksum = self._reader.run("check the journal's head", self._tip)
        return sequence != tip.sequence or checksum != tip.checksum

    def lock(self) -> None:
        self._refuse_read_only("take the append lock")
        if self._locked_on is not None and not self._locked_on.closed:
            return
        self._with_lock = None
        start = self._known
        self._locked_on, fetched = self._appender.run(
            "take the append lock", partial(self._take_lock, start)
        )
        self._with_lock = start, fetched

    def contended(self) -> bool:
        # Finding out would take a query of pg_locks, which costs about what taking the lock
        # again does: so the lock is never kept idle, and PostgreSQL queues the waiters fairly.
        return True

    def unlock(self) -> None:
        # The unlock is sent, not waited for: the server lets the lock go as it reads it, and
        # its reply is read by the next `lock`, in the same round trip as the lock's own.
        connection, self._locked_on = self._locked_on, None
        self._with_lock = None
        if connection is None or connection.closed:
            return
        try:
            connection.pgconn.send_query_params(self._unlock_query, [self._append_key_text])
            connection.wait(generators.send(connection.pgconn))
        except psycopg.Error:
            # The session is lost, and the lock with it; the next `lock` connects anew.
            self._appender.drop()
            return
        self._unlocking = connection

    def write(self, group: list[Queued], after: Tip) -> list[Tip]:
        connection = self._lock_holder()
        parts, tips = encode_batches(group, after, self.checksums)
        rows = [parts[2 * i] + parts[2 * i + 1] for i in range(len(tips))]
        batches = _name_batches(tips)
        if self._found_lost(connection):
            self._lose_session()
            raise JournalWriteError(
                f"{self.location}: {batches} not written: the append session was lost "
                "(a server restart, a terminated backend), and the append lock with it: take "
                "it with lock() and catch up first"
            )
        self._with_lock = None
        if not self._commit(connection, rows, after, tips[-1], batches):
            raise self._stale(connection, after, batches)
        self._learn(tips[-1])
        return tips

    def flush(self, tip: Tip) -> None:
        """Nothing to do: `write` returns once PostgreSQL committed the batches."""

    def wait(self, tip: Tip, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            # Listen first, then check: a batch committed before the check is seen by it, one
            # committed after it notifies.
            self._listener.run("listen for new batches", _connected)
            if self.changed(tip):
                return True
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return False
            self._listener.run(
                "wait for new batches", partial(self._await_notification, min(remaining_s, _POLL_S))
            )

    def _await_notification(self, timeout_s: float, connection: Connection) -> None:
        """Returns on the first notification, or after `timeout_s`; keeps the furthest
        sequence notified, which names a committed batch."""
        notified = [
            *connection.notifies(timeout=timeout_s, stop_after=1),
            # Those that queued up while nobody waited.
            *connection.notifies(timeout=0),
        ]
        for notification in notified:
            with contextlib.suppress(ValueError):
                self._notified = max(self._notified, int(notification.payload))

    def close(self) -> None:
        self._locked_on = None
        for session in (self._listener, self._appender, self._reader):
            session.close()

    def _attach(self) -> None:
        """Makes the tables if they are absent, then reads and checks the journal header."""
        if self._reader.run("look for the journal", self._tables_found) != (True, True):
            if self.read_only:
                raise JournalUnavailableError(
                    f"{self.location}: there is no journal here (no tables {self.table}_head "
                    f"and {self.table}_batches), and a read-only open never makes one: open it "
                    "for writing once first"
                )
            self._reader.run("make the journal", self._create)
        head = self._reader.run("read the journal's head", partial(self._head, 0))
        self.header = JournalHeader.decode(head.header, self.checksums, self.location)
        self._header_block = head.header
        empty = self.header.empty_tip(self.checksums)
        self._known = empty
        if head.sequence == 0 and (head.end, head.checksum) != (empty.end, empty.checksum):
            raise self._refuse("the head of the empty journal is not its header's", empty)

    def _create(self, connection: Connection) -> None:
        # Processes that open a new journal at once queue here: one makes the tables, the others
        # find them made. The lock is taken before the transaction begins, because a backend
        # sees the tables another one made only from its next transaction on (its catalog
        # caches take the news at a transaction's start, not at an advisory lock).
        connection.execute("SELECT pg_advisory_lock(%s)", (self._create_key,))
        try:
            with connection.transaction():
                self._create_tables(connection)
        finally:
            with contextlib.suppress(psycopg.Error):
                connection.execute("SELECT pg_advisory_unlock(%s)", (self._create_key,))

    def _create_tables(self, connection: Connection) -> None:
        found = self._tables_found(connection)
        if found == (True, True):
            return
        if found != (False, False):
            raise JournalCorruptError(
                f"only one of the tables {self.table}_head and {self.table}_batches is there: "
                "restore the other, or drop both to begin a new ledger",
                path=self.location,
                offset=0,
            )
        for statement in self._sql.create:
            connection.execute(statement)
        header = self._new_header or JournalHeader.new(self.checksums)
        empty = header.empty_tip(self.checksums)
        block = header.encode(self.checksums)
        connection.execute(self._sql.init_head, (empty.end, empty.checksum, block))

    def _tables_found(self, connection: Connection) -> tuple[bool, bool]:
        names = (f"{self.table}_head", f"{self.table}_batches")
        row = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL", names
        ).fetchone()
        assert row is not None
        return bool(row[0]), bool(row[1])

    def _head(self, sequence: int, connection: Connection) -> _Head:
        row = connection.execute(self._sql.head, (sequence,), binary=True).fetchone()
        if row is None:
            raise self._refuse(f"the table {self.table}_head is empty", Tip())
        return _Head(*row)

    def _head_and_page(self, after: int, limit: int, connection: Connection) -> _Fetched:
        """The head, with the link at `after`, and the first `limit` batches after `after`,
        all seen by one snapshot; each row repeats the head, a row without a batch holds it
        alone."""
        with connection.cursor().copy(self._sql.head_and_page, (after, after, limit)) as copy:
            copy.set_types(["int8", "int8", "bytea", "bytea", "bytea", "int8", "bytea"])
            found = list(copy.rows())
        return self._split_page(found, limit)

    def _split_page(self, found: Sequence[Sequence[Any]], limit: int) -> _Fetched:
        if not found:
            raise self._refuse(f"the table {self.table}_head is empty", Tip())
        head = _Head(*found[0][:5])
        rows = [(row[5], row[6]) for row in found if row[5] is not None]
        more = _next_page_rows(len(data) for _, data in rows) if len(rows) == limit else 0
        return head, rows, more

    def _tip(self, connection: Connection) -> tuple[int, bytes]:
        row = connection.execute(self._sql.tip, binary=True).fetchone()
        if row is None:
            raise self._refuse(f"the table {self.table}_head is empty", Tip())
        return row[0], row[1]

    def _page(self, after: int, limit: int, connection: Connection) -> list[tuple[int, bytes]]:
        # COPY out, one message a row, takes a 1 MiB batch in about half the time of a result
        # set, whose rows libpq gathers whole before handing them over.
        with connection.cursor().copy(self._sql.page, (after, limit)) as copy:
            copy.set_types(["int8", "bytea"])
            return [(row[0], row[1]) for row in copy.rows()]

    def _check_not_forked(self, head: _Head, after: Tip) -> None:
        """Refuses a journal that no longer holds the batches this process applied."""
        if head.header != self._header_block:
            raise self._refuse("the journal was made anew since this process opened it", after)
        if head.sequence < after.sequence:
            raise self._refuse(
                f"the journal ends at batch {head.sequence}, yet this process applied batches "
                f"up to {after.sequence}: committed batches were lost (a failover to a replica "
                "that lacked them?)",
                after,
            )
        if after.sequence > 0 and head.link != after.checksum:
            what = "is missing" if head.link is None else "is another than this process applied"
            raise self._refuse(
                f"batch {after.sequence} {what}: the journal forked (a failover lost committed "
                "batches and others took their sequences?)",
                after,
            )

    def _check_head(self, head: _Head, tip: Tip) -> None:
        """Refuses a head that the batches read up to it do not end at."""
        if tip.sequence < head.sequence:
            raise self._refuse(
                f"the head names batch {head.sequence}, yet the batches end at {tip.sequence}",
                tip,
            )
        if tip.sequence == head.sequence and (tip.end, tip.checksum) != (head.end, head.checksum):
            raise self._refuse(f"the head does not match batch {tip.sequence}", tip)

    def _refuse(self, why: str, tip: Tip) -> JournalCorruptError:
        return JournalCorruptError(
            f"{why}; the ledger must stop rather than diverge from its journal",
            path=self.location,
            offset=tip.end,
        )

    def _listen(self, connection: Connection) -> None:
        connection.execute(self._sql.listen)

    def _take_lock(self, start: Tip, connection: Connection) -> tuple[Connection, _Fetched]:
        """Takes the lock, and in the same round trip reads what a catch-up after `start`
        would read first: the statements run in turn, the read once the lock is granted."""
        try:
            if self._unlocking is connection:
                self._unlocking = None
                self._unlocked(connection)
            with connection.pipeline():
                connection.execute("SELECT pg_advisory_lock(%s)", (self._append_key,))
                page = connection.execute(
                    self._sql.head_and_headers,
                    (start.sequence, start.sequence, _PAGE_ROWS_FIRST),
                    binary=True,
                )
            fetched = self._split_page(page.fetchall(), _PAGE_ROWS_FIRST)
        except BaseException:
            # Whether this session holds the lock is not known: ending it makes sure it does
            # not, rather than hold it unknowingly.
            connection.close()
            raise
        return connection, fetched

    def _fetched_with_lock(self, after: Tip) -> _Fetched | None:
        """What `lock` read with the lock, from `after` on, if it read that far: from the
        tip this journal knew then, which a reader may have gone past while it waited."""
        with_lock, self._with_lock = self._with_lock, None
        if with_lock is None:
            return None
        start, fetched = with_lock
        found = fetched if start == after else self._fetched_after(start, fetched, after)
        if found is None:
            return None
        head, rows, _ = found
        # A large batch came as its header alone, mostly applied already from a read of the
        # follower's: the catch-up reads it in full, and what follows, as a read does.
        cut = next((n for n, (_, data) in enumerate(rows) if _header_alone(data)), None)
        if cut is None:
            return found
        return head, rows[:cut], _next_page_rows(batch_size(data) for _, data in rows[cut:])

    def _fetched_after(self, start: Tip, fetched: _Fetched, after: Tip) -> _Fetched | None:
        """What was read after `start`, from `after` on, if `after` is among the batches read
        and the one this process applied there."""
        head, rows, more = fetched
        if start.sequence > after.sequence:
            return None
        try:
            self._check_not_forked(head, start)
        except JournalCorruptError:
            # Left for the read, which tells what it is.
            return None
        for n, (sequence, data) in enumerate(rows):
            if sequence < after.sequence:
                # Applied already, from a read of the follower's.
                continue
            # The batch at `after` is the one applied if its header checksums to its tip:
            # each header holds the checksum of the batch before, so the whole chain is.
            header = data[:HEADER_SIZE]
            stored = header[HEADER_SIZE - CHECKSUM_SIZE :]
            checked = self.checksums(header[: HEADER_SIZE - CHECKSUM_SIZE])
            if sequence != after.sequence or stored != after.checksum or checked != stored:
                return None
            return head._replace(link=after.checksum), rows[n + 1 :], more
        return None

    def _learn(self, tip: Tip) -> None:
        """Keeps the furthest tip read or written, after which `lock` reads."""
        if tip.sequence > self._known.sequence:
            self._known = tip

    def _unlocked(self, connection: Connection) -> None:
        """Reads the reply to the unlock that `unlock` sent on `connection`, which has
        usually arrived by now; raises psycopg.Error if the session was lost meanwhile."""
        pgconn = connection.pgconn
        for result in connection.wait(generators.fetch_many(pgconn)):
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)

    def _refuse_read_only(self, action: str) -> None:
        if self.read_only:
            raise JournalReadOnlyError(
                f"{self.location} was opened read-only, so it does not {action}: open it "
                "without read_only to append"
            )

    def _lock_holder(self) -> Connection:
        """The connection that holds the append lock, which every write goes through."""
        self._refuse_read_only("write")
        connection = self._locked_on
        if connection is None or connection.closed:
            raise JournalWriteError(
                f"{self.location}: not written: this process does not hold the append lock "
                "(a lost connection takes it along): take it with lock() and catch up first"
            )
        return connection

    def _found_lost(self, connection: Connection) -> bool:
        """Whether the append session ended while it was idle, as a terminated backend or a
        restarted server ends it: the server then said so and closed the connection, which is
        read here without a round trip. Anything else there (a notice, a changed setting) is
        taken in, and libpq handles it with the next statement's reply as it would have."""
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
            while readable:
                connection.pgconn.consume_input()
                readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, psycopg.Error):
            return True
        return connection.pgconn.status != psycopg.pq.ConnStatus.OK

    def _commit(
        self, connection: Connection, rows: list[bytes], after: Tip, tip: Tip, batches: str
    ) -> bool:
        """Appends `rows` after `after` in one statement, committed as it ends (the session
        is in autocommit); False, with nothing written, if the head is not `after`."""
        try:
            inserted = connection.execute(
                self._sql.append(len(rows)),
                (
                    tip.sequence,
                    tip.end,
                    tip.checksum,
                    after.sequence,
                    after.end,
                    after.checksum,
                    str(tip.sequence),
                    after.sequence,
                    *(rows if len(rows) <= _ROWS_AS_VALUES_MAX else [rows]),
                ),
            ).rowcount
        except psycopg.Error as error:
            if not connection.closed:
                # The server answered, refusing the statement: it rolled its transaction back.
                raise JournalWriteError(
                    f"{self.location}: {batches} not written: {error}"
                ) from error
            self._lose_session()
            raise JournalOutcomeUnknownError(
                f"{self.location}: the connection was lost while {batches} was being "
                "committed, so it may or may not be in the journal: take the append lock again "
                "and read after the tip this write began from to find out"
            ) from error
        except BaseException:
            # Interrupted while committing: the outcome is as unknown as after a lost
            # connection, and the session must go the same way, so that `lock` connects anew.
            self._lose_session()
            raise
        if inserted not in (0, len(rows)):
            raise self._refuse(f"an append of {len(rows)} batches inserted {inserted}", after)
        return inserted == len(rows)

    def _lose_session(self) -> None:
        """Ends the append session, and with it the lock and any transaction it had open."""
        self._locked_on = None
        self._appender.drop()

    def _stale(self, connection: Connection, after: Tip, batches: str) -> JournalWriteError:
        try:
            sequence, checksum = self._tip(connection)
            there = f"the journal's tip is batch {sequence}"
            if sequence == after.sequence and checksum != after.checksum:
                there += ", another than this process read"
        except psycopg.Error:
            there = "the journal's tip moved"
        return JournalWriteError(
            f"{self.location}: {batches} not written: {there}, not batch {after.sequence} as "
            "this process read it; another process appended without the append lock, or the "
            "journal forked: catch up under the lock and write again"
        )


class _Head(NamedTuple):
    """The head row, and the checksum of the batch at the sequence it was asked with."""

    sequence: int
    end: int
    checksum: bytes
    header: bytes
    link: bytes | None


# The head, the first page of batches after a tip, and how many rows to ask for next: 0 when
# the journal ends within the page.
_Fetched = tuple[_Head, list[tuple[int, bytes]], int]


@dataclass(frozen=True, slots=True)
class _Statements:
    """The SQL of one journal's tables."""

    create: tuple[bytes, ...]
    init_head: bytes
    head: bytes
    tip: bytes
    page: bytes
    head_and_page: bytes
    head_and_headers: bytes
    # The append's statement but its rows, and the whole of it by how many rows it inserts.
    append_to: bytes
    appends: dict[int, bytes]
    listen: bytes

    def append(self, rows: int) -> bytes:
        """The append of `rows` batches, after the head moved. Each batch is a parameter of
        its own, up to a few: an array of bytea costs about 2 ms a MiB more to build and take
        apart, which only a group of many small batches is better off paying."""
        statement = self.appends.get(rows)
        if statement is None:
            if rows <= _ROWS_AS_VALUES_MAX:
                values = ", ".join(f"({n}, %b::bytea)" for n in range(1, rows + 1))
                given = f"(VALUES {values}) AS rows (n, batch)"
            else:
                given = "unnest(%b::bytea[]) WITH ORDINALITY AS rows (batch, n)"
            statement = self.append_to + given.encode()
            self.appends[rows] = statement
        return statement

    @classmethod
    def of(cls, table: str) -> _Statements:
        names: dict[str, sql.Composable] = {
            "batches": sql.Identifier(f"{table}_batches"),
            "head": sql.Identifier(f"{table}_head"),
            "channel": sql.Identifier(f"{table}_appended"),
            "channel_name": sql.Literal(f"{table}_appended"),
            "link_at": sql.Literal(HEADER_SIZE - CHECKSUM_SIZE + 1),
            "link_size": sql.Literal(CHECKSUM_SIZE),
            "header_size": sql.Literal(HEADER_SIZE),
            "inline_max": sql.Literal(_INLINE_BEHIND_LOCK_MAX),
        }

        def q(text: str) -> bytes:
            # Composed once, here: a composed statement is made into bytes again at each
            # execution, about 7% of what a process posting single transfers spent.
            return sql.SQL(text).format(**names).as_bytes(None)

        def head_and(batch: str) -> str:
            return (
                "SELECT h.sequence, h.end_offset, h.checksum, h.header, "
                "substring(l.batch FROM {link_at} FOR {link_size}), b.sequence, b.batch "
                "FROM {head} AS h LEFT JOIN {batches} AS l ON l.sequence = %s "
                f"LEFT JOIN LATERAL (SELECT sequence, {batch} AS batch FROM {{batches}} "
                "WHERE sequence > %s ORDER BY sequence LIMIT %s) AS b ON true "
                "ORDER BY b.sequence"
            )

        return cls(
            create=(
                q(
                    "CREATE TABLE {batches} (sequence bigint PRIMARY KEY CHECK (sequence > 0), "
                    "batch bytea NOT NULL)"
                ),
                q("ALTER TABLE {batches} ALTER COLUMN batch SET STORAGE EXTERNAL"),
                q(
                    "CREATE TABLE {head} (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                    "sequence bigint NOT NULL CHECK (sequence >= 0), "
                    "end_offset bigint NOT NULL, "
                    "checksum bytea NOT NULL CHECK (octet_length(checksum) = {link_size}), "
                    "header bytea NOT NULL)"
                ),
            ),
            init_head=q(
                "INSERT INTO {head} (sequence, end_offset, checksum, header) VALUES (0, %s, %b, %b)"
            ),
            head=q(
                "SELECT h.sequence, h.end_offset, h.checksum, h.header, "
                "substring(b.batch FROM {link_at} FOR {link_size}) "
                "FROM {head} AS h LEFT JOIN {batches} AS b ON b.sequence = %s"
            ),
            tip=q("SELECT sequence, checksum FROM {head}"),
            page=q(
                "COPY (SELECT sequence, batch FROM {batches} WHERE sequence > %s "
                "ORDER BY sequence LIMIT %s) TO STDOUT (FORMAT BINARY)"
            ),
            head_and_page=q(f"COPY ({head_and('batch')}) TO STDOUT (FORMAT BINARY)"),
            # A large batch as its header alone (see the module's documentation): stored out of
            # line, it is read only as far as the substring asks.
            head_and_headers=q(
                head_and(
                    "CASE WHEN octet_length(batch) <= {inline_max} THEN batch "
                    "ELSE substring(batch FROM 1 FOR {header_size}) END"
                )
            ),
            # The head moves only from the tip the writer read; the rows go in, and the
            # notification goes out at the commit, only if it moved: the rows inserted say so.
            append_to=q(
                "WITH moved AS (UPDATE {head} SET sequence = %s, end_offset = %s, checksum = %b "
                "WHERE sequence = %s AND end_offset = %s AND checksum = %b RETURNING 1), "
                "notified AS (SELECT pg_notify({channel_name}, %s) FROM moved) "
                "INSERT INTO {batches} (sequence, batch) "
                "SELECT %s::bigint + n, batch FROM moved, notified, "
            ),
            appends={},
            listen=q("LISTEN {channel}"),
        )


class _Session:
    """One connection of a journal, made again after it was lost; one user at a time."""

    def __init__(
        self, conninfo: str, location: str, setup: Callable[[Connection], None] | None
    ) -> None:
        self._conninfo = conninfo
        self._location = location
        self._setup = setup
        self._guard = threading.Lock()
        self._connection: Connection | None = None
        self._closed = False

    def run(self, action: str, work: Callable[[Connection], T]) -> T:
        """`work` done on this session's connection. A connection found lost (a server
        restart, a failover) is made anew and `work` tried once more: only for work that may be
        repeated, as reads may."""
        with self._guard:
            try:
                return work(self._connect())
            except psycopg.Error as error:
                if self._connection is not None and not self._connection.closed:
                    raise self._unavailable(action, error) from error
            try:
                return work(self._connect())
            except psycopg.Error as error:
                raise self._unavailable(action, error) from error

    def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._closed = True
        self.drop()

    def _connect(self) -> Connection:
        if self._closed:
            raise LedgerClosedError(f"the journal at {self._location} was closed")
        connection = self._connection
        if connection is None or connection.closed:
            self._connection = None
            connection = psycopg.connect(self._conninfo, autocommit=True)
            try:
                if self._setup is not None:
                    self._setup(connection)
            except BaseException:
                # Kept, it would serve the next call without its setup (a LISTEN, say).
                connection.close()
                raise
            self._connection = connection
        return connection

    def _unavailable(self, action: str, error: psycopg.Error) -> JournalUnavailableError:
        return JournalUnavailableError(f"{self._location}: could not {action}: {error}")


def _connected(connection: Connection) -> None:
    """Nothing: `_Session.run` has made the connection, and its setup has run."""


def _probe_client(connection: Connection) -> None:
    """Asks the server to probe this session's client, so that the append lock of a writer
    whose machine vanished without closing its connection is freed within about 25 s, not
    after the two hours of the kernel's default."""
    connection.execute(
        "SELECT set_config('tcp_keepalives_idle', '10', false), "
        "set_config('tcp_keepalives_interval', '5', false), "
        "set_config('tcp_keepalives_count', '3', false)"
    )


def _guard_reads(connection: Connection) -> None:
    """Makes the sessions of a read-only journal unable to write, whatever they are sent."""
    connection.execute("SELECT set_config('default_transaction_read_only', 'on', false)")


def _lock_key(purpose: str, table: str) -> int:
    """The advisory lock key of one purpose for one journal: advisory locks are shared by the
    whole database, so the key names both."""
    digest = hashlib.blake2b(f"fastledger {purpose} {table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _next_page_rows(sizes: Iterable[int]) -> int:
    """How many rows to ask for after a full page of batches of these sizes: as many as fit in
    the byte budget, going by the largest."""
    return max(1, min(_PAGE_ROWS_MAX, _PAGE_BYTES // max(sizes, default=HEADER_SIZE)))


def _header_alone(data: bytes) -> bool:
    """Whether a row of the read behind the lock holds only the header of a larger batch."""
    return len(data) == HEADER_SIZE and batch_size(data) > HEADER_SIZE


def _name_batches(tips: list[Tip]) -> str:
    first, last = tips[0].sequence, tips[-1].sequence
    return f"batch {first}" if first == last else f"batches {first}-{last}"


def _parse_url(url: str, table: str | None) -> tuple[str, str, str]:
    """The connection string for libpq, the table name and the location (the URL without its
    password) of a journal's URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidArgumentError(
            f"a journal in PostgreSQL is named by a postgresql:// URL, not a {parts.scheme}: one"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    named = {value for name, value in query if name == "table"}
    if table is not None:
        named.add(table)
    if len(named) > 1:
        raise InvalidArgumentError(f"the journal's table is named twice: {sorted(named)}")
    table = named.pop() if named else DEFAULT_TABLE
    if not _TABLE_NAME.fullmatch(table):
        raise InvalidArgumentError(
            f"a journal's table name is a lowercase identifier of at most 48 characters "
            f"(letters, digits and _, not first a digit), not {table!r}"
        )
    rest = [(name, value) for name, value in query if name != "table"]
    conninfo = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as error:
        raise InvalidArgumentError(f"not a PostgreSQL URL that libpq takes: {error}") from error
    user, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}@{hosts}" if at else hosts
    shown = [(name, value) for name, value in rest if name != "password"] + [("table", table)]
    location = urlunsplit(parts._replace(netloc=netloc, query=urlencode(shown, quote_via=quote)))
    return conninfo, table, location


def _with_defaults(conninfo: str) -> str:
    given = conninfo_to_dict(conninfo)
    defaults = {name: value for name, value in _CONNECT_DEFAULTS.items() if name not in given}
    return make_conninfo(conninfo, **defaults)
