"""The journal in PostgreSQL, at the journal's own interface: the bytes it keeps, the order it
gives appenders in threads and in processes, and what it does when a tip is stale, a journal
forked, a connection was cut, or the outcome of a commit is unknown.

Every test has tables of its own on a real server (see postgres.py for which one, and how to
start one); the batches are real transfer records, encoded as the ledger encodes them.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from fastledger import Account, Transfer
from fastledger._records import RECORD_SIZE, pack_accounts, pack_transfers, unpack_transfers
from fastledger.errors import (
    InvalidArgumentError,
    JournalCorruptError,
    JournalOutcomeUnknownError,
    JournalReadOnlyError,
    JournalUnavailableError,
    JournalWriteError,
)
from fastledger.journal.format import (
    HEADER_SIZE,
    KIND_ACCOUNTS,
    KIND_EXPIRY,
    KIND_TRANSFERS,
    RULES_VERSION,
    Batch,
    Checksums,
    JournalHeader,
    Queued,
    Tip,
    encode_batches,
    queued,
)

from .postgres import Proxy, require_postgres, server_url, table_of, terminate, with_query

if TYPE_CHECKING:
    from fastledger.journal.postgres import PostgresJournal

OpenJournal = Callable[..., "PostgresJournal"]
KEY = bytes(range(32))


def transfers(first_id: int, count: int) -> bytes:
    """`count` transfer records with ids from `first_id`, packed as the ledger packs them."""
    return pack_transfers(
        [
            Transfer(id=i, debit_account_id=1, credit_account_id=2, amount=i, ledger=1, code=1)
            for i in range(first_id, first_id + count)
        ]
    )


def batches_after(
    journal: PostgresJournal, tip: Tip, *counts: int, first_id: int = 1
) -> list[Queued]:
    """A group of transfer batches for `journal` after `tip`, one per count; a count of 0 is
    an expiry."""
    group: list[Queued] = []
    for n, count in enumerate(counts):
        sequence = tip.sequence + 1 + n
        kind = KIND_TRANSFERS if count else KIND_EXPIRY
        body = transfers(first_id, count)
        group.append(queued(sequence, kind, 1_000 + sequence, body, journal.checksums))
        first_id += count
    return group


def last_tip(batches: Iterable[Batch], after: Tip) -> Tip:
    for batch in batches:
        after = batch.tip
    return after


def append(journal: PostgresJournal, after: Tip, *counts: int, first_id: int = 1) -> list[Tip]:
    """Appends as a ledger does: under the lock, after catching up."""
    journal.lock()
    try:
        tip = last_tip(journal.read(after, locked=True), after)
        return journal.write(batches_after(journal, tip, *counts, first_id=first_id), tip)
    finally:
        journal.unlock()


def ids(batches: Iterable[Batch]) -> list[int]:
    return [t.id for batch in batches for t in unpack_transfers(batch.body)]


@pytest.fixture
def journals(postgres_url: str) -> Iterator[OpenJournal]:
    """Opens journals (on the test's tables unless given another URL), closed after the test."""
    from fastledger.journal.postgres import PostgresJournal

    opened: list[PostgresJournal] = []

    def open_journal(url: str = postgres_url, **options: Any) -> PostgresJournal:
        journal = PostgresJournal.open(url, **options)
        opened.append(journal)
        return journal

    yield open_journal
    for journal in opened:
        journal.close()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[Any]:
    """A connection of the test's own to the server, for what no journal would do."""
    with require_postgres().connect(server_url(), autocommit=True) as connection:
        yield connection


def empty_tip(journal: PostgresJournal) -> Tip:
    return journal.header.empty_tip(journal.checksums)


# The bytes and the tables.


def test_batches_read_back_as_the_bytes_and_offsets_of_a_directory_journal(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    empty = empty_tip(journal)
    accounts = pack_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    group: list[Queued] = [
        queued(1, KIND_ACCOUNTS, 10, accounts, journal.checksums),
        queued(2, KIND_TRANSFERS, 11, transfers(1, 3), journal.checksums),
        queued(3, KIND_EXPIRY, 12, b"", journal.checksums),
    ]
    journal.lock()
    tips = journal.write(group, empty)
    journal.unlock()

    parts, expected = encode_batches(group, empty, journal.checksums)
    assert tips == expected
    assert tips[-1].end == HEADER_SIZE + sum(map(len, parts))
    read = list(journal.read(empty, locked=False))
    assert [(b.sequence, b.kind, b.timestamp, b.body) for b in read] == [q[:4] for q in group]
    assert [b.tip for b in read] == tips
    assert [b.sequence for b in journal.read(tips[0], locked=False)] == [2, 3]
    table = table_of(postgres_url)
    rows = admin.execute(f"SELECT batch FROM {table}_batches ORDER BY sequence").fetchall()
    assert b"".join(row[0] for row in rows) == b"".join(parts)
    head = admin.execute(f"SELECT sequence, end_offset, checksum, header FROM {table}_head")
    assert head.fetchone() == (
        3,
        tips[-1].end,
        tips[-1].checksum,
        journal.header.encode(journal.checksums),
    )


def test_a_group_of_many_batches_is_stored_as_the_same_bytes(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    # Past a few batches the append passes them as one array, not as parameters of their own.
    journal = journals()
    empty = empty_tip(journal)
    group = batches_after(journal, empty, *[1, 2, 0] * 20)
    journal.lock()
    tips = journal.write(group, empty)
    journal.unlock()
    parts, expected = encode_batches(group, empty, journal.checksums)
    assert tips == expected
    assert [b.tip for b in journal.read(empty, locked=False)] == tips
    table = table_of(postgres_url)
    rows = admin.execute(f"SELECT batch FROM {table}_batches ORDER BY sequence").fetchall()
    assert b"".join(row[0] for row in rows) == b"".join(parts)


def test_a_full_batch_is_kept_out_of_line_and_uncompressed(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    tips = append(journal, empty_tip(journal), 8189)
    assert [b.count for b in journal.read(empty_tip(journal), locked=False)] == [8189]
    table = table_of(postgres_url)
    storage = admin.execute(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'batch'",
        (f"{table}_batches",),
    ).fetchone()
    assert storage == ("e",)
    kept = admin.execute(
        f"SELECT pg_column_compression(batch), pg_column_size(batch) FROM {table}_batches"
    ).fetchone()
    assert kept == (None, tips[0].end - HEADER_SIZE)


def test_a_journal_opened_again_is_the_same_ledger(journals: OpenJournal) -> None:
    first = journals()
    tips = append(first, empty_tip(first), 2)
    again = journals()
    assert again.header == first.header
    assert [b.tip for b in again.read(empty_tip(again), locked=False)] == tips


def test_threads_opening_a_new_journal_at_once_make_one(journals: OpenJournal) -> None:
    headers: list[JournalHeader] = []
    pool = [threading.Thread(target=lambda: headers.append(journals().header)) for _ in range(6)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(headers) == 6 and len(set(headers)) == 1


# Appenders.


def test_writers_in_threads_append_under_the_lock_without_gaps_or_duplicates(
    journals: OpenJournal,
) -> None:
    writers, rounds = 4, 25

    def write(writer: int) -> None:
        journal = journals()
        tip = empty_tip(journal)
        for n in range(rounds):
            tip = append(journal, tip, 1, first_id=writer * 1_000 + n + 1)[-1]

    pool = [threading.Thread(target=write, args=(w,)) for w in range(1, writers + 1)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    reader = journals()
    batches = list(reader.read(empty_tip(reader), locked=False))
    assert [b.sequence for b in batches] == list(range(1, writers * rounds + 1))
    expected = {w * 1_000 + n + 1 for w in range(1, writers + 1) for n in range(rounds)}
    assert sorted(ids(batches)) == sorted(expected)


# Each child opens the journal (the first to come makes it), then appends one batch of one
# transfer at a time under the lock, after catching up.
CHILD = """
import sys
from fastledger import Transfer
from fastledger._records import pack_transfers
from fastledger.journal.format import KIND_TRANSFERS, queued
from fastledger.journal.postgres import PostgresJournal

url, writer, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
journal = PostgresJournal.open(url)
tip = journal.header.empty_tip(journal.checksums)
for n in range(rounds):
    journal.lock()
    for batch in journal.read(tip, locked=True):
        tip = batch.tip
    record = Transfer(
        id=writer * 1_000 + n + 1, debit_account_id=1, credit_account_id=2, amount=1, ledger=1,
        code=1,
    )
    body = pack_transfers([record])
    group = [queued(tip.sequence + 1, KIND_TRANSFERS, tip.sequence + 1, body, journal.checksums)]
    tip = journal.write(group, tip)[-1]
    journal.unlock()
journal.close()
"""


def test_processes_append_under_the_lock_without_gaps_or_duplicates(
    journals: OpenJournal, postgres_url: str
) -> None:
    writers, rounds = 3, 40
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, postgres_url, str(w), str(rounds)])
        for w in range(1, writers + 1)
    ]
    assert [child.wait(timeout=120) for child in children] == [0] * writers
    reader = journals()
    batches = list(reader.read(empty_tip(reader), locked=False))
    assert [b.sequence for b in batches] == list(range(1, writers * rounds + 1))
    expected = {w * 1_000 + n + 1 for w in range(1, writers + 1) for n in range(rounds)}
    assert sorted(ids(batches)) == sorted(expected)


def test_a_write_after_a_stale_tip_is_refused_and_writes_nothing(journals: OpenJournal) -> None:
    first, second = journals(), journals()
    empty = empty_tip(first)
    tips = append(first, empty, 1)
    second.lock()
    with pytest.raises(JournalWriteError, match="not written: the journal's tip is batch 1, not"):
        second.write(batches_after(second, empty, 2), empty)
    tips += second.write(batches_after(second, tips[-1], 2), tips[-1])
    second.unlock()
    assert [b.tip for b in first.read(empty, locked=False)] == tips


def test_a_write_without_the_lock_is_refused(journals: OpenJournal) -> None:
    journal = journals()
    with pytest.raises(JournalWriteError, match="does not hold the append lock"):
        journal.write(batches_after(journal, empty_tip(journal), 1), empty_tip(journal))
    assert list(journal.read(empty_tip(journal), locked=False)) == []


# Forks and damage.


def rewind(admin: Any, url: str, tip: Tip) -> None:
    """What a failover to a replica that had the journal up to `tip` only leaves."""
    table = table_of(url)
    admin.execute(f"DELETE FROM {table}_batches WHERE sequence > %s", (tip.sequence,))
    admin.execute(
        f"UPDATE {table}_head SET sequence = %s, end_offset = %s, checksum = %s",
        (tip.sequence, tip.end, tip.checksum),
    )


def test_another_batch_at_the_tip_is_a_fork(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    writer, follower = journals(), journals()
    tips = append(writer, empty_tip(writer), 1, 1, 1)
    assert (
        last_tip(follower.read(empty_tip(follower), locked=False), empty_tip(follower)) == tips[2]
    )
    rewind(admin, postgres_url, tips[1])
    append(journals(), tips[1], 2)
    assert follower.changed(tips[2])
    with pytest.raises(JournalCorruptError, match="batch 3 is another than this process applied"):
        list(follower.read(tips[2], locked=False))


def test_a_head_behind_the_tip_is_a_fork(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    tips = append(journal, empty_tip(journal), 1, 1, 1)
    rewind(admin, postgres_url, tips[0])
    assert journal.changed(tips[2])
    with pytest.raises(JournalCorruptError, match="ends at batch 1, yet this process applied"):
        list(journal.read(tips[2], locked=False))


def test_a_damaged_batch_is_refused_at_its_offset(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    tips = append(journal, empty_tip(journal), 2, 2)
    admin.execute(
        f"UPDATE {table_of(postgres_url)}_batches "
        "SET batch = overlay(batch PLACING '\\xff'::bytea FROM 200) WHERE sequence = 2"
    )
    read = journal.read(empty_tip(journal), locked=False)
    assert next(read).tip == tips[0]
    with pytest.raises(JournalCorruptError, match="batch 2 is damaged") as refused:
        next(read)
    assert refused.value.offset == tips[0].end


def test_a_missing_batch_is_refused(journals: OpenJournal, admin: Any, postgres_url: str) -> None:
    journal = journals()
    append(journal, empty_tip(journal), 1, 1, 1)
    admin.execute(f"DELETE FROM {table_of(postgres_url)}_batches WHERE sequence = 2")
    with pytest.raises(JournalCorruptError, match="batch 3 where batch 2 belongs"):
        list(journal.read(empty_tip(journal), locked=False))


# Followers.


def test_wait_wakes_on_a_commit_within_milliseconds(journals: OpenJournal) -> None:
    writer, follower = journals(), journals()
    empty = empty_tip(writer)
    assert not follower.wait(empty, 0.05)
    woke_s: list[float] = []

    def follow() -> None:
        if follower.wait(empty, 10):
            woke_s.append(time.perf_counter())

    waiting = threading.Thread(target=follow)
    waiting.start()
    time.sleep(0.3)
    writing_s = time.perf_counter()
    append(writer, empty, 1)
    waiting.join()
    # Far below the second after which `wait` checks the head anyway.
    assert len(woke_s) == 1 and 0 < woke_s[0] - writing_s < 0.3


def test_a_notified_sequence_answers_changed_until_a_read_finds_it_lost(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    writer, follower = journals(), journals()
    assert not follower.wait(empty_tip(writer), 0.05), "listens from here on"
    tips = append(writer, empty_tip(writer), 1, 1)
    assert not follower.wait(tips[-1], 0.1), "takes in the notifications waiting"
    assert follower._notified == 2
    rewind(admin, postgres_url, tips[0])
    # Batch 2 was committed, so it is said to be there, until a read finds it gone.
    assert follower.changed(tips[0])
    assert list(follower.read(tips[0], locked=False)) == []
    assert not follower.changed(tips[0])


def test_wait_goes_on_through_a_terminated_listening_connection(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    writer, follower = journals(), journals()
    empty = empty_tip(writer)
    woke: list[bool] = []
    waiting = threading.Thread(target=lambda: woke.append(follower.wait(empty, 10)))
    waiting.start()
    time.sleep(0.3)
    ended = admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE application_name = %s AND query LIKE 'LISTEN%%'",
        (table_of(postgres_url),),
    ).fetchall()
    assert ended == [(True,)]
    time.sleep(0.3)
    append(writer, empty, 1)
    waiting.join(timeout=5)
    assert woke == [True]


# Lost connections and commits of unknown outcome.


def test_a_read_goes_on_after_its_connection_was_terminated_mid_stream(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    writer, follower = journals(), journals()
    tips = append(writer, empty_tip(writer), *[1] * 40)
    read = follower.read(empty_tip(follower), locked=False)
    first = next(read)
    assert terminate(admin, table_of(postgres_url)) >= 2
    assert [first.tip, *(b.tip for b in read)] == tips
    assert not follower.changed(tips[-1])


def test_a_writer_whose_session_was_lost_writes_nothing_and_locks_again(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    empty = empty_tip(journal)
    journal.lock()
    # Ended while idle, before the write: the server said so, and the write finds it out
    # without sending what it would then not know the outcome of.
    terminate(admin, table_of(postgres_url), wait_ms=5000)
    with pytest.raises(JournalWriteError, match="batch 1 not written") as failed:
        journal.write(batches_after(journal, empty, 1), empty)
    assert not isinstance(failed.value, JournalOutcomeUnknownError)
    journal.unlock()
    assert list(journal.read(empty, locked=False)) == []
    assert [t.sequence for t in append(journal, empty, 1)] == [1]


def test_an_unlock_lets_the_lock_go_before_its_reply_is_read(journals: OpenJournal) -> None:
    first, second = journals(), journals()
    tips = append(first, empty_tip(first), 1)
    taken = threading.Event()

    def take() -> None:
        second.lock()
        taken.set()

    threading.Thread(target=take, daemon=True).start()
    assert taken.wait(10), "the lock went with the unlock sent"
    tips += second.write(batches_after(second, tips[-1], 1), tips[-1])
    second.unlock()
    assert [t.sequence for t in append(first, tips[-1], 1)] == [3]


def test_a_session_lost_after_its_unlock_was_sent_locks_again(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    tips = append(journal, empty_tip(journal), 1)
    assert terminate(admin, table_of(postgres_url), wait_ms=5000) >= 2
    assert [t.sequence for t in append(journal, tips[-1], 1)] == [2]


def test_the_lock_reads_ahead_what_the_catch_up_after_it_reads(journals: OpenJournal) -> None:
    journal, other = journals(), journals()
    empty = empty_tip(journal)
    tips = append(journal, empty, 1)
    tips += append(other, tips[-1], 1, 1, first_id=10)
    # Taken knowing batch 1, the lock reads batches 2 and 3 with it: a catch-up from batch 1,
    # or from batch 2 (a reader went on while the lock was waited for), is then read from
    # there, and what the lock read is used once only.
    for after, expected in ((tips[0], tips[1:]), (tips[1], tips[2:])):
        reader = journals()
        read = reader.read(empty, locked=False)
        assert next(read).tip == tips[0]
        read.close()
        reader.lock()
        assert reader._with_lock is not None and reader._with_lock[0] == tips[0]
        assert [b.tip for b in reader.read(after, locked=True)] == expected
        assert reader._with_lock is None
        assert [b.tip for b in reader.read(empty, locked=True)] == tips
        reader.unlock()


def test_the_lock_reads_large_batches_as_headers_and_the_catch_up_reads_them_whole(
    journals: OpenJournal,
) -> None:
    journal, other = journals(), journals()
    empty = empty_tip(journal)
    tips = append(journal, empty, 1)
    # Batches of 1 and 0 records come whole with the lock; one of 1,000 (128 KiB) as its
    # header alone, which the catch-up reads in full, with what follows it.
    tips += append(other, tips[-1], 1, 1000, 0, 2, first_id=10)
    expected = list(other.read(empty, locked=False))
    for after in tips[:3]:
        reader = journals()
        read = reader.read(empty, locked=False)
        assert next(read).tip == tips[0]
        read.close()
        reader.lock()
        assert reader._with_lock is not None
        _, rows, _ = reader._with_lock[1]
        assert [len(data) for _, data in rows] == [
            HEADER_SIZE + RECORD_SIZE,
            HEADER_SIZE,
            HEADER_SIZE,
            HEADER_SIZE + 2 * RECORD_SIZE,
        ]
        caught_up = list(reader.read(after, locked=True))
        assert caught_up == expected[after.sequence :]
        assert ids(caught_up) == ids(expected[after.sequence :])
        reader.unlock()


def test_a_catch_up_from_another_batch_than_the_lock_read_is_a_fork(
    journals: OpenJournal,
) -> None:
    journal, other = journals(), journals()
    tips = append(journal, empty_tip(journal), 1)
    tips += append(other, tips[-1], 1, 1, first_id=10)
    # The lock reads from batch 1 on, which it knows: the catch-up from a batch 2 of its own
    # finds another there.
    forked = dataclasses.replace(tips[1], checksum=bytes(len(tips[1].checksum)))
    journal.lock()
    with pytest.raises(JournalCorruptError, match="batch 2 is another than this process applied"):
        list(journal.read(forked, locked=True))
    journal.unlock()


def test_a_lock_whose_read_failed_is_not_kept(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal, other = journals(), journals()
    table = table_of(postgres_url)
    admin.execute(f"ALTER TABLE {table}_batches RENAME TO {table}_elsewhere")
    try:
        with pytest.raises(JournalUnavailableError, match="could not take the append lock"):
            journal.lock()
    finally:
        admin.execute(f"ALTER TABLE {table}_elsewhere RENAME TO {table}_batches")
    # The session that may have had it was ended: another takes it at once.
    taken = threading.Event()
    threading.Thread(target=lambda: (other.lock(), taken.set()), daemon=True).start()
    assert taken.wait(10)
    other.unlock()
    assert [t.sequence for t in append(journal, empty_tip(journal), 1)] == [1]


def test_a_write_the_server_refuses_writes_nothing_and_keeps_the_session(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    journal = journals()
    empty = empty_tip(journal)
    # A row where the next batch goes, with the head not moved: the append's insert fails
    # after its head update, and the statement's transaction takes both back.
    admin.execute(f"INSERT INTO {table_of(postgres_url)}_batches VALUES (1, 'x')")
    journal.lock()
    locked_on = journal._locked_on
    with pytest.raises(JournalWriteError, match="batch 1 not written: duplicate key") as failed:
        journal.write(batches_after(journal, empty, 1), empty)
    assert not isinstance(failed.value, JournalOutcomeUnknownError)
    assert journal.durable_extent() == (0, empty.end)
    assert journal._locked_on is locked_on and not locked_on.closed, "still holds the lock"
    admin.execute(f"DELETE FROM {table_of(postgres_url)}_batches")
    assert [t.sequence for t in journal.write(batches_after(journal, empty, 1), empty)] == [1]
    journal.unlock()


def test_a_write_interrupted_while_committing_ends_its_session(
    journals: OpenJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = journals()
    empty = empty_tip(journal)
    psycopg = require_postgres()
    execute = psycopg.Connection.execute

    def committed_then_interrupted(*args: Any, **kwargs: Any) -> None:
        execute(*args, **kwargs)
        raise KeyboardInterrupt

    journal.lock()
    locked_on = journal._locked_on
    monkeypatch.setattr(psycopg.Connection, "execute", committed_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        journal.write(batches_after(journal, empty, 1), empty)
    monkeypatch.undo()
    # The outcome was not heard: the session went, and the lock with it, as after a lost
    # connection; the next lock is taken anew, and what is there is sure.
    assert locked_on is not None and locked_on.closed
    journal.unlock()
    journal.lock()
    assert [b.sequence for b in journal.read(empty, locked=True)] == [1]
    journal.unlock()


def test_a_commit_cut_off_before_the_server_had_it_is_unknown_and_not_there(
    journals: OpenJournal, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = journals()
    empty = empty_tip(journal)
    commit = journal._commit

    def end_the_session_then_commit(connection: Any, *args: Any) -> bool:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (connection.info.backend_pid,))
        return commit(connection, *args)

    monkeypatch.setattr(journal, "_commit", end_the_session_then_commit)
    journal.lock()
    with pytest.raises(JournalOutcomeUnknownError, match="may or may not be in the journal"):
        journal.write(batches_after(journal, empty, 1), empty)
    monkeypatch.undo()
    journal.unlock()
    journal.lock()
    assert list(journal.read(empty, locked=True)) == []
    assert [t.sequence for t in journal.write(batches_after(journal, empty, 1), empty)] == [1]
    journal.unlock()


def test_a_commit_whose_reply_was_lost_is_unknown_and_there(
    journals: OpenJournal, postgres_url: str
) -> None:
    proxy = Proxy(postgres_url)
    try:
        journal = journals(proxy.url)
        empty = empty_tip(journal)
        group = batches_after(journal, empty, 2)
        journal.lock()
        proxy.swallow_next_commit()
        with pytest.raises(JournalOutcomeUnknownError):
            journal.write(group, empty)
        # The lock waits for the lost session to end, after its commit: what follows is sure.
        journal.lock()
        found = list(journal.read(empty, locked=True))
        assert [b.tip for b in found] == encode_batches(group, empty, journal.checksums)[1]
        journal.write(batches_after(journal, found[-1].tip, 1), found[-1].tip)
        journal.unlock()
    finally:
        proxy.close()


def test_a_server_out_of_reach_is_a_clear_error_and_the_journal_recovers(
    journals: OpenJournal, postgres_url: str
) -> None:
    proxy = Proxy(postgres_url)
    try:
        journal = journals(proxy.url)
        tips = append(journal, empty_tip(journal), 1)
        proxy.refusing = True
        proxy.sever()
        with pytest.raises(JournalUnavailableError, match="could not check the journal's head"):
            journal.changed(tips[-1])
        with pytest.raises(JournalUnavailableError, match="could not read the journal's head"):
            list(journal.read(empty_tip(journal), locked=False))
        with pytest.raises(JournalUnavailableError, match="could not take the append lock"):
            journal.lock()
        proxy.refusing = False
        assert not journal.changed(tips[-1])
        assert [t.sequence for t in append(journal, tips[-1], 1)] == [2]
    finally:
        proxy.close()


# What a journal is opened with.


def test_a_journal_of_other_rules_is_refused(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    header = journals().header
    other = JournalHeader(header.ledger_id, RULES_VERSION + 1, False, header.created_ns)
    admin.execute(
        f"UPDATE {table_of(postgres_url)}_head SET header = %s",
        (other.encode(Checksums(None)),),
    )
    with pytest.raises(
        JournalCorruptError, match=f"written under rules version {RULES_VERSION + 1}"
    ):
        journals()


def test_a_keyed_journal_opens_with_its_key_only(journals: OpenJournal) -> None:
    keyed = journals(key=KEY)
    tips = append(keyed, empty_tip(keyed), 1)
    with pytest.raises(JournalCorruptError, match="the journal is keyed: open it with its key"):
        journals()
    with pytest.raises(JournalCorruptError, match="is this the journal's key"):
        journals(key=bytes(32))
    assert [b.tip for b in journals(key=KEY).read(empty_tip(keyed), locked=False)] == tips


def test_a_journal_without_a_key_refuses_one(journals: OpenJournal) -> None:
    journals()
    with pytest.raises(JournalCorruptError, match="the journal has no key, yet one was given"):
        journals(key=KEY)


def test_a_read_only_open_never_makes_the_tables(
    journals: OpenJournal, admin: Any, postgres_url: str
) -> None:
    with pytest.raises(JournalUnavailableError, match="a read-only open never makes one"):
        journals(read_only=True)
    table = table_of(postgres_url)
    assert admin.execute("SELECT to_regclass(%s)", (f"{table}_head",)).fetchone() == (None,)


def test_a_read_only_journal_follows_and_never_locks_nor_writes(journals: OpenJournal) -> None:
    writer = journals()
    follower = journals(read_only=True)
    empty = empty_tip(follower)
    tips = append(writer, empty, 1)
    assert follower.wait(empty, 5)
    assert [b.tip for b in follower.read(empty, locked=False)] == tips
    with pytest.raises(JournalReadOnlyError, match="opened read-only"):
        follower.lock()
    with pytest.raises(JournalReadOnlyError, match="opened read-only"):
        follower.write(batches_after(follower, tips[-1], 1), tips[-1])


def test_the_location_names_the_table_and_never_the_password(
    journals: OpenJournal, postgres_url: str
) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:hunter2@", 1)
    journal = journals(with_password)
    assert "hunter2" not in journal.location
    assert f"table={table_of(postgres_url)}" in journal.location


@pytest.mark.parametrize(
    ("url", "table", "why"),
    [
        ("mysql://root@localhost/db", None, "named by a postgresql:// URL"),
        ("postgresql://localhost/db?table=a", "b", "table is named twice"),
        ("postgresql://localhost/db", "Ledger", "lowercase identifier"),
        ("postgresql://localhost/db", "a" * 49, "lowercase identifier"),
        ("postgresql://localhost/db?table=x;drop", None, "lowercase identifier"),
    ],
)
def test_a_url_or_table_name_that_cannot_be_a_journal_is_refused(
    postgres_url: str, url: str, table: str | None, why: str
) -> None:
    from fastledger.journal.postgres import PostgresJournal

    with pytest.raises(InvalidArgumentError, match=why):
        PostgresJournal.open(url, table=table)


def test_the_table_may_be_given_as_an_argument(journals: OpenJournal, postgres_url: str) -> None:
    url = with_query(server_url(), application_name=table_of(postgres_url))
    journal = journals(url, table=table_of(postgres_url))
    assert f"table={table_of(postgres_url)}" in journal.location
