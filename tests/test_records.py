"""The binary layouts both engines share: 128-byte records and the engine state of snapshots."""

from __future__ import annotations

import pytest

from fastledger import Ledger, _ledger

from .conftest import FakeClock, require_engine
from .helpers import account, pending

ENGINE_NAMES = ("python", "rust")


def state_with_one_pending_transfer(engine: str) -> bytes:
    ledger = Ledger(engine=engine, clock=FakeClock())
    ledger.create_accounts([account(1), account(2)])
    ledger.create_transfers([pending(10, 1, 2, 5, timeout=1)])
    exporter = _ledger._snapshot_engine(ledger._engine)
    assert exporter is not None
    return exporter.export_state()


def import_error(engine: str, state: bytes) -> str:
    importer = _ledger._snapshot_engine(Ledger(engine=engine)._engine)
    assert importer is not None
    with pytest.raises(ValueError) as error:
        importer.import_state(state)
    return str(error.value)


@pytest.mark.parametrize("status", [0, 5, 255])
def test_both_engines_refuse_a_pending_status_outside_1_to_4_alike(status: int) -> None:
    for name in ENGINE_NAMES:
        require_engine(name)
    state = bytearray(state_with_one_pending_transfer("python"))
    assert state_with_one_pending_transfer("rust") == state
    # The one pending status byte follows the header, two accounts and one transfer.
    at = 64 + 3 * 128
    assert state[at] == 1
    state[at] = status
    messages = {name: import_error(name, bytes(state)) for name in ENGINE_NAMES}
    assert messages == {name: f"pending transfer 10 has status {status}" for name in ENGINE_NAMES}
