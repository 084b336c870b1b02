"""Alembic trees run from code: head, current, idempotence, isolation of trees."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from tests.storage.threads import run_in_threads

from cardtally.storage import (
    StorageError,
    core_metadata,
    current_revision,
    head_revision,
    is_up_to_date,
    migrate,
    migration_trees,
    open_engine,
    version_table,
)

CHILD_TIMEOUT_S = 60
# Long enough for the children to import SQLAlchemy and Alembic before the start.
CHILD_START_DELAY_S = 1.5


def test_core_tree_is_shipped() -> None:
    assert "core" in migration_trees()
    assert head_revision("core") == "core_0001"
    assert version_table("core") == "alembic_version_core"


def test_fresh_database_is_behind(engine: Engine) -> None:
    assert current_revision(engine, "core") is None
    assert not is_up_to_date(engine, "core")


def test_migrate_reaches_head_and_is_idempotent(engine: Engine) -> None:
    assert migrate(engine, "core") == head_revision("core")
    assert current_revision(engine, "core") == head_revision("core")
    assert is_up_to_date(engine, "core")
    assert migrate(engine, "core") == head_revision("core")
    tables = set(inspect(engine).get_table_names())
    assert {"party", "event_log", "alembic_version_core"} <= tables
    assert "alembic_version" not in tables


def test_table_objects_match_the_migrated_schema(core_engine: Engine) -> None:
    # The Core tables in _schema and the revision are written separately on purpose;
    # this catches them drifting apart.
    with core_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": version_table("core")}
        )
        diff = compare_metadata(context, core_metadata)
    assert diff == []


def test_concurrent_migrations_apply_once(db_url: str) -> None:
    # Separate processes, as when several party processes start together: the
    # database, not a lock in Python, must make them apply each revision once.
    # The children import first, then all start migrating at the same instant.
    script = (
        "import sys, time; from cardtally.storage import migrate, open_engine; "
        "engine = open_engine(sys.argv[1]); time.sleep(max(0, float(sys.argv[2]) - time.time())); "
        "print(migrate(engine)); engine.dispose()"
    )
    start_at = time.time() + CHILD_START_DELAY_S
    children = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", script, db_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [child.communicate(timeout=CHILD_TIMEOUT_S) for child in children]
    assert [
        (child.returncode, err) for child, (_, err) in zip(children, outcomes, strict=True)
    ] == [(0, "")] * len(children)
    assert [out.strip() for out, _ in outcomes] == [head_revision("core")] * len(children)
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version_core").all()
        assert [row[0] for row in rows] == [head_revision("core")]
    finally:
        engine.dispose()


def test_migrations_in_threads_do_not_collide(db_url: str) -> None:
    engines = [open_engine(db_url) for _ in range(3)]
    errors = run_in_threads([lambda e=e: migrate(e, "core") for e in engines])
    try:
        assert errors == []
        assert all(is_up_to_date(e, "core") for e in engines)
    finally:
        for engine in engines:
            engine.dispose()


def test_unknown_tree_is_refused(engine: Engine) -> None:
    with pytest.raises(StorageError, match="unknown migration tree 'nosuch'"):
        migrate(engine, "nosuch")


@pytest.mark.parametrize("tree", ["", "Core", "core; drop", "../core"])
def test_tree_names_are_plain_identifiers(tree: str) -> None:
    with pytest.raises(ValueError, match="not a migration tree name"):
        head_revision(tree)


def test_migrate_on_unreachable_database_is_a_storage_error() -> None:
    engine = open_engine("postgresql+psycopg://app:s3cret@127.0.0.1:1/x")
    try:
        with pytest.raises(StorageError, match=r"app:\*\*\*@127\.0\.0\.1:1") as caught:
            migrate(engine, "core")
    finally:
        engine.dispose()
    assert "s3cret" not in str(caught.value)


def test_core_refuses_to_downgrade_and_keeps_the_log(core_engine: Engine) -> None:
    from alembic import command

    from cardtally.storage import StorageError, alembic_config, append_event, events, transaction

    with transaction(core_engine) as conn:
        append_event(conn, 1, "kept", None, {})
    config = alembic_config("core")
    with core_engine.connect() as conn:
        config.attributes["connection"] = conn
        with pytest.raises(StorageError, match="cannot be downgraded"):
            command.downgrade(config, "base")
    assert current_revision(core_engine, "core") == head_revision("core")
    with core_engine.connect() as conn:
        assert [e.kind for e in events(conn)] == ["kept"]
