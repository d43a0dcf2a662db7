"""The `fastledger` command line: the demo tells its story, the benchmark reports real figures,
and every command explains itself with --help."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fastledger import Account, Ledger, QueryFilter, Transfer, TransferFlags
from fastledger._cli import _SHAPES, _BenchConfig, _transfer_batches, main
from fastledger._records import pack_transfers


def test_demo_shows_the_overdraft_rejected_with_exceeds_credits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--engine", "python", "--memory"]) == 0
    out = capsys.readouterr().out
    assert "EXCEEDS_CREDITS" in out
    assert "python engine, in memory" in out
    # The scenario ends balanced: every step but the overdraft moved money on both sides.
    assert "balanced" in out and "NOT balanced" not in out


def test_demo_keeps_its_ledger_and_a_second_run_shows_the_same_balances(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--engine", "python", "--path", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert f"kept in {tmp_path}" in first
    assert main(["demo", "--path", str(tmp_path)]) == 0
    second = capsys.readouterr().out
    assert "EXISTS" in second and "ID_ALREADY_FAILED" in second
    balances = [line for line in first.splitlines() if line.endswith(" 50.00")]
    assert len(balances) == 2, "the balance rows of alice and bob"
    assert balances and all(line in second.splitlines() for line in balances)


def test_demo_shares_a_directory_another_ledger_holds_open(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, engine="python") as other:
        assert other.sequence == 0
        assert main(["demo", "--path", str(tmp_path)]) == 0
        assert other.refresh() > 0, "the open ledger follows what the demo appended"
        assert other.query_accounts(QueryFilter(limit=10)), "the demo's accounts are seen"


def test_demo_refuses_a_directory_whose_journal_is_foreign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "journal").write_bytes(b"not a journal" * 20)
    assert main(["demo", "--path", str(tmp_path)]) == 2
    assert "not a fastledger journal" in capsys.readouterr().err
    assert (tmp_path / "journal").read_bytes() == b"not a journal" * 20, "left as it was"


def test_bench_json_reports_positive_figures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--accounts", "100", "--transfers", "2000", "--engine", "python", "--json"]
    argv.append("--memory")
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["accounts"] == 100
    assert report["transfers"] == 2000
    assert report["storage"] == "memory"
    figures = report["results"]["python"]
    assert figures.pop("engine") == "python"
    assert figures, "the report has figures"
    # A small load may add no memory that the process has not already.
    assert figures.pop("rss_bytes_per_transfer") >= 0
    assert figures.pop("reserve_ns") == 0, "no memory reserved unless asked"
    assert all(isinstance(v, int) and v > 0 for v in figures.values()), figures
    for prefix in ("batch_latency_ns", "transfer_latency_ns", "loaded_transfer_latency_ns"):
        spread = [figures[f"{prefix}_{rank}"] for rank in ("p50", "p99", "p999", "max")]
        assert spread == sorted(spread), prefix
    assert report["build_between_calls"] is False, "ready batches are posted back to back"
    assert "back to back" in captured.err, "progress goes to stderr"


def test_bench_is_durable_by_default_and_keeps_a_chosen_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--accounts", "10", "--transfers", "300", "--batch-size", "100"]
    argv += ["--engine", "python", "--json", "--path", str(tmp_path / "ledger")]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["storage"] == "durable"
    with Ledger.open(tmp_path / "ledger", engine="python") as ledger:
        assert len(ledger.lookup_accounts(list(range(1, 11)))) == 10
    assert main(["verify", "--quiet", str(tmp_path / "ledger")]) == 0


def test_bench_packed_input_posts_the_same_load(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--accounts", "10", "--transfers", "300", "--batch-size", "100"]
    assert main([*argv, "--engine", "python", "--input", "packed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == "packed"
    assert report["results"]["python"]["load_accepted_transfers_per_s"] > 0


@pytest.mark.parametrize("numpy", ["installed", "missing"])
def test_bench_packed_batches_hold_the_transfers_of_the_object_batches(
    numpy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if numpy == "missing":
        monkeypatch.setitem(sys.modules, "numpy", None)
    config = dict(accounts=7, transfers=250, batch_size=100, threads=1, seed=3, storage="memory")
    for shape in _SHAPES:
        objects = list(_transfer_batches(_BenchConfig(input="objects", shape=shape, **config)))
        packed = list(_transfer_batches(_BenchConfig(input="packed", shape=shape, **config)))
        assert [len(batch) for batch in objects] == [100, 100, 50]
        assert packed == [pack_transfers(batch) for batch in objects], shape


def test_bench_shapes_make_the_transfers_they_are_named_for() -> None:
    config = dict(accounts=50, transfers=1000, batch_size=100, threads=1, seed=5)

    def load(shape: str) -> list[Transfer]:
        batches = _transfer_batches(
            _BenchConfig(input="objects", storage="memory", shape=shape, **config)
        )
        return [t for batch in batches for t in batch if isinstance(t, Transfer)]

    assert [t.id for t in load("sequential")] == list(range(1, 1001))
    random_ids = [t.id for t in load("random-ids")]
    assert len(set(random_ids)) == 1000 and max(random_ids) > 2**100
    hot = sum(t.debit_account_id <= 10 for t in load("hot-accounts"))
    assert 850 <= hot <= 950, "nine in ten debit a hot account"
    two_phase = load("two-phase")
    pending, posts = two_phase[:50], two_phase[50:100]
    assert all(t.flags == TransferFlags.PENDING for t in pending)
    assert [p.pending_id for p in posts] == [t.id for t in pending]
    assert all(p.amount == t.amount for p, t in zip(posts, pending, strict=True))


@pytest.mark.parametrize("shape", _SHAPES)
def test_bench_posts_every_shape_on_the_rust_engine_with_memory_reserved(
    shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fastledger._native")
    argv = ["bench", "--accounts", "20", "--transfers", "3000", "--batch-size", "500"]
    argv += ["--engine", "rust", "--memory", "--input", "packed", "--reserve", "--json"]
    assert main([*argv, "--shape", shape]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["shape"], report["reserve"]) == (shape, True)
    assert report["results"]["rust"]["load_accepted_transfers_per_s"] > 0
    assert report["results"]["rust"]["reserve_ns"] > 0


def test_bench_can_build_each_batch_between_calls(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--accounts", "10", "--transfers", "300", "--batch-size", "100"]
    argv += ["--engine", "python", "--memory", "--build-between-calls", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["build_between_calls"] is True
    assert "back to back" not in captured.err


def test_bench_human_report_names_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--accounts", "10", "--transfers", "500", "--threads", "2"]
    assert main([*argv, "--batch-size", "100", "--engine", "python"]) == 0
    out = capsys.readouterr().out
    for label in ("load accepted", "batch latency", "single-transfer latency", "under load"):
        assert label in out
    assert "p99.9" in out and "bytes of RSS per transfer" in out


@pytest.mark.parametrize("command", [[], ["demo"], ["bench"]])
def test_help_of_every_command_exits_0(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_help_of_verify_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "fastledger verify" in out and "examples:" in out


def test_verify_checks_a_ledger_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.create_accounts([Account(id=1, ledger=1, code=1)])
    assert main(["verify", "--quiet", str(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_bench_refuses_a_batch_over_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--batch-size", "8190"])
    assert exit_.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


def test_bench_with_processes_reports_the_shared_load_and_the_follower(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--processes", "2", "--threads", "2", "--accounts", "10"]
    argv += ["--transfers", "40", "--engine", "python", "--path", str(tmp_path / "shared")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 processes posting single transfers from 2 threads" in out
    assert "load accepted" in out and "follower lag" in out
    with Ledger.open(tmp_path / "shared", engine="python", read_only=True) as ledger:
        assert len(ledger.query_transfers(QueryFilter(limit=8189))) >= 40
