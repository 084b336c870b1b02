"""Opening an engine: SQLite by default, PostgreSQL for real deployments.

Everything that must hold for *every* connection is set up here, once, so no
caller can forget it: SQLite's durability pragmas and its ``BEGIN IMMEDIATE``
transactions, PostgreSQL's bounded connect timeout.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from cardtally.storage._errors import StorageError, mask_url, one_line_reason

# How long a SQLite writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_MS_DEFAULT = 5_000
BUSY_TIMEOUT_MS_MAX = 60_000
# libpq counts whole seconds and treats anything below 2 as 2.
CONNECT_TIMEOUT_S_DEFAULT = 5
CONNECT_TIMEOUT_S_MIN = 2
CONNECT_TIMEOUT_S_MAX = 60

_SQLITE_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite"})
# Plain "postgresql://" would mean psycopg2, which we do not ship; read it as psycopg 3.
_POSTGRES_DRIVERS = frozenset({"postgresql", "postgresql+psycopg"})
_SYNCHRONOUS_FULL = 2
# The execution option storage.read_transaction sets: BEGIN deferred instead of IMMEDIATE.
READ_ONLY_OPTION = "cardtally_read_only"
_WAL_RETRY_FIRST_PAUSE_S = 0.002
_WAL_RETRY_MAX_PAUSE_S = 0.05


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite database file at ``path``, creating its directory."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_engine(
    url: str,
    *,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS_DEFAULT,
    connect_timeout_s: int = CONNECT_TIMEOUT_S_DEFAULT,
) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    Does not connect; call :func:`check_reachable` at start-up to fail early.
    """
    if not 0 < busy_timeout_ms <= BUSY_TIMEOUT_MS_MAX:
        raise ValueError(f"busy_timeout_ms must be in 1..{BUSY_TIMEOUT_MS_MAX}")
    if not CONNECT_TIMEOUT_S_MIN <= connect_timeout_s <= CONNECT_TIMEOUT_S_MAX:
        raise ValueError(
            f"connect_timeout_s must be in {CONNECT_TIMEOUT_S_MIN}..{CONNECT_TIMEOUT_S_MAX}"
        )
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"invalid database URL {mask_url(url)}: {exc}") from None
    if parsed.drivername in _SQLITE_DRIVERS:
        return _open_sqlite(parsed, busy_timeout_ms)
    if parsed.drivername in _POSTGRES_DRIVERS:
        return _open_postgres(parsed, connect_timeout_s)
    raise StorageError(
        f"unsupported database {mask_url(parsed)}: dialect {parsed.drivername!r} "
        "(use sqlite:///path or postgresql+psycopg://...)"
    )


def check_reachable(engine: Engine) -> str:
    """Connect once and return the server's version; raise :class:`StorageError` if we cannot."""
    # A raw connection skips SQLAlchemy's error wrapping, so driver errors arrive as is.
    driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
    try:
        raw = engine.raw_connection()
    except (DBAPIError, driver_error) as exc:
        raise unreachable(engine, exc) from None
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("SELECT 'SQLite ' || sqlite_version()")
        else:
            cursor.execute("SELECT 'PostgreSQL ' || current_setting('server_version')")
        row = cursor.fetchone()
        cursor.close()
    except driver_error as exc:
        raise unreachable(engine, exc) from None
    finally:
        raw.close()
    assert row is not None
    return str(row[0])


def connect(engine: Engine) -> Connection:
    """A connection, or a one-line :class:`StorageError` if the database cannot be reached."""
    try:
        return engine.connect()
    except DBAPIError as exc:
        raise unreachable(engine, exc) from None


def unreachable(engine: Engine, exc: BaseException) -> StorageError:
    """The one-line error for a database we could not connect to."""
    reason = one_line_reason(exc, secret=engine.url.password)
    return StorageError(f"cannot use database {mask_url(engine.url)}: {reason}")


def _open_sqlite(url: URL, busy_timeout_ms: int) -> Engine:
    if url.database in (None, "", ":memory:"):
        # Each pooled connection would get its own empty database: nothing would persist.
        raise StorageError(f"SQLite needs a file path, not an in-memory database: {url}")
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _open_postgres(url: URL, connect_timeout_s: int) -> Engine:
    connect_args: dict[str, object] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = connect_timeout_s
    if "application_name" not in url.query:
        connect_args["application_name"] = "cardtally"
    # pre_ping: a pooled connection that died with a server restart is replaced, not used.
    return create_engine(
        url.set(drivername="postgresql+psycopg"), connect_args=connect_args, pool_pre_ping=True
    )


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[object, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
        assert isinstance(dbapi_connection, sqlite3.Connection)
        # The driver must not BEGIN on its own: _begin_immediate does it, so that SELECTs
        # and DDL are inside the transaction too (SQLAlchemy's pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # First, so that switching to WAL waits for other writers instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # WAL lets readers run while one writer commits.
            mode = _switch_to_wal(cursor, busy_timeout_ms)
            # FULL syncs the WAL on every commit: a committed answer survives power loss,
            # which is what "durable before visible" promises. NORMAL would not.
            cursor.execute("PRAGMA synchronous = FULL")
            # SQLite ignores foreign keys unless each connection asks for them.
            cursor.execute("PRAGMA foreign_keys = ON")
            synchronous = cursor.execute("PRAGMA synchronous").fetchone()[0]
            foreign_keys = cursor.execute("PRAGMA foreign_keys").fetchone()[0]
        finally:
            cursor.close()
        if (mode, synchronous, foreign_keys) != ("wal", _SYNCHRONOUS_FULL, 1):
            raise StorageError(
                f"SQLite refused durability settings: journal_mode={mode}, "
                f"synchronous={synchronous}, foreign_keys={foreign_keys}"
            )

    return on_connect


def _switch_to_wal(cursor: sqlite3.Cursor, busy_timeout_ms: int) -> str:
    """Set WAL mode, waiting out other connections that are switching the same new file.

    When several processes open a new database at once, each must turn the rollback
    journal into a WAL. SQLite answers SQLITE_BUSY at once, without calling the busy
    handler, to the ones that would otherwise deadlock on the file lock: their retry
    must come from here. Once the file is in WAL mode the pragma is a no-op.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause_s = _WAL_RETRY_FIRST_PAUSE_S
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            # The primary code: extended ones such as SQLITE_BUSY_RECOVERY count too.
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, _WAL_RETRY_MAX_PAUSE_S)


def _begin_immediate(conn: Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        # storage.read_transaction: a snapshot that takes no lock a writer would wait for.
        conn.exec_driver_sql("BEGIN")
        return
    # IMMEDIATE takes the write lock at BEGIN. A deferred transaction that reads and
    # then writes can find that another writer committed meanwhile and fail with
    # SQLITE_BUSY at once, which busy_timeout cannot wait out. The price: on SQLite a
    # read transaction queues behind writers too. A single-node store accepts that;
    # deployments that need concurrent readers use PostgreSQL.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
