"""Benchmarks of both engines under pytest-benchmark, kept apart from the test suite.

Run them with `python -m pytest benches --benchmark-only`. Their files are named `bench_*.py`,
which the test suite's collection never picks up; the hook below collects them here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fastledger

ENGINE_NAMES = ("python", "rust")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # A file named on the command line is collected by pytest itself, whatever its name.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
        return module
    return None


@pytest.fixture(params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn; the Rust one is skipped when the extension is not built, unless
    FASTLEDGER_REQUIRE_RUST is set, as it is for the tests."""
    name: str = request.param
    if name == "rust" and not fastledger.rust_engine_available():
        if os.environ.get("FASTLEDGER_REQUIRE_RUST"):
            pytest.fail("the Rust engine is required but fastledger._native cannot be imported")
        pytest.skip("the Rust engine is not built")
    return name
