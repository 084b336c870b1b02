"""The simulator's ledger store: :class:`MemoryLedgerStore` with every change undoable.

The refusals (duplicate ids, a hold resolved twice) are the memory store's own; this class
only routes each change through an :class:`UndoLog`, so a rolled-back step leaves the ledger
exactly as it was, and keeps two small indexes the simulator needs:

* transfers in the order they were written, so an invariant checker can look at just the
  transfers a step added (``transfer_count`` before, ``transfers_since`` after);
* the holds not yet resolved, so the expiry sweep that runs on every tick scans the open
  holds (few) rather than every transfer ever written. Still a scan, and a sort of what it
  finds: fine for the simulator's scale, not an index a database would keep.
"""

from __future__ import annotations

from typing import TypeVar

from cardtally.ledger import MemoryLedgerStore, Transfer, TransferKind
from cardtally.sim._undo import UndoLog

_V = TypeVar("_V")


class UndoableLedgerStore(MemoryLedgerStore):
    """A :class:`~cardtally.ledger.LedgerStore` in memory whose changes ``log`` can undo."""

    def __init__(self, log: UndoLog) -> None:
        super().__init__()
        self._log = log
        self._written: list[Transfer] = []
        self._open_holds: dict[str, Transfer] = {}

    @property
    def log(self) -> UndoLog:
        return self._log

    def _set(self, mapping: dict[str, _V], key: str, value: _V) -> None:
        self._log.set(mapping, key, value)

    def insert_transfer(self, transfer: Transfer) -> None:
        # The parent refuses before it changes anything, so a refusal leaves no note behind.
        super().insert_transfer(transfer)
        self._log.append(self._written, transfer)
        if transfer.pending_id is not None:
            self._log.delete(self._open_holds, transfer.pending_id)
        if transfer.kind is TransferKind.PENDING and self.resolution_of(transfer.id) is None:
            self._log.set(self._open_holds, transfer.id, transfer)

    def expired_pending(self, now_ms: int, limit: int) -> list[Transfer]:
        return self._earliest_expired(self._open_holds.values(), now_ms, limit)

    # --- for the simulator's invariant checks ----------------------------------------------

    def transfer_count(self) -> int:
        """How many transfers were written (committed, or in the open transaction)."""
        return len(self._written)

    def transfers_since(self, n: int) -> list[Transfer]:
        """Transfers in the order they were written, from the ``n``-th (0-based) on."""
        if n < 0:
            raise ValueError(f"n must not be negative: {n}")
        return self._written[n:]
