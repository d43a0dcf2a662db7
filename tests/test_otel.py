"""`fastledger.instrument`: the metrics read by OpenTelemetry's in-memory reader have the values
of `metrics()` after known operations, every call gets a span with its batch size and failed
results, uninstrumenting restores the ledger, and an uninstrumented program never imports
OpenTelemetry.

OpenTelemetry's API and SDK are in the test extra, so these tests import them unconditionally:
a test environment without them fails here rather than skipping."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import fastledger
from fastledger import Account, AsyncLedger, Ledger, QueryFilter, otel
from fastledger._records import pack_transfers

from .conftest import FakeClock
from .test_metrics import _post, _transfer

Points = dict[str, dict[frozenset[tuple[str, Any]], float]]


class Telemetry:
    """An SDK meter provider read in memory and a tracer provider exporting in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self, ledger: Ledger, **options: Any) -> otel.Instrumentation:
        return fastledger.instrument(
            ledger,
            meter_provider=self.meter_provider,
            tracer_provider=self.tracer_provider,
            **options,
        )

    def points(self) -> Points:
        """Every data point collected now, by instrument name and attributes."""
        found: Points = {}
        data = self.reader.get_metrics_data()
        # None when no instrument observed anything.
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "fastledger"
                for metric in scope.metrics:
                    by_attributes = found.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        value = point.value  # type: ignore[union-attr]
                        by_attributes[frozenset((point.attributes or {}).items())] = value
        return found

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def _key(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.meter_provider.shutdown()
    made.tracer_provider.shutdown()


def test_the_instruments_read_the_counters_after_known_operations(
    engine: str, clock: FakeClock, telemetry: Telemetry
) -> None:
    ledger = Ledger(engine=engine, clock=clock)
    telemetry.instrument(ledger)
    _post(ledger)
    points = telemetry.points()
    assert points["fastledger.calls"] == {
        _key(operation="create_accounts"): 2,
        _key(operation="create_transfers"): 3,
        _key(operation="lookups"): 2,
        _key(operation="queries"): 2,
    }
    assert points["fastledger.events"] == {
        _key(operation="create_accounts"): 3,
        _key(operation="create_transfers"): 5,
        _key(operation="lookups"): 4,
        _key(operation="queries"): 2,
    }
    assert points["fastledger.results"] == {
        _key(operation="create_accounts", status="CREATED"): 2,
        _key(operation="create_accounts", status="EXISTS"): 1,
        _key(operation="create_transfers", status="CREATED"): 3,
        _key(operation="create_transfers", status="DEBIT_ACCOUNT_NOT_FOUND"): 1,
        _key(operation="create_transfers", status="EXISTS"): 1,
    }
    assert points["fastledger.timestamp"] == {_key(): ledger.metrics().timestamp}
    assert points["fastledger.sequence"] == {_key(): 0}
    assert points["fastledger.journal.batches"] == {_key(): 0}
    # A later collection reads a new snapshot.
    ledger.create_transfers([_transfer(10)])
    points = telemetry.points()
    assert points["fastledger.calls"][_key(operation="create_transfers")] == 4


def test_the_histograms_are_counts_sums_and_cumulative_buckets(
    tmp_path: Path, engine: str, telemetry: Telemetry
) -> None:
    ledger = Ledger.open(tmp_path / "ledger", engine=engine)
    try:
        telemetry.instrument(ledger)
        ledger.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
        ledger.create_transfers([_transfer(1)])
        metrics = ledger.metrics()
        points = telemetry.points()
    finally:
        ledger.close()
    assert points["fastledger.journal.batches"] == {_key(): metrics.journal_batches}
    assert points["fastledger.journal.bytes"] == {_key(): metrics.journal_bytes}
    assert points["fastledger.sequence"] == {_key(): metrics.sequence}
    written = metrics.journal_write_ns
    assert written.count >= 2
    assert points["fastledger.journal.write.duration.count"] == {_key(): written.count}
    assert points["fastledger.journal.write.duration.sum"] == {_key(): written.sum}
    buckets = points["fastledger.journal.write.duration.bucket"]
    assert len(buckets) == fastledger._metrics.BUCKETS
    assert buckets[_key(le="+Inf")] == written.count
    # Bucket i ends before 2**i, so its `le` is 2**i - 1 and counts all below it too.
    for bucket in range(fastledger._metrics.BUCKETS - 1):
        assert buckets[_key(le=str(2**bucket - 1))] == sum(written.counts[: bucket + 1])
    assert points["fastledger.journal.group.size.count"] == {_key(): metrics.group_batches.count}


def test_each_call_gets_a_span_with_its_batch_size_and_failed_results(
    engine: str, clock: FakeClock, telemetry: Telemetry
) -> None:
    ledger = Ledger(engine=engine, clock=clock)
    telemetry.instrument(ledger, attributes={"ledger": "payments"})
    _post(ledger)
    spans = telemetry.spans()
    assert [(span.name, dict(span.attributes or {})) for span in spans] == [
        (
            "fastledger.create_accounts",
            {"ledger": "payments", otel.BATCH_SIZE: 2, otel.FAILED: 0},
        ),
        (
            "fastledger.create_accounts",
            {"ledger": "payments", otel.BATCH_SIZE: 1, otel.FAILED: 1},
        ),
        (
            "fastledger.create_transfers",
            {"ledger": "payments", otel.BATCH_SIZE: 1, otel.FAILED: 0},
        ),
        (
            "fastledger.create_transfers",
            {"ledger": "payments", otel.BATCH_SIZE: 1, otel.FAILED: 0},
        ),
        (
            "fastledger.create_transfers",
            {"ledger": "payments", otel.BATCH_SIZE: 3, otel.FAILED: 2},
        ),
        (
            "fastledger.lookup_accounts",
            {"ledger": "payments", otel.BATCH_SIZE: 3, otel.RESULTS: 2},
        ),
        (
            "fastledger.lookup_transfers",
            {"ledger": "payments", otel.BATCH_SIZE: 1, otel.RESULTS: 1},
        ),
        ("fastledger.get_account_transfers", {"ledger": "payments", otel.RESULTS: 3}),
        ("fastledger.query_accounts", {"ledger": "payments", otel.RESULTS: 2}),
    ]
    assert all(span.status.status_code is StatusCode.UNSET for span in spans)


def test_a_packed_create_and_the_balances_get_spans(
    engine: str, clock: FakeClock, telemetry: Telemetry
) -> None:
    ledger = Ledger(engine=engine, clock=clock)
    ledger.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    telemetry.instrument(ledger)
    transfers = [_transfer(1), _transfer(2), _transfer(3, debit=9), _transfer(1)]
    results = ledger.create_transfers(pack_transfers(transfers))
    assert isinstance(results, fastledger.packed.PackedResults)
    ledger.create_transfers(pack_transfers([_transfer(4)]))
    ledger.trial_balance(1)
    ledger.balances_at(ledger.metrics().timestamp, [1])
    assert [(span.name, dict(span.attributes or {})) for span in telemetry.spans()] == [
        ("fastledger.create_transfers", {otel.BATCH_SIZE: 4, otel.FAILED: 2}),
        ("fastledger.create_transfers", {otel.BATCH_SIZE: 1, otel.FAILED: 0}),
        ("fastledger.trial_balance", {otel.RESULTS: 2}),
        ("fastledger.balances_at", {otel.RESULTS: 1}),
    ]


def test_a_refused_call_ends_its_span_with_the_error(engine: str, telemetry: Telemetry) -> None:
    ledger = Ledger(engine=engine, batch_max=2)
    telemetry.instrument(ledger)
    with pytest.raises(fastledger.BatchTooLargeError):
        ledger.create_transfers([_transfer(1), _transfer(2), _transfer(3)])
    with pytest.raises(fastledger.BatchTooLargeError):
        ledger.lookup_accounts([1, 2, 3])
    create, lookup = telemetry.spans()
    assert create.status.status_code is StatusCode.ERROR
    assert [event.name for event in create.events] == ["exception"]
    assert otel.BATCH_SIZE not in (create.attributes or {})
    assert lookup.status.status_code is StatusCode.ERROR
    assert (lookup.attributes or {})[otel.BATCH_SIZE] == 3


def test_uninstrumenting_restores_the_methods_and_stops_the_observations(
    engine: str, telemetry: Telemetry
) -> None:
    ledger = Ledger(engine=engine)
    handle = telemetry.instrument(ledger)
    assert type(ledger) is not Ledger
    assert isinstance(ledger, Ledger)
    with pytest.raises(fastledger.InvalidArgumentError, match="already instrumented"):
        telemetry.instrument(ledger)
    handle.uninstrument()
    handle.uninstrument()
    assert not handle.active
    assert type(ledger) is Ledger
    assert not {*otel.CREATES, *otel.LOOKUPS, *otel.QUERIES} & set(vars(ledger))
    ledger.create_accounts([Account(id=1, ledger=1, code=1)])
    assert telemetry.spans() == []
    assert telemetry.points().get("fastledger.calls", {}) == {}
    # Instrumented again on the same meter, whose instruments exist already, it is observed.
    with telemetry.instrument(ledger):
        ledger.create_accounts([Account(id=2, ledger=1, code=1)])
        assert telemetry.points()["fastledger.calls"][_key(operation="create_accounts")] == 2
    assert type(ledger) is Ledger
    assert len(telemetry.spans()) == 1


def test_ledgers_on_one_meter_are_told_apart_by_their_attributes(
    engine: str, telemetry: Telemetry
) -> None:
    first, second = Ledger(engine=engine), Ledger(engine=engine)
    telemetry.instrument(first, attributes={"ledger": "first"})
    handle = telemetry.instrument(second, attributes={"ledger": "second"})
    first.create_accounts([Account(id=1, ledger=1, code=1)])
    second.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    events = telemetry.points()["fastledger.events"]
    assert events[_key(ledger="first", operation="create_accounts")] == 1
    assert events[_key(ledger="second", operation="create_accounts")] == 2
    # The instrumentation does not keep a ledger alive that the program dropped without
    # uninstrumenting it.
    dropped = weakref.ref(second)
    del second
    assert dropped() is None
    assert handle.metrics() is None
    telemetry.points()


def test_the_calls_of_an_async_ledger_get_spans(engine: str, telemetry: Telemetry) -> None:
    ledger = Ledger(engine=engine)
    telemetry.instrument(ledger)

    async def main() -> None:
        front = AsyncLedger(ledger, workers=2)
        await front.create_accounts([Account(id=1, ledger=1, code=1)])
        await front.query_accounts(QueryFilter(ledger=1, limit=10))
        await front.close()

    asyncio.run(main())
    assert [span.name for span in telemetry.spans()] == [
        "fastledger.create_accounts",
        "fastledger.query_accounts",
    ]


def test_instrument_refuses_what_is_not_a_ledger() -> None:
    with pytest.raises(fastledger.InvalidArgumentError):
        fastledger.instrument(object())  # type: ignore[arg-type]


def test_a_ledger_never_instrumented_imports_no_opentelemetry() -> None:
    # In a new interpreter, since this one has imported OpenTelemetry for the tests above.
    script = textwrap.dedent(
        """
        import sys
        import fastledger
        from fastledger import Account, Ledger, QueryFilter, Transfer
        ledger = Ledger()
        ledger.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
        ledger.create_transfers(
            [Transfer(id=1, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)]
        )
        ledger.lookup_accounts([1])
        ledger.query_transfers(QueryFilter(ledger=1, limit=10))
        ledger.metrics()
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("opentelemetry", "prometheus_client")
            or name in ("fastledger.otel", "fastledger.prometheus")
        )
        print(loaded)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_neither_the_class_nor_the_ledgers_attributes_are_touched(telemetry: Telemetry) -> None:
    ledger = Ledger()
    before = dict(vars(ledger))
    handle = telemetry.instrument(ledger)
    assert vars(ledger) == before
    assert repr(type(ledger)) == repr(Ledger)
    untouched = Ledger()
    assert type(untouched) is Ledger
    for name in (*otel.CREATES, *otel.LOOKUPS, *otel.QUERIES):
        assert getattr(Ledger, name).__module__ == "fastledger._ledger"
        assert getattr(type(ledger), name).__wrapped__ is getattr(Ledger, name)
    handle.uninstrument()
    assert vars(ledger) == before


def test_a_subclass_of_ledger_keeps_its_own_methods(telemetry: Telemetry) -> None:
    class Audited(Ledger):
        def create_accounts(self, accounts: Any) -> Any:
            self.audited = True
            return super().create_accounts(accounts)

    ledger = Audited()
    handle = telemetry.instrument(ledger)
    ledger.create_accounts([Account(id=1, ledger=1, code=1)])
    assert ledger.audited
    assert [span.name for span in telemetry.spans()] == ["fastledger.create_accounts"]
    handle.uninstrument()
    assert type(ledger) is Audited


def test_instrument_without_opentelemetry_says_which_extra_to_install() -> None:
    # A None in sys.modules makes every import of the package fail as if it were missing.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None
        import fastledger
        try:
            fastledger.instrument(fastledger.Ledger())
        except ImportError as error:
            print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'fastledger[otel]'" in done.stdout
