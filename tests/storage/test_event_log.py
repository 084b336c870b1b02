"""The event log: append and read, bounded, and append-only in the database itself."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cardtally.storage import (
    APPEND_ONLY_MARK,
    DETAIL_BYTES_MAX,
    EVENTS_LIMIT_MAX,
    Event,
    append_event,
    drop_append_only_ddl,
    event_log_table,
    events,
    transaction,
)

KEY_A = "T0000001|M00000000000001|000123|000001|20251121"
KEY_B = "T0000001|M00000000000001|000124|000001|20251121"


def _seed(engine: Engine) -> list[int]:
    with transaction(engine) as conn:
        return [
            append_event(conn, 1_000, "auth.requested", KEY_A, {"amount_minor": 12345}),
            append_event(conn, 1_001, "auth.requested", KEY_B, {"amount_minor": 500}),
            append_event(conn, 1_002, "auth.approved", KEY_A, {"rc": "00", "approval": "A1"}),
            append_event(conn, 1_003, "link.up", None, {}),
        ]


def test_append_and_read_back_in_order(core_engine: Engine) -> None:
    ids = _seed(core_engine)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    with transaction(core_engine) as conn:
        everything = events(conn)
        for_a = events(conn, KEY_A)
    assert [e.kind for e in everything] == [
        "auth.requested",
        "auth.requested",
        "auth.approved",
        "link.up",
    ]
    assert for_a == [
        Event(ids[0], 1_000, "auth.requested", KEY_A, {"amount_minor": 12345}),
        Event(ids[2], 1_002, "auth.approved", KEY_A, {"approval": "A1", "rc": "00"}),
    ]


def test_reads_are_bounded_and_page_on(core_engine: Engine) -> None:
    ids = _seed(core_engine)
    with transaction(core_engine) as conn:
        first = events(conn, limit=3)
        rest = events(conn, after_id=first[-1].id, limit=3)
    assert [e.id for e in first] == ids[:3]
    assert [e.id for e in rest] == ids[3:]


@pytest.mark.parametrize("limit", [0, -1, EVENTS_LIMIT_MAX + 1])
def test_limit_must_be_within_bounds(core_engine: Engine, limit: int) -> None:
    with transaction(core_engine) as conn, pytest.raises(ValueError, match="limit"):
        events(conn, limit=limit)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"at_ms": -1}, "at_ms"),
        ({"kind": ""}, "kind"),
        ({"kind": "k" * 65}, "kind"),
        ({"txn_key": ""}, "txn_key"),
        ({"detail": {"x": "y" * DETAIL_BYTES_MAX}}, "detail"),
        ({"detail": {"x": math.nan}}, "JSON"),
    ],
)
def test_bad_events_are_refused_and_change_nothing(
    core_engine: Engine, kwargs: dict[str, object], reason: str
) -> None:
    args: dict[str, object] = {"at_ms": 1, "kind": "k", "txn_key": None, "detail": {}}
    args.update(kwargs)
    with pytest.raises(ValueError, match=reason), transaction(core_engine) as conn:
        append_event(conn, **args)  # type: ignore[arg-type]
    with transaction(core_engine) as conn:
        assert events(conn) == []


def test_update_is_refused_by_the_database(core_engine: Engine) -> None:
    _seed(core_engine)
    with (
        pytest.raises(IntegrityError, match=f"{APPEND_ONLY_MARK}; UPDATE refused"),
        transaction(core_engine) as conn,
    ):
        conn.execute(update(event_log_table).values(kind="auth.declined"))
    with transaction(core_engine) as conn:
        assert "auth.declined" not in {e.kind for e in events(conn)}


def test_delete_is_refused_by_the_database(core_engine: Engine) -> None:
    ids = _seed(core_engine)
    with (
        pytest.raises(IntegrityError, match=f"{APPEND_ONLY_MARK}; DELETE refused"),
        transaction(core_engine) as conn,
    ):
        conn.execute(delete(event_log_table).where(event_log_table.c.id == ids[0]))
    with transaction(core_engine) as conn:
        assert [e.id for e in events(conn)] == ids


def test_wiping_the_table_is_refused(core_engine: Engine) -> None:
    # PostgreSQL's TRUNCATE skips row triggers; SQLite turns an unconditional DELETE
    # into a fast truncate unless triggers exist. Both must still be refused.
    is_pg = core_engine.dialect.name == "postgresql"
    statement, operation = (
        ("TRUNCATE event_log", "TRUNCATE") if is_pg else ("DELETE FROM event_log", "DELETE")
    )
    ids = _seed(core_engine)
    with (
        pytest.raises(IntegrityError, match=f"{APPEND_ONLY_MARK}; {operation} refused"),
        transaction(core_engine) as conn,
    ):
        conn.exec_driver_sql(statement)
    with transaction(core_engine) as conn:
        assert [e.id for e in events(conn)] == ids


def test_the_check_fails_when_the_triggers_are_gone(core_engine: Engine) -> None:
    # The tests above would be worthless if an UPDATE could not succeed anyway:
    # without the triggers the same statement goes through.
    _seed(core_engine)
    with transaction(core_engine) as conn:
        for statement in drop_append_only_ddl("event_log", core_engine.dialect.name):
            conn.exec_driver_sql(statement)
    with transaction(core_engine) as conn:
        changed = conn.execute(update(event_log_table).values(kind="rewritten")).rowcount
    assert changed == 4
    with transaction(core_engine) as conn:
        assert {e.kind for e in events(conn)} == {"rewritten"}
