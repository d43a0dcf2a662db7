"""A ledger whose journal is in PostgreSQL: the same state for every process, nothing lost or
applied twice through lost connections and commits of unknown outcome, followers that see
every batch, and copies between a directory and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastledger import (
    CreateTransferStatus,
    JournalOutcomeUnknownError,
    JournalWriteError,
    Ledger,
)
from fastledger._copy import copy, copy_main
from fastledger._verify import verify

from .conftest import ENGINE_NAMES, require_engine
from .helpers import account, pending, post, transfer
from .postgres import Proxy, require_postgres, table_of, terminate
from .test_shared_directory import ACCOUNTS, KILLED_WRITER, run_workers, state_digest

T = CreateTransferStatus


def test_a_ledger_reopened_from_postgresql_has_the_same_state(
    engine: str, postgres_url: str
) -> None:
    with Ledger.open(postgres_url, engine=engine) as ledger:
        ledger.create_accounts([account(1), account(2)])
        ledger.create_transfers([transfer(10, 1, 2, 5), pending(11, 1, 2, 3)])
        ledger.create_transfers([post(12, 11)])
        expected = state_digest(ledger)
        assert ledger.path is not None and "password" not in ledger.path
    for other in ENGINE_NAMES:
        require_engine(other)
        with Ledger.open(postgres_url, engine=other) as reopened:
            assert state_digest(reopened) == expected
            assert reopened.sequence == 3
    report = verify(postgres_url)
    assert report.ok and report.transfers == 3, report.summary()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_processes_posting_into_postgresql_end_with_the_state_of_one_replay(
    engine: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_engine(engine)
    with Ledger.open(postgres_url, engine=engine) as ledger:
        ledger.create_accounts([account(n) for n in range(1, ACCOUNTS + 1)])
    acknowledged, digests = run_workers(postgres_url, engine, tmp_path, monkeypatch)
    with Ledger.open(postgres_url, engine=engine, read_only=True) as replay:
        assert {(state_digest(replay), replay.sequence)} == digests
        assert len(replay.lookup_transfers(acknowledged)) == len(acknowledged)
    assert verify(postgres_url).ok


def test_a_writer_killed_while_posting_into_postgresql_loses_nothing_it_acknowledged(
    postgres_url: str,
) -> None:
    with Ledger.open(postgres_url, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    acknowledged: list[int] = []
    for round_ in range(3):
        victim = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, postgres_url, str(1000 * (round_ + 1))],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert victim.stdout is not None
        acknowledged.append(int(victim.stdout.readline()))
        time.sleep(0.2)
        victim.kill()
        out, _ = victim.communicate()
        acknowledged += [int(line) for line in out.split()]
    with Ledger.open(postgres_url, engine="python") as ledger:
        assert len(ledger.lookup_transfers(acknowledged)) == len(acknowledged)
        assert ledger.create_transfers([transfer(5, 1, 2, 1)])[0].status == T.CREATED
    assert verify(postgres_url).ok


def test_connections_ended_mid_posting_fail_calls_clearly_and_lose_nothing(
    postgres_url: str,
) -> None:
    """As a server restart does for its clients: every connection of the ledger ends at
    once, over and over, while a thread posts. Calls fail with a clear error or succeed; every
    one that succeeded is there once; the ledger goes on."""
    psycopg = require_postgres()
    with Ledger.open(postgres_url, engine="python") as ledger:
        ledger.create_accounts([account(1), account(2)])
        acknowledged: list[int] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        attempted: list[int] = []

        def post_all() -> None:
            while not stop.is_set():
                n = 101 + len(attempted)
                attempted.append(n)
                try:
                    status = ledger.create_transfers([transfer(n, 1, 2, 1)])[0].status
                except JournalWriteError as error:
                    failures.append(error)
                    continue
                assert status in (T.CREATED, T.EXISTS)
                acknowledged.append(n)

        poster = threading.Thread(target=post_all)
        poster.start()
        with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as admin:
            for _ in range(5):
                time.sleep(0.15)
                terminate(admin, table_of(postgres_url))
        time.sleep(0.2)
        stop.set()
        poster.join(60)
        # Whether an ending lands on a commit in flight (a clear failure) or between calls (the
        # next call connects again) is up to timing; either way nothing may be lost or doubled.
        assert acknowledged, failures
        found = {t.id for t in ledger.lookup_transfers(attempted)}
        assert set(acknowledged) <= found
        assert ledger.lookup_accounts([2])[0].credits_posted == len(found), "each applied once"
    with Ledger.open(postgres_url, engine="python") as reopened:
        assert {t.id for t in reopened.lookup_transfers(attempted)} == found
        assert reopened.trial_balance(1).balanced
    assert verify(postgres_url).ok


def test_a_commit_of_unknown_outcome_is_found_out_before_the_next_call(
    engine: str, postgres_url: str
) -> None:
    proxy = Proxy(postgres_url)
    try:
        with Ledger.open(proxy.url, engine=engine) as ledger:
            ledger.create_accounts([account(1), account(2)])
            proxy.swallow_next_commit()
            with pytest.raises(JournalOutcomeUnknownError):
                ledger.create_transfers([transfer(10, 1, 2, 7)])
            # The commit went through: the next call finds it, and a retry says EXISTS.
            assert ledger.create_transfers([transfer(10, 1, 2, 7)])[0].status == T.EXISTS
            (debited,) = ledger.lookup_accounts([1])
            assert debited.debits_posted == 7, "applied once"
            assert ledger.sequence == 3, "the accounts, the lost commit's batch, the retry"
    finally:
        proxy.close()
    assert verify(postgres_url).ok


def test_a_follower_sees_every_batch_within_milliseconds(postgres_url: str) -> None:
    with Ledger.open(postgres_url, engine="python") as writer:
        writer.create_accounts([account(1), account(2)])
        with Ledger.open(postgres_url, engine="python", read_only=True) as follower:
            lags = []
            for n in range(20):
                writer.create_transfers([transfer(10 + n, 1, 2, 1)])
                acknowledged = time.monotonic()
                assert follower.wait_for_batches(writer.sequence - 1, timeout_s=5)
                lags.append(time.monotonic() - acknowledged)
                assert follower.sequence == writer.sequence
            assert follower.lookup_accounts([2])[0].credits_posted == 20
            assert sorted(lags)[-2] < 1.0, lags


def test_copy_moves_a_journal_to_postgresql_and_back_byte_for_byte(
    engine: str, postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(tmp_path / "source", engine=engine) as ledger:
        ledger.create_accounts([account(1), account(2)])
        for n in range(5):
            ledger.create_transfers([transfer(10 + 2 * n, 1, 2, 3), transfer(11 + 2 * n, 2, 1, 1)])
        expected = state_digest(ledger)
    report = copy(str(tmp_path / "source"), postgres_url)
    assert report.batches == 6 and report.events == 12
    assert copy_main([postgres_url, str(tmp_path / "back")]) == 0
    assert "copied 6 batches" in capsys.readouterr().out
    source = (tmp_path / "source" / "journal").read_bytes()
    assert (tmp_path / "back" / "journal").read_bytes() == source
    for location in (postgres_url, str(tmp_path / "back")):
        with Ledger.open(location, engine=engine) as copied:
            assert state_digest(copied) == expected
        assert verify(location).ok
    assert copy_main([str(tmp_path / "source"), str(tmp_path / "back")]) == 1, "not over one"
