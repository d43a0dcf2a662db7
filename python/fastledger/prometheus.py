"""Prometheus for a ledger: a collector that reads `ledger.metrics()` at each scrape.

    from prometheus_client import REGISTRY
    REGISTRY.register(fastledger.prometheus.collector(ledger))

Needs prometheus_client (`pip install 'fastledger[prometheus]'`). Nothing is counted for the
collector: a scrape takes one snapshot per ledger, so a ledger that is never scraped pays
nothing more than `metrics()` already costs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._ledger import Ledger
from ._metrics import BUCKETS, HistogramSnapshot, Metrics
from .errors import InvalidArgumentError

__all__ = ["LedgerCollector", "collector"]

_OPERATIONS = ("create_accounts", "create_transfers", "lookups", "queries")
# The histograms: the name of each family, the field of `Metrics`, the divisor that makes its
# values the family's unit (seconds from nanoseconds, as Prometheus names durations), help.
_HISTOGRAMS = (
    (
        "journal_write_seconds",
        "journal_write_ns",
        1e9,
        "Each write of a group commit with its flush.",
    ),
    (
        "journal_lock_wait_seconds",
        "lock_wait_ns",
        1e9,
        "Each wait for the journal's append lock.",
    ),
    (
        "catch_up_seconds",
        "catch_up_ns",
        1e9,
        "Each application of batches other processes appended.",
    ),
    ("journal_group_batches", "group_batches", 1, "Batches per write of a group commit."),
)


class LedgerCollector(Collector):
    """Yields the metric families of one or more ledgers, each ledger's samples with its own
    label, from a fresh snapshot at every scrape."""

    def __init__(
        self, ledgers: list[tuple[list[str], Ledger]], labels: list[str], prefix: str
    ) -> None:
        # Each ledger with its label values, in the order of `labels`: none for one ledger.
        self._ledgers = ledgers
        self._labels = labels
        self._prefix = prefix

    def describe(self) -> list[Metric]:
        # The names without samples, so that registering takes no snapshot and a second
        # collector of the same names in one registry is refused.
        return list(self._families([]))

    def collect(self) -> Iterator[Metric]:
        return self._families([(values, ledger.metrics()) for values, ledger in self._ledgers])

    def _families(self, snapshots: list[tuple[list[str], Metrics]]) -> Iterator[Metric]:
        prefix = self._prefix
        ledger_label = self._labels
        calls = CounterMetricFamily(
            f"{prefix}_calls",
            "Calls by operation: creates that applied a batch, lookups, queries.",
            labels=[*ledger_label, "operation"],
        )
        events = CounterMetricFamily(
            f"{prefix}_events",
            "Events by operation: records submitted, ids looked up, queries.",
            labels=[*ledger_label, "operation"],
        )
        results = CounterMetricFamily(
            f"{prefix}_results",
            "Results of creates by operation and status, CREATED included.",
            labels=[*ledger_label, "operation", "status"],
        )
        journal = [
            CounterMetricFamily(
                f"{prefix}_journal_batches",
                "Batches this process wrote to the journal.",
                labels=ledger_label,
            ),
            CounterMetricFamily(
                f"{prefix}_journal_bytes",
                "Bytes this process wrote to the journal, headers included.",
                labels=ledger_label,
                unit="bytes",
            ),
            CounterMetricFamily(
                f"{prefix}_journal_groups",
                "Writes of a group commit to the journal.",
                labels=ledger_label,
            ),
        ]
        sequence = GaugeMetricFamily(
            f"{prefix}_sequence", "The last journal batch applied.", labels=ledger_label
        )
        timestamp = GaugeMetricFamily(
            f"{prefix}_timestamp_seconds",
            "The last timestamp given to an event, in seconds since the epoch.",
            labels=ledger_label,
        )
        histograms = [
            HistogramMetricFamily(f"{prefix}_{name}", help_text, labels=ledger_label)
            for name, _, _, help_text in _HISTOGRAMS
        ]
        for labels, m in snapshots:
            for operation in _OPERATIONS:
                counted = getattr(m, operation)
                calls.add_metric([*labels, operation], counted.calls)
                events.add_metric([*labels, operation], counted.events)
            for operation, created in (
                ("create_accounts", m.accounts_created),
                ("create_transfers", m.transfers_created),
            ):
                results.add_metric([*labels, operation, "CREATED"], created)
                for status, n in getattr(m, operation).statuses.items():
                    results.add_metric([*labels, operation, status], n)
            for family, value in zip(
                journal, (m.journal_batches, m.journal_bytes, m.journal_groups), strict=True
            ):
                family.add_metric(labels, value)
            sequence.add_metric(labels, m.sequence)
            timestamp.add_metric(labels, m.timestamp / 1e9)
            for spread, (_, field, divisor, _) in zip(histograms, _HISTOGRAMS, strict=True):
                histogram: HistogramSnapshot = getattr(m, field)
                spread.add_metric(labels, _buckets(histogram, divisor), histogram.sum / divisor)
        yield calls
        yield events
        yield results
        yield from journal
        yield sequence
        yield timestamp
        yield from histograms


def _buckets(histogram: HistogramSnapshot, divisor: float) -> list[tuple[str, float]]:
    """Cumulative counts by `le`, the largest integer value of each bucket (whose end is
    exclusive) in the family's unit; the last bucket has no end and is "+Inf"."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bucket in range(BUCKETS):
        total += histogram.counts[bucket]
        bound = HistogramSnapshot.upper_bound(bucket)
        le = "+Inf" if bound is None else repr((bound - 1) / divisor)
        buckets.append((le, float(total)))
    return buckets


def collector(
    ledgers: Ledger | Mapping[str, Ledger], *, label: str = "ledger", prefix: str = "fastledger"
) -> LedgerCollector:
    """A Prometheus collector of `ledger.metrics()`, to register in a registry.

    `ledgers` is one ledger, or several by name, each name the value of the label `label` of
    its samples: one registry takes one collector of a prefix, so several ledgers of one
    process share it. The families are named `prefix_...`.
    """
    if isinstance(ledgers, Ledger):
        return LedgerCollector([([], ledgers)], [], prefix)
    if not isinstance(ledgers, Mapping) or not all(
        isinstance(name, str) and isinstance(ledger, Ledger) for name, ledger in ledgers.items()
    ):
        raise InvalidArgumentError("collector takes a Ledger or a mapping of names to ledgers")
    return LedgerCollector([([name], ledger) for name, ledger in ledgers.items()], [label], prefix)
