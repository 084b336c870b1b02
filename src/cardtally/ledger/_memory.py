"""A dict-backed ledger store for the deterministic simulator and fast tests.

It refuses what the SQL schema's keys refuse (a duplicate id, a second
resolution of one hold), so a logic bug that would trip the database trips here
too. It does not copy the CHECK constraints: those back the ledger's own checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from cardtally.ledger._model import Account, Transfer, TransferKind

_V = TypeVar("_V")


class MemoryLedgerStore:
    """A dict-backed store for the simulator and tests; the same contract as the SQL one."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._transfers: dict[str, Transfer] = {}
        self._resolutions: dict[str, Transfer] = {}

    def _set(self, mapping: dict[str, _V], key: str, value: _V) -> None:
        """Every change of state goes through here, so a subclass can make changes undoable."""
        mapping[key] = value

    def account(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def insert_account(self, account: Account) -> None:
        # The same refusals a primary key gives the SQL store.
        if account.id in self._accounts:
            raise KeyError(f"account {account.id!r} exists")
        self._set(self._accounts, account.id, account)

    def save_balances(self, account: Account) -> None:
        stored = self._accounts[account.id]
        self._set(
            self._accounts,
            account.id,
            Account(
                id=stored.id,
                currency=stored.currency,
                floor_minor=stored.floor_minor,
                label=stored.label,
                created_at_ms=stored.created_at_ms,
                debits_posted=account.debits_posted,
                credits_posted=account.credits_posted,
                debits_pending=account.debits_pending,
                credits_pending=account.credits_pending,
            ),
        )

    def transfer(self, transfer_id: str) -> Transfer | None:
        return self._transfers.get(transfer_id)

    def insert_transfer(self, transfer: Transfer) -> None:
        # Mirrors the primary key and the UNIQUE(pending_id) of the SQL schema.
        if transfer.id in self._transfers:
            raise KeyError(f"transfer {transfer.id!r} exists")
        if transfer.pending_id is not None:
            if transfer.pending_id in self._resolutions:
                raise KeyError(f"pending {transfer.pending_id!r} is resolved already")
            self._set(self._resolutions, transfer.pending_id, transfer)
        self._set(self._transfers, transfer.id, transfer)

    def resolution_of(self, pending_id: str) -> Transfer | None:
        return self._resolutions.get(pending_id)

    def expired_pending(self, now_ms: int, limit: int) -> list[Transfer]:
        return self._earliest_expired(self._transfers.values(), now_ms, limit)

    def _earliest_expired(
        self, candidates: Iterable[Transfer], now_ms: int, limit: int
    ) -> list[Transfer]:
        """The contract of ``expired_pending`` over ``candidates`` (a subset, or everything)."""
        expired = [
            t
            for t in candidates
            if t.kind is TransferKind.PENDING
            and t.expires_at_ms is not None
            and t.expires_at_ms <= now_ms
            and t.id not in self._resolutions
        ]
        expired.sort(key=lambda t: (t.expires_at_ms, t.id))
        return expired[:limit]

    def transfers_of(self, account_id: str, limit: int) -> list[Transfer]:
        touching = [
            t
            for t in self._transfers.values()
            if account_id in (t.debit_account_id, t.credit_account_id)
        ]
        touching.sort(key=lambda t: (t.at_ms, t.id), reverse=True)
        return touching[:limit]

    def all_accounts(self) -> Iterator[Account]:
        return iter([self._accounts[key] for key in sorted(self._accounts)])

    def all_transfers(self) -> Iterator[Transfer]:
        return iter(list(self._transfers.values()))
