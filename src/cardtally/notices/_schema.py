"""Table objects of the ``notices`` migration tree, for queries with SQLAlchemy Core.

The revisions in ``storage/migrations/notices/`` create these tables and are the
source of truth; a test compares this module against a migrated database.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

NOTICES_TREE: Final = "notices"

notices_metadata = MetaData()

# The outbox. Append-only: a notice, once written with the ledger change, stays.
notice_table = Table(
    "notice",
    notices_metadata,
    # Insertion order, to read the oldest first. The natural key is ``id``; a text key
    # cannot autoincrement on SQLite, so the order lives in its own column.
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("id", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    # Notice.to_json(), sorted keys: equal notices are equal strings.
    Column("payload", Text, nullable=False),
    UniqueConstraint("id", name="notice_id_unique"),
    CheckConstraint("kind IN ('debit', 'refund')", name="notice_kind_known"),
    CheckConstraint("id <> ''", name="notice_id_not_empty"),
    sqlite_autoincrement=True,
)

# One row per notice and sink once the sink took it. Append-only: "delivered" is a fact
# that is recorded, never undone; a notice pending for a sink is one without a row.
notice_delivery_table = Table(
    "notice_delivery",
    notices_metadata,
    Column(
        "notice_id",
        Text,
        ForeignKey("notice.id", name="notice_delivery_notice_fk"),
        nullable=False,
    ),
    Column("sink", Text, nullable=False),
    Column("delivered_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("notice_id", "sink", name="notice_delivery_pk"),
    CheckConstraint("sink <> ''", name="notice_delivery_sink_not_empty"),
)
