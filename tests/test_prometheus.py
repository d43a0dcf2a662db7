"""`fastledger.prometheus.collector`: a registry holding it, served over loopback and scraped
with urllib, gives the values of `metrics()` after known operations.

prometheus_client is in the test extra, so it is imported unconditionally: a test environment
without it fails here rather than skipping."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

import fastledger
from fastledger import Account, Ledger
from fastledger._metrics import BUCKETS
from fastledger.prometheus import collector

from .conftest import FakeClock
from .test_metrics import _post, _transfer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class _Quiet(WSGIRequestHandler):
    """Logs no request line to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def scrape(registry: CollectorRegistry) -> Iterator[Callable[[], Samples]]:
    server: WSGIServer = make_server("127.0.0.1", 0, make_wsgi_app(registry), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    def fetch() -> Samples:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    yield fetch
    server.shutdown()
    server.server_close()
    thread.join()


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_a_scrape_gives_the_counters_after_known_operations(
    engine: str,
    clock: FakeClock,
    registry: CollectorRegistry,
    scrape: Callable[[], Samples],
) -> None:
    ledger = Ledger(engine=engine, clock=clock)
    registry.register(collector(ledger))
    _post(ledger)
    samples = scrape()
    for operation, calls, events in (
        ("create_accounts", 2, 3),
        ("create_transfers", 3, 5),
        ("lookups", 2, 4),
        ("queries", 2, 2),
    ):
        assert samples[_key("fastledger_calls_total", operation=operation)] == calls
        assert samples[_key("fastledger_events_total", operation=operation)] == events
    results = {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "fastledger_results_total" and ("operation", "create_transfers") in labels
    }
    assert results == {"CREATED": 3, "DEBIT_ACCOUNT_NOT_FOUND": 1, "EXISTS": 1}
    assert samples[_key("fastledger_timestamp_seconds")] == ledger.metrics().timestamp / 1e9
    assert samples[_key("fastledger_sequence")] == 0
    assert samples[_key("fastledger_journal_batches_total")] == 0
    # Every scrape reads a new snapshot.
    ledger.create_transfers([_transfer(10)])
    samples = scrape()
    assert samples[_key("fastledger_calls_total", operation="create_transfers")] == 4


def test_the_histograms_are_in_seconds_with_every_bucket(
    tmp_path: Path, engine: str, registry: CollectorRegistry, scrape: Callable[[], Samples]
) -> None:
    ledger = Ledger.open(tmp_path / "ledger", engine=engine)
    try:
        registry.register(collector(ledger))
        ledger.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
        ledger.create_transfers([_transfer(1)])
        metrics = ledger.metrics()
        samples = scrape()
    finally:
        ledger.close()
    assert samples[_key("fastledger_journal_batches_total")] == metrics.journal_batches
    assert samples[_key("fastledger_journal_bytes_total")] == metrics.journal_bytes
    assert samples[_key("fastledger_sequence")] == metrics.sequence
    written = metrics.journal_write_ns
    assert written.count >= 2
    assert samples[_key("fastledger_journal_write_seconds_count")] == written.count
    assert samples[_key("fastledger_journal_write_seconds_sum")] == pytest.approx(written.sum / 1e9)
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "fastledger_journal_write_seconds_bucket"
    }
    assert len(buckets) == BUCKETS
    assert buckets["+Inf"] == written.count
    # Bucket i ends before 2**i ns: its `le` is the last whole nanosecond in it, in seconds.
    by_bound = {float(le): value for le, value in buckets.items() if le != "+Inf"}
    for bucket in range(BUCKETS - 1):
        bound = (2**bucket - 1) / 1e9
        assert by_bound[bound] == sum(written.counts[: bucket + 1])
    groups = metrics.group_batches
    assert samples[_key("fastledger_journal_group_batches_count")] == groups.count
    assert samples[_key("fastledger_journal_group_batches_bucket", le="1.0")] == sum(
        groups.counts[:2]
    )


def test_several_ledgers_share_one_collector_by_label(
    registry: CollectorRegistry, scrape: Callable[[], Samples]
) -> None:
    first, second = Ledger(), Ledger()
    registry.register(collector({"first": first, "second": second}, label="book"))
    first.create_accounts([Account(id=1, ledger=1, code=1)])
    second.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    samples = scrape()
    name = "fastledger_events_total"
    assert samples[_key(name, book="first", operation="create_accounts")] == 1
    assert samples[_key(name, book="second", operation="create_accounts")] == 2


def test_registering_takes_no_snapshot_and_refuses_a_second_collector_of_its_names(
    registry: CollectorRegistry,
) -> None:
    ledger = Ledger()
    calls = []
    metrics = ledger.metrics

    def counted() -> fastledger.Metrics:
        calls.append(1)
        return metrics()

    ledger.metrics = counted  # type: ignore[method-assign]
    registry.register(collector(ledger))
    assert calls == []
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(collector(Ledger()))
    registry.register(collector(Ledger(), prefix="other"))


def test_collector_refuses_what_is_not_a_ledger() -> None:
    with pytest.raises(fastledger.InvalidArgumentError):
        collector([Ledger()])  # type: ignore[arg-type]
