"""issuer 0002: an index on the time of each transaction record, for the day end's extract.

Revision ID: issuer_0002
Revises: issuer_0001
Create Date: 2026-11-22

The day end reads the issuer's postings of a business day by time; without the index that is
a scan of every record the issuer ever kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "issuer_0002"
down_revision: str | Sequence[str] | None = "issuer_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("issuer_txn_at", "issuer_txn", ["at_ms"])


def downgrade() -> None:
    op.drop_index("issuer_txn_at", "issuer_txn")
