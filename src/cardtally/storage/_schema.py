"""Table objects of the ``core`` migration tree, for queries with SQLAlchemy Core.

The migrations in ``migrations/core/`` create these tables and are the source of
truth; a test compares this module against a migrated database so the two
cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)

# The parties that keep a database of their own.
ROLES = ("issuer", "switch", "terminal")

core_metadata = MetaData()

# Who this database belongs to. One row, written once: pointing a switch at an
# issuer's database must be refused, not quietly mixed.
party_table = Table(
    "party",
    core_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("role", Text, nullable=False),
    Column("party_id", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="party_single_row"),
    CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="party_role_known"),
    CheckConstraint("party_id <> ''", name="party_id_not_empty"),
)

# What the party did, in order. Append-only (triggers refuse UPDATE and DELETE).
event_log_table = Table(
    "event_log",
    core_metadata,
    # 64-bit on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the (64-bit) rowid.
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    # The transaction's natural key (terminal, merchant, STAN, batch, date), if any.
    Column("txn_key", Text, nullable=True),
    Column("detail", Text, nullable=False),
    # AUTOINCREMENT: an id is never handed out twice, even if the last row vanished.
    sqlite_autoincrement=True,
)
Index("event_log_txn_key", event_log_table.c.txn_key, event_log_table.c.id)
