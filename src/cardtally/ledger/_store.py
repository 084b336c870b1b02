"""The storage port: the few primitives the ledger logic needs, and no logic of its own.

Two implementations keep the same contract: :class:`MemoryLedgerStore` for the
simulator and fast property tests, ``SqlLedgerStore`` for the runtime. Because
every rule lives in :class:`~cardtally.ledger.Ledger`, a rule tested over memory
is the rule that runs over SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from cardtally.ledger._model import Account, Transfer


class LedgerStore(Protocol):
    """Where accounts and transfers live. Callers own transactions; stores never commit."""

    def account(self, account_id: str) -> Account | None:
        """The account, or None. A SQL store locks the row for the rest of the transaction."""
        ...

    def insert_account(self, account: Account) -> None: ...

    def save_balances(self, account: Account) -> None:
        """Overwrite the four running totals of an existing account."""
        ...

    def transfer(self, transfer_id: str) -> Transfer | None: ...

    def insert_transfer(self, transfer: Transfer) -> None: ...

    def resolution_of(self, pending_id: str) -> Transfer | None:
        """The POST or VOID that resolved the pending transfer, if any."""
        ...

    def expired_pending(self, now_ms: int, limit: int) -> list[Transfer]:
        """Unresolved PENDING transfers with ``expires_at_ms <= now_ms``, earliest expiry first."""
        ...

    def transfers_of(self, account_id: str, limit: int) -> list[Transfer]:
        """Transfers debiting or crediting the account, newest first (``at_ms``, then id)."""
        ...

    def all_accounts(self) -> Iterator[Account]:
        """Every account, by id."""
        ...

    def all_transfers(self) -> Iterator[Transfer]:
        """Every transfer, streamed in no promised order."""
        ...
