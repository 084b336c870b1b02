"""switch 0002: indexes for the hotline's look-ups (card, merchant and day, time).

Revision ID: switch_0002
Revises: switch_0001
Create Date: 2026-11-22

``cardtally lookup`` finds swipes by card fingerprint, by merchant and business day, and by
time; without these it reads the whole transaction log.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "switch_0002"
down_revision: str | Sequence[str] | None = "switch_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("switch_txn_card", "switch_txn", ["pan_fingerprint"])
    op.create_index("switch_txn_merchant_time", "switch_txn", ["merchant_id", "received_at_ms"])
    op.create_index("switch_txn_received", "switch_txn", ["received_at_ms"])


def downgrade() -> None:
    op.drop_index("switch_txn_received", "switch_txn")
    op.drop_index("switch_txn_merchant_time", "switch_txn")
    op.drop_index("switch_txn_card", "switch_txn")
