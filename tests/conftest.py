"""Shared fixtures: every scenario runs against both engines.

The Rust engine is skipped only where the native extension is missing and
FASTLEDGER_REQUIRE_RUST is unset; CI sets it, so a broken wheel fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

import fastledger

from .postgres import journal_url

ENGINE_NAMES = ("python", "rust")


class FakeClock:
    """A clock that tests move by hand, in nanoseconds."""

    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float = 0, ns: int = 0) -> None:
        self.now_ns += int(seconds * 1_000_000_000) + ns


def require_engine(name: str) -> None:
    if name == "rust" and not fastledger.rust_engine_available():
        if os.environ.get("FASTLEDGER_REQUIRE_RUST"):
            pytest.fail("the Rust engine is required but fastledger._native cannot be imported")
        pytest.skip("the Rust engine is not built")


@pytest.fixture(params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_engine(name)
    return name


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_ledger(engine: str, clock: FakeClock) -> Iterator[Callable[[], fastledger.Ledger]]:
    def make() -> fastledger.Ledger:
        return fastledger.Ledger(engine=engine, clock=clock)

    yield make


@pytest.fixture
def ledger(make_ledger: Callable[[], fastledger.Ledger]) -> fastledger.Ledger:
    return make_ledger()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL journal in tables of the test's own, dropped after it. Without
    a server the test skips, or fails where FASTLEDGER_REQUIRE_POSTGRES=1: see postgres.py."""
    with journal_url() as url:
        yield url
