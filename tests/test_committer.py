"""The committer of a shared journal: what it writes when, and that a ledger closes whatever
its callers are doing. On a real directory journal; another process waiting for the append
lock is played by a shared lock of the tip file, which is what a waiting process holds."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fastledger import CreateTransferStatus, Ledger, _platform
from fastledger.journal.committer import GROUP_WAIT_BYTES_MAX, Committer
from fastledger.journal.directory import TIP, DirectoryJournal
from fastledger.journal.format import HEADER_SIZE, KIND_TRANSFERS

from .helpers import account, transfer


def test_a_group_past_its_size_is_written_while_a_caller_still_pins_the_lock(
    tmp_path: Path,
) -> None:
    journal = DirectoryJournal(tmp_path)
    committer = Committer(journal, journal.durable_tip())
    waiting = os.open(tmp_path / TIP, os.O_RDONLY)
    _platform.lock_shared(waiting)
    try:
        body = bytes(128)
        committer.hold()
        committer.wait(committer.append(KIND_TRANSFERS, 1, body, journal.checksums(body)))
        # The write saw a process waiting: the committer now waits for every pinned caller
        # to queue its batch before it writes, up to a size.
        committer.hold()
        committer.hold()
        large = bytes(GROUP_WAIT_BYTES_MAX + HEADER_SIZE)
        sequence = committer.append(KIND_TRANSFERS, 2, large, journal.checksums(large))
        deadline = time.monotonic() + 5
        while committer.tip.sequence < sequence and time.monotonic() < deadline:
            time.sleep(0.005)
        written = committer.tip.sequence
        committer.release()
        committer.wait(sequence)
        assert written == sequence, "written while a caller still pins the lock"
    finally:
        _platform.unlock(waiting)
        os.close(waiting)
        committer.close()
        journal.close()


class _LockSlowForOneThread:
    """The ledger's lock, taken late by one thread: a caller that has pinned the append lock
    and is preempted before it takes the ledger's lock."""

    def __init__(self, lock: Any, slow: str) -> None:
        self._lock, self._slow = lock, slow

    def __enter__(self) -> None:
        if threading.current_thread().name == self._slow:
            time.sleep(0.3)
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_ledger_closes_while_a_caller_has_pinned_the_append_lock(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, engine="python")
    ledger.create_accounts([account(1)])
    ledger._lock = _LockSlowForOneThread(ledger._lock, "creator")  # type: ignore[assignment]
    failures: list[BaseException] = []

    def create() -> None:
        try:
            ledger.create_accounts([account(2)])
        except BaseException as error:
            failures.append(error)

    creator = threading.Thread(target=create, name="creator", daemon=True)
    creator.start()
    time.sleep(0.1)
    closer = threading.Thread(target=ledger.close, daemon=True)
    closer.start()
    closer.join(10)
    creator.join(10)
    assert not closer.is_alive(), "close waits for a caller that waits for close"
    assert not creator.is_alive()
    assert [type(error).__name__ for error in failures] == ["LedgerClosedError"]


def test_a_caller_interrupted_while_it_waits_for_a_leader_leaves_the_others_going(
    tmp_path: Path,
) -> None:
    """The main thread's create waits behind a leader that waits for the append lock; Ctrl-C
    then takes its batch back, and the creates after it are neither lost nor stuck."""
    ledger = Ledger.open(tmp_path, engine="python")
    ledger.create_accounts([account(1), account(2)])
    holder = DirectoryJournal(tmp_path)
    holder.lock()
    leader = threading.Thread(target=ledger.create_transfers, args=([transfer(10, 1, 2, 1)],))
    leader.start()
    time.sleep(0.2)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            ledger.create_transfers([transfer(11, 1, 2, 1)])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        holder.unlock()
        holder.close()
    leader.join(10)
    assert not leader.is_alive()
    assert ledger.lookup_transfers([11]) == [], "the interrupted batch was taken back"
    [created] = ledger.create_transfers([transfer(12, 1, 2, 1)])
    assert created.status == CreateTransferStatus.CREATED
    assert [t.id for t in ledger.lookup_transfers([10, 12])] == [10, 12]
    ledger.close()
