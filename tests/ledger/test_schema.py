"""The ledger tables refuse bad rows by themselves, whoever writes them."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cardtally.ledger import (
    LEDGER_TREE,
    Ledger,
    SqlLedgerStore,
    TransferKind,
    ledger_account_table,
    ledger_metadata,
    ledger_transfer_table,
)
from cardtally.storage import (
    APPEND_ONLY_MARK,
    StorageError,
    alembic_config,
    current_revision,
    head_revision,
    migration_trees,
    transaction,
    version_table,
)
from tests.ledger.conftest import CNY, NOW, open_all, pending, single

accounts, transfers = ledger_account_table, ledger_transfer_table


def _seed(engine: Engine) -> None:
    with transaction(engine) as conn:
        ledger = Ledger(SqlLedgerStore(conn))
        open_all(ledger)
        ledger.transfer(single("load", "funding", "card", 10_000), NOW)
        ledger.transfer(pending("hold", "card", "merchant", 3_000), NOW)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "raw",
        "kind": "single",
        "debit_account_id": "funding",
        "credit_account_id": "merchant",
        "amount_minor": 1,
        "currency": CNY,
        "pending_id": None,
        "expires_at_ms": None,
        "reference": "",
        "at_ms": NOW,
    }
    row.update(changes)
    return row


def test_ledger_tree_is_shipped() -> None:
    assert LEDGER_TREE in migration_trees()
    assert head_revision(LEDGER_TREE) == "ledger_0001"
    assert version_table(LEDGER_TREE) == "alembic_version_ledger"


def test_table_objects_match_the_migrated_schema(ledger_engine: Engine) -> None:
    with ledger_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": version_table(LEDGER_TREE)}
        )
        diff = compare_metadata(context, ledger_metadata)
    assert diff == []


def test_a_balance_below_its_floor_is_refused_by_the_database(ledger_engine: Engine) -> None:
    _seed(ledger_engine)
    with (
        pytest.raises(IntegrityError, match=r"ledger_account_above_floor|CHECK constraint"),
        transaction(ledger_engine) as conn,
    ):
        # 100.00 in, 30.00 held: a 70.01 debit would leave -0.01 available on a floor of 0.
        conn.execute(update(accounts).where(accounts.c.id == "card").values(debits_posted=7_001))
    with transaction(ledger_engine) as conn:
        ledger = Ledger(SqlLedgerStore(conn))
        assert ledger.account("card").available_minor == 7_000
        # Without a floor, the same write is allowed: the rule is the floor, not the sign.
        conn.execute(
            update(accounts).where(accounts.c.id == "funding").values(debits_posted=20_000)
        )


@pytest.mark.parametrize("column", ["debits_posted", "credits_posted", "credits_pending"])
def test_negative_totals_are_refused_by_the_database(ledger_engine: Engine, column: str) -> None:
    _seed(ledger_engine)
    with pytest.raises(IntegrityError), transaction(ledger_engine) as conn:
        conn.execute(update(accounts).where(accounts.c.id == "merchant").values({column: -1}))


def test_transfers_cannot_be_changed_or_deleted(ledger_engine: Engine) -> None:
    _seed(ledger_engine)
    with (
        pytest.raises(IntegrityError, match=f"{APPEND_ONLY_MARK}; UPDATE refused"),
        transaction(ledger_engine) as conn,
    ):
        conn.execute(update(transfers).where(transfers.c.id == "load").values(amount_minor=1))
    with (
        pytest.raises(IntegrityError, match=f"{APPEND_ONLY_MARK}; DELETE refused"),
        transaction(ledger_engine) as conn,
    ):
        conn.execute(delete(transfers).where(transfers.c.id == "hold"))
    with transaction(ledger_engine) as conn:
        ledger = Ledger(SqlLedgerStore(conn))
        assert sorted(t.amount_minor for t in ledger.history("card")) == [3_000, 10_000]


@pytest.mark.parametrize(
    "row",
    [
        _row(kind="refund"),
        _row(amount_minor=0),
        _row(credit_account_id="funding"),
        _row(credit_account_id="ghost"),
        _row(credit_account_id="usd"),
        _row(pending_id="hold"),
        _row(kind="pending"),
        _row(kind="void", pending_id="nope"),
        _row(currency="15"),
    ],
    ids=[
        "unknown-kind",
        "zero-amount",
        "same-account",
        "unknown-account",
        "other-currency",
        "pending-id-on-single",
        "pending-without-expiry",
        "unknown-pending",
        "bad-currency",
    ],
)
def test_malformed_transfers_are_refused_by_the_database(
    ledger_engine: Engine, row: dict[str, Any]
) -> None:
    _seed(ledger_engine)
    with pytest.raises(IntegrityError), transaction(ledger_engine) as conn:
        conn.execute(insert(transfers).values(row))


def test_a_hold_is_resolved_once_even_behind_the_ledgers_back(ledger_engine: Engine) -> None:
    _seed(ledger_engine)
    post = _row(
        id="capture",
        kind=TransferKind.POST.value,
        debit_account_id="card",
        pending_id="hold",
        amount_minor=3_000,
    )
    with transaction(ledger_engine) as conn:
        conn.execute(insert(transfers).values(post))
    with (
        pytest.raises(IntegrityError, match=r"ledger_transfer_resolves_once|UNIQUE"),
        transaction(ledger_engine) as conn,
    ):
        conn.execute(insert(transfers).values({**post, "id": "capture-2", "kind": "void"}))


def test_ledger_refuses_to_downgrade(ledger_engine: Engine) -> None:
    _seed(ledger_engine)
    config = alembic_config(LEDGER_TREE)
    with ledger_engine.connect() as conn:
        config.attributes["connection"] = conn
        with pytest.raises(StorageError, match="would delete the ledger"):
            command.downgrade(config, "base")
    assert current_revision(ledger_engine, LEDGER_TREE) == head_revision(LEDGER_TREE)


def test_a_well_formed_raw_row_is_accepted(ledger_engine: Engine) -> None:
    # The control for the refusals above: each of them changes one thing in this row.
    _seed(ledger_engine)
    with transaction(ledger_engine) as conn:
        conn.execute(insert(transfers).values(_row()))
