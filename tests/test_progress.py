"""Progress of long work on a journal: the callback of `Ledger.open`, `verify` and `copy`, and
the progress line the command line shows on a terminal, and only there."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fastledger
from fastledger import AsyncLedger, Ledger, Progress
from fastledger._cli import main
from fastledger._copy import copy
from fastledger._verify import verify, verify_main

from .helpers import account, transfer

# Enough batches that a report every 16 batches calls the callback between the first and last.
BATCHES = 80


@pytest.fixture(autouse=True)
def report_at_every_chance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a wait between reports, a quick test sees as many as a long replay would."""
    monkeypatch.setattr("fastledger._progress.CALLBACK_INTERVAL_S", 0.0)


def fill(path: str | Path, engine: str, batches: int = BATCHES) -> None:
    """A journal of one accounts batch and `batches - 1` transfers batches."""
    with Ledger.open(path, engine=engine, snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        for i in range(1, batches):
            ledger.create_transfers([transfer(i, 1, 2, 1)])


def check_reports(reports: list[Progress], batches: int, stage: str = "replay") -> None:
    assert len(reports) > 3, "reports between the first and the last"
    assert all(isinstance(r, Progress) for r in reports)
    counts = [r.batches_done for r in reports]
    assert counts == sorted(counts), "counts only ever grow"
    assert [r.bytes_done for r in reports] == sorted(r.bytes_done for r in reports)
    assert {r.stage for r in reports[:-1]} <= {stage, "snapshot"}
    last = reports[-1]
    assert last.stage == "done"
    assert last.batches_done == last.batches_total == batches
    assert last.bytes_done == last.bytes_total
    assert all(r.batches_total == batches for r in reports)


def test_open_reports_progress_ending_at_the_journal_tip(engine: str, tmp_path: Path) -> None:
    fill(tmp_path, engine)
    reports: list[Progress] = []
    with Ledger.open(tmp_path, engine=engine, progress=reports.append) as ledger:
        assert ledger.lookup_accounts([1])[0].debits_posted == BATCHES - 1
    check_reports(reports, BATCHES)
    assert reports[0].batches_done == 1
    assert reports[-1].bytes_total == os.path.getsize(tmp_path / "journal")


def test_open_read_only_reports_progress_too(engine: str, tmp_path: Path) -> None:
    fill(tmp_path, engine)
    reports: list[Progress] = []
    Ledger.open(tmp_path, engine=engine, read_only=True, progress=reports.append).close()
    check_reports(reports, BATCHES)


def test_open_reports_the_snapshot_before_the_batches_after_it(tmp_path: Path) -> None:
    fill(tmp_path, "python")
    with Ledger.open(tmp_path, engine="python") as ledger:
        assert ledger.snapshot()
        ledger.create_transfers([transfer(BATCHES, 1, 2, 1)])
    reports: list[Progress] = []
    Ledger.open(tmp_path, engine="python", progress=reports.append).close()
    assert reports[0] == Progress("snapshot", 0, BATCHES + 1, 0, reports[0].bytes_total)
    check_reports(reports, BATCHES + 1)


def test_an_empty_journal_reports_only_that_it_is_done(engine: str, tmp_path: Path) -> None:
    reports: list[Progress] = []
    Ledger.open(tmp_path, engine=engine, progress=reports.append).close()
    assert [(r.stage, r.batches_done, r.batches_total) for r in reports] == [("done", 0, 0)]


@pytest.mark.parametrize("stage", ["replay", "done"])
def test_a_callback_that_raises_aborts_open_and_leaves_the_directory_openable(
    engine: str, tmp_path: Path, stage: str
) -> None:
    fill(tmp_path, engine)

    def stop(progress: Progress) -> None:
        if progress.stage == stage and progress.batches_done > 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Ledger.open(tmp_path, engine=engine, progress=stop)
    deadline = time.monotonic() + 5
    while any(t.name == "fastledger-read-ahead" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the thread reading ahead ends"
        time.sleep(0.01)
    # Openable for writing at once: the aborted open released the append lock.
    with Ledger.open(tmp_path, engine=engine) as ledger:
        ledger.create_transfers([transfer(BATCHES, 1, 2, 1)])
        assert ledger.lookup_accounts([1])[0].debits_posted == BATCHES


def test_open_refuses_a_progress_that_is_not_callable(tmp_path: Path) -> None:
    with pytest.raises(fastledger.InvalidArgumentError):
        Ledger.open(tmp_path, progress=sys.stderr)  # type: ignore[arg-type]


def test_async_open_passes_the_callback_through(tmp_path: Path) -> None:
    fill(tmp_path, "python")
    reports: list[Progress] = []

    async def main() -> None:
        ledger = await AsyncLedger.open(tmp_path, engine="python", progress=reports.append)
        await ledger.close()

    asyncio.run(main())
    check_reports(reports, BATCHES)


def test_open_of_a_postgresql_journal_reports_progress(engine: str, postgres_url: str) -> None:
    fill(postgres_url, engine)
    reports: list[Progress] = []
    Ledger.open(postgres_url, engine=engine, progress=reports.append).close()
    check_reports(reports, BATCHES)


def test_verify_and_copy_report_progress(tmp_path: Path) -> None:
    fill(tmp_path / "a", "python")
    reports: list[Progress] = []
    assert verify(tmp_path / "a", progress=reports.append).ok
    check_reports(reports, BATCHES, "verify")
    reports.clear()
    assert copy(str(tmp_path / "a"), str(tmp_path / "b"), progress=reports.append).batches == 80
    check_reports(reports, BATCHES, "copy")


def test_verify_writes_a_progress_line_to_a_stream_it_is_given(tmp_path: Path) -> None:
    fill(tmp_path, "python")
    stream = io.StringIO()
    assert verify(tmp_path, progress=stream).ok
    assert f"verify: done: batch {BATCHES}/{BATCHES}" in stream.getvalue()


def test_the_command_line_shows_no_progress_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(tmp_path / "a", "python")
    assert verify_main([str(tmp_path / "a")]) == 0
    assert main(["copy", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "OK" in captured.out and "copied 80 batches" in captured.out


def run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Runs the command line with stderr on a pseudo-terminal; returns its status and what
    the terminal received."""
    leader, follower = pty.openpty()
    package_root = str(Path(fastledger.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "-m", "fastledger", *argv],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    received = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # Linux reports the closed terminal as an error.
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
    return process.wait(timeout=30), received.decode()


@pytest.mark.skipif(sys.platform == "win32", reason="no pseudo-terminals")
def test_the_command_line_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    fill(tmp_path / "a", "python")
    status, shown = run_on_a_terminal(["verify", str(tmp_path / "a")])
    assert status == 0
    assert f"verify: done: batch {BATCHES}/{BATCHES}" in shown
    status, shown = run_on_a_terminal(["copy", str(tmp_path / "a"), str(tmp_path / "b")])
    assert status == 0
    assert f"copy: done: batch {BATCHES}/{BATCHES}" in shown
