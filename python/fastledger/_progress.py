"""How far long work is: opening or verifying a large journal, copying one, a benchmark's load.

A program passes a callback that receives a `Progress` now and then; the command line shows a
`ProgressLine` on stderr, and only when stderr is a terminal, so that scripts see clean output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .journal import Journal
from .journal.directory import DirectoryJournal

__all__ = ["Progress", "ProgressCallback", "ProgressLine", "Reporter", "journal_extent"]

# A callback is called at most this often, besides its first and last calls, so that a quick
# replay calls it a few times and a long one often enough to show life.
CALLBACK_INTERVAL_S = 0.2
# The clock is read only every this many batches, so that a replay of small batches pays a
# counter's increment per batch and not a system call.
_BATCHES_BETWEEN_CLOCKS = 16
# A progress line on a terminal changes at most this often.
LINE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Progress:
    """How far long work on a journal is.

    `stage` names the step: `"snapshot"` once a snapshot is loaded, `"replay"` while batches
    are read, `"done"` at the end (verify and copy report `"verify"` and `"copy"` instead of
    `"replay"`). `batches_done` is the sequence of the last batch read and `bytes_done` where it
    ends in the journal, header included; the totals are those of the journal's durable tip
    when the work began, None when the journal cannot say. A journal that others append to
    meanwhile can end past its total: the last call then gives the counts reached as totals."""

    stage: str
    batches_done: int
    batches_total: int | None
    bytes_done: int
    bytes_total: int | None


ProgressCallback = Callable[[Progress], object]


def journal_extent(journal: Journal) -> tuple[int | None, int | None]:
    """The sequence and end offset of the journal's last durable batch, without reading the
    batches; None where the journal cannot say cheaply."""
    if isinstance(journal, DirectoryJournal):
        tip = journal.durable_tip()
        return tip.sequence, tip.end
    extent = getattr(journal, "durable_extent", None)
    if extent is None:
        return None, None
    sequence, end = extent()
    return int(sequence), int(end)


class Reporter:
    """Calls a progress callback as batches are read: on the first batch, then at most every
    `CALLBACK_INTERVAL_S`, and once at the end."""

    __slots__ = (
        "_batches_total",
        "_bytes_total",
        "_callback",
        "_count",
        "_next_check",
        "_shown_s",
        "stage",
    )

    def __init__(
        self,
        callback: ProgressCallback,
        stage: str,
        batches_total: int | None,
        bytes_total: int | None,
    ) -> None:
        self._callback = callback
        self.stage = stage
        self._batches_total = batches_total
        self._bytes_total = bytes_total
        self._count = 0
        self._next_check = 1
        self._shown_s = 0.0

    def report(self, stage: str, sequence: int, end: int) -> None:
        """Calls the callback now."""
        self._shown_s = time.monotonic()
        self._callback(Progress(stage, sequence, self._batches_total, end, self._bytes_total))

    def batch(self, sequence: int, end: int) -> None:
        """Notes that the batch `sequence`, which ends at `end`, was read."""
        self._count += 1
        if self._count < self._next_check:
            return
        self._next_check = self._count + _BATCHES_BETWEEN_CLOCKS
        if self._count > 1 and time.monotonic() - self._shown_s < CALLBACK_INTERVAL_S:
            return
        self.report(self.stage, sequence, end)

    def done(self, sequence: int, end: int) -> None:
        """The last call, whose totals are the counts reached."""
        self._batches_total = max(self._batches_total or 0, sequence)
        self._bytes_total = max(self._bytes_total or 0, end)
        self.report("done", sequence, end)


class ProgressLine:
    """Tells on a stream how far a run is, at most once a second, so a long run shows life:
    a benchmark's load through `start` and `advance`, work on a journal as a progress
    callback."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self._label = label
        self._stream = stream
        self.total = 0
        self._done = 0
        self._start_s = self._shown_s = time.monotonic()

    def say(self, message: str) -> None:
        print(f"{self._label}: {message}", file=self._stream, flush=True)

    def start(self, total: int) -> None:
        self.total, self._done = total, 0
        self._start_s = self._shown_s = time.monotonic()

    def advance(self, count: int) -> None:
        self._done += count
        now_s = time.monotonic()
        if now_s - self._shown_s < LINE_INTERVAL_S and self._done < self.total:
            return
        self._shown_s = now_s
        rate = self._done / max(now_s - self._start_s, 1e-9)
        self.say(f"{self._done:,}/{self.total:,} transfers ({rate:,.0f}/s)")

    def __call__(self, progress: Progress) -> None:
        now_s = time.monotonic()
        if progress.stage != "done" and now_s - self._shown_s < LINE_INTERVAL_S:
            return
        self._shown_s = now_s
        where = f"batch {progress.batches_done:,}"
        if progress.batches_total:
            where += f"/{progress.batches_total:,}"
        if progress.bytes_total:
            where += f" ({100 * progress.bytes_done / progress.bytes_total:.0f}% of the bytes)"
        self.say(f"{progress.stage}: {where}, {now_s - self._start_s:.1f} s")


def terminal_line(label: str, stream: TextIO) -> ProgressLine | None:
    """A progress line on `stream` if it is a terminal, else None: a script reading the
    output, or a test, sees none."""
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return ProgressLine(label, stream) if interactive else None
