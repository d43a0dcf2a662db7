"""The Python engine: the ledger's state machine in plain Python, written to be read.

It is the reference, the oracle that the Rust engine is tested against: the differential tests
send the same batches to both and require the same results, lookups and queries, and the state
tests require the same exported state, byte for byte. It is also the fallback that a `Ledger`
uses where the native module is unavailable. Its speed is not the point; readability and
results identical to the Rust engine's are.

Its files mirror `rust/core/src/`, so that each can be held against its Rust twin: `rules`
(the creates, the batch loop and its undo, expiry) against `engine.rs`, `query` (lookups,
queries and point-in-time balances) against `query.rs`, and `state` (export and import of the
whole state) against `state.rs`. `storage` holds what all three read: the accounts, the
transfer log and its indexes.
"""

from __future__ import annotations

from .query import Queries
from .rules import Rules
from .state import StateExchange

__all__ = ["PythonEngine"]


class PythonEngine(Rules, Queries, StateExchange):
    """The reference state machine, with the methods of the engine contract
    (`_contract.Engine`). Not thread-safe: the `Ledger` facade holds the lock."""

    name = "python"
