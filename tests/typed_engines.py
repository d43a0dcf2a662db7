"""Both engines keep the engine contract, for `mypy --strict` to check.

Each function returns an engine as the protocol `Engine`: mypy refuses it unless every method of
the protocol is there with a compatible signature. `tests/test_engine_contract.py` checks at run
time that neither engine has a method more.
"""

from __future__ import annotations

from fastledger._contract import Engine
from fastledger._native import Engine as RustEngine
from fastledger.engine import PythonEngine


def python_engine() -> Engine:
    return PythonEngine()


def rust_engine() -> Engine:
    return RustEngine()
