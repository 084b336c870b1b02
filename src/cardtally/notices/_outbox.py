"""The outbox: notices written in the ledger's transaction, read back per sink.

The issuer adds a notice with the same connection, inside the same transaction,
as the ledger change it reports; so a notice exists if and only if the change was
committed. A sink's pending notices are those without a delivery row for it: the
database keeps no cursor, because on PostgreSQL transactions may commit out of
``seq`` order and a cursor could step over a notice whose transaction was still
open. (The dispatcher keeps a floor in memory to spare itself the full history and
rescans from the start now and then; see ``_dispatcher``.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final

from sqlalchemy import Insert, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from cardtally.notices._errors import NoticeError
from cardtally.notices._notice import AT_MS_MAX, Notice
from cardtally.notices._schema import notice_delivery_table, notice_table

PENDING_LIMIT_MAX: Final = 1_000
RECENT_LIMIT_MAX: Final = 1_000
SINK_CHARS_MAX: Final = 64

# A sink name is a key in the database and a word in log lines.
_SINK_NAME = re.compile(rf"[a-z][a-z0-9_.-]{{0,{SINK_CHARS_MAX - 1}}}")


def _insert_ignoring(table: Table, keys: list[str], *, returning: bool) -> dict[str, Insert]:
    """INSERT ... ON CONFLICT DO NOTHING on ``table`` per dialect, built once.

    Building one anew per notice costs several times its execution (see the issuer store);
    values are bound per call. ON CONFLICT rather than catching IntegrityError: on
    PostgreSQL an error aborts the caller's transaction, and a concurrent writer of the
    same key is waited for instead of failing. ``returning``: PostgreSQL says through
    RETURNING whether a row went in (its rowcount is -1 for such an insert).
    """
    lite = sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    pg = postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    return {"sqlite": lite, "postgresql": pg.returning(table.c[keys[0]]) if returning else pg}


_ADD_NOTICE: Final = _insert_ignoring(notice_table, ["id"], returning=True)
_MARK_ONE: Final = _insert_ignoring(notice_delivery_table, ["notice_id", "sink"], returning=True)
_MARK_MANY: Final = _insert_ignoring(notice_delivery_table, ["notice_id", "sink"], returning=False)


def check_sink_name(sink: object) -> str:
    """``sink`` if it is a usable sink name, else :class:`NoticeError`."""
    if not isinstance(sink, str) or not _SINK_NAME.fullmatch(sink):
        raise NoticeError(
            f"sink name must be 1..{SINK_CHARS_MAX} of a-z 0-9 _ . - starting with a letter: "
            f"{sink!r}"
        )
    return sink


class NoticeOutbox:
    """Notices on one connection; the caller owns the transaction and commits it."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, notice: Notice) -> bool:
        """Keep ``notice``; True if written, False if the same notice was already there.

        The same id with different content is refused with :class:`NoticeError` and
        writes nothing: a repeat must not silently change what the cardholder was told.
        """
        if not isinstance(notice, Notice):
            raise NoticeError(f"not a Notice: {type(notice).__name__}")
        self._require_transaction("add a notice")
        values = {
            "id": notice.id,
            "at_ms": notice.at_ms,
            "kind": notice.kind.value,
            "payload": _payload(notice),
        }
        if self._inserted(_ADD_NOTICE, values):
            return True
        existing = self.get(notice.id)
        assert existing is not None, "conflict on id, yet no row with that id"
        if existing != notice:
            raise NoticeError(f"notice {notice.id} already exists with different content")
        return False

    def get(self, notice_id: str) -> Notice | None:
        """The notice with ``notice_id``, or None."""
        row = self._conn.execute(
            select(notice_table.c.payload).where(notice_table.c.id == notice_id)
        ).one_or_none()
        return None if row is None else _from_payload(row.payload)

    def pending(self, sink: str, limit: int) -> list[Notice]:
        """Up to ``limit`` notices not yet delivered to ``sink``, oldest first."""
        return [notice for _, notice in pending_after(self._conn, sink, limit, after_seq=0)]

    def pending_count(self, sink: str) -> int:
        """How many notices ``sink`` has not had yet."""
        return pending_count_after(self._conn, sink, after_seq=0)

    def mark_delivered(self, notice_id: str, sink: str, at_ms: int) -> bool:
        """Record that ``sink`` took the notice; True if new, False if already recorded."""
        check_sink_name(sink)
        _check_at_ms(at_ms)
        self._require_transaction("mark a delivery")
        # Checked here rather than left to the foreign key: on PostgreSQL a failed
        # statement would poison the caller's whole transaction.
        known = self._conn.execute(
            select(notice_table.c.seq).where(notice_table.c.id == notice_id)
        ).one_or_none()
        if known is None:
            raise NoticeError(f"no notice {notice_id!r} to mark delivered")
        return self._inserted(
            _MARK_ONE, {"notice_id": notice_id, "sink": sink, "delivered_at_ms": at_ms}
        )

    def mark_all_delivered(self, notice_ids: Sequence[str], sink: str, at_ms: int) -> None:
        """Record that ``sink`` took every notice in ``notice_ids``, in one statement.

        For the dispatcher, whose ids come straight from the outbox (notices are never
        deleted), so the per-notice existence check of :meth:`mark_delivered` is spared.
        """
        check_sink_name(sink)
        _check_at_ms(at_ms)
        self._require_transaction("mark deliveries")
        if notice_ids:
            rows = [{"notice_id": i, "sink": sink, "delivered_at_ms": at_ms} for i in notice_ids]
            self._conn.execute(_MARK_MANY[self._dialect()], rows)

    def recent(self, limit: int) -> list[Notice]:
        """The last ``limit`` notices written, newest first."""
        _check_limit(limit, RECENT_LIMIT_MAX)
        query = select(notice_table.c.payload).order_by(notice_table.c.seq.desc()).limit(limit)
        return [_from_payload(row.payload) for row in self._conn.execute(query)]

    def _require_transaction(self, what: str) -> None:
        # Outside a transaction the write would ride on an implicit one that nobody
        # commits, and the notice would vanish with the connection.
        if not self._conn.in_transaction():
            raise NoticeError(f"cannot {what} outside a transaction: use storage.transaction()")

    def _inserted(self, statements: dict[str, Insert], values: dict[str, object]) -> bool:
        """Run one of the :func:`_insert_ignoring` statements; True if a row went in."""
        dialect = self._dialect()
        result = self._conn.execute(statements[dialect], values)
        if dialect == "postgresql":
            return result.first() is not None
        return result.rowcount == 1

    def _dialect(self) -> str:
        dialect = self._conn.dialect.name
        if dialect not in _ADD_NOTICE:
            raise NoticeError(f"no notice outbox for database dialect {dialect!r}")
        return dialect


def last_seq(conn: Connection) -> int:
    """The highest ``seq`` this connection can see (0 for an empty outbox)."""
    top = conn.execute(select(func.max(notice_table.c.seq))).scalar_one()
    return 0 if top is None else int(top)


def pending_after(
    conn: Connection, sink: str, limit: int, *, after_seq: int
) -> list[tuple[int, Notice]]:
    """Pending notices of ``sink`` with ``seq > after_seq``, oldest first, with their seq.

    For the dispatcher: starting above a floor keeps each round's scan to the
    notices that arrived since, instead of the whole history.
    """
    _check_limit(limit, PENDING_LIMIT_MAX)
    query = (
        select(notice_table.c.seq, notice_table.c.payload)
        .where(notice_table.c.seq > after_seq, ~_delivered_to(check_sink_name(sink)))
        .order_by(notice_table.c.seq)
        .limit(limit)
    )
    return [(int(row.seq), _from_payload(row.payload)) for row in conn.execute(query)]


def pending_count_after(conn: Connection, sink: str, *, after_seq: int) -> int:
    """How many notices with ``seq > after_seq`` ``sink`` has not had."""
    query = (
        select(func.count())
        .select_from(notice_table)
        .where(notice_table.c.seq > after_seq, ~_delivered_to(check_sink_name(sink)))
    )
    count = conn.execute(query).scalar_one()
    assert isinstance(count, int)
    return count


def _delivered_to(sink: str) -> ColumnElement[bool]:
    delivery = notice_delivery_table
    return (
        select(delivery.c.notice_id)
        .where(delivery.c.notice_id == notice_table.c.id, delivery.c.sink == sink)
        .exists()
    )


def _payload(notice: Notice) -> str:
    # Sorted keys and no spaces: the same notice is always the same string.
    return json.dumps(notice.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _from_payload(payload: str) -> Notice:
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise NoticeError(f"stored notice is not JSON: {exc}") from None
    return Notice.from_json(data)


def _check_at_ms(at_ms: int) -> None:
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or not 0 <= at_ms <= AT_MS_MAX:
        raise NoticeError(f"at_ms must be an int of milliseconds since 1970: {at_ms!r}")


def _check_limit(limit: int, limit_max: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= limit_max:
        raise NoticeError(f"limit must be in 1..{limit_max}: {limit!r}")
