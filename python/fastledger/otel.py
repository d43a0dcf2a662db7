"""OpenTelemetry for a ledger: its metrics as instruments, and a span for every call.

`fastledger.instrument(ledger)` (or `instrument` here) exports what `ledger.metrics()` counts
through observable instruments, which read a snapshot only when a reader collects, and wraps
the ledger's creates, lookups and queries in spans. Only opentelemetry-api is needed
(`pip install 'fastledger[otel]'`); the program chooses the SDK and exporters.

Nothing of this runs unless a ledger is instrumented: `import fastledger` never imports this
module nor OpenTelemetry, and the wrappers belong to a subclass that only the instrumented
ledger takes, so `Ledger`'s methods, and every other ledger, keep their path untouched.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Tracer, TracerProvider

from ._ledger import Ledger
from ._metrics import BUCKETS, HistogramSnapshot, Metrics
from .errors import InvalidArgumentError
from .packed import CREATED, PackedResults, count_failed

__all__ = ["CREATES", "LOOKUPS", "QUERIES", "Instrumentation", "instrument"]

# The methods that get a span, by what their span records.
CREATES = ("create_accounts", "create_transfers")
LOOKUPS = ("lookup_accounts", "lookup_transfers")
QUERIES = (
    "get_account_transfers",
    "get_account_balances",
    "query_accounts",
    "query_transfers",
    "balances_at",
    "trial_balance",
)

# The attributes of a span: the events a call carried, the results of a create other than
# CREATED, and the records a lookup found or a query returned.
BATCH_SIZE = "fastledger.batch_size"
FAILED = "fastledger.failed"
RESULTS = "fastledger.results"

_status_of = itemgetter(0)

_SCOPE = "fastledger"

Attributes = Mapping[str, str | bool | int | float]


class Instrumentation:
    """What `instrument` returns: `uninstrument()` restores the ledger's own methods and
    stops its observations. Also a context manager that uninstruments on exit."""

    def __init__(
        self, ledger: Ledger, attributes: Attributes, observed: _Observed, base: type[Ledger]
    ) -> None:
        self._ledger: weakref.ref[Ledger] = weakref.ref(ledger)
        self.attributes: dict[str, str | bool | int | float] = dict(attributes)
        self._observed = observed
        self._base = base
        self._active = True

    @property
    def active(self) -> bool:
        return self._active

    def uninstrument(self) -> None:
        """Removes the spans and stops the observations; a second call does nothing."""
        if not self._active:
            return
        self._active = False
        self._observed.remove(self)
        ledger = self._ledger()
        if ledger is not None:
            ledger.__class__ = self._base

    def metrics(self) -> Metrics | None:
        """The ledger's snapshot, None once it is gone or uninstrumented."""
        ledger = self._ledger()
        if ledger is None or not self._active:
            return None
        return ledger.metrics()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()


# The class attribute that marks the class of an instrumented ledger, so that a second
# `instrument` refuses rather than wrapping the wrappers.
_MARK = "_fastledger_instrumentation"


def instrument(
    ledger: Ledger,
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    attributes: Attributes | None = None,
) -> Instrumentation:
    """Exports `ledger.metrics()` as OpenTelemetry instruments and gives each create, lookup
    and query of `ledger` a span; returns the handle that undoes both.

    The providers default to the global ones that the OpenTelemetry SDK (or its automatic
    instrumentation) installs; without an SDK the API's are no-ops. `attributes` are added to
    every observation and span, to tell several instrumented ledgers apart. A ledger can be
    instrumented once at a time: uninstrument it before instrumenting it again.

    The spans come from a subclass of the ledger's class, made for this call, that the ledger
    takes as its class until it is uninstrumented, so that the ledger's own attributes are
    left alone and a subclass keeps its methods. Once its class has changed, CPython reads the
    ledger's attributes from a dictionary rather than its inline values, so a ledger that was
    instrumented stays a few hundred ns slower per call after `uninstrument`; a ledger never
    instrumented is untouched.
    """
    if not isinstance(ledger, Ledger):
        raise InvalidArgumentError(f"instrument takes a Ledger, not {type(ledger).__name__}")
    base = type(ledger)
    if _MARK in base.__dict__:
        raise InvalidArgumentError("this ledger is already instrumented")
    attributes = dict(attributes or {})
    meter = (meter_provider or otel_metrics.get_meter_provider()).get_meter(_SCOPE)
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE)
    observed = _observed_by(meter)
    handle = Instrumentation(ledger, attributes, observed, base)
    namespace: dict[str, Any] = {
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        _MARK: handle,
    }
    for name in CREATES:
        namespace[name] = _traced(tracer, name, getattr(base, name), attributes, _created)
    for name in LOOKUPS:
        namespace[name] = _traced_lookup(tracer, name, getattr(base, name), attributes)
    for name in QUERIES:
        namespace[name] = _traced(tracer, name, getattr(base, name), attributes, _returned)
    ledger.__class__ = type(base.__name__, (base,), namespace)
    observed.add(handle)
    return handle


# -- spans -----------------------------------------------------------------------------------


def _created(span: trace.Span, result: Any) -> None:
    """A create's batch size and its results other than CREATED: counted by C loops, a
    memcmp for a packed batch all CREATED."""
    if isinstance(result, PackedResults):
        size = len(result)
        failed = count_failed(result.status)
    else:
        size = len(result)
        failed = size - list(map(_status_of, result)).count(CREATED)
    span.set_attribute(BATCH_SIZE, size)
    span.set_attribute(FAILED, failed)


def _returned(span: trace.Span, result: Any) -> None:
    """What a query returned: its records, or the accounts of a balance."""
    accounts = getattr(result, "accounts", result)
    span.set_attribute(RESULTS, len(accounts))


def _traced(
    tracer: Tracer,
    name: str,
    method: Callable[..., Any],
    attributes: Attributes,
    describe: Callable[[trace.Span, Any], None],
) -> Callable[..., Any]:
    span_name = f"fastledger.{name}"

    @functools.wraps(method)
    def call(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        # The span is current while the ledger works, so that the spans of the journal's
        # database driver, if it is instrumented, are its children.
        with tracer.start_as_current_span(span_name, attributes=attributes) as span:
            result = method(self, *args, **kwargs)
            describe(span, result)
            return result

    return call


def _traced_lookup(
    tracer: Tracer, name: str, method: Callable[..., Any], attributes: Attributes
) -> Callable[..., Any]:
    span_name = f"fastledger.{name}"

    @functools.wraps(method)
    def call(self: Ledger, ids: Any, *args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(span_name, attributes=attributes) as span:
            # Set before the call, so that a lookup refused for its size still shows it.
            if hasattr(ids, "__len__"):
                span.set_attribute(BATCH_SIZE, len(ids))
            result = method(self, ids, *args, **kwargs)
            span.set_attribute(RESULTS, len(result))
            return result

    return call


# -- instruments -----------------------------------------------------------------------------


class _Observed:
    """The ledgers instrumented on one meter. The API cannot remove an instrument nor add a
    callback to one, and the SDK returns the first instrument of a name to every later
    creation, so each meter gets its instruments once and their callbacks read every ledger
    instrumented on it, each with its attributes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: list[Instrumentation] = []

    def add(self, handle: Instrumentation) -> None:
        with self._lock:
            self._handles.append(handle)

    def remove(self, handle: Instrumentation) -> None:
        with self._lock:
            self._handles = [h for h in self._handles if h is not handle]

    def snapshots(self) -> Iterator[tuple[Metrics, Attributes]]:
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            snapshot = handle.metrics()
            if snapshot is not None:
                yield snapshot, handle.attributes


_by_meter: weakref.WeakKeyDictionary[Meter, _Observed] = weakref.WeakKeyDictionary()
_by_meter_lock = threading.Lock()


def _observed_by(meter: Meter) -> _Observed:
    with _by_meter_lock:
        observed = _by_meter.get(meter)
        if observed is None:
            observed = _by_meter[meter] = _Observed()
            _register(meter, observed)
        return observed


Read = Callable[[Metrics], Iterable[tuple[float, Attributes]]]


def _operations(field: str) -> Read:
    def read(m: Metrics) -> Iterator[tuple[float, Attributes]]:
        for operation in ("create_accounts", "create_transfers", "lookups", "queries"):
            yield getattr(getattr(m, operation), field), {"operation": operation}

    return read


def _results(m: Metrics) -> Iterator[tuple[float, Attributes]]:
    for operation, created in (
        ("create_accounts", m.accounts_created),
        ("create_transfers", m.transfers_created),
    ):
        yield created, {"operation": operation, "status": "CREATED"}
        for status, n in getattr(m, operation).statuses.items():
            yield n, {"operation": operation, "status": status}


def _field(field: str) -> Read:
    def read(m: Metrics) -> Iterator[tuple[float, Attributes]]:
        yield getattr(m, field), {}

    return read


def _histogram_count(field: str) -> Read:
    def read(m: Metrics) -> Iterator[tuple[float, Attributes]]:
        yield getattr(m, field).count, {}

    return read


def _histogram_sum(field: str) -> Read:
    def read(m: Metrics) -> Iterator[tuple[float, Attributes]]:
        yield getattr(m, field).sum, {}

    return read


def _histogram_buckets(field: str) -> Read:
    """Cumulative counts by `le`, the largest integer value in the bucket and all below it,
    as Prometheus reads buckets; the last bucket has no end and is `le` "+Inf"."""

    def read(m: Metrics) -> Iterator[tuple[float, Attributes]]:
        histogram: HistogramSnapshot = getattr(m, field)
        total = 0
        for bucket in range(BUCKETS):
            total += histogram.counts[bucket]
            bound = HistogramSnapshot.upper_bound(bucket)
            yield total, {"le": "+Inf" if bound is None else str(bound - 1)}

    return read


# The counters: name, unit, description, and how to read them from a snapshot.
_COUNTERS: tuple[tuple[str, str, str, Read], ...] = (
    (
        "fastledger.calls",
        "{call}",
        "Calls by operation: creates that applied a batch, lookups, queries.",
        _operations("calls"),
    ),
    (
        "fastledger.events",
        "{event}",
        "Events by operation: records submitted, ids looked up, queries.",
        _operations("events"),
    ),
    (
        "fastledger.results",
        "{result}",
        "Results of creates by operation and status, CREATED included.",
        _results,
    ),
    (
        "fastledger.journal.batches",
        "{batch}",
        "Batches this process wrote to the journal.",
        _field("journal_batches"),
    ),
    (
        "fastledger.journal.bytes",
        "By",
        "Bytes this process wrote to the journal, headers included.",
        _field("journal_bytes"),
    ),
    (
        "fastledger.journal.groups",
        "{write}",
        "Writes of a group commit to the journal.",
        _field("journal_groups"),
    ),
)
_GAUGES: tuple[tuple[str, str, str, Read], ...] = (
    ("fastledger.sequence", "{batch}", "The last journal batch applied.", _field("sequence")),
    ("fastledger.timestamp", "ns", "The last timestamp given to an event.", _field("timestamp")),
)
# The histograms: the API has no asynchronous histogram, so each is exported as three
# observable counters, `.count`, `.sum` and `.bucket` by `le`.
_HISTOGRAMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "fastledger.journal.write.duration",
        "ns",
        "Each write of a group commit with its flush.",
        "journal_write_ns",
    ),
    (
        "fastledger.journal.lock_wait.duration",
        "ns",
        "Each wait for the journal's append lock.",
        "lock_wait_ns",
    ),
    (
        "fastledger.catch_up.duration",
        "ns",
        "Each application of batches other processes appended.",
        "catch_up_ns",
    ),
    (
        "fastledger.journal.group.size",
        "{batch}",
        "Batches per write of a group commit.",
        "group_batches",
    ),
)


def _callback(
    observed: _Observed, read: Read
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterator[Observation]:
        for snapshot, attributes in observed.snapshots():
            for value, own in read(snapshot):
                yield Observation(value, {**attributes, **own})

    return callback


def _register(meter: Meter, observed: _Observed) -> None:
    for name, unit, description, read in _COUNTERS:
        meter.create_observable_counter(name, [_callback(observed, read)], unit, description)
    for name, unit, description, read in _GAUGES:
        meter.create_observable_gauge(name, [_callback(observed, read)], unit, description)
    for name, unit, description, field in _HISTOGRAMS:
        for suffix, read, suffix_unit in (
            ("count", _histogram_count(field), "{value}"),
            ("sum", _histogram_sum(field), unit),
            ("bucket", _histogram_buckets(field), "{value}"),
        ):
            meter.create_observable_counter(
                f"{name}.{suffix}", [_callback(observed, read)], suffix_unit, description
            )
