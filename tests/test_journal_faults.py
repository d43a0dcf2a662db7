"""Damage to a journal: a torn last write is cut off, anything else refuses to open, naming
the file and the byte offset, and `fastledger verify` reports both."""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastledger import JournalCorruptError, Ledger
from fastledger._journal import (
    HEADER_SIZE,
    KIND_ACCOUNTS,
    KIND_TRANSFERS,
    Tip,
    checksum,
    read_ahead,
    write_batches,
)
from fastledger._records import pack_accounts, pack_transfers
from fastledger._verify import verify, verify_main

from .conftest import FakeClock
from .helpers import account, transfer
from .journal_scenario import probe

BATCHES = 5  # one of accounts, then transfers of two each


def batch_spans(journal: bytes) -> list[tuple[int, int]]:
    """(start, end) of every batch, from the count in each header."""
    spans, offset = [], 0
    while offset < len(journal):
        count = struct.unpack_from("<I", journal, offset + 12)[0]
        end = offset + HEADER_SIZE + 128 * count
        spans.append((offset, end))
        offset = end
    return spans


def build(path: Path, batches: int) -> None:
    with Ledger.open(path, engine="python", clock=FakeClock(), snapshot_every=None) as ledger:
        ledger.create_accounts([account(1), account(2)])
        for n in range(batches - 1):
            ledger.create_transfers([transfer(10 + 2 * n, 1, 2, 1), transfer(11 + 2 * n, 2, 1, 2)])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A journal of BATCHES batches and the state with and without its last batch."""
    root = tmp_path_factory.mktemp("journal")
    build(root / "short", BATCHES - 1)
    build(root / "full", BATCHES)
    with Ledger.open(root / "short", engine="python", clock=FakeClock()) as ledger:
        short = probe(ledger)
        short_state = ledger._engine.export_state()
    journal = (root / "full" / "journal").read_bytes()
    return {
        "journal": journal,
        "spans": batch_spans(journal),
        "short": short,
        "short_state": short_state,
    }


def write_journal(path: Path, data: bytes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "journal").write_bytes(data)
    return path


def open_probe(path: Path) -> dict[str, Any]:
    with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
        return probe(ledger)


def flip(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 1 << (offset % 8)
    return bytes(damaged)


def test_a_journal_cut_anywhere_in_its_last_batch_loses_only_that_batch(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, (start, end) = template["journal"], template["spans"][-1]
    assert batch_spans(journal)[-1] == (start, end) and len(template["spans"]) == BATCHES
    for cut in range(start, end):
        path = write_journal(tmp_path / str(cut), journal[:cut])
        with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
            assert ledger._engine.export_state() == template["short_state"], f"cut at {cut}"
            if cut == end - 1:
                assert probe(ledger) == template["short"]
        assert (path / "journal").stat().st_size == start
        shutil.rmtree(path)


def test_verify_reports_a_torn_tail_that_opening_would_cut(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    start, end = template["spans"][-1]
    for cut in (start + 1, start + HEADER_SIZE, end - 1):
        report = verify(write_journal(tmp_path / str(cut), template["journal"][:cut]))
        assert not report.ok and report.batches == BATCHES - 1
        assert f"byte offset {start}" in report.problems[0] and "torn" in report.problems[0]


def test_a_flipped_bit_in_any_earlier_batch_refuses_to_open_naming_its_offset(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = template["journal"], template["spans"]
    path = tmp_path / "ledger"
    for start, end in spans[:-1]:
        # Every byte of the header, and enough of the records to hit every field.
        for offset in [*range(start, start + HEADER_SIZE), *range(start + HEADER_SIZE, end, 3)]:
            write_journal(path, flip(journal, offset))
            with pytest.raises(JournalCorruptError) as caught:
                Ledger.open(path, engine="python")
            assert caught.value.offset == start, f"bit flipped at {offset}"
            assert caught.value.path == str(path / "journal")
            assert f"{path / 'journal'} at byte offset {start}" in str(caught.value)


def test_verify_finds_a_flipped_bit_in_an_earlier_batch(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = template["journal"], template["spans"]
    for start, end in spans[:-1]:
        for offset in (start, start + 100, end - 1):
            report = verify(write_journal(tmp_path / str(offset), flip(journal, offset)))
            assert not report.ok
            assert f"byte offset {start}" in report.problems[0], report.problems


def test_a_flipped_bit_in_the_last_batch_is_cut_off_as_torn(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, (start, end) = template["journal"], template["spans"][-1]
    for offset in range(start, end, 7):
        path = write_journal(tmp_path / str(offset), flip(journal, offset))
        assert open_probe(path) == template["short"], f"bit flipped at {offset}"


def test_zeros_after_the_last_batch_are_cut_off(tmp_path: Path, template: dict[str, Any]) -> None:
    path = write_journal(tmp_path, template["journal"][: template["spans"][-1][0]] + bytes(4096))
    assert open_probe(path) == template["short"]


def rechecksum(header: bytearray) -> None:
    header[112:128] = checksum(bytes(header[:112]))


def test_a_rewritten_batch_with_fresh_checksums_breaks_the_chain(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = bytearray(template["journal"]), template["spans"]
    start, end = spans[2]
    journal[start + HEADER_SIZE + 48] ^= 1  # the amount of the first transfer
    header = journal[start : start + HEADER_SIZE]
    header[40:56] = checksum(bytes(journal[start + HEADER_SIZE : end]))
    rechecksum(header)
    journal[start : start + HEADER_SIZE] = header
    write_journal(tmp_path, bytes(journal))
    with pytest.raises(JournalCorruptError, match="broken hash chain") as caught:
        Ledger.open(tmp_path, engine="python")
    assert caught.value.offset == spans[3][0]


def test_a_last_batch_that_does_not_link_to_the_one_before_is_refused(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, (start, _) = bytearray(template["journal"]), template["spans"][-1]
    header = journal[start : start + HEADER_SIZE]
    header[56] ^= 1  # the previous batch's checksum
    rechecksum(header)
    journal[start : start + HEADER_SIZE] = header
    write_journal(tmp_path, bytes(journal))
    with pytest.raises(JournalCorruptError, match="broken hash chain"):
        Ledger.open(tmp_path, engine="python")


def test_a_journal_of_another_format_version_is_refused(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal = bytearray(template["journal"])
    header = journal[:HEADER_SIZE]
    header[8] = 2
    rechecksum(header)
    journal[:HEADER_SIZE] = header
    write_journal(tmp_path, bytes(journal))
    with pytest.raises(JournalCorruptError, match="format version 2") as caught:
        Ledger.open(tmp_path, engine="python")
    assert caught.value.offset == 0


@pytest.mark.parametrize(
    ("kind", "count", "reason"),
    [(9, 1, "unknown batch kind 9"), (3, 1, "an expiry of 1 records"), (2, 0, "a batch of 0")],
)
def test_a_header_whose_kind_and_count_disagree_is_refused(
    tmp_path: Path, template: dict[str, Any], kind: int, count: int, reason: str
) -> None:
    journal, (start, _) = bytearray(template["journal"]), template["spans"][1]
    header = journal[start : start + HEADER_SIZE]
    header[10:16] = struct.pack("<HI", kind, count)
    rechecksum(header)
    journal[start : start + HEADER_SIZE] = header
    write_journal(tmp_path, bytes(journal))
    with pytest.raises(JournalCorruptError, match=reason) as caught:
        Ledger.open(tmp_path, engine="python")
    assert caught.value.offset == start


def test_reading_ahead_yields_every_batch_in_order_then_raises_where_reading_stopped() -> None:
    def batches() -> Iterator[int]:
        yield from range(20)
        raise JournalCorruptError("damage", path="journal", offset=2560)

    replayed = []
    with pytest.raises(JournalCorruptError, match="offset 2560"):
        for batch in read_ahead(batches(), depth=3):
            replayed.append(batch)
    assert replayed == list(range(20))


def test_reading_ahead_ends_its_thread_when_the_replay_stops_early() -> None:
    ahead = read_ahead(itertools.count(), depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "fastledger-read-ahead"]


def write_groups(path: Path, groups: list[int]) -> list[tuple[int, int]]:
    """A journal whose batches went out in writes of `groups` batches each (the first batch
    makes the accounts); returns the spans of its batches. The writes are made as the
    journal's writer makes them, without its thread, which groups whatever is queued when it
    gets to it."""
    path.mkdir()
    fd = os.open(path / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    accounts = (1, KIND_ACCOUNTS, 1000, pack_accounts([account(1), account(2)]))
    tip = write_batches(fd, [accounts], Tip(), sync=False)[-1]
    next_id = 10
    for size in groups:
        group = []
        for _ in range(size):
            body = pack_transfers([transfer(next_id, 1, 2, 1)])
            group.append((tip.sequence + len(group) + 1, KIND_TRANSFERS, 1000 + next_id, body))
            next_id += 1
        tip = write_batches(fd, group, tip, sync=False)[-1]
    os.close(fd)
    return batch_spans((path / "journal").read_bytes())


def test_damage_inside_the_last_group_write_cuts_that_write_from_the_damage_on(
    tmp_path: Path,
) -> None:
    spans = write_groups(tmp_path / "template", [1, 3])
    journal = (tmp_path / "template" / "journal").read_bytes()
    damaged_start = spans[3][0]  # the second batch of the last write
    path = write_journal(tmp_path / "ledger", flip(journal, damaged_start + 200))
    with Ledger.open(path, engine="python") as ledger:
        assert [t.id for t in ledger.lookup_transfers(list(range(10, 14)))] == [10, 11]
    assert (path / "journal").stat().st_size == damaged_start


def test_damage_in_a_write_followed_by_another_write_is_refused(tmp_path: Path) -> None:
    spans = write_groups(tmp_path / "template", [3, 1])
    journal = (tmp_path / "template" / "journal").read_bytes()
    path = write_journal(tmp_path / "ledger", flip(journal, spans[3][0] + 200))
    with pytest.raises(JournalCorruptError, match="later write") as caught:
        Ledger.open(path, engine="python")
    assert caught.value.offset == spans[3][0]


def test_a_write_that_the_kernel_takes_in_pieces_still_writes_every_byte(
    tmp_path: Path, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.writev may write less than asked, as os.write may; the writer goes on from there."""
    real, writes = os.writev, []

    def short_writev(fd: int, buffers: list[Any]) -> int:
        writes.append(fd)
        return real(fd, [b"".join(bytes(b) for b in buffers)[:100]])

    monkeypatch.setattr(os, "writev", short_writev)
    build(tmp_path, BATCHES)
    journal = (tmp_path / "journal").read_bytes()
    assert journal == template["journal"]
    assert len(writes) >= len(journal) / 100, "the writes were not cut short"


def test_a_journal_shorter_than_its_snapshot_is_refused(tmp_path: Path) -> None:
    build(tmp_path, BATCHES)
    with Ledger.open(tmp_path, engine="python") as ledger:
        ledger.snapshot()
    journal = (tmp_path / "journal").read_bytes()
    start, _ = batch_spans(journal)[-2]
    (tmp_path / "journal").write_bytes(journal[:start])
    with pytest.raises(JournalCorruptError, match="acknowledged batches are missing"):
        Ledger.open(tmp_path, engine="python")


def test_verify_main_exits_zero_on_a_sound_directory_and_one_on_damage(
    tmp_path: Path, template: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sound = write_journal(tmp_path / "sound", template["journal"])
    assert verify_main([str(sound), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"{BATCHES} batches" in out and "ledger 1" in out and "balanced" in out
    damaged = write_journal(tmp_path / "damaged", flip(template["journal"], 10))
    assert verify_main([str(damaged)]) == 1
    assert "PROBLEMS FOUND" in capsys.readouterr().out
    assert verify_main([str(tmp_path / "missing")]) == 1
