"""Damage to a journal. What a crash can leave of a write that was never acknowledged (a batch
cut short, or with a sector of zeros, past the durable tip) is cut off; anything else refuses
to open, naming the file and the byte offset, and `fastledger verify` reports it."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastledger import JournalCorruptError, Ledger
from fastledger._records import pack_transfers
from fastledger._verify import verify, verify_main
from fastledger.journal import read_ahead
from fastledger.journal.directory import DirectoryJournal
from fastledger.journal.format import (
    HEADER_SIZE,
    KIND_TRANSFERS,
    RULES_VERSION,
    SECTOR_SIZE,
    Checksums,
    JournalHeader,
    Tip,
    encode_batches,
    queued,
)

from .conftest import FakeClock
from .helpers import account, transfer
from .journal_scenario import probe

BATCHES = 5  # one of accounts, then transfers of two each
UNKEYED = Checksums(None)


def batch_spans(journal: bytes) -> list[tuple[int, int]]:
    """(start, end) of every batch, from the count in each header."""
    spans, offset = [], HEADER_SIZE
    while offset < len(journal):
        count = struct.unpack_from("<I", journal, offset + 12)[0]
        end = offset + HEADER_SIZE + 128 * count
        spans.append((offset, end))
        offset = end
    return spans


def build(path: Path, batches: int, **options: Any) -> None:
    with Ledger.open(
        path, engine="python", clock=FakeClock(), snapshot_every=None, **options
    ) as ledger:
        ledger.create_accounts([account(1), account(2)])
        for n in range(batches - 1):
            ledger.create_transfers([transfer(10 + 2 * n, 1, 2, 1), transfer(11 + 2 * n, 2, 1, 2)])


def tips(path: Path) -> list[Tip]:
    """The tip after each batch of the journal at `path`, the empty journal's first."""
    journal = DirectoryJournal(path, read_only=True)
    try:
        start = journal.header.empty_tip(journal.checksums)
        return [start, *(batch.tip for batch in journal.inspect(start))]
    finally:
        journal.close()


def record_tip(path: Path, tip: Tip) -> None:
    """Makes the tip file say that `tip` is the last durable batch, as it said before the
    writes after it (which then were never acknowledged)."""
    journal = DirectoryJournal(path)
    try:
        journal.reset_tip(tip)
    finally:
        journal.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A ledger of BATCHES batches, and the state without its last batch."""
    root = tmp_path_factory.mktemp("journal")
    build(root / "full", BATCHES)
    shutil.copytree(root / "full", root / "short")
    everything = tips(root / "short")
    record_tip(root / "short", everything[-2])
    journal = (root / "full" / "journal").read_bytes()
    (root / "short" / "journal").write_bytes(journal[: everything[-2].end])
    with Ledger.open(root / "short", engine="python", clock=FakeClock()) as ledger:
        short = probe(ledger)
        short_state = ledger._engine.export_state()
    return {
        "root": root / "full",
        "journal": journal,
        "tip": (root / "full" / "tip").read_bytes(),
        "spans": batch_spans(journal),
        "tips": everything,
        "short": short,
        "short_state": short_state,
    }


def write_ledger(
    path: Path, template: dict[str, Any], journal: bytes, *, durable: int = BATCHES
) -> Path:
    """A ledger directory holding `journal`, whose tip file says batch `durable` was the last
    acknowledged one."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "journal").write_bytes(journal)
    (path / "tip").write_bytes(template["tip"])
    if durable != BATCHES:
        record_tip(path, template["tips"][durable])
    return path


def open_probe(path: Path) -> dict[str, Any]:
    with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
        return probe(ledger)


def flip(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 1 << (offset % 8)
    return bytes(damaged)


# -- torn writes ------------------------------------------------------------------------------


def test_an_unacknowledged_last_batch_cut_anywhere_is_cut_off_and_loses_only_itself(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, (start, end) = template["journal"], template["spans"][-1]
    assert len(template["spans"]) == BATCHES
    for cut in range(start + 1, end, 11):
        path = write_ledger(tmp_path / str(cut), template, journal[:cut], durable=BATCHES - 1)
        with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
            assert ledger._engine.export_state() == template["short_state"], f"cut at {cut}"
        assert (path / "journal").stat().st_size == start
        shutil.rmtree(path)


def test_a_sector_of_zeros_in_an_unacknowledged_batch_is_a_torn_write(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    start, _ = template["spans"][-1]
    body = pack_transfers([transfer(10_000 + n, 1, 2, 1) for n in range(8)])
    journal = bytearray(_replace_last_batch(template, body))
    sector = -(-(start + HEADER_SIZE) // SECTOR_SIZE) * SECTOR_SIZE
    assert sector + SECTOR_SIZE <= len(journal), "the batch spans a whole sector"
    journal[sector : sector + SECTOR_SIZE] = bytes(SECTOR_SIZE)
    path = write_ledger(tmp_path, template, bytes(journal), durable=BATCHES - 1)
    assert open_probe(path) == template["short"]
    assert (path / "journal").stat().st_size == start


def _replace_last_batch(template: dict[str, Any], body: bytes) -> bytes:
    """The template's journal with its last batch holding `body` instead, checksums valid."""
    start, _ = template["spans"][-1]
    timestamp = struct.unpack_from("<Q", template["journal"], start + 24)[0]
    batch = queued(BATCHES, KIND_TRANSFERS, timestamp, body, UNKEYED)
    parts, _ = encode_batches([batch], template["tips"][-2], UNKEYED)
    return template["journal"][:start] + b"".join(parts)


def test_zeros_after_the_last_acknowledged_batch_are_cut_off(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    path = write_ledger(tmp_path, template, template["journal"] + bytes(4096))
    with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
        assert ledger.sequence == BATCHES
    assert (path / "journal").read_bytes() == template["journal"]


def test_verify_notes_a_torn_tail_without_cutting_it(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    start, end = template["spans"][-1]
    for cut in (start + 1, start + HEADER_SIZE, end - 1):
        journal = template["journal"][:cut]
        path = write_ledger(tmp_path / str(cut), template, journal, durable=BATCHES - 1)
        report = verify(path)
        assert report.ok and report.batches == BATCHES - 1, report.summary()
        assert "torn" in report.notes[0] and f"after batch {BATCHES - 1}" in report.notes[0]
        assert (path / "journal").read_bytes() == journal, "verify changes nothing"


def test_record_bytes_that_look_like_a_batch_header_are_never_read_as_one(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    """Callers choose a record's bytes: a packed batch may hold a valid header of a later
    batch. Torn after it, the write is still cut off as torn, never taken for a later write."""
    after = template["tips"][-1]
    fake, _ = encode_batches(
        [
            queued(
                BATCHES + 2,
                KIND_TRANSFERS,
                10**15,
                pack_transfers([transfer(99, 1, 2, 1)]),
                UNKEYED,
            )
        ],
        Tip(BATCHES + 1, 0, 0, bytes(16)),
        UNKEYED,
    )
    body = pack_transfers([transfer(50, 1, 2, 1)]) + fake[0] + fake[1]
    parts, _ = encode_batches(
        [queued(BATCHES + 1, KIND_TRANSFERS, 10**15, body, UNKEYED)], after, UNKEYED
    )
    journal = template["journal"] + b"".join(parts)
    header_at = len(template["journal"]) + 2 * HEADER_SIZE
    for cut in (header_at - 1, header_at + HEADER_SIZE, len(journal) - 1):
        path = write_ledger(tmp_path / str(cut), template, journal[:cut])
        with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
            assert ledger.sequence == BATCHES
        assert (path / "journal").read_bytes() == template["journal"]


# -- damage to what was acknowledged -------------------------------------------------------------


def test_a_flipped_bit_in_any_batch_the_last_included_refuses_to_open_naming_its_offset(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = template["journal"], template["spans"]
    path = tmp_path / "ledger"
    for start, end in spans:
        # Every byte of the header, and enough of the records to hit every field.
        for offset in [*range(start, start + HEADER_SIZE, 5), *range(start + HEADER_SIZE, end, 7)]:
            write_ledger(path, template, flip(journal, offset))
            with pytest.raises(JournalCorruptError) as caught:
                Ledger.open(path, engine="python")
            assert caught.value.offset == start, f"bit flipped at {offset}"
            assert caught.value.path == str(path / "journal")
            assert f"{path / 'journal'} at byte offset {start}" in str(caught.value)
    assert (path / "journal").read_bytes() == flip(journal, offset), "nothing was cut"


def test_a_flipped_bit_in_an_unacknowledged_complete_batch_is_damage_not_a_torn_write(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    start, end = template["spans"][-1]
    journal = flip(template["journal"], end - 10)
    path = write_ledger(tmp_path, template, journal, durable=BATCHES - 1)
    with pytest.raises(JournalCorruptError, match="fails its checksum") as caught:
        Ledger.open(path, engine="python")
    assert caught.value.offset == start


def test_cut_damaged_tail_cuts_from_the_damage_on_and_says_what_it_dropped(
    tmp_path: Path, template: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    start, _ = template["spans"][-1]
    path = write_ledger(tmp_path, template, flip(template["journal"], start + 200))
    with caplog.at_level(logging.WARNING, logger="fastledger"):
        ledger = Ledger.open(path, engine="python", clock=FakeClock(), cut_damaged_tail=True)
    with ledger:
        assert ledger._engine.export_state() == template["short_state"]
        assert ledger.sequence == BATCHES - 1
    assert f"cutting {len(template['journal']) - start} bytes" in caplog.text
    assert f"after batch {BATCHES - 1}" in caplog.text and "damaged" in caplog.text
    assert (path / "journal").stat().st_size == start
    assert open_probe(path) == template["short"], "the cut stays cut, and the tip follows it"


def test_verify_reports_a_flipped_bit_in_any_batch(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = template["journal"], template["spans"]
    for start, end in spans:
        for offset in (start, start + 100, end - 1):
            path = write_ledger(tmp_path / str(offset), template, flip(journal, offset))
            report = verify(path)
            assert not report.ok
            assert f"byte offset {start}" in report.problems[0], report.problems


def test_a_journal_cut_at_a_batch_boundary_refuses_to_open_naming_the_batches_missing(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = template["journal"], template["spans"]
    for lost in (1, 3):
        start, _ = spans[-lost]
        path = write_ledger(tmp_path / str(lost), template, journal[:start])
        with pytest.raises(JournalCorruptError, match=f"{lost} acknowledged batches are missing"):
            Ledger.open(path, engine="python")
        assert (path / "journal").stat().st_size == start, "nothing was changed"
        report = verify(path)
        assert not report.ok and f"{lost} acknowledged batches are missing" in report.problems[0]


def test_a_journal_replaced_by_another_ledgers_is_refused(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    build(tmp_path / "other", BATCHES)
    path = write_ledger(tmp_path / "ledger", template, template["journal"])
    shutil.copy(tmp_path / "other" / "journal", path / "journal")
    with pytest.raises(JournalCorruptError, match="another ledger"):
        Ledger.open(path, engine="python")


def rechecksum(header: bytearray, checksums: Checksums = UNKEYED) -> None:
    header[112:128] = checksums(bytes(header[:112]))


def test_a_rewritten_batch_with_fresh_checksums_breaks_the_chain(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal, spans = bytearray(template["journal"]), template["spans"]
    start, end = spans[2]
    journal[start + HEADER_SIZE + 48] ^= 1  # the amount of the first transfer
    header = journal[start : start + HEADER_SIZE]
    header[40:56] = UNKEYED(bytes(journal[start + HEADER_SIZE : end]))
    rechecksum(header)
    journal[start : start + HEADER_SIZE] = header
    path = write_ledger(tmp_path, template, bytes(journal))
    with pytest.raises(JournalCorruptError, match="broken hash chain") as caught:
        Ledger.open(path, engine="python")
    assert caught.value.offset == spans[3][0]


def test_a_keyed_journal_opens_only_with_its_key_and_refuses_a_rewrite_without_it(
    tmp_path: Path,
) -> None:
    key = b"k" * 32
    build(tmp_path / "keyed", BATCHES, key=key)
    with Ledger.open(tmp_path / "keyed", engine="python", key=key) as ledger:
        assert ledger.sequence == BATCHES
    with pytest.raises(JournalCorruptError, match="open it with its key"):
        Ledger.open(tmp_path / "keyed", engine="python")
    with pytest.raises(JournalCorruptError, match="is this the journal's key"):
        Ledger.open(tmp_path / "keyed", engine="python", key=b"x" * 32)
    # A party without the key rewrites the last batch and recomputes its checksums unkeyed.
    journal = bytearray((tmp_path / "keyed" / "journal").read_bytes())
    start, end = batch_spans(bytes(journal))[-1]
    journal[start + HEADER_SIZE + 48] ^= 1
    header = journal[start : start + HEADER_SIZE]
    header[40:56] = UNKEYED(bytes(journal[start + HEADER_SIZE : end]))
    rechecksum(header)
    journal[start : start + HEADER_SIZE] = header
    (tmp_path / "keyed" / "journal").write_bytes(bytes(journal))
    with pytest.raises(JournalCorruptError, match="fails its checksum"):
        Ledger.open(tmp_path / "keyed", engine="python", key=key)


def test_a_journal_written_under_other_rules_refuses_to_open_naming_both_versions(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal = bytearray(template["journal"])
    header = journal[:HEADER_SIZE]
    header[10:12] = struct.pack("<H", RULES_VERSION + 1)
    rechecksum(header)
    journal[:HEADER_SIZE] = header
    path = write_ledger(tmp_path, template, bytes(journal))
    with pytest.raises(JournalCorruptError) as caught:
        Ledger.open(path, engine="python")
    message = str(caught.value)
    assert f"rules version {RULES_VERSION + 1}" in message
    assert f"rules version {RULES_VERSION}:" in message
    assert not verify(path).ok


def test_a_journal_of_another_format_version_is_refused(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    journal = bytearray(template["journal"])
    header = journal[:HEADER_SIZE]
    header[8] = 3
    rechecksum(header)
    journal[:HEADER_SIZE] = header
    path = write_ledger(tmp_path, template, bytes(journal))
    with pytest.raises(JournalCorruptError, match="format version 3") as caught:
        Ledger.open(path, engine="python")
    assert caught.value.offset == 0


def test_a_journal_of_the_first_format_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "journal").write_bytes(b"FLBATCH\0\1\0" + bytes(118))
    with pytest.raises(JournalCorruptError, match=r"format 1, written by fastledger 0\.1"):
        Ledger.open(tmp_path, engine="python")


def test_a_foreign_file_named_journal_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    foreign = b"\x89PNG not a journal" * 100
    (tmp_path / "journal").write_bytes(foreign)
    with pytest.raises(JournalCorruptError, match="not a fastledger journal"):
        Ledger.open(tmp_path, engine="python")
    assert (tmp_path / "journal").read_bytes() == foreign
    assert not (tmp_path / "tip").exists()


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
    path = write_ledger(tmp_path, template, bytes(journal))
    with pytest.raises(JournalCorruptError, match=reason) as caught:
        Ledger.open(path, engine="python")
    assert caught.value.offset == start


# -- the tip file ------------------------------------------------------------------------------


def test_a_tip_file_with_one_slot_torn_uses_the_other(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    path = write_ledger(tmp_path, template, template["journal"])
    data = bytearray((path / "tip").read_bytes())
    newer = max((64, 128), key=lambda at: struct.unpack_from("<Q", data, at)[0])
    data[newer + 3] ^= 0xFF  # a writer killed halfway through the newer slot
    (path / "tip").write_bytes(bytes(data))
    with Ledger.open(path, engine="python", clock=FakeClock()) as ledger:
        assert ledger.sequence == BATCHES


def test_a_tip_file_with_both_slots_damaged_refuses_to_open(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    path = write_ledger(tmp_path, template, template["journal"])
    data = bytearray((path / "tip").read_bytes())
    data[70] ^= 1
    data[134] ^= 1
    (path / "tip").write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match="both slots"):
        Ledger.open(path, engine="python")


def test_a_missing_tip_file_is_made_again_with_a_warning(
    tmp_path: Path, template: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_ledger(tmp_path, template, template["journal"])
    (path / "tip").unlink()
    with caplog.at_level(logging.WARNING, logger="fastledger"):
        assert open_probe(path) == open_probe(template["root"])
    assert "no tip file" in caplog.text
    assert tips(path)[-1] == template["tips"][-1]


# -- reading and writing -----------------------------------------------------------------------


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


def test_a_write_that_the_kernel_takes_in_pieces_still_writes_every_byte(
    tmp_path: Path, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.pwritev may write less than asked, as os.write may; the writer goes on from there."""
    real, writes = os.pwritev, []

    def short_pwritev(fd: int, buffers: list[Any], offset: int) -> int:
        writes.append(fd)
        return real(fd, [b"".join(bytes(b) for b in buffers)[:100]], offset)

    monkeypatch.setattr(os, "pwritev", short_pwritev)
    build(tmp_path, BATCHES)
    journal = (tmp_path / "journal").read_bytes()
    spans = batch_spans(journal)
    assert spans == template["spans"] and verify(tmp_path).ok
    for start, end in spans:
        assert journal[start + HEADER_SIZE : end] == template["journal"][start + HEADER_SIZE : end]
    assert len(writes) >= (len(journal) - HEADER_SIZE) / 100, "the writes were not cut short"


def test_verify_main_exits_zero_on_a_sound_directory_and_one_on_damage(
    tmp_path: Path, template: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sound = write_ledger(tmp_path / "sound", template, template["journal"])
    assert verify_main([str(sound), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"{BATCHES} batches" in out and "ledger 1" in out and "balanced" in out
    damaged = write_ledger(tmp_path / "damaged", template, flip(template["journal"], 300))
    assert verify_main([str(damaged)]) == 1
    assert "PROBLEMS FOUND" in capsys.readouterr().out
    assert verify_main([str(tmp_path / "missing")]) == 1


def test_the_journal_header_names_the_rules_and_a_random_ledger_id(tmp_path: Path) -> None:
    build(tmp_path / "a", 1)
    build(tmp_path / "b", 1)
    headers = [
        JournalHeader.decode((tmp_path / n / "journal").read_bytes(), UNKEYED, n) for n in "ab"
    ]
    assert all(h.rules_version == RULES_VERSION and not h.keyed for h in headers)
    assert headers[0].ledger_id != headers[1].ledger_id


def test_verify_reads_the_key_of_a_keyed_journal_from_a_file(tmp_path: Path) -> None:
    key = b"s" * 32
    build(tmp_path / "keyed", BATCHES, key=key)
    (tmp_path / "key").write_bytes(key)
    assert (
        verify_main([str(tmp_path / "keyed"), "--quiet", "--key-file", str(tmp_path / "key")]) == 0
    )
    assert verify_main([str(tmp_path / "keyed"), "--quiet"]) == 1
