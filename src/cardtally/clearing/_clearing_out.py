"""The clearing files of a day: the matched, cleared items of each issuer link, as records.

One CSV and one Parquet file per link per day, written even when a link cleared nothing (an
issuer expects a file every day, and an empty one says so). The header's creation time is the
day end's start, so a re-run writes byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cardtally.clearing._calendar import BusinessDay
from cardtally.clearing._files import ClearingHeader, ClearingRecord
from cardtally.clearing._schema import item_table
from cardtally.switch._schema import txn_table
from cardtally.wire import local_text

FORMATS: Final = ("csv", "parquet")
_DIRECTION: Final = {"debit": "D", "credit": "C"}


def day_directory(clearing_dir: Path, day: BusinessDay) -> Path:
    return clearing_dir / day.compact


def file_path(clearing_dir: Path, day: BusinessDay, link_id: str, fmt: str) -> Path:
    return day_directory(clearing_dir, day) / f"{link_id}.{fmt}"


def local_stamp(at_ms: int) -> str:
    """``YYYYMMDDhhmmss`` in China Standard Time."""
    return local_text(at_ms, "%Y%m%d%H%M%S")


def header_for(
    day: BusinessDay, link_id: str, acquirer_id: str, currency: str, started_at_ms: int
) -> ClearingHeader:
    return ClearingHeader(
        business_day=day.compact,
        link_id=link_id,
        acquirer_id=acquirer_id,
        currency=currency,
        created_at=local_stamp(started_at_ms),
    )


def cleared_records(conn: Connection, day: BusinessDay, link_id: str) -> list[ClearingRecord]:
    """The link's cleared items of the day, in item order, with what the issuer matches on."""
    i, s = item_table, txn_table
    rows = conn.execute(
        sa.select(
            i.c.rrn,
            i.c.kind,
            i.c.cleared_as,
            i.c.amount_minor,
            i.c.currency,
            i.c.terminal_id,
            i.c.merchant_id,
            s.c.batch_no,
            s.c.stan,
            s.c.issuer_stan,
            s.c.transmitted,
            s.c.auth_code,
            s.c.pan_masked,
            s.c.received_at_ms,
        )
        .select_from(i.join(s, s.c.id == i.c.switch_txn_id))
        .where(i.c.day == day.text)
        .where(i.c.link_id == link_id)
        .where(i.c.cleared_as.is_not(None))
        .order_by(i.c.item_no)
    ).all()
    return [_record(seq, row) for seq, row in enumerate(rows, start=1)]


def _record(seq: int, row: Any) -> ClearingRecord:  # a Row of the select above
    return ClearingRecord(
        seq=seq,
        rrn=row.rrn,
        kind=row.kind,
        direction=_DIRECTION[row.cleared_as],
        amount_minor=row.amount_minor,
        currency=row.currency,
        terminal_id=row.terminal_id,
        merchant_id=row.merchant_id,
        batch_no=row.batch_no,
        stan=row.stan,
        issuer_stan=row.issuer_stan or "",
        transmitted=row.transmitted or "",
        auth_code=row.auth_code or "",
        pan_masked=row.pan_masked,
        local_time=local_stamp(row.received_at_ms),
    )
