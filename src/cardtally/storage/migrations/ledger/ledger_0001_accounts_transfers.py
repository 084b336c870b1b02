"""ledger 0001: accounts with cached balances and append-only double-entry transfers.

Revision ID: ledger_0001
Revises:
Create Date: 2025-11-21

The tables are spelled out here rather than imported from ``cardtally.ledger``:
a revision records history and must not change when the code moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "ledger_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_account",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("floor_minor", sa.BigInteger, nullable=True),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credits_posted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("debits_pending", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credits_pending", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("id", "currency", name="ledger_account_id_currency"),
        sa.CheckConstraint("length(currency) = 3", name="ledger_account_currency_code"),
        sa.CheckConstraint(
            "floor_minor IS NULL OR floor_minor <= 0", name="ledger_account_floor_le_0"
        ),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 "
            "AND credits_pending >= 0",
            name="ledger_account_totals_ge_0",
        ),
        sa.CheckConstraint(
            "floor_minor IS NULL OR credits_posted - debits_posted - debits_pending >= floor_minor",
            name="ledger_account_above_floor",
        ),
    )
    op.create_table(
        "ledger_transfer",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("debit_account_id", sa.Text, nullable=False),
        sa.Column("credit_account_id", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("pending_id", sa.Text, nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=True),
        sa.Column("reference", sa.Text, nullable=False, server_default=""),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["debit_account_id", "currency"],
            ["ledger_account.id", "ledger_account.currency"],
            name="ledger_transfer_debit_account",
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id", "currency"],
            ["ledger_account.id", "ledger_account.currency"],
            name="ledger_transfer_credit_account",
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"], ["ledger_transfer.id"], name="ledger_transfer_pending"
        ),
        sa.UniqueConstraint("pending_id", name="ledger_transfer_resolves_once"),
        sa.CheckConstraint(
            "kind IN ('single', 'pending', 'post', 'void')", name="ledger_transfer_kind_known"
        ),
        sa.CheckConstraint("amount_minor > 0", name="ledger_transfer_amount_gt_0"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ledger_transfer_two_accounts"
        ),
        sa.CheckConstraint(
            "(kind IN ('post', 'void')) = (pending_id IS NOT NULL)",
            name="ledger_transfer_pending_id_iff_resolution",
        ),
        sa.CheckConstraint(
            "(kind = 'pending') = (expires_at_ms IS NOT NULL)",
            name="ledger_transfer_expiry_iff_pending",
        ),
    )
    op.create_index(
        "ledger_transfer_debit_history", "ledger_transfer", ["debit_account_id", "at_ms", "id"]
    )
    op.create_index(
        "ledger_transfer_credit_history", "ledger_transfer", ["credit_account_id", "at_ms", "id"]
    )
    op.create_index("ledger_transfer_expiry", "ledger_transfer", ["expires_at_ms", "id"])
    for statement in append_only_ddl("ledger_transfer", op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    # A deliberate refusal, not a missing step: going below ledger_0001 would drop the
    # transfers, and nothing is ever deleted.
    raise StorageError("ledger_0001 cannot be downgraded: it would delete the ledger")
