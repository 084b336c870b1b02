"""notices 0001: the cardholder-notice outbox and its per-sink delivery record.

Revision ID: notices_0001
Revises:
Create Date: 2025-11-21

The tables are spelled out here rather than imported from ``cardtally.notices``: a
revision records history and must not change when the code moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cardtally.storage._append_only import append_only_ddl
from cardtally.storage._errors import StorageError

revision: str = "notices_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = ("notice", "notice_delivery")


def upgrade() -> None:
    op.create_table(
        "notice",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.UniqueConstraint("id", name="notice_id_unique"),
        sa.CheckConstraint("kind IN ('debit', 'refund')", name="notice_kind_known"),
        sa.CheckConstraint("id <> ''", name="notice_id_not_empty"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "notice_delivery",
        sa.Column(
            "notice_id",
            sa.Text,
            sa.ForeignKey("notice.id", name="notice_delivery_notice_fk"),
            nullable=False,
        ),
        sa.Column("sink", sa.Text, nullable=False),
        sa.Column("delivered_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("notice_id", "sink", name="notice_delivery_pk"),
        sa.CheckConstraint("sink <> ''", name="notice_delivery_sink_not_empty"),
    )
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        for statement in append_only_ddl(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    # Going below notices_0001 would drop notices that may not have reached the
    # cardholder yet; nothing is ever deleted.
    raise StorageError("notices_0001 cannot be downgraded: it would delete the notice outbox")
