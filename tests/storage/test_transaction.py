"""transaction(): all or nothing, and BEGIN IMMEDIATE on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from tests.storage.threads import run_in_threads

from cardtally.storage import (
    StorageError,
    append_event,
    events,
    migrate,
    open_engine,
    read_transaction,
    sqlite_url,
    transaction,
)


class BoomError(Exception):
    pass


def test_commit_is_visible_to_other_connections(core_engine: Engine) -> None:
    with transaction(core_engine) as conn:
        append_event(conn, 1, "sale.approved", "T1|M1|000001", {"rc": "00"})
    other = open_engine(str(core_engine.url.render_as_string(hide_password=False)))
    try:
        with other.connect() as conn:
            assert [e.kind for e in events(conn)] == ["sale.approved"]
    finally:
        other.dispose()


def test_exception_rolls_everything_back(core_engine: Engine) -> None:
    with pytest.raises(BoomError), transaction(core_engine) as conn:
        append_event(conn, 1, "sale.approved", "T1|M1|000001", {"rc": "00"})
        append_event(conn, 2, "receipt.printed", "T1|M1|000001", {})
        raise BoomError
    with transaction(core_engine) as conn:
        assert events(conn) == []


def test_ddl_is_transactional_too(engine: Engine) -> None:
    # Legacy sqlite3 would autocommit the CREATE TABLE; our own BEGIN keeps it inside.
    with pytest.raises(BoomError), transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        raise BoomError
    assert not inspect(engine).has_table("scratch")


def test_sqlite_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "lock.sqlite3")
    first, second = open_engine(url), open_engine(url, busy_timeout_ms=50)
    try:
        # Nothing written yet, yet a second writer cannot even begin: the lock
        # was taken by BEGIN IMMEDIATE, not deferred to the first write.
        with (
            transaction(first),
            pytest.raises(OperationalError, match="database is locked"),
            transaction(second),
        ):
            pass
    finally:
        first.dispose()
        second.dispose()


def test_a_read_transaction_neither_waits_for_nor_blocks_a_writer(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "snapshot.sqlite3")
    writer, reader = open_engine(url), open_engine(url, busy_timeout_ms=50)
    try:
        migrate(writer)
        with transaction(writer) as conn:
            append_event(conn, 1, "first", None, {})
        with transaction(writer) as wconn:
            append_event(wconn, 2, "uncommitted", None, {})
            # The writer holds the lock: a read snapshot still starts, and sees only the
            # committed event, where transaction() could not even begin.
            with read_transaction(reader) as rconn:
                assert [e.kind for e in events(rconn)] == ["first"]
            with (
                pytest.raises(OperationalError, match="database is locked"),
                transaction(reader),
            ):
                pass
        with read_transaction(reader) as rconn:
            # A snapshot: a commit made while it is open stays out of it.
            assert len(events(rconn)) == 2
            with transaction(writer) as wconn:
                append_event(wconn, 3, "during", None, {})
            assert len(events(rconn)) == 2
    finally:
        writer.dispose()
        reader.dispose()


def test_read_then_write_transactions_serialize_on_sqlite(tmp_path: Path) -> None:
    # Each writer reads the number of events and appends the next one. Deferred
    # transactions would fail with SQLITE_BUSY when the read snapshot goes stale;
    # BEGIN IMMEDIATE makes them queue, so every number appears exactly once.
    url = sqlite_url(tmp_path / "race.sqlite3")
    engine = open_engine(url)
    migrate(engine)
    writers, rounds = 4, 10

    def write() -> None:
        for _ in range(rounds):
            with transaction(engine) as conn:
                seen = len(events(conn, limit=1_000))
                append_event(conn, seen, "tick", None, {})

    errors = run_in_threads([write] * writers)
    try:
        assert errors == []
        with engine.connect() as conn:
            assert [e.at_ms for e in events(conn)] == list(range(writers * rounds))
    finally:
        engine.dispose()


def test_unreachable_database_is_a_storage_error() -> None:
    engine = open_engine("postgresql+psycopg://app:s3cret@127.0.0.1:1/x")
    try:
        with pytest.raises(StorageError, match=r"app:\*\*\*@") as caught, transaction(engine):
            pass
    finally:
        engine.dispose()
    assert "s3cret" not in str(caught.value)
