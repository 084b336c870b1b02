"""Ledger fixtures: the same tests run over memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from cardtally.ledger import (
    LEDGER_TREE,
    AccountSpec,
    Ledger,
    LedgerStore,
    MemoryLedgerStore,
    SqlLedgerStore,
    TransferKind,
    TransferSpec,
)
from cardtally.storage import migrate, open_engine, sqlite_url

CNY = "156"
USD = "840"
NOW = 1_000_000
HOLD_TTL_MS = 60_000

# The accounts every behaviour test starts from: a funding source without a floor,
# a debit card account (floor 0), a credit account with a limit of 50.00, a
# merchant settlement account, and one account in another currency.
ACCOUNTS = (
    AccountSpec("funding", CNY, None, "bank funding"),
    AccountSpec("card", CNY, 0, "debit card 6222...0001"),
    AccountSpec("credit", CNY, -5_000, "credit card 6250...0002"),
    AccountSpec("merchant", CNY, None, "merchant settlement"),
    AccountSpec("usd", USD, None, "USD funding"),
)


def single(
    transfer_id: str, debit: str, credit: str, amount: int, currency: str = CNY
) -> TransferSpec:
    return TransferSpec(transfer_id, debit, credit, amount, currency)


def pending(
    transfer_id: str, debit: str, credit: str, amount: int, expires_at_ms: int = NOW + HOLD_TTL_MS
) -> TransferSpec:
    return TransferSpec(
        transfer_id,
        debit,
        credit,
        amount,
        CNY,
        kind=TransferKind.PENDING,
        expires_at_ms=expires_at_ms,
    )


def resolve(
    transfer_id: str, hold: TransferSpec, kind: TransferKind, amount: int | None = None
) -> TransferSpec:
    return TransferSpec(
        transfer_id,
        hold.debit_account_id,
        hold.credit_account_id,
        hold.amount_minor if amount is None else amount,
        hold.currency,
        kind=kind,
        pending_id=hold.id,
    )


def open_all(ledger: Ledger, now_ms: int = NOW) -> None:
    for spec in ACCOUNTS:
        ledger.open_account(spec, now_ms)


@pytest.fixture
def ledger_engine(engine: Engine) -> Engine:
    """An engine (SQLite or PostgreSQL) on a database migrated to the ledger head."""
    migrate(engine, LEDGER_TREE)
    return engine


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """A ledger store; a SQL one runs the whole test in one transaction, as the issuer would."""
    if request.param == "memory":
        yield MemoryLedgerStore()
        return
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "ledger.sqlite3")
    else:
        url = request.getfixturevalue("pg_url")
    engine = open_engine(url)
    try:
        migrate(engine, LEDGER_TREE)
        with engine.connect() as conn, conn.begin():
            yield SqlLedgerStore(conn)
    finally:
        engine.dispose()


@pytest.fixture
def ledger(store: LedgerStore) -> Ledger:
    return Ledger(store)
