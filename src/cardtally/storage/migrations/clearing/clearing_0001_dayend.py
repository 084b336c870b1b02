"""clearing 0001: the day end's record: days and their steps, reconciliation items, clearing
files, automatic actions and merchant statements.

Revision ID: clearing_0001
Revises:
Create Date: 2026-11-22

These tables live in the acquirer switch's database, beside the acquirer's ledger: day end is
the acquirer's job. A day's row and its steps change in place as the day end moves on (every
change is also an event); items, files, actions and statements are append-only, so what a day
end decided can never be rewritten, only added to by a later day.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "clearing_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = (
    "dayend_item",
    "dayend_batch",
    "dayend_file",
    "dayend_action",
    "dayend_statement",
    "dayend_payout",
)
_CLASSES = (
    "'matched', 'one_sided_debit', 'missing_at_issuer', 'unknown_to_host', 'amount_mismatch', "
    "'one_sided_credit', 'awaiting_batch', 'unsuccessful'"
)


def _days() -> None:
    op.create_table(
        "dayend_day",
        sa.Column("day", sa.Text, primary_key=True),  # YYYY-MM-DD
        sa.Column("window_start_ms", sa.BigInteger, nullable=False),
        sa.Column("window_end_ms", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("step", sa.Text, nullable=False),  # the last step completed
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.CheckConstraint("state IN ('running', 'closed')", name="dayend_day_state"),
        sa.CheckConstraint("window_start_ms < window_end_ms", name="dayend_day_window"),
    )


def _items() -> None:
    op.create_table(
        "dayend_item",
        sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), primary_key=True),
        sa.Column("item_no", sa.BigInteger, primary_key=True),
        sa.Column("class", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("switch_txn_id", sa.BigInteger, nullable=True),
        sa.Column("issuer_txn_id", sa.Text, nullable=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("terminal_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=True),
        sa.Column("stan", sa.Text, nullable=False),
        sa.Column("rrn", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("issuer_amount_minor", sa.BigInteger, nullable=True),
        sa.Column("terminal_amount_minor", sa.BigInteger, nullable=True),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("link_id", sa.Text, nullable=True),
        sa.Column("cleared_as", sa.Text, nullable=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint(f"class IN ({_CLASSES})", name="dayend_item_class"),
        sa.CheckConstraint(
            "cleared_as IS NULL OR (cleared_as IN ('debit', 'credit') AND class = 'matched')",
            name="dayend_item_cleared_only_matched",
        ),
    )
    op.create_index("dayend_item_switch_txn", "dayend_item", ["switch_txn_id"])
    op.create_index("dayend_item_issuer_txn", "dayend_item", ["issuer_txn_id"])
    op.create_index("dayend_item_rrn", "dayend_item", ["rrn"])
    op.create_table(
        "dayend_batch",
        sa.Column("terminal_id", sa.Text, primary_key=True),
        sa.Column("batch_no", sa.Integer, primary_key=True),
        sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), nullable=False),
    )


def _files_and_actions() -> None:
    op.create_table(
        "dayend_file",
        sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), primary_key=True),
        sa.Column("link_id", sa.Text, primary_key=True),
        sa.Column("fmt", sa.Text, primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("debit_minor", sa.BigInteger, nullable=False),
        sa.Column("credit_minor", sa.BigInteger, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("fmt IN ('csv', 'parquet')", name="dayend_file_fmt"),
    )
    op.create_table(
        "dayend_action",
        sa.Column("day", sa.Text, primary_key=True),
        sa.Column("item_no", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("switch_txn_id", sa.BigInteger, nullable=True),
        sa.Column("issuer_txn_id", sa.Text, nullable=True),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),  # the issuer's refund record id
        sa.Column("notice_id", sa.Text, nullable=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["day", "item_no"],
            ["dayend_item.day", "dayend_item.item_no"],
            name="dayend_action_item",
        ),
        sa.CheckConstraint("kind IN ('refund')", name="dayend_action_kind"),
    )


def _settlement() -> None:
    op.create_table(
        "dayend_statement",
        sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), primary_key=True),
        sa.Column("merchant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("fee_plan", sa.Text, nullable=False),
        sa.Column("rate_ppm", sa.Integer, nullable=False),
        sa.Column("agent", sa.Text, nullable=True),
        sa.Column("agent_ppm", sa.Integer, nullable=False),
        sa.Column("cycle", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("sales_count", sa.Integer, nullable=False),
        sa.Column("sales_minor", sa.BigInteger, nullable=False),
        sa.Column("refunds_count", sa.Integer, nullable=False),
        sa.Column("refunds_minor", sa.BigInteger, nullable=False),
        sa.Column("fee_minor", sa.BigInteger, nullable=False),
        sa.Column("agent_minor", sa.BigInteger, nullable=False),
        sa.Column("net_minor", sa.BigInteger, nullable=False),
        sa.Column("pay_day", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.CheckConstraint("cycle IN ('d0', 't1')", name="dayend_statement_cycle"),
    )
    op.create_table(
        "dayend_payout",
        sa.Column("day", sa.Text, primary_key=True),  # the day end that paid
        sa.Column("merchant_id", sa.Text, primary_key=True),
        sa.Column("for_day", sa.Text, primary_key=True),  # the statement's business day
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("transfer_id", sa.Text, nullable=True),  # NULL: nothing to pay (net <= 0)
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["for_day", "merchant_id"],
            ["dayend_statement.day", "dayend_statement.merchant_id"],
            name="dayend_payout_statement",
        ),
    )


def upgrade() -> None:
    _days()
    _items()
    _files_and_actions()
    _settlement()
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        for statement in append_only_ddl(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    raise StorageError("clearing_0001 cannot be downgraded: it would delete the day-end record")
