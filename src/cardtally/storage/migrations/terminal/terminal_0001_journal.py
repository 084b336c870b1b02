"""terminal 0001: a POS terminal's journal (one SQLite file per terminal).

Revision ID: terminal_0001
Revises:
Create Date: 2026-11-21

One profile row (identity, sealed keys, batch and trace counters), the transactions
of every batch with their outcomes, the reversal records (at most one pending,
enforced by a unique slot), the batches, protection mode, and an append-only event
log that is the terminal's own audit trail. Nothing is deleted: a cleared reversal
keeps its row with the time and code that cleared it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "terminal_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "'sale', 'balance', 'void', 'refund', 'preauth', 'completion'"
_STATES = "'sending', 'approved', 'declined', 'failed', 'no_answer'"


def _profile() -> None:
    op.create_table(
        "terminal_profile",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("terminal_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text, nullable=False),
        sa.Column("merchant_name", sa.Text, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("mac_algorithm", sa.Text, nullable=False),
        sa.Column("master_key_sealed", sa.LargeBinary, nullable=False),
        sa.Column("pin_key_sealed", sa.LargeBinary, nullable=True),
        sa.Column("mac_key_sealed", sa.LargeBinary, nullable=True),
        sa.Column("signed_on_at_ms", sa.BigInteger, nullable=True),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("stan", sa.Integer, nullable=False),
        sa.Column("admin_hash", sa.Text, nullable=False),
        sa.Column("unlock_hash", sa.Text, nullable=False),
        sa.Column("installed_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="terminal_profile_single"),
        sa.CheckConstraint("stan BETWEEN 0 AND 999999", name="terminal_profile_stan"),
        sa.CheckConstraint("batch_no BETWEEN 1 AND 999999", name="terminal_profile_batch"),
    )
    op.create_table(
        "terminal_protection",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("since_ms", sa.BigInteger, nullable=True),
        sa.Column("admin_failures", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="terminal_protection_single"),
        sa.CheckConstraint("mode IN ('off', 'locked')", name="terminal_protection_mode"),
    )


def _txns() -> None:
    op.create_table(
        "terminal_txn",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("stan", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=True),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("pan_sealed", sa.LargeBinary, nullable=False),
        sa.Column("expiry", sa.Text, nullable=True),
        sa.Column("entry_mode", sa.Text, nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
        sa.Column("response_code", sa.Text, nullable=True),
        sa.Column("rrn", sa.Text, nullable=True),
        sa.Column("auth_code", sa.Text, nullable=True),
        sa.Column("host_at", sa.Text, nullable=True),
        sa.Column("balance_minor", sa.BigInteger, nullable=True),
        sa.Column("original_stan", sa.Integer, nullable=True),
        sa.Column("original_batch", sa.Integer, nullable=True),
        sa.Column("original_rrn", sa.Text, nullable=True),
        sa.Column("voided", sa.Boolean, nullable=False),
        sa.Column("completed", sa.Boolean, nullable=False),
        sa.Column("uploaded", sa.Boolean, nullable=False),
        sa.Column("printed", sa.Integer, nullable=False),
        sa.UniqueConstraint("batch_no", "stan", name="terminal_txn_voucher"),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="terminal_txn_kind"),
        sa.CheckConstraint(f"state IN ({_STATES})", name="terminal_txn_state"),
        sa.CheckConstraint("amount_minor IS NULL OR amount_minor > 0", name="terminal_txn_amount"),
    )
    op.create_table(
        "terminal_reversal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("txn_id", sa.Integer, sa.ForeignKey("terminal_txn.id"), nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("stan", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("sends", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        # 1 while pending, NULL once cleared: the unique index allows one pending at most.
        sa.Column("pending_slot", sa.Integer, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("cleared_at_ms", sa.BigInteger, nullable=True),
        sa.Column("cleared_code", sa.Text, nullable=True),
        sa.UniqueConstraint("pending_slot", name="terminal_reversal_one_pending"),
        sa.UniqueConstraint("txn_id", name="terminal_reversal_txn"),
        sa.CheckConstraint("reason IN ('98', 'A0', '06')", name="terminal_reversal_reason"),
        sa.CheckConstraint(
            "(pending_slot = 1 AND cleared_at_ms IS NULL)"
            " OR (pending_slot IS NULL AND cleared_at_ms IS NOT NULL)",
            name="terminal_reversal_slot",
        ),
    )


def _batches_and_events() -> None:
    op.create_table(
        "terminal_batch",
        sa.Column("batch_no", sa.Integer, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("opened_at_ms", sa.BigInteger, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("totals_field48", sa.Text, nullable=True),
        sa.Column("host_field48", sa.Text, nullable=True),
        sa.Column("uploaded", sa.Integer, nullable=False),
        sa.Column("settled_at_ms", sa.BigInteger, nullable=True),
        sa.Column("host_at", sa.Text, nullable=True),
        sa.CheckConstraint("state IN ('open', 'settling', 'settled')", name="terminal_batch_state"),
    )
    op.create_table(
        "terminal_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def upgrade() -> None:
    _profile()
    _txns()
    _batches_and_events()
    for statement in append_only_ddl("terminal_event", op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    # Nothing is ever deleted: going below terminal_0001 would drop the journal.
    raise StorageError("terminal_0001 cannot be downgraded: it would delete the journal")
