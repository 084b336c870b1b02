"""The ledger store over SQLAlchemy Core, for SQLite and PostgreSQL.

The caller owns the transaction (the issuer commits a batch of requests at once,
a SAVEPOINT per request), so nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from sqlalchemy import ColumnElement, Row, Select, bindparam, select, union_all, update
from sqlalchemy.engine import Connection

from cardtally.ledger._model import Account, Transfer, TransferKind
from cardtally.ledger._schema import ledger_account_table as _accounts
from cardtally.ledger._schema import ledger_transfer_table as _transfers

# Rows fetched per round trip when streaming a whole table for verify().
_STREAM_ROWS = 1_000

# The statements every transfer runs, built once: building a statement per call and computing
# its cache key costs SQLAlchemy several times what executing the cached SQL does (see
# docs/benchmarks.md). Bound names differ from column names, which SET and VALUES keep.
# FOR UPDATE (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers): two
# transactions reading a balance, then both writing it back, would lose one.
_ACCOUNT: Final = select(_accounts).where(_accounts.c.id == bindparam("b_id")).with_for_update()
_SAVE_BALANCES: Final = update(_accounts).where(_accounts.c.id == bindparam("b_id"))
_TRANSFER: Final = select(_transfers).where(_transfers.c.id == bindparam("b_id"))
_INSERT_TRANSFER: Final = _transfers.insert()
_RESOLUTION_OF: Final = select(_transfers).where(_transfers.c.pending_id == bindparam("b_id"))


class SqlLedgerStore:
    """A :class:`~cardtally.ledger.LedgerStore` on a connection in the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._postgres = conn.dialect.name == "postgresql"

    def account(self, account_id: str) -> Account | None:
        row = self._conn.execute(_ACCOUNT, {"b_id": account_id}).one_or_none()
        return None if row is None else _account(row)

    def insert_account(self, account: Account) -> None:
        self._conn.execute(
            _accounts.insert().values(
                id=account.id,
                currency=account.currency,
                floor_minor=account.floor_minor,
                label=account.label,
                created_at_ms=account.created_at_ms,
                **_balances(account),
            )
        )

    def save_balances(self, account: Account) -> None:
        result = self._conn.execute(_SAVE_BALANCES, {"b_id": account.id, **_balances(account)})
        if result.rowcount != 1:
            raise LookupError(f"no ledger account {account.id!r} to update")

    def transfer(self, transfer_id: str) -> Transfer | None:
        row = self._conn.execute(_TRANSFER, {"b_id": transfer_id}).one_or_none()
        return None if row is None else _transfer(row)

    def insert_transfer(self, transfer: Transfer) -> None:
        self._conn.execute(
            _INSERT_TRANSFER,
            {
                "id": transfer.id,
                "kind": transfer.kind.value,
                "debit_account_id": transfer.debit_account_id,
                "credit_account_id": transfer.credit_account_id,
                "amount_minor": transfer.amount_minor,
                "currency": transfer.currency,
                "pending_id": transfer.pending_id,
                "expires_at_ms": transfer.expires_at_ms,
                "reference": transfer.reference,
                "at_ms": transfer.at_ms,
            },
        )

    def resolution_of(self, pending_id: str) -> Transfer | None:
        row = self._conn.execute(_RESOLUTION_OF, {"b_id": pending_id}).one_or_none()
        return None if row is None else _transfer(row)

    def expired_pending(self, now_ms: int, limit: int) -> list[Transfer]:
        resolution = _transfers.alias("resolution")
        resolved = select(resolution.c.id).where(resolution.c.pending_id == _transfers.c.id)
        query = (
            select(_transfers)
            .where(
                _transfers.c.kind == TransferKind.PENDING.value,
                _transfers.c.expires_at_ms <= now_ms,
                ~resolved.exists(),
            )
            .order_by(_transfers.c.expires_at_ms, self._by_id(_transfers.c.id))
            .limit(limit)
        )
        return [_transfer(row) for row in self._conn.execute(query)]

    def transfers_of(self, account_id: str, limit: int) -> list[Transfer]:
        # One limited branch per side, so each can walk its own (account, at_ms, id) index.
        sides = [
            select(_transfers)
            .where(column == account_id)
            .order_by(_transfers.c.at_ms.desc(), self._by_id(_transfers.c.id).desc())
            .limit(limit)
            .subquery()
            .select()
            for column in (_transfers.c.debit_account_id, _transfers.c.credit_account_id)
        ]
        both = union_all(*sides).subquery()
        query = (
            select(both).order_by(both.c.at_ms.desc(), self._by_id(both.c.id).desc()).limit(limit)
        )
        return [_transfer(row) for row in self._conn.execute(query)]

    def all_accounts(self) -> Iterator[Account]:
        query = select(_accounts).order_by(self._by_id(_accounts.c.id))
        return (_account(row) for row in self._stream(query))

    def all_transfers(self) -> Iterator[Transfer]:
        # No ORDER BY: a sequential scan streams without sorting the whole table.
        return (_transfer(row) for row in self._stream(select(_transfers)))

    def _stream(self, query: Select[Any]) -> Iterator[Row[Any]]:
        result = self._conn.execution_options(yield_per=_STREAM_ROWS).execute(query)
        try:
            yield from result
        finally:
            result.close()

    def _by_id(self, column: ColumnElement[str]) -> ColumnElement[str]:
        # PostgreSQL sorts text by the database's locale; byte order ("C") matches
        # SQLite and the memory store, so every store lists ties the same way.
        return column.collate("C") if self._postgres else column


def _balances(account: Account) -> dict[str, int]:
    return {
        "debits_posted": account.debits_posted,
        "credits_posted": account.credits_posted,
        "debits_pending": account.debits_pending,
        "credits_pending": account.credits_pending,
    }


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        currency=row.currency,
        floor_minor=row.floor_minor,
        label=row.label,
        created_at_ms=row.created_at_ms,
        debits_posted=row.debits_posted,
        credits_posted=row.credits_posted,
        debits_pending=row.debits_pending,
        credits_pending=row.credits_pending,
    )


def _transfer(row: Row[Any]) -> Transfer:
    return Transfer(
        id=row.id,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        kind=TransferKind(row.kind),
        pending_id=row.pending_id,
        expires_at_ms=row.expires_at_ms,
        reference=row.reference,
        at_ms=row.at_ms,
    )
