"""The statuses are written once, in the tables of `rust/core/src/status.rs`.

The Python module of statuses is generated from those tables; these tests fail, showing the
exact difference, when the module that Python imports is not what the tables make of it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fastledger import _statuses

GENERATOR = Path(__file__).resolve().parent.parent / "tools" / "gen_statuses.py"

pytestmark = pytest.mark.skipif(
    not GENERATOR.exists(), reason="the source tree's tools/ is not here"
)


def load_generator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_statuses", GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up in sys.modules while the module runs.
    monkeypatch.setitem(sys.modules, "gen_statuses", generator)
    spec.loader.exec_module(generator)
    return generator


def test_the_imported_status_module_is_generated_from_the_rust_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = load_generator(monkeypatch)
    imported = Path(_statuses.__file__).read_text(encoding="utf-8")
    diff = generator.difference(generator.generated(), imported)
    assert not diff, f"run `python tools/gen_statuses.py`; the module differs:\n{diff}"


def test_a_row_without_its_classification_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = load_generator(monkeypatch)
    source = generator.SOURCE.read_text(encoding="utf-8")
    unclassified = source.replace("ExceedsDebits = 55, Transient;", "ExceedsDebits = 55;")
    assert unclassified != source
    with pytest.raises(ValueError, match="not a row of a status table"):
        generator.parse(unclassified)


def test_rust_names_become_python_names(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = load_generator(monkeypatch)
    assert generator.python_name("ExistsWithDifferentUserData128") == (
        "EXISTS_WITH_DIFFERENT_USER_DATA_128"
    )
    assert generator.python_name("IdMustNotBeIntMax") == "ID_MUST_NOT_BE_INT_MAX"
