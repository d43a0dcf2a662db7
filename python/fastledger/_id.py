"""Time-ordered unique 128-bit ids, as TigerBeetle's clients make them.

The high 48 bits are milliseconds since the epoch and the low 80 bits are random, so ids sort
by creation time, which keeps the ledger's indexes append-mostly. Within one millisecond the
random part is incremented, so ids from one process are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time

_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1

_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def id() -> int:
    """Returns a new time-ordered unique u128 id, never 0 and never 2**128 - 1."""
    global _last_ms, _last_random
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            if _last_random == _RANDOM_MAX:
                ms += 1  # The millisecond is used up: borrow the next one.
                _last_random = int.from_bytes(os.urandom(10), "little") >> 1
            else:
                _last_random += 1
        else:
            _last_random = int.from_bytes(os.urandom(10), "little")
        _last_ms = ms
        return (ms << _RANDOM_BITS) | _last_random
