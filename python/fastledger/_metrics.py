"""What `Ledger.metrics()` returns: counters and histograms the ledger keeps as it works.

The ledger counts with plain int increments under the locks it holds anyway (the ledger's lock
for calls, the committer's lock for journal writes), so that keeping them costs a few
nanoseconds per call and no lock of its own. `metrics()` copies them into a frozen snapshot.

Every histogram has the same fixed buckets, powers of two: bucket i counts the values v with
`2**(i-1) <= v < 2**i` (bucket 0 counts v == 0), and the last bucket counts every value of
`2**(BUCKETS-2)` and more. In nanoseconds, bucket 30 ends at about 1.07 s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BUCKETS",
    "SLOW_LOCK_WAIT_S",
    "SLOW_WRITE_S",
    "Histogram",
    "HistogramSnapshot",
    "Metrics",
    "OperationMetrics",
]

# The buckets of every histogram: bit lengths 0..BUCKETS-2, and one bucket for anything longer
# (2**40 ns is about 18 minutes).
BUCKETS = 42
# A journal write and its fsync that take longer than this log a warning on "fastledger", and
# so does a wait for the journal's append lock.
SLOW_WRITE_S = 1.0
SLOW_LOCK_WAIT_S = 1.0

_LAST = BUCKETS - 1


class Histogram:
    """Counts values into the power-of-two buckets; the caller holds the lock that guards it."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0

    def record(self, value: int) -> None:
        bucket = value.bit_length()
        self.counts[bucket if bucket < _LAST else _LAST] += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(tuple(self.counts), sum(self.counts), self.total)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram at one moment: `counts[i]` values fell into bucket i (see the module)."""

    counts: tuple[int, ...]
    count: int
    sum: int

    @staticmethod
    def upper_bound(bucket: int) -> int | None:
        """The first value past bucket `bucket`; None for the last, which has no end."""
        return None if bucket >= _LAST else 1 << bucket


@dataclass(frozen=True, slots=True)
class OperationMetrics:
    """One operation: how many calls, and how many events (records submitted, or ids looked
    up) they carried; for creates, the results per status name other than CREATED."""

    calls: int
    events: int
    statuses: dict[str, int]


@dataclass(frozen=True, slots=True)
class Metrics:
    """What a ledger did since it was made or opened, as `Ledger.metrics()` returns it.

    `create_accounts` and `create_transfers` count the calls that applied a batch (an empty
    batch, or one refused as a whole with an exception, is not counted); `lookups` the
    lookups of accounts and transfers, events being the ids asked for; `queries` the filters,
    balances and trial balances, events being the calls. `accounts_created` and
    `transfers_created` are the events that answered CREATED in this process's calls, not the
    batches replayed from the journal.

    For a durable ledger, `journal_batches` and `journal_bytes` are what this process wrote
    (headers included); `journal_groups` the writes of a group commit and `group_batches`
    their sizes in batches; `journal_write_ns` each write with its flush; `lock_wait_ns` each
    wait for the journal's append lock; `catch_up_ns` each application of batches that other
    processes appended. `sequence` is the last batch applied (0 in memory), `timestamp` the
    last timestamp given to an event.
    """

    create_accounts: OperationMetrics
    create_transfers: OperationMetrics
    lookups: OperationMetrics
    queries: OperationMetrics
    accounts_created: int
    transfers_created: int
    timestamp: int
    sequence: int
    journal_batches: int
    journal_bytes: int
    journal_groups: int
    group_batches: HistogramSnapshot
    journal_write_ns: HistogramSnapshot
    lock_wait_ns: HistogramSnapshot
    catch_up_ns: HistogramSnapshot


class JournalCounters:
    """What a committer counts, under its own lock."""

    __slots__ = ("batches", "bytes", "group_batches", "groups", "lock_wait_ns", "write_ns")

    def __init__(self) -> None:
        self.batches = 0
        self.bytes = 0
        self.groups = 0
        self.group_batches = Histogram()
        self.write_ns = Histogram()
        self.lock_wait_ns = Histogram()

    def copy(self) -> JournalCounters:
        copied = JournalCounters()
        copied.batches, copied.bytes, copied.groups = self.batches, self.bytes, self.groups
        for name in ("group_batches", "write_ns", "lock_wait_ns"):
            histogram = getattr(copied, name)
            histogram.counts = list(getattr(self, name).counts)
            histogram.total = getattr(self, name).total
        return copied


EMPTY = Histogram().snapshot()
