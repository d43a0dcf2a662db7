"""The export and import of the Python engine's whole state, the twin of
`rust/core/src/state.rs`: both engines export and import the same bytes (the format of
`_state.py`), so a snapshot written by one opens in the other.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from .._records import iter_transfer_fields, pack_transfer_fields
from .._state import EngineState, decode_state, encode_state
from .._state_check import check_state
from .._types import TransferFlags
from .storage import (
    FLAGS,
    ID,
    PENDING,
    AccountState,
    Storage,
    expires_at,
    stored_transfer,
    transfer_record,
)

_PENDING = TransferFlags.PENDING.value


class StateExchange(Storage):
    """The export and import of the whole state."""

    def export_state(self) -> bytes:
        """The whole state in the engine state format of `_state.py`: the same state gives the
        same bytes in both engines, so a snapshot opens in either."""
        assert self._undo is None
        log = list(iter_transfer_fields(self._transfer_log))
        return encode_state(
            EngineState(
                accounts=[a.record() for a in self._account_log],
                transfers=[transfer_record(t) for t in log],
                pending=bytes(self._pending_status[t[ID]] for t in log if t[FLAGS] & _PENDING),
                failed_ids=sorted(self._failed_ids),
                history=[b for a in self._account_log if a.history is not None for b in a.history],
            )
        )

    def import_state(self, state: bytes) -> None:
        """Loads a state that `export_state` made into this fresh engine and rebuilds every
        index from it: the id maps, the per-account transfer lists and the expiry heap.
        Raises ValueError, changing nothing, unless the state hangs together
        (`_state_check.py`)."""
        assert not self._account_log and not self._transfer_log, "import into a fresh engine"
        decoded = decode_state(state)
        check_state(decoded)
        for a in decoded.accounts:
            account = AccountState(a, a.timestamp)
            balances = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            account.restore((*balances, a.flags))
            self._accounts[a.id] = account
            self._account_log.append(account)
        for t in decoded.transfers:
            position = self._transfer_count()
            self._transfer_index[t.id] = position
            self._transfer_log += pack_transfer_fields(stored_transfer(t))
            self._accounts[t.debit_account_id].transfers.append(position)
            self._accounts[t.credit_account_id].transfers.append(position)
        pending = [t for t in decoded.transfers if t.flags & _PENDING]
        for t, status in zip(pending, decoded.pending, strict=True):
            self._pending_status[t.id] = status
            if status == PENDING and t.timeout:
                heapq.heappush(self._expiry, (expires_at(stored_transfer(t)), t.timestamp, t.id))
        self._failed_ids.update(decoded.failed_ids)
        entries = iter(decoded.history)
        for account in self._account_log:
            if account.history is not None:
                account.history = [
                    replace(next(entries), timestamp=self._transfer_timestamp(position))
                    for position in account.transfers
                ]
