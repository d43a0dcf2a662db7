"""Point-in-time balances, kept as packed columns.

`Ledger.balances_at` answers for every account at once, so its answer must not cost one Python
object per account: `Balances` keeps five columns of little-endian u128 (account id and the
four balance fields) and makes an `AccountBalance` only for the account that is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ._types import AccountBalance

__all__ = ["COLUMNS", "Balances", "TrialBalance", "pack_u128"]

COLUMNS = ("account_id", "debits_pending", "debits_posted", "credits_pending", "credits_posted")
_WIDTH = 16


def pack_u128(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(_WIDTH, "little") for v in values)


class Balances(Mapping[int, AccountBalance]):
    """A read-only mapping from account id to its `AccountBalance` as of `timestamp`."""

    __slots__ = ("_columns", "_count", "_index", "timestamp")

    def __init__(self, timestamp: int, columns: tuple[bytes, bytes, bytes, bytes, bytes]) -> None:
        count = len(columns[0]) // _WIDTH
        assert all(len(column) == count * _WIDTH for column in columns)
        self.timestamp = timestamp
        self._columns = columns
        self._count = count
        self._index: dict[int, int] | None = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        ids = self._columns[0]
        return (int.from_bytes(ids[i : i + _WIDTH], "little") for i in range(0, len(ids), _WIDTH))

    def __getitem__(self, account_id: int) -> AccountBalance:
        if self._index is None:
            self._index = {account: i for i, account in enumerate(self)}
        i = self._index[account_id] * _WIDTH
        dp, dpo, cp, cpo = (
            int.from_bytes(column[i : i + _WIDTH], "little") for column in self._columns[1:]
        )
        return AccountBalance(
            debits_pending=dp,
            debits_posted=dpo,
            credits_pending=cp,
            credits_posted=cpo,
            timestamp=self.timestamp,
        )

    def column(self, name: str) -> list[int]:
        """One column as Python ints: one of `COLUMNS`."""
        packed = self.column_bytes(name)
        return [
            int.from_bytes(packed[i : i + _WIDTH], "little") for i in range(0, len(packed), _WIDTH)
        ]

    def column_bytes(self, name: str) -> bytes:
        """One column as packed little-endian u128, for NumPy or a file, without copies of
        each value (`numpy.frombuffer(b, dtype="<u8").reshape(-1, 2)` reads it as lo/hi)."""
        return self._columns[COLUMNS.index(name)]

    def columns(self) -> dict[str, list[int]]:
        return {name: self.column(name) for name in COLUMNS}

    def __repr__(self) -> str:
        return f"<Balances of {self._count} accounts at {self.timestamp}>"


@dataclass(frozen=True, slots=True)
class TrialBalance:
    """The per-account totals of one ledger as of `timestamp`, and their sums.

    `balanced` is true when total debits equal total credits, posted and pending.
    """

    ledger: int
    timestamp: int
    accounts: Balances
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def balanced(self) -> bool:
        return (
            self.debits_posted == self.credits_posted
            and self.debits_pending == self.credits_pending
        )
