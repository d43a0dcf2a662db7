"""Every example program runs to the end and tells the story it promises.

The examples assert their own outcomes; this test runs each `main()` with the default engine and
checks a line or two of what it prints. It also runs the typed usage module, so the code that
mypy checks is code that works. An installed source distribution carries no examples, and then
the examples are skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TYPED_USAGE = Path(__file__).resolve().parent / "typed_usage.py"

# A line (or part of one) that each example must print.
EXPECTED_LINES = {
    "wallet_topup_and_p2p": [
        "Alice pays Bob 30.00 USD: CREATED",
        "Alice tries to pay Bob 80.00 USD with 70.00 USD: EXCEEDS_CREDITS",
        "after refusal: alice 70.00 USD, bob 30.00 USD",
    ],
    "card_authorisation": [
        "Hotel captures 42.50 USD of it, the rest is released: CREATED",
        "The pump is not used and the hold is voided: CREATED",
        "The kiosk's late capture: PENDING_TRANSFER_EXPIRED",
    ],
    "payment_with_fee": [
        "legs: CREATED, CREATED",
        "legs: LINKED_EVENT_FAILED, LINKED_EVENT_FAILED, CREDIT_ACCOUNT_NOT_FOUND",
        "nothing moved and no leg was stored",
    ],
    "currency_exchange": [
        "Alice sells 123.45 USD (+ 0.50 USD spread) for 113.36 EUR: CREATED, CREATED, CREATED",
        "LINKED_EVENT_FAILED, LINKED_EVENT_FAILED, EXCEEDS_CREDITS",
        "EUR ledger balanced",
    ],
    "account_statement": [
        "-- page 4 --",
        "20 lines, closing balance 1424.29 USD",
        "Balance at the end of 2025-03-03: 1641.43 USD",
    ],
    "packed_batches": [
        "Posted 5000 payments: 4285 CREATED, 715 EXCEEDS_CREDITS",
    ],
}
WITHOUT_NUMPY = {"packed_batches": ["NumPy is not installed"]}


def load(path: Path) -> ModuleType:
    """Imports a program by its path, under a name no other module uses."""
    name = f"fastledger_example_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import would be, so that its classes can find it.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture
def loaded() -> Iterator[Callable[[Path], ModuleType]]:
    names: list[str] = []

    def load_once(path: Path) -> ModuleType:
        module = load(path)
        names.append(module.__name__)
        return module

    yield load_once
    for name in names:
        sys.modules.pop(name, None)


def expected_lines(name: str) -> list[str]:
    if name in WITHOUT_NUMPY and importlib.util.find_spec("numpy") is None:
        return WITHOUT_NUMPY[name]
    return EXPECTED_LINES[name]


def test_every_example_has_expected_lines() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("the examples folder is not part of this installation")
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED_LINES)


@pytest.mark.parametrize("name", sorted(EXPECTED_LINES))
def test_example_runs_and_reports_its_outcome(
    name: str, loaded: Callable[[Path], ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("the examples folder is not part of this installation")
    module = loaded(EXAMPLES / f"{name}.py")
    module.main()
    out = capsys.readouterr().out
    for line in expected_lines(name):
        assert line in out, f"{name} did not print {line!r}; it printed:\n{out}"


def test_typed_usage_runs(
    loaded: Callable[[Path], ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    module = loaded(TYPED_USAGE)
    module.main()
    assert "typed usage: ok" in capsys.readouterr().out
