"""The event log: append one event, read events back in order, bounded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cardtally.storage._schema import event_log_table

KIND_CHARS_MAX = 64
TXN_KEY_CHARS_MAX = 128
DETAIL_BYTES_MAX = 64 * 1024
EVENTS_LIMIT_DEFAULT = 1_000
EVENTS_LIMIT_MAX = 10_000

# Built once: every request appends an event, and a fresh insert().values() per call costs
# SQLAlchemy several times what executing its cached SQL does (docs/benchmarks.md).
_APPEND = event_log_table.insert()


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the event log; ``detail`` is the decoded JSON object."""

    id: int
    at_ms: int
    kind: str
    txn_key: str | None
    detail: Mapping[str, object]


def append_event(
    conn: Connection,
    at_ms: int,
    kind: str,
    txn_key: str | None,
    detail: Mapping[str, object],
) -> int:
    """Append an event inside the caller's transaction and return its id."""
    text = event_detail_json(at_ms, kind, txn_key, detail)
    result = conn.execute(
        _APPEND, {"at_ms": at_ms, "kind": kind, "txn_key": txn_key, "detail": text}
    )
    key = result.inserted_primary_key
    assert key is not None
    event_id = key[0]
    assert isinstance(event_id, int)
    return event_id


def events(
    conn: Connection,
    txn_key: str | None = None,
    *,
    after_id: int = 0,
    limit: int = EVENTS_LIMIT_DEFAULT,
) -> list[Event]:
    """Events in the order they were appended, optionally for one ``txn_key``.

    At most ``limit`` rows; page on with ``after_id`` set to the last id seen.
    """
    if not 0 < limit <= EVENTS_LIMIT_MAX:
        raise ValueError(f"limit must be in 1..{EVENTS_LIMIT_MAX}")
    table = event_log_table
    query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
    if txn_key is not None:
        query = query.where(table.c.txn_key == txn_key)
    return [
        Event(
            id=row.id,
            at_ms=row.at_ms,
            kind=row.kind,
            txn_key=row.txn_key,
            detail=json.loads(row.detail),
        )
        for row in conn.execute(query)
    ]


def event_detail_json(
    at_ms: int, kind: str, txn_key: str | None, detail: Mapping[str, object]
) -> str:
    """The detail as the event log stores it, or ``ValueError`` for what the log refuses.

    The simulator's memory stores call it too, so they refuse exactly what the log refuses.
    """
    if at_ms < 0:
        raise ValueError(f"at_ms must not be negative: {at_ms}")
    if not 0 < len(kind) <= KIND_CHARS_MAX:
        raise ValueError(f"kind must have 1..{KIND_CHARS_MAX} characters")
    if txn_key is not None and not 0 < len(txn_key) <= TXN_KEY_CHARS_MAX:
        raise ValueError(f"txn_key must have 1..{TXN_KEY_CHARS_MAX} characters")
    # Sorted keys and no spaces: equal details are equal strings, for comparisons
    # on replay. NaN and infinity are not JSON and other readers would choke on them.
    text = json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > DETAIL_BYTES_MAX:
        raise ValueError(f"detail exceeds {DETAIL_BYTES_MAX} bytes as JSON")
    return text
