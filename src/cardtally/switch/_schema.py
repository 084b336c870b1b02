"""The switch's tables (SQLAlchemy Core), matching migration ``switch_0001``."""

from __future__ import annotations

import sqlalchemy as sa

switch_metadata = sa.MetaData()

#: Integer keys that are SQLite rowids (autoincrementing) and BIGINT identities elsewhere.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

merchant_table = sa.Table(
    "switch_merchant",
    switch_metadata,
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("mcc", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("fee_plan", sa.Text, nullable=False),
    sa.Column("agent", sa.Text, nullable=True),
    sa.Column("settlement_cycle", sa.Text, nullable=False),
    sa.Column("settlement_account", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

terminal_table = sa.Table(
    "switch_terminal",
    switch_metadata,
    sa.Column("terminal_id", sa.Text, primary_key=True),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("master_key_sealed", sa.LargeBinary, nullable=False),
    sa.Column("master_key_kcv", sa.Text, nullable=False),
    sa.Column("pin_key_sealed", sa.LargeBinary, nullable=True),
    sa.Column("mac_key_sealed", sa.LargeBinary, nullable=True),
    sa.Column("mac_algorithm", sa.Text, nullable=False),
    sa.Column("mac_required", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("batch_no", sa.Integer, nullable=False),
    sa.Column("signed_on_at_ms", sa.BigInteger, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

link_table = sa.Table(
    "switch_issuer_link",
    switch_metadata,
    sa.Column("link_id", sa.Text, primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("timeout_ms", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

bin_table = sa.Table(
    "switch_bin_route",
    switch_metadata,
    sa.Column("bin", sa.Text, primary_key=True),
    sa.Column("link_id", sa.Text, nullable=False),
)

request_table = sa.Table(
    "switch_request",
    switch_metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("content_sha256", sa.Text, nullable=False),
    sa.Column("txn_id", ROW_ID, nullable=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

response_table = sa.Table(
    "switch_response",
    switch_metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("mti", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

txn_table = sa.Table(
    "switch_txn",
    switch_metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("request_key", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("terminal_id", sa.Text, nullable=False),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("batch_no", sa.Integer, nullable=False),
    sa.Column("stan", sa.Text, nullable=False),
    sa.Column("local_date", sa.Text, nullable=False),
    sa.Column("pan_masked", sa.Text, nullable=False),
    sa.Column("pan_fingerprint", sa.Text, nullable=False),
    sa.Column("pan_sealed", sa.LargeBinary, nullable=True),
    sa.Column("processing_code", sa.Text, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("link_id", sa.Text, nullable=True),
    sa.Column("issuer_stan", sa.Text, nullable=True),
    sa.Column("transmitted", sa.Text, nullable=True),
    sa.Column("forwarded_mti", sa.Text, nullable=True),
    sa.Column("forwarded_rrn", sa.Text, nullable=True),
    sa.Column("response_code", sa.Text, nullable=True),
    sa.Column("auth_code", sa.Text, nullable=True),
    sa.Column("echo_fields", sa.Text, nullable=False),
    sa.Column("original_id", ROW_ID, nullable=True),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

advice_table = sa.Table(
    "switch_advice",
    switch_metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("txn_id", ROW_ID, nullable=False),
    sa.Column("link_id", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("acked_at_ms", sa.BigInteger, nullable=True),
    sa.Column("ack_code", sa.Text, nullable=True),
)

batch_table = sa.Table(
    "switch_batch",
    switch_metadata,
    sa.Column("terminal_id", sa.Text, primary_key=True),
    sa.Column("batch_no", sa.Integer, primary_key=True),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("terminal_totals", sa.Text, nullable=False),
    sa.Column("switch_totals", sa.Text, nullable=False),
    sa.Column("uploaded", sa.Integer, nullable=False),
    sa.Column("closed_at_ms", sa.BigInteger, nullable=False),
)

upload_table = sa.Table(
    "switch_upload",
    switch_metadata,
    sa.Column("terminal_id", sa.Text, primary_key=True),
    sa.Column("batch_no", sa.Integer, primary_key=True),
    sa.Column("stan", sa.Text, primary_key=True),
    sa.Column("rrn", sa.Text, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("processing_code", sa.Text, nullable=False),
    sa.Column("difference", sa.Text, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)
