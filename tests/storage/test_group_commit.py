"""commit_batch: one transaction per batch; an item that raises is undone alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cardtally.storage import commit_batch, open_engine, sqlite_url, transaction


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = open_engine(sqlite_url(tmp_path / "batch.sqlite3"))
    with transaction(engine) as conn:
        conn.execute(sa.text("CREATE TABLE item (n INTEGER PRIMARY KEY)"))
    return engine


def _insert(conn: Connection, n: int) -> str:
    conn.execute(sa.text("INSERT INTO item (n) VALUES (:n)"), {"n": n})
    if n == 3:
        raise RuntimeError("item 3 is broken")
    return f"ok {n}"


def _kept(engine: Engine) -> list[int]:
    with transaction(engine) as conn:
        return list(conn.execute(sa.text("SELECT n FROM item ORDER BY n")).scalars())


def test_every_item_commits_together(engine: Engine) -> None:
    results = commit_batch(
        engine, [1, 2], store_of=lambda conn: conn, work=_insert, failed=lambda n, e: "no"
    )
    assert results == ["ok 1", "ok 2"]
    assert _kept(engine) == [1, 2]


def test_an_item_that_raises_is_undone_alone(engine: Engine) -> None:
    failures: list[tuple[int, str]] = []

    def failed(n: int, exc: Exception) -> str:
        failures.append((n, str(exc)))
        return f"failed {n}"

    results = commit_batch(
        engine, [1, 2, 3, 4], store_of=lambda conn: conn, work=_insert, failed=failed
    )
    assert results == ["ok 1", "ok 2", "failed 3", "ok 4"]
    assert failures == [(3, "item 3 is broken")]  # told once, in the isolated run
    assert _kept(engine) == [1, 2, 4]  # the first run left nothing behind


def test_a_failure_outside_the_items_raises_and_keeps_nothing(engine: Engine) -> None:
    def broken_store(conn: Connection) -> Connection:
        conn.execute(sa.text("INSERT INTO item (n) VALUES (99)"))
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        commit_batch(engine, [1], store_of=broken_store, work=_insert, failed=lambda n, e: "")
    assert _kept(engine) == []
