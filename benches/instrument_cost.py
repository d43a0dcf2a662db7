"""What OpenTelemetry costs a create of one transfer in memory, the figures of the README.

    python benches/instrument_cost.py

Each case runs in a new interpreter, so that a ledger never instrumented is measured in a
process that has not imported OpenTelemetry. A case is the best of 9 runs of 50,000 creates of
prebuilt transfers, less the cost of the loop itself. Needs opentelemetry-api and -sdk.
"""

from __future__ import annotations

import subprocess
import sys
import timeit

CASES = {
    "never": "never instrumented",
    "uninstrumented": "instrumented, then uninstrumented",
    "api": "instrumented, opentelemetry-api without an SDK (no-op)",
    "sdk": "instrumented, the SDK's TracerProvider, no span processor",
}
CALLS = 50_000
RUNS = 9


def measure(case: str) -> float:
    """Nanoseconds per create in this process, for `case`."""
    import fastledger
    from fastledger import Account, Transfer

    ledger = fastledger.Ledger()
    ledger.create_accounts([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)])
    if case == "uninstrumented":
        fastledger.instrument(ledger).uninstrument()
    elif case == "api":
        fastledger.instrument(ledger)
    elif case == "sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        fastledger.instrument(
            ledger, meter_provider=MeterProvider(), tracer_provider=TracerProvider()
        )
    batches = iter(
        [
            [Transfer(id=i, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1)]
            for i in range(1, CALLS * RUNS + 1)
        ]
    )
    spent = timeit.repeat(
        "create(next(batches))",
        globals={"create": ledger.create_transfers, "batches": batches},
        number=CALLS,
        repeat=RUNS,
    )
    # The loop, `next` and a call of a function that does nothing, to subtract.
    values = iter(range(CALLS * RUNS))
    idle = timeit.repeat(
        "create(next(values))",
        globals={"create": lambda batch: batch, "values": values},
        number=CALLS,
        repeat=RUNS,
    )
    return (min(spent) - min(idle)) / CALLS * 1e9


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(measure(sys.argv[2]))
        return
    for case, label in CASES.items():
        done = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True
        )
        print(f"{label:<60} {float(done.stdout) / 1000:6.2f} us")


if __name__ == "__main__":
    main()
