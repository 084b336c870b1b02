"""switch 0001: the registry, the request and transaction log, the reversal queue, batches.

Revision ID: switch_0001
Revises:
Create Date: 2026-11-21

The request log, the stored responses and batch uploads are append-only. A transaction's
``state`` and an advice's attempts change in place; every change of state is also written to
the append-only event log (core tree), which is the transaction's timeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "switch_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = ("switch_request", "switch_response", "switch_upload")
_KINDS = "'sale', 'balance', 'void', 'refund', 'preauth', 'completion', 'reversal'"
_STATES = (
    "'received', 'forwarded', 'approved', 'declined', 'refused', 'timed_out', "
    "'reversal_pending', 'reversed', 'reversal_refused'"
)
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _registry() -> None:
    op.create_table(
        "switch_merchant",
        sa.Column("merchant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("mcc", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("fee_plan", sa.Text, nullable=False),
        sa.Column("agent", sa.Text, nullable=True),
        sa.Column("settlement_cycle", sa.Text, nullable=False),
        sa.Column("settlement_account", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("settlement_cycle IN ('d0', 't1')", name="switch_merchant_cycle"),
        sa.CheckConstraint("length(mcc) = 4", name="switch_merchant_mcc"),
    )
    op.create_table(
        "switch_terminal",
        sa.Column("terminal_id", sa.Text, primary_key=True),
        sa.Column(
            "merchant_id", sa.Text, sa.ForeignKey("switch_merchant.merchant_id"), nullable=False
        ),
        sa.Column("master_key_sealed", sa.LargeBinary, nullable=False),
        sa.Column("master_key_kcv", sa.Text, nullable=False),
        sa.Column("pin_key_sealed", sa.LargeBinary, nullable=True),
        sa.Column("mac_key_sealed", sa.LargeBinary, nullable=True),
        sa.Column("mac_algorithm", sa.Text, nullable=False),
        sa.Column("mac_required", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("signed_on_at_ms", sa.BigInteger, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name="switch_terminal_status"),
        sa.CheckConstraint("batch_no BETWEEN 1 AND 999999", name="switch_terminal_batch"),
    )
    op.create_table(
        "switch_issuer_link",
        sa.Column("link_id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("timeout_ms", sa.Integer, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name="switch_issuer_link_port"),
        sa.CheckConstraint("timeout_ms > 0", name="switch_issuer_link_timeout"),
    )
    op.create_table(
        "switch_bin_route",
        sa.Column("bin", sa.Text, primary_key=True),
        sa.Column("link_id", sa.Text, sa.ForeignKey("switch_issuer_link.link_id"), nullable=False),
    )


def _log() -> None:
    op.create_table(
        "switch_txn",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("request_key", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("terminal_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("stan", sa.Text, nullable=False),
        sa.Column("local_date", sa.Text, nullable=False),
        sa.Column("pan_masked", sa.Text, nullable=False),
        sa.Column("pan_fingerprint", sa.Text, nullable=False),
        sa.Column("pan_sealed", sa.LargeBinary, nullable=True),
        sa.Column("processing_code", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("link_id", sa.Text, nullable=True),
        sa.Column("issuer_stan", sa.Text, nullable=True),
        sa.Column("transmitted", sa.Text, nullable=True),
        sa.Column("forwarded_mti", sa.Text, nullable=True),
        sa.Column("forwarded_rrn", sa.Text, nullable=True),
        sa.Column("response_code", sa.Text, nullable=True),
        sa.Column("auth_code", sa.Text, nullable=True),
        sa.Column("echo_fields", sa.Text, nullable=False),
        sa.Column("original_id", _ROW_ID, sa.ForeignKey("switch_txn.id"), nullable=True),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="switch_txn_kind"),
        sa.CheckConstraint(f"state IN ({_STATES})", name="switch_txn_state"),
        sa.CheckConstraint("amount_minor >= 0", name="switch_txn_amount"),
    )
    op.create_index("switch_txn_state", "switch_txn", ["state"])
    op.create_index("switch_txn_batch", "switch_txn", ["terminal_id", "batch_no"])
    op.create_index("switch_txn_original", "switch_txn", ["original_id"])
    op.create_index("switch_txn_issuer_key", "switch_txn", ["issuer_stan", "transmitted"])
    op.create_index("switch_txn_date", "switch_txn", ["local_date"])
    op.create_table(
        "switch_request",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("txn_id", _ROW_ID, sa.ForeignKey("switch_txn.id"), nullable=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "switch_response",
        sa.Column("key", sa.Text, sa.ForeignKey("switch_request.key"), primary_key=True),
        sa.Column("mti", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )


def _queue_and_batches() -> None:
    op.create_table(
        "switch_advice",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("txn_id", _ROW_ID, sa.ForeignKey("switch_txn.id"), nullable=False),
        sa.Column("link_id", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("acked_at_ms", sa.BigInteger, nullable=True),
        sa.Column("ack_code", sa.Text, nullable=True),
        sa.CheckConstraint("attempts >= 0", name="switch_advice_attempts"),
    )
    op.create_index("switch_advice_due", "switch_advice", ["acked_at_ms", "next_at_ms"])
    op.create_index("switch_advice_txn", "switch_advice", ["txn_id"])
    op.create_table(
        "switch_batch",
        sa.Column("terminal_id", sa.Text, primary_key=True),
        sa.Column("batch_no", sa.Integer, primary_key=True),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("terminal_totals", sa.Text, nullable=False),
        sa.Column("switch_totals", sa.Text, nullable=False),
        sa.Column("uploaded", sa.Integer, nullable=False),
        sa.Column("closed_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("result IN ('balanced', 'not_balanced')", name="switch_batch_result"),
    )
    op.create_table(
        "switch_upload",
        sa.Column("terminal_id", sa.Text, primary_key=True),
        sa.Column("batch_no", sa.Integer, primary_key=True),
        sa.Column("stan", sa.Text, primary_key=True),
        sa.Column("rrn", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("processing_code", sa.Text, nullable=False),
        sa.Column("difference", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )


def upgrade() -> None:
    _registry()
    _log()
    _queue_and_batches()
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        for statement in append_only_ddl(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    # Nothing is ever deleted: going below switch_0001 would drop the transaction log.
    raise StorageError("switch_0001 cannot be downgraded: it would delete the switch's log")
