"""`Ledger.metrics()`: every counter has its exact value after known operations, on both
engines, in memory and on a directory; slow journal writes log a warning."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import fastledger
from fastledger import (
    Account,
    AccountFilter,
    AccountFilterFlags,
    Ledger,
    QueryFilter,
    Transfer,
    _metrics,
    _platform,
)
from fastledger._cli import main
from fastledger._records import pack_accounts, pack_transfers
from fastledger.journal.format import HEADER_SIZE

from .conftest import FakeClock


def _accounts() -> list[Account]:
    return [Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)]


def _transfer(id: int, debit: int = 1) -> Transfer:
    return Transfer(id=id, debit_account_id=debit, credit_account_id=2, amount=5, ledger=1, code=1)


def _post(ledger: Ledger) -> None:
    """Two account calls (one EXISTS), three transfer calls (two of a single transfer, one of
    three with a DEBIT_ACCOUNT_NOT_FOUND and an EXISTS), two lookups and two queries."""
    ledger.create_accounts(_accounts())
    ledger.create_accounts([Account(id=1, ledger=1, code=1)])
    ledger.create_transfers([_transfer(1)])
    ledger.create_transfers([_transfer(2)])
    ledger.create_transfers([_transfer(3), _transfer(4, debit=9), _transfer(1)])
    ledger.lookup_accounts([1, 2, 3])
    ledger.lookup_transfers([1])
    ledger.get_account_transfers(
        AccountFilter(account_id=1, limit=10, flags=AccountFilterFlags.DEBITS)
    )
    ledger.query_accounts(QueryFilter(ledger=1, limit=10))


def _check_calls(metrics: fastledger.Metrics) -> None:
    assert metrics.create_accounts == fastledger.OperationMetrics(2, 3, {"EXISTS": 1})
    assert metrics.create_transfers == fastledger.OperationMetrics(
        3, 5, {"DEBIT_ACCOUNT_NOT_FOUND": 1, "EXISTS": 1}
    )
    assert metrics.lookups == fastledger.OperationMetrics(2, 4, {})
    assert metrics.queries == fastledger.OperationMetrics(2, 2, {})
    assert metrics.accounts_created == 2
    assert metrics.transfers_created == 3


def test_a_new_ledger_counts_nothing(engine: str) -> None:
    metrics = Ledger(engine=engine).metrics()
    assert metrics.create_transfers == fastledger.OperationMetrics(0, 0, {})
    assert metrics.timestamp == metrics.sequence == metrics.journal_batches == 0
    assert metrics.journal_write_ns.count == 0
    assert len(metrics.journal_write_ns.counts) == _metrics.BUCKETS


def test_in_memory_counts_calls_events_and_statuses(engine: str, clock: FakeClock) -> None:
    ledger = Ledger(engine=engine, clock=clock)
    _post(ledger)
    metrics = ledger.metrics()
    _check_calls(metrics)
    # The clock stands still: each later event takes the next nanosecond.
    assert metrics.timestamp == clock.now_ns + 6
    assert metrics.sequence == 0
    assert metrics.journal_batches == metrics.journal_bytes == metrics.journal_groups == 0
    assert metrics.lock_wait_ns.count == metrics.catch_up_ns.count == 0


def test_each_batch_counts_its_own_failures(engine: str) -> None:
    # The Rust engine tells the facade how many results of its last batch failed: a batch
    # all CREATED after one that failed counts nothing more, and the next failure counts.
    ledger = Ledger(engine=engine)
    ledger.create_accounts(_accounts())
    ledger.create_transfers([_transfer(1, debit=9), _transfer(2, debit=9)])
    ledger.create_transfers([_transfer(3), _transfer(4)])
    failed = {"DEBIT_ACCOUNT_NOT_FOUND": 2}
    assert ledger.metrics().create_transfers == fastledger.OperationMetrics(2, 4, failed)
    ledger.create_transfers([_transfer(5), _transfer(3)])
    failed = {"DEBIT_ACCOUNT_NOT_FOUND": 2, "EXISTS": 1}
    assert ledger.metrics().create_transfers == fastledger.OperationMetrics(3, 6, failed)


def test_packed_batches_count_their_statuses_from_the_status_column(engine: str) -> None:
    ledger = Ledger(engine=engine)
    ledger.create_accounts(pack_accounts(_accounts()))
    ledger.create_accounts(pack_accounts(_accounts()))
    ledger.create_transfers(pack_transfers([_transfer(1), _transfer(2, debit=9)]))
    metrics = ledger.metrics()
    assert metrics.create_accounts == fastledger.OperationMetrics(2, 4, {"EXISTS": 2})
    assert metrics.create_transfers == fastledger.OperationMetrics(
        1, 2, {"DEBIT_ACCOUNT_NOT_FOUND": 1}
    )
    assert metrics.accounts_created == 2 and metrics.transfers_created == 1


def test_a_directory_counts_its_journal_writes(
    engine: str, clock: FakeClock, tmp_path: Path
) -> None:
    with Ledger.open(tmp_path, engine=engine, clock=clock) as ledger:
        _post(ledger)
        metrics = ledger.metrics()
    _check_calls(metrics)
    # Five batches of 2, 1, 1, 1 and 3 records, each behind a header.
    assert metrics.sequence == metrics.journal_batches == 5
    assert metrics.journal_bytes == 5 * HEADER_SIZE + 8 * 128
    # One caller at a time: each group carries one batch, and took one write.
    assert metrics.journal_groups == 5
    assert metrics.group_batches.count == 5 and metrics.group_batches.counts[1] == 5
    assert metrics.group_batches.sum == 5
    assert metrics.journal_write_ns.count == 5 and metrics.journal_write_ns.sum > 0
    assert metrics.lock_wait_ns.count >= 1
    assert metrics.catch_up_ns.count >= 1


def test_histogram_buckets_are_powers_of_two() -> None:
    histogram = _metrics.Histogram()
    for value in (0, 1, 2, 3, 4, 1023, 1024, 1 << 60):
        histogram.record(value)
    snapshot = histogram.snapshot()
    assert snapshot.counts[:4] == (1, 1, 2, 1)
    assert snapshot.counts[10] == 1 and snapshot.counts[11] == 1
    assert snapshot.counts[-1] == 1, "the last bucket takes everything past the others"
    assert snapshot.count == 8 and snapshot.sum == 2057 + (1 << 60)
    assert _metrics.HistogramSnapshot.upper_bound(10) == 1024
    assert _metrics.HistogramSnapshot.upper_bound(_metrics.BUCKETS - 1) is None


def test_a_slow_fsync_logs_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fsync_file = _platform.fsync_file

    def slow_fsync(fd: int) -> None:
        time.sleep(0.05)
        fsync_file(fd)

    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts(_accounts())
        monkeypatch.setattr(_metrics, "SLOW_WRITE_S", 0.02)
        monkeypatch.setattr(_platform, "fsync_file", slow_fsync)
        with caplog.at_level(logging.WARNING, logger="fastledger"):
            ledger.create_transfers([_transfer(1)])
    slow = [r for r in caplog.records if "took" in r.getMessage()]
    assert len(slow) == 1 and slow[0].levelno == logging.WARNING
    assert f"a write of 1 batches to {tmp_path}" in slow[0].getMessage()


def test_a_fast_fsync_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="fastledger"), Ledger.open(tmp_path) as ledger:
        ledger.create_accounts(_accounts())
    assert caplog.records == []


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("fastledger").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


def test_stats_prints_what_a_directory_holds(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(tmp_path, engine="python", clock=clock, snapshot_every=None) as ledger:
        _post(ledger)
        ledger.snapshot()
        metrics = ledger.metrics()
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"journal              {tmp_path}" in out
    assert "batches              5 (2 of accounts, 3 of transfers, 0 expiries)" in out
    assert "accounts submitted   3" in out
    assert "transfers submitted  5" in out
    # The journal's own header, then what this ledger wrote.
    journal_bytes = HEADER_SIZE + metrics.journal_bytes
    assert f"journal bytes        {journal_bytes:,}" in out
    # A batch is stamped with the timestamp of its last event; the fake clock reads 1000 s.
    assert "first batch          1970-01-01 00:16:40.000000000 UTC" in out
    assert "last batch           1970-01-01 00:16:40.000000006 UTC" in out
    assert "snapshots            1: snapshot-00000000000000000005" in out


def test_stats_of_a_missing_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", str(tmp_path / "none")]) == 1
    assert "holds no ledger" in capsys.readouterr().err
