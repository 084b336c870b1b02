"""core 0001: the party that owns the database and its append-only event log.

Revision ID: core_0001
Revises:
Create Date: 2025-11-21

The tables are spelled out here rather than imported from ``_schema``: a
revision records history and must not change when the code moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "core_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = ("party", "event_log")


def upgrade() -> None:
    op.create_table(
        "party",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("party_id", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="party_single_row"),
        sa.CheckConstraint("role IN ('issuer', 'switch', 'terminal')", name="party_role_known"),
        sa.CheckConstraint("party_id <> ''", name="party_id_not_empty"),
    )
    op.create_table(
        "event_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("txn_key", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("event_log_txn_key", "event_log", ["txn_key", "id"])
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        for statement in append_only_ddl(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    # A deliberate refusal, not a missing step: going below core_0001 would drop the
    # event log, and nothing is ever deleted.
    raise StorageError("core_0001 cannot be downgraded: it would delete the event log")
