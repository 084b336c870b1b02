"""Loading the three legs of a business day from the parties' databases into DuckDB.

The switch's database gives the switch log and the terminal leg (closed batches and their
upload records) and also holds the day-end record, so "carried" and "claimed" are read in
the same query; the issuer's database gives the postings. Rows travel as Arrow tables, one
bulk insert per table, so the matcher sees plain columnar data whatever the store.

:func:`insert_rows` is that last step on its own, public so that another source of rows (the
simulator's in-memory stores) fills the same tables with the same column types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cardtally.clearing._calendar import BusinessDay
from cardtally.clearing._schema import batch_claim_table, item_table
from cardtally.clearing._tables import ReconClass
from cardtally.issuer._schema import txn_table as issuer_txn_table
from cardtally.switch._schema import batch_table, terminal_table, upload_table
from cardtally.switch._schema import txn_table as switch_txn_table

MONEY_KINDS: Final = ("sale", "completion", "void", "refund")
#: Ids of the day end's own issuer records (refunds of one-sided debits): never reconciled.
DAYEND_ID_PREFIX: Final = "dayend:"

_SW_TXN: Final = pa.schema(
    [
        ("txn_id", pa.int64()),
        ("kind", pa.string()),
        ("state", pa.string()),
        ("terminal_id", pa.string()),
        ("merchant_id", pa.string()),
        ("batch_no", pa.int32()),
        ("stan", pa.string()),
        ("amount_minor", pa.int64()),
        ("currency", pa.string()),
        ("link_id", pa.string()),
        ("issuer_stan", pa.string()),
        ("transmitted", pa.string()),
        ("response_code", pa.string()),
        ("auth_code", pa.string()),
        ("pan_masked", pa.string()),
        ("original_id", pa.int64()),
        ("received_at_ms", pa.int64()),
        ("carried", pa.bool_()),
    ]
)
_SW_BATCH: Final = pa.schema(
    [
        ("terminal_id", pa.string()),
        ("batch_no", pa.int32()),
        ("result", pa.string()),
        ("closed_at_ms", pa.int64()),
        ("claimed", pa.bool_()),
    ]
)
_SW_UPLOAD: Final = pa.schema(
    [
        ("terminal_id", pa.string()),
        ("batch_no", pa.int32()),
        ("stan", pa.string()),
        ("rrn", pa.string()),
        ("amount_minor", pa.int64()),
        ("processing_code", pa.string()),
        ("difference", pa.string()),
        ("merchant_id", pa.string()),
        ("currency", pa.string()),
    ]
)
_ISS_TXN: Final = pa.schema(
    [
        ("issuer_txn_id", pa.string()),
        ("kind", pa.string()),
        ("terminal_id", pa.string()),
        ("merchant_id", pa.string()),
        ("stan", pa.string()),
        ("transmitted", pa.string()),
        ("rrn", pa.string()),
        ("amount_minor", pa.int64()),
        ("currency", pa.string()),
        ("in_effect", pa.bool_()),
        ("at_ms", pa.int64()),
    ]
)


#: Each input table's columns, in ``_tables`` order: what :func:`insert_rows` expects a row to be.
INPUT_SCHEMAS: Final[Mapping[str, pa.Schema]] = {
    "sw_txn": _SW_TXN,
    "sw_batch": _SW_BATCH,
    "sw_upload": _SW_UPLOAD,
    "iss_txn": _ISS_TXN,
}


@dataclass(frozen=True, slots=True)
class SwitchLeg:
    """What was loaded from the switch: sizes, and how far back the issuer must look."""

    txns: int
    carried: int
    batches: tuple[tuple[str, int], ...]  # unclaimed closed batches, claimed by this day
    earliest_ms: int  # the earliest receive time among the loaded transactions


def load_switch_leg(
    con: duckdb.DuckDBPyConnection,
    conn: Connection,
    day: BusinessDay,
    previous_day: str | None,
    currency: str,
) -> SwitchLeg:
    """The day's money transactions, those carried from ``previous_day``, and the batches."""
    s = switch_txn_table
    carried_ids = (
        sa.select(item_table.c.switch_txn_id)
        .where(item_table.c.day == previous_day)
        .where(item_table.c.klass == ReconClass.AWAITING_BATCH.value)
    )
    in_window = s.c.received_at_ms.between(day.start_ms, day.end_ms - 1)
    rows = conn.execute(
        sa.select(
            s.c.id,
            s.c.kind,
            s.c.state,
            s.c.terminal_id,
            s.c.merchant_id,
            s.c.batch_no,
            s.c.stan,
            s.c.amount_minor,
            s.c.currency,
            s.c.link_id,
            s.c.issuer_stan,
            s.c.transmitted,
            s.c.response_code,
            s.c.auth_code,
            s.c.pan_masked,
            s.c.original_id,
            s.c.received_at_ms,
            sa.not_(in_window),
        )
        .where(s.c.kind.in_(MONEY_KINDS))
        .where(sa.or_(in_window, s.c.id.in_(carried_ids)))
        .order_by(s.c.id)
    ).all()
    insert_rows(con, "sw_txn", rows)
    batches = _load_batches(con, conn, {(r[3], r[5]) for r in rows}, currency)
    carried = sum(1 for r in rows if r[-1])
    earliest = min((r[16] for r in rows), default=day.start_ms)
    return SwitchLeg(len(rows), carried, batches, min(earliest, day.start_ms))


def _load_batches(
    con: duckdb.DuckDBPyConnection,
    conn: Connection,
    wanted: set[tuple[str, int]],
    currency: str,
) -> tuple[tuple[str, int], ...]:
    """Closed batches of the day's transactions, and every closed batch not yet reconciled."""
    b, claims = batch_table, batch_claim_table
    claimed = sa.exists().where(
        (claims.c.terminal_id == b.c.terminal_id) & (claims.c.batch_no == b.c.batch_no)
    )
    rows = conn.execute(
        sa.select(b.c.terminal_id, b.c.batch_no, b.c.result, b.c.closed_at_ms, claimed)
    ).all()
    kept = [r for r in rows if not r[4] or (r[0], r[1]) in wanted]
    insert_rows(con, "sw_batch", kept)
    keys = {(r[0], r[1]) for r in kept}
    u, t = upload_table, terminal_table
    uploads = conn.execute(
        sa.select(
            u.c.terminal_id,
            u.c.batch_no,
            u.c.stan,
            u.c.rrn,
            u.c.amount_minor,
            u.c.processing_code,
            u.c.difference,
            sa.func.coalesce(t.c.merchant_id, ""),
            sa.literal(currency),
        ).select_from(u.outerjoin(t, t.c.terminal_id == u.c.terminal_id))
    ).all()
    insert_rows(con, "sw_upload", [r for r in uploads if (r[0], r[1]) in keys])
    return tuple(sorted((r[0], r[1]) for r in kept if not r[4]))


def claimed_issuer_ids(conn: Connection, since_day: str) -> set[str]:
    """Issuer records an earlier day end already placed (awaiting ones are placed again)."""
    i = item_table
    rows = conn.execute(
        sa.select(i.c.issuer_txn_id)
        .where(i.c.day >= since_day)
        .where(i.c.issuer_txn_id.is_not(None))
        .where(i.c.klass != ReconClass.AWAITING_BATCH.value)
    ).all()
    return {r[0] for r in rows}


def load_issuer_leg(
    con: duckdb.DuckDBPyConnection,
    conn: Connection,
    from_ms: int,
    until_ms: int,
    claimed: set[str],
) -> int:
    """Approved issuer postings in ``[from_ms, until_ms)``, each marked in effect or undone."""
    t = issuer_txn_table
    undo = issuer_txn_table.alias("undo")
    undone = (
        sa.exists()
        .where(undo.c.original_id == t.c.id)
        .where(undo.c.kind == "reversal")
        .where(undo.c.response_code == "00")
        .where(undo.c.transfer_id.is_not(None))
    )
    rows = conn.execute(
        sa.select(
            t.c.id,
            t.c.kind,
            t.c.terminal_id,
            t.c.merchant_id,
            t.c.stan,
            t.c.transmitted,
            t.c.rrn,
            t.c.amount_minor,
            t.c.currency,
            sa.not_(undone),
            t.c.at_ms,
        )
        .where(t.c.kind.in_(MONEY_KINDS))
        .where(t.c.response_code == "00")
        .where(t.c.transfer_id.is_not(None))
        .where(t.c.at_ms.between(from_ms, until_ms - 1))
        .where(sa.not_(t.c.id.startswith(DAYEND_ID_PREFIX)))
        .order_by(t.c.id)
    ).all()
    kept = [r for r in rows if r[0] not in claimed]
    insert_rows(con, "iss_txn", kept)
    return len(kept)


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Any]) -> None:
    """Append ``rows`` (tuples in the columns' order) to the input ``table`` in one bulk insert."""
    schema = INPUT_SCHEMAS[table]
    columns = _columns(rows, len(schema))
    arrays = [
        pa.array([bool(v) for v in col] if f.type == pa.bool_() else col, type=f.type)
        for col, f in zip(columns, schema, strict=True)
    ]
    arrow = pa.Table.from_arrays(arrays, schema=schema)
    con.register("_incoming", arrow)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")  # noqa: S608 - fixed names
    finally:
        con.unregister("_incoming")


def _columns(rows: Iterable[Any], width: int) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i, value in enumerate(row):
            columns[i].append(value)
    return columns
