"""The issuer's tables (SQLAlchemy Core), matching migration ``issuer_0001``."""

from __future__ import annotations

import sqlalchemy as sa

issuer_metadata = sa.MetaData()

card_table = sa.Table(
    "issuer_card",
    issuer_metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("pan_fingerprint", sa.Text, nullable=False, unique=True),
    sa.Column("pan_ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("pan_masked", sa.Text, nullable=False),
    sa.Column("expiry", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text, nullable=False),
    sa.Column("credit_limit_minor", sa.BigInteger, nullable=False),
    sa.Column("pin_offset", sa.Text, nullable=True),
    sa.Column("pin_tries", sa.Integer, nullable=False),
    sa.Column("no_pin_limit_minor", sa.BigInteger, nullable=False),
    sa.Column("per_txn_limit_minor", sa.BigInteger, nullable=False),
    sa.Column("daily_limit_minor", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

request_table = sa.Table(
    "issuer_request",
    issuer_metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("content_sha256", sa.Text, nullable=False),
    sa.Column("mti", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

txn_table = sa.Table(
    "issuer_txn",
    issuer_metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("card_id", sa.Text, nullable=True),
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
    sa.Column("original_id", sa.Text, nullable=True),
    sa.Column("transfer_id", sa.Text, nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)
