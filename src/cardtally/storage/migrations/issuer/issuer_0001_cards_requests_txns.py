"""issuer 0001: cards, the request log that answers repeats, and the transaction record.

Revision ID: issuer_0001
Revises:
Create Date: 2026-11-21

Cards change in place (status, PIN tries; each change is also written to the
event log). The request log and the transaction record are append-only: a
reversal, void or refund is a new row pointing at its original.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "issuer_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = ("issuer_request", "issuer_txn")
_KINDS = "'sale', 'balance', 'void', 'refund', 'preauth', 'completion', 'reversal'"


def upgrade() -> None:
    op.create_table(
        "issuer_card",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("pan_fingerprint", sa.Text, nullable=False, unique=True),
        sa.Column("pan_ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("pan_masked", sa.Text, nullable=False),
        sa.Column("expiry", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, nullable=False, unique=True),
        sa.Column("credit_limit_minor", sa.BigInteger, nullable=False),
        sa.Column("pin_offset", sa.Text, nullable=True),
        sa.Column("pin_tries", sa.Integer, nullable=False),
        sa.Column("no_pin_limit_minor", sa.BigInteger, nullable=False),
        sa.Column("per_txn_limit_minor", sa.BigInteger, nullable=False),
        sa.Column("daily_limit_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("kind IN ('debit', 'credit')", name="issuer_card_kind"),
        sa.CheckConstraint("status IN ('active', 'blocked', 'lost')", name="issuer_card_status"),
        sa.CheckConstraint("length(expiry) = 4", name="issuer_card_expiry"),
        sa.CheckConstraint("pin_tries >= 0", name="issuer_card_pin_tries"),
        sa.CheckConstraint("credit_limit_minor >= 0", name="issuer_card_credit_limit"),
    )
    op.create_table(
        "issuer_request",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("mti", sa.Text, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "issuer_txn",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("card_id", sa.Text, sa.ForeignKey("issuer_card.id"), nullable=True),
        sa.Column("pan_masked", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("response_code", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("rrn", sa.Text, nullable=False),
        sa.Column("auth_code", sa.Text, nullable=False),
        sa.Column("acquirer_id", sa.Text, nullable=False),
        sa.Column("terminal_id", sa.Text, nullable=False),
        sa.Column("merchant_id", sa.Text, nullable=False),
        sa.Column("merchant_name", sa.Text, nullable=False),
        sa.Column("stan", sa.Text, nullable=False),
        sa.Column("transmitted", sa.Text, nullable=False),
        sa.Column("local_date", sa.Text, nullable=False),
        sa.Column("original_id", sa.Text, sa.ForeignKey("issuer_txn.id"), nullable=True),
        sa.Column("transfer_id", sa.Text, nullable=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="issuer_txn_kind"),
        sa.CheckConstraint("amount_minor >= 0", name="issuer_txn_amount"),
    )
    op.create_index("issuer_txn_card_rrn", "issuer_txn", ["card_id", "rrn"])
    op.create_index("issuer_txn_card_auth_code", "issuer_txn", ["card_id", "auth_code"])
    op.create_index("issuer_txn_card_day", "issuer_txn", ["card_id", "local_date"])
    op.create_index("issuer_txn_original", "issuer_txn", ["original_id"])
    op.create_index(
        "issuer_txn_acquirer_key",
        "issuer_txn",
        ["acquirer_id", "terminal_id", "merchant_id", "stan"],
    )
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        for statement in append_only_ddl(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    # Nothing is ever deleted: going below issuer_0001 would drop the transaction record.
    raise StorageError("issuer_0001 cannot be downgraded: it would delete the issuer's records")
