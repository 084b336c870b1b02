"""open_engine, sqlite_url, check_reachable and the one-line errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url

from cardtally.storage import (
    BUSY_TIMEOUT_MS_MAX,
    StorageError,
    check_reachable,
    mask_url,
    open_engine,
    sqlite_url,
)

# A race between connections switching one new file to WAL; one round in ~25 lost
# it before the fix, so this many rounds make a pass by luck vanishingly unlikely.
WAL_RACE_ROUNDS = 300
WAL_RACE_CONNECTIONS = 4

# Nothing listens on port 1; the connect is refused at once.
UNREACHABLE_PG = "postgresql+psycopg://cardtally:s3cret@127.0.0.1:1/test"


def test_sqlite_url_creates_the_parent_directory(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "a" / "b" / "party.sqlite3")
    assert (tmp_path / "a" / "b").is_dir()
    assert url == f"sqlite:///{tmp_path.resolve()}/a/b/party.sqlite3"


def test_sqlite_connections_get_the_durability_pragmas(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "p.sqlite3"), busy_timeout_ms=1_234)
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 1_234,
    }


def test_connections_opening_a_new_file_at_once_all_get_wal(tmp_path: Path) -> None:
    # Several party processes starting together on a fresh home each turn the new file's
    # rollback journal into a WAL; SQLite answers BUSY at once to the losers of that race.
    failures: list[BaseException] = []
    for round_no in range(WAL_RACE_ROUNDS):
        url = sqlite_url(tmp_path / f"race-{round_no}.sqlite3")
        engines = [open_engine(url) for _ in range(WAL_RACE_CONNECTIONS)]
        barrier = threading.Barrier(len(engines))

        def open_at_once(engine: Engine, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                check_reachable(engine)
            except StorageError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_at_once, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        for engine in engines:
            engine.dispose()
    assert failures == []


def test_check_reachable_names_the_server(engine: Engine) -> None:
    version = check_reachable(engine)
    assert version.startswith("SQLite 3." if engine.dialect.name == "sqlite" else "PostgreSQL ")


def test_unreachable_postgres_is_one_line_with_the_password_masked() -> None:
    engine = open_engine(UNREACHABLE_PG)
    try:
        with pytest.raises(StorageError) as caught:
            check_reachable(engine)
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://cardtally:***@127.0.0.1:1/test" in message
    assert "refused" in message.lower()
    assert "\n" not in message
    # Raised "from None": a user sees the message, not a chain of driver tracebacks.
    assert caught.value.__cause__ is None


@pytest.mark.postgres
def test_missing_postgres_database_is_a_storage_error(pg_url: str) -> None:
    wrong = make_url(pg_url).set(database="no_such_database_cardtally")
    engine = open_engine(wrong.render_as_string(hide_password=False))
    try:
        with pytest.raises(StorageError, match='database "no_such_database_cardtally"'):
            check_reachable(engine)
    finally:
        engine.dispose()


def test_unopenable_sqlite_file_is_a_storage_error(tmp_path: Path) -> None:
    # A directory where the database file should be.
    (tmp_path / "db").mkdir()
    engine = open_engine(f"sqlite:///{tmp_path / 'db'}")
    try:
        with pytest.raises(StorageError, match="unable to open database file"):
            check_reachable(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    ["mysql://app:pw123@db/x", "postgresql+psycopg2://app:pw123@db/x", "oracle://app:pw123@db"],
)
def test_unsupported_dialect_is_refused(url: str) -> None:
    with pytest.raises(StorageError, match="unsupported database") as caught:
        open_engine(url)
    assert "pw123" not in str(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(StorageError, match="file path"):
        open_engine(url)


def test_malformed_url_is_refused_with_password_masked() -> None:
    with pytest.raises(StorageError, match="invalid database URL") as caught:
        open_engine("not a url://app:pw123@db")
    assert "pw123" not in str(caught.value)


def test_plain_postgresql_url_means_psycopg() -> None:
    engine = open_engine("postgresql://app@127.0.0.1/x")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize("busy_timeout_ms", [0, -1, BUSY_TIMEOUT_MS_MAX + 1])
def test_busy_timeout_is_bounded(tmp_path: Path, busy_timeout_ms: int) -> None:
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        open_engine(sqlite_url(tmp_path / "x.sqlite3"), busy_timeout_ms=busy_timeout_ms)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:pw@h:5432/d", "postgresql+psycopg://u:***@h:5432/d"),
        ("postgresql+psycopg://u@h/d?password=pw", "postgresql+psycopg://u@h/d?password=***"),
        ("sqlite:////var/lib/x.sqlite3", "sqlite:////var/lib/x.sqlite3"),
        ("garbage://u:pw@h x", "garbage://u:***@h x"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
