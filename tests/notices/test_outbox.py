"""The outbox: written in the caller's transaction, idempotent, append-only, per sink."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cardtally.money import Money
from cardtally.notices import (
    NOTICES_TREE,
    NoticeError,
    NoticeOutbox,
    notice_delivery_table,
    notice_table,
    notices_metadata,
)
from cardtally.storage import (
    APPEND_ONLY_MARK,
    StorageError,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
    transaction,
    version_table,
)
from tests.notices.support import make_notice


def _add(engine: Engine, *ids: str) -> None:
    with transaction(engine) as conn:
        outbox = NoticeOutbox(conn)
        for notice_id in ids:
            assert outbox.add(make_notice(notice_id))


def test_tree_head_and_tables(notices_engine: Engine) -> None:
    assert NOTICES_TREE == "notices"
    assert head_revision(NOTICES_TREE) == "notices_0001"
    assert current_revision(notices_engine, NOTICES_TREE) == "notices_0001"
    assert migrate(notices_engine, NOTICES_TREE) == "notices_0001"


def test_table_objects_match_the_migrated_schema(engine: Engine) -> None:
    migrate(engine, NOTICES_TREE)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": version_table(NOTICES_TREE)}
        )
        assert compare_metadata(context, notices_metadata) == []


def test_downgrade_is_refused(notices_engine: Engine) -> None:
    config = alembic_config(NOTICES_TREE)
    with notices_engine.connect() as conn:
        config.attributes["connection"] = conn
        with pytest.raises(StorageError, match="cannot be downgraded"):
            command.downgrade(config, "base")
    assert current_revision(notices_engine, NOTICES_TREE) == "notices_0001"


def test_add_get_and_idempotent_repeat(notices_engine: Engine) -> None:
    notice = make_notice("N1")
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        assert outbox.add(notice) is True
        assert outbox.add(notice) is False
        assert outbox.get("N1") == notice
        assert outbox.get("N2") is None
    with transaction(notices_engine) as conn:
        assert NoticeOutbox(conn).add(make_notice("N1")) is False
        assert NoticeOutbox(conn).recent(10) == [notice]


def test_same_id_different_content_is_refused_and_changes_nothing(notices_engine: Engine) -> None:
    _add(notices_engine, "N1")
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        with pytest.raises(NoticeError, match="N1 already exists with different content"):
            outbox.add(make_notice("N1", amount=Money(10_001)))
        # The caller's transaction is still usable (no failed statement on PostgreSQL).
        assert outbox.add(make_notice("N2")) is True
    with transaction(notices_engine) as conn:
        assert NoticeOutbox(conn).get("N1") == make_notice("N1")


def test_a_rolled_back_notice_does_not_exist(notices_engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="ledger failed"), transaction(notices_engine) as conn:
        NoticeOutbox(conn).add(make_notice("N1"))
        raise RuntimeError("ledger failed")
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        assert outbox.get("N1") is None
        assert outbox.pending("console", 10) == []
        assert outbox.pending_count("console") == 0


def test_writes_outside_a_transaction_are_refused(notices_engine: Engine) -> None:
    with notices_engine.connect() as conn:
        outbox = NoticeOutbox(conn)
        with pytest.raises(NoticeError, match="outside a transaction"):
            outbox.add(make_notice())
        with pytest.raises(NoticeError, match="outside a transaction"):
            outbox.mark_delivered("N1", "console", 1)


def test_pending_is_per_sink_oldest_first_and_bounded(notices_engine: Engine) -> None:
    _add(notices_engine, "N3", "N1", "N2")
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        assert [n.id for n in outbox.pending("a", 10)] == ["N3", "N1", "N2"]
        assert [n.id for n in outbox.pending("a", 2)] == ["N3", "N1"]
        assert outbox.mark_delivered("N1", "a", 5) is True
        assert outbox.mark_delivered("N1", "a", 6) is False
        assert outbox.mark_delivered("N3", "b", 5) is True
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        assert [n.id for n in outbox.pending("a", 10)] == ["N3", "N2"]
        assert [n.id for n in outbox.pending("b", 10)] == ["N1", "N2"]
        assert (outbox.pending_count("a"), outbox.pending_count("b")) == (2, 2)
        assert outbox.pending_count("never-used") == 3
        assert [n.id for n in outbox.recent(2)] == ["N2", "N1"]
        rows = conn.execute(notice_delivery_table.select()).all()
    assert sorted((r.notice_id, r.sink, r.delivered_at_ms) for r in rows) == [
        ("N1", "a", 5),
        ("N3", "b", 5),
    ]


def test_marking_a_batch_delivered_is_idempotent(notices_engine: Engine) -> None:
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        for notice_id in ("N1", "N2", "N3"):
            outbox.add(make_notice(notice_id))
        outbox.mark_all_delivered(["N1", "N2"], "a", 5)
        # A batch delivered again after a lost record: the first time stands.
        outbox.mark_all_delivered(["N2", "N3"], "a", 9)
        outbox.mark_all_delivered([], "a", 9)
        rows = conn.execute(notice_delivery_table.select()).all()
        assert outbox.pending_count("a") == 0
    assert sorted((r.notice_id, r.sink, r.delivered_at_ms) for r in rows) == [
        ("N1", "a", 5),
        ("N2", "a", 5),
        ("N3", "a", 9),
    ]


def test_marking_a_batch_checks_sink_and_time(notices_engine: Engine) -> None:
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        with pytest.raises(NoticeError, match="sink name"):
            outbox.mark_all_delivered(["N1"], "Bad Sink", 1)
        with pytest.raises(NoticeError, match="at_ms"):
            outbox.mark_all_delivered(["N1"], "a", -1)


def test_marking_an_unknown_notice_is_refused(notices_engine: Engine) -> None:
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        with pytest.raises(NoticeError, match="no notice 'N9'"):
            outbox.mark_delivered("N9", "a", 1)
        # Still usable afterwards.
        assert outbox.add(make_notice("N1"))


@pytest.mark.parametrize("sink", ["", "Webhook", "a b", "x" * 65, "1sink"])
def test_sink_names_are_plain(notices_engine: Engine, sink: str) -> None:
    with transaction(notices_engine) as conn, pytest.raises(NoticeError, match="sink name"):
        NoticeOutbox(conn).pending(sink, 1)


@pytest.mark.parametrize("limit", [0, -1, 1_001])
def test_limits_are_bounded(notices_engine: Engine, limit: int) -> None:
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        with pytest.raises(NoticeError, match=r"limit must be in 1\.\.1000"):
            outbox.pending("a", limit)
        with pytest.raises(NoticeError, match=r"limit must be in 1\.\.1000"):
            outbox.recent(limit)


@pytest.mark.parametrize(
    ("table", "statement"),
    [
        ("notice", update(notice_table).values(kind="refund")),
        ("notice", delete(notice_table)),
        ("notice_delivery", update(notice_delivery_table).values(delivered_at_ms=0)),
        ("notice_delivery", delete(notice_delivery_table)),
    ],
)
def test_both_tables_are_append_only(notices_engine: Engine, table: str, statement: object) -> None:
    _add(notices_engine, "N1")
    with transaction(notices_engine) as conn:
        NoticeOutbox(conn).mark_delivered("N1", "a", 1)
    operation = "UPDATE" if "UPDATE" in str(statement) else "DELETE"
    with (
        pytest.raises(IntegrityError, match=f"{table} {APPEND_ONLY_MARK}; {operation} refused"),
        transaction(notices_engine) as conn,
    ):
        conn.execute(statement)  # type: ignore[call-overload]
    with transaction(notices_engine) as conn:
        outbox = NoticeOutbox(conn)
        assert outbox.get("N1") == make_notice("N1")
        assert outbox.pending_count("a") == 0


def test_kind_is_checked_by_the_database_too(notices_engine: Engine) -> None:
    with (
        pytest.raises(IntegrityError, match="notice_kind_known"),
        transaction(notices_engine) as conn,
    ):
        conn.execute(notice_table.insert().values(id="X", at_ms=1, kind="credit", payload="{}"))
