"""Table objects of the ``ledger`` migration tree, for queries with SQLAlchemy Core.

The revisions in ``storage/migrations/ledger/`` create these tables and are the
source of truth; a test compares this module against a migrated database so the
two cannot drift apart. The database refuses on its own what must never be
stored, whoever writes: a balance below its floor, a transfer between accounts
of another currency, a hold resolved twice, a changed or deleted transfer.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

#: The migration tree that creates the ledger tables (version table ``alembic_version_ledger``).
LEDGER_TREE = "ledger"

ledger_metadata = MetaData()

# Balances are a cache of what the transfers imply, updated in place; verify() recomputes them.
ledger_account_table = Table(
    "ledger_account",
    ledger_metadata,
    Column("id", Text, primary_key=True),
    Column("currency", Text, nullable=False),
    # NULL: no floor (funding and settlement accounts may go as low as they need).
    Column("floor_minor", BigInteger, nullable=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False, server_default="0"),
    Column("credits_posted", BigInteger, nullable=False, server_default="0"),
    Column("debits_pending", BigInteger, nullable=False, server_default="0"),
    Column("credits_pending", BigInteger, nullable=False, server_default="0"),
    # The target of the transfers' (account, currency) foreign keys.
    UniqueConstraint("id", "currency", name="ledger_account_id_currency"),
    CheckConstraint("length(currency) = 3", name="ledger_account_currency_code"),
    CheckConstraint("floor_minor IS NULL OR floor_minor <= 0", name="ledger_account_floor_le_0"),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 "
        "AND credits_pending >= 0",
        name="ledger_account_totals_ge_0",
    ),
    CheckConstraint(
        "floor_minor IS NULL OR credits_posted - debits_posted - debits_pending >= floor_minor",
        name="ledger_account_above_floor",
    ),
)

# Immutable: triggers refuse UPDATE and DELETE. A correction is a new transfer.
ledger_transfer_table = Table(
    "ledger_transfer",
    ledger_metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("debit_account_id", Text, nullable=False),
    Column("credit_account_id", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("pending_id", Text, nullable=True),
    Column("expires_at_ms", BigInteger, nullable=True),
    Column("reference", Text, nullable=False, server_default=""),
    Column("at_ms", BigInteger, nullable=False),
    # Keyed on (account, currency): an account exists AND has the transfer's currency.
    ForeignKeyConstraint(
        ["debit_account_id", "currency"],
        ["ledger_account.id", "ledger_account.currency"],
        name="ledger_transfer_debit_account",
    ),
    ForeignKeyConstraint(
        ["credit_account_id", "currency"],
        ["ledger_account.id", "ledger_account.currency"],
        name="ledger_transfer_credit_account",
    ),
    ForeignKeyConstraint(["pending_id"], ["ledger_transfer.id"], name="ledger_transfer_pending"),
    # A hold is posted or voided at most once, even by two writers racing.
    UniqueConstraint("pending_id", name="ledger_transfer_resolves_once"),
    CheckConstraint(
        "kind IN ('single', 'pending', 'post', 'void')", name="ledger_transfer_kind_known"
    ),
    CheckConstraint("amount_minor > 0", name="ledger_transfer_amount_gt_0"),
    CheckConstraint("debit_account_id <> credit_account_id", name="ledger_transfer_two_accounts"),
    CheckConstraint(
        "(kind IN ('post', 'void')) = (pending_id IS NOT NULL)",
        name="ledger_transfer_pending_id_iff_resolution",
    ),
    CheckConstraint(
        "(kind = 'pending') = (expires_at_ms IS NOT NULL)",
        name="ledger_transfer_expiry_iff_pending",
    ),
)
Index(
    "ledger_transfer_debit_history",
    ledger_transfer_table.c.debit_account_id,
    ledger_transfer_table.c.at_ms,
    ledger_transfer_table.c.id,
)
Index(
    "ledger_transfer_credit_history",
    ledger_transfer_table.c.credit_account_id,
    ledger_transfer_table.c.at_ms,
    ledger_transfer_table.c.id,
)
# Only PENDING rows have an expiry; the sweep for lapsed holds reads them in expiry order.
Index(
    "ledger_transfer_expiry",
    ledger_transfer_table.c.expires_at_ms,
    ledger_transfer_table.c.id,
)
