"""Fixtures shared by every test package.

Storage tests run twice, on SQLite (a file under tmp_path) and on PostgreSQL (a
fresh schema per test in the database named by ``CARDTALLY_TEST_PG_URL``).

The PostgreSQL leg is skipped when the server cannot be reached on a developer's
machine, but with ``CI=true`` it fails: a CI run that silently skipped half of
the storage tests would look green while testing nothing on PostgreSQL. The
report header says which way it went.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import Engine, make_url

from cardtally.storage import (
    StorageError,
    check_reachable,
    mask_url,
    migrate,
    open_engine,
    sqlite_url,
)

pytest_plugins = ("pytester",)

PG_URL_ENV = "CARDTALLY_TEST_PG_URL"
PG_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# A leg that is down should say so quickly, not hang the session.
PG_PROBE_TIMEOUT_S = 3
# A test that leaked an open transaction must not make the schema drop wait forever.
PG_DROP_LOCK_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class PgLeg:
    """What the session found at the PostgreSQL URL: a server version, or why not."""

    url: str
    version: str | None
    reason: str = ""


def pg_base_url(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(PG_URL_ENV) or PG_URL_DEFAULT


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in {"true", "1"}


def probe_postgres(url: str) -> PgLeg:
    try:
        engine = open_engine(url, connect_timeout_s=PG_PROBE_TIMEOUT_S)
    except StorageError as exc:
        return PgLeg(url, None, str(exc))
    try:
        return PgLeg(url, check_reachable(engine))
    except StorageError as exc:
        return PgLeg(url, None, str(exc))
    finally:
        engine.dispose()


def require_postgres(leg: PgLeg, ci: bool) -> None:
    """Return if the leg is up; otherwise fail (in CI) or skip (elsewhere)."""
    if leg.version is not None:
        return
    if ci:
        pytest.fail(f"CI=true and the PostgreSQL leg is down: {leg.reason}", pytrace=False)
    pytest.skip(f"PostgreSQL leg down ({leg.reason}); set {PG_URL_ENV} (CI=true fails instead)")


_PG_LEG = pytest.StashKey[PgLeg]()


def pg_leg(config: pytest.Config) -> PgLeg:
    """The session's probe of the PostgreSQL leg, made once."""
    if _PG_LEG not in config.stash:
        config.stash[_PG_LEG] = probe_postgres(pg_base_url())
    return config.stash[_PG_LEG]


def pytest_report_header(config: pytest.Config) -> str:
    leg = pg_leg(config)
    if leg.version is not None:
        return f"PostgreSQL leg: {leg.version} at {mask_url(leg.url)}"
    outcome = "postgres tests FAIL (CI=true)" if in_ci() else "postgres tests skipped"
    return f"PostgreSQL leg: UNREACHABLE ({leg.reason}); {outcome}"


def with_search_path(url: str, schema: str) -> str:
    """``url`` with connections starting in ``schema`` (libpq ``options``)."""
    parsed = make_url(url)
    existing = parsed.query.get("options", "")
    if isinstance(existing, tuple):
        existing = " ".join(existing)
    options = f"{existing} -csearch_path={schema}".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A URL pointing at a new, empty schema, dropped with everything in it afterwards."""
    schema = f"test_{secrets.token_hex(8)}"
    admin = open_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield with_search_path(base_url, schema)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {PG_DROP_LOCK_TIMEOUT_MS}")
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of a fresh PostgreSQL schema (skipped, or failed with CI=true, if the leg is down)."""
    leg = pg_leg(request.config)
    require_postgres(leg, in_ci())
    with pg_schema(leg.url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path_factory.mktemp("db") / "cardtally.sqlite3")
    url = request.getfixturevalue("pg_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url``, disposed after the test."""
    opened = open_engine(db_url)
    yield opened
    opened.dispose()


@pytest.fixture
def core_engine(engine: Engine) -> Engine:
    """An engine on a database migrated to the head of the ``core`` tree."""
    migrate(engine, "core")
    return engine
