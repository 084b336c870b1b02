"""The day end's tables as SQLAlchemy Core objects (the ``clearing`` migration tree creates them).

They live in the switch's database beside the acquirer's ledger. The revision spells the
tables out on its own; these must stay in step with it (tests/clearing checks both agree).
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

CLEARING_TREE: Final = "clearing"

clearing_metadata = sa.MetaData()

day_table = sa.Table(
    "dayend_day",
    clearing_metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("window_start_ms", sa.BigInteger, nullable=False),
    sa.Column("window_end_ms", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("step", sa.Text, nullable=False),
    sa.Column("started_at_ms", sa.BigInteger, nullable=False),
    sa.Column("finished_at_ms", sa.BigInteger, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
)

item_table = sa.Table(
    "dayend_item",
    clearing_metadata,
    sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), primary_key=True),
    sa.Column("item_no", sa.BigInteger, primary_key=True),
    # "class" is a Python keyword: the column keeps its SQL name, Python reads it as klass.
    sa.Column("class", sa.Text, nullable=False, key="klass"),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("switch_txn_id", sa.BigInteger, nullable=True),
    sa.Column("issuer_txn_id", sa.Text, nullable=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("terminal_id", sa.Text, nullable=False),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("batch_no", sa.Integer, nullable=True),
    sa.Column("stan", sa.Text, nullable=False),
    sa.Column("rrn", sa.Text, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("issuer_amount_minor", sa.BigInteger, nullable=True),
    sa.Column("terminal_amount_minor", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("link_id", sa.Text, nullable=True),
    sa.Column("cleared_as", sa.Text, nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

batch_claim_table = sa.Table(
    "dayend_batch",
    clearing_metadata,
    sa.Column("terminal_id", sa.Text, primary_key=True),
    sa.Column("batch_no", sa.Integer, primary_key=True),
    sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), nullable=False),
)

file_table = sa.Table(
    "dayend_file",
    clearing_metadata,
    sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), primary_key=True),
    sa.Column("link_id", sa.Text, primary_key=True),
    sa.Column("fmt", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("debit_minor", sa.BigInteger, nullable=False),
    sa.Column("credit_minor", sa.BigInteger, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

action_table = sa.Table(
    "dayend_action",
    clearing_metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("item_no", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("switch_txn_id", sa.BigInteger, nullable=True),
    sa.Column("issuer_txn_id", sa.Text, nullable=True),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("reference", sa.Text, nullable=False),
    sa.Column("notice_id", sa.Text, nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(
        ["day", "item_no"], ["dayend_item.day", "dayend_item.item_no"], name="dayend_action_item"
    ),
)

statement_table = sa.Table(
    "dayend_statement",
    clearing_metadata,
    sa.Column("day", sa.Text, sa.ForeignKey("dayend_day.day"), primary_key=True),
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("fee_plan", sa.Text, nullable=False),
    sa.Column("rate_ppm", sa.Integer, nullable=False),
    sa.Column("agent", sa.Text, nullable=True),
    sa.Column("agent_ppm", sa.Integer, nullable=False),
    sa.Column("cycle", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("sales_count", sa.Integer, nullable=False),
    sa.Column("sales_minor", sa.BigInteger, nullable=False),
    sa.Column("refunds_count", sa.Integer, nullable=False),
    sa.Column("refunds_minor", sa.BigInteger, nullable=False),
    sa.Column("fee_minor", sa.BigInteger, nullable=False),
    sa.Column("agent_minor", sa.BigInteger, nullable=False),
    sa.Column("net_minor", sa.BigInteger, nullable=False),
    sa.Column("pay_day", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text, nullable=False),
)

payout_table = sa.Table(
    "dayend_payout",
    clearing_metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("for_day", sa.Text, primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("transfer_id", sa.Text, nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.ForeignKeyConstraint(
        ["for_day", "merchant_id"],
        ["dayend_statement.day", "dayend_statement.merchant_id"],
        name="dayend_payout_statement",
    ),
)
