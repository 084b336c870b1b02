"""Gathering a day end's report from the record: what the switch saw, how each transaction was
placed, what was refunded, which files went out, what each merchant is paid, and whether both
ledgers balance. Rendering is :mod:`cardtally.clearing._report`'s job."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cardtally.clearing._calendar import BusinessDay
from cardtally.clearing._dayend import Dayend, day_window, ledger_checks
from cardtally.clearing._fees import Statement
from cardtally.clearing._report import ClassCount, DayReport, FileLine, HourVolume, Interruption
from cardtally.clearing._schema import (
    action_table,
    day_table,
    file_table,
    item_table,
    payout_table,
    statement_table,
)
from cardtally.clearing._tables import EXCEPTIONS, ReconClass
from cardtally.storage import transaction
from cardtally.switch._schema import txn_table
from cardtally.wire import LOCAL_TIME

#: Switch states that mean something went wrong on the way, whatever the outcome.
_INTERRUPTED: Final = ("timed_out", "reversal_pending", "reversed", "reversal_refused")
_HAPPENED: Final = {
    "timed_out": "no answer from the issuer in time: answered 98",
    "reversal_pending": "reversed; the advice to the issuer is still queued",
    "reversal_refused": "the issuer refused to undo it",
}


class NoSuchDayError(LookupError):
    """No day end has begun for that business day."""


def day_report(dayend: Dayend, day: BusinessDay) -> DayReport:
    # Outside the report's transaction: the check opens its own on the same database.
    checks = ledger_checks(dayend)
    with transaction(dayend.switch) as conn:
        row = conn.execute(sa.select(day_table).where(day_table.c.day == day.text)).mappings()
        recorded = row.one_or_none()
        if recorded is None:
            raise NoSuchDayError(f"no day end has begun for business day {day.text}")
        bd = day_window(conn, dayend, day.day)
        report = DayReport(
            business_day=bd.text,
            window=bd.window_text(),
            state=_state(recorded),
            currency=dayend.config.currency,
            hourly=_hourly(conn, bd),
            outcomes=_outcomes(conn, bd),
            classes=_classes(conn, bd),
            interruptions=_interruptions(conn, bd),
            exceptions=_exceptions(conn, bd),
            files=_files(conn, bd, recorded["step"]),
            statements=_statements(conn, bd),
            ledger_checks=checks,
        )
    return report


def _state(recorded: Any) -> str:
    if recorded["state"] == "closed":
        return "closed"
    stopped = f"; stopped: {recorded['last_error']}" if recorded["last_error"] else ""
    return f"running (last step {recorded['step']}{stopped})"


def _in_window(bd: BusinessDay) -> sa.ColumnElement[bool]:
    return txn_table.c.received_at_ms.between(bd.start_ms, bd.end_ms - 1)


def _hourly(conn: Connection, bd: BusinessDay) -> tuple[HourVolume, ...]:
    counts: Counter[int] = Counter()
    amounts: Counter[int] = Counter()
    for at_ms, amount in conn.execute(
        sa.select(txn_table.c.received_at_ms, txn_table.c.amount_minor).where(_in_window(bd))
    ):
        hour = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(LOCAL_TIME).hour
        counts[hour] += 1
        amounts[hour] += int(amount)
    return tuple(HourVolume(h, counts[h], amounts[h]) for h in range(24))


def _outcomes(conn: Connection, bd: BusinessDay) -> tuple[tuple[str, int], ...]:
    t = txn_table
    rows = conn.execute(
        sa.select(t.c.state, sa.func.count()).where(_in_window(bd)).group_by(t.c.state)
    ).all()
    return tuple(sorted(((str(s), int(n)) for s, n in rows), key=lambda p: (-p[1], p[0])))


def _classes(conn: Connection, bd: BusinessDay) -> tuple[ClassCount, ...]:
    i = item_table
    rows = conn.execute(
        sa.select(i.c.klass, sa.func.count(), sa.func.sum(i.c.amount_minor))
        .where(i.c.day == bd.text)
        .group_by(i.c.klass)
    ).all()
    found = {str(k): (int(n), int(a or 0)) for k, n, a in rows}
    return tuple(ClassCount(c.value, *found.get(c.value, (0, 0))) for c in ReconClass)


def _items(conn: Connection, bd: BusinessDay, where: sa.ColumnElement[bool]) -> list[Any]:
    i, t, a = item_table, txn_table, action_table
    return list(
        conn.execute(
            sa.select(
                i.c.rrn,
                i.c.terminal_id,
                i.c.merchant_id,
                i.c.kind,
                i.c.amount_minor,
                i.c.klass,
                i.c.reason,
                t.c.state,
                t.c.response_code,
                a.c.result,
            )
            .select_from(
                i.outerjoin(t, t.c.id == i.c.switch_txn_id).outerjoin(
                    a, (a.c.day == i.c.day) & (a.c.item_no == i.c.item_no)
                )
            )
            .where(i.c.day == bd.text)
            .where(where)
            .order_by(i.c.item_no)
        ).all()
    )


def _interruptions(conn: Connection, bd: BusinessDay) -> tuple[Interruption, ...]:
    one_sided = item_table.c.klass.in_(
        [ReconClass.ONE_SIDED_DEBIT.value, ReconClass.ONE_SIDED_CREDIT.value]
    )
    rows = _items(conn, bd, one_sided | txn_table.c.state.in_(_INTERRUPTED))
    return tuple(_interruption(r, _happened(r), _resolution(r)) for r in rows)


def _exceptions(conn: Connection, bd: BusinessDay) -> tuple[Interruption, ...]:
    rows = _items(conn, bd, item_table.c.klass.in_([c.value for c in EXCEPTIONS]))
    return tuple(_interruption(r, r.reason, "exception for operations") for r in rows)


def _interruption(row: Any, happened: str, resolution: str) -> Interruption:
    return Interruption(
        rrn=row.rrn,
        terminal_id=row.terminal_id,
        merchant_id=row.merchant_id,
        kind=row.kind,
        amount_minor=int(row.amount_minor),
        happened=happened,
        resolution=resolution,
    )


def _happened(row: Any) -> str:
    if row.klass in (ReconClass.ONE_SIDED_DEBIT.value, ReconClass.ONE_SIDED_CREDIT.value):
        return str(row.reason)
    if row.state == "reversed":
        if row.response_code == "98":
            return "no answer from the issuer in time: answered 98"
        return "the answer did not reach the terminal: the terminal reversed it"
    return _HAPPENED.get(str(row.state), str(row.reason))


def _resolution(row: Any) -> str:
    if row.klass == ReconClass.ONE_SIDED_DEBIT.value:
        if row.result == "refunded":
            return "refunded at day end (notice sent)"
        return "to be refunded at day end" if row.result is None else "nothing left to refund"
    if row.klass in [c.value for c in EXCEPTIONS]:
        return "exception for operations"
    if row.klass == ReconClass.UNSUCCESSFUL.value:
        return "reversed at the issuer: nothing taken"
    return str(row.klass).replace("_", " ")


def _files(conn: Connection, bd: BusinessDay, step: str) -> tuple[FileLine, ...]:
    f = file_table
    accepted = step in ("issuer", "refunds", "settle", "closed")
    rows = conn.execute(
        sa.select(f).where(f.c.day == bd.text).order_by(f.c.link_id, f.c.fmt)
    ).mappings()
    return tuple(
        FileLine(
            link_id=r["link_id"],
            path=r["path"],
            records=int(r["records"]),
            debit_minor=int(r["debit_minor"]),
            credit_minor=int(r["credit_minor"]),
            state="accepted by the issuer" if accepted else "written",
        )
        for r in rows
    )


def statements_of(conn: Connection, day: str) -> list[tuple[Statement, str, bool]]:
    """The day's merchant statements with their pay day and whether they were paid."""
    s, p = statement_table, payout_table
    paid = sa.exists().where((p.c.for_day == s.c.day) & (p.c.merchant_id == s.c.merchant_id))
    rows = conn.execute(
        sa.select(s, paid.label("paid")).where(s.c.day == day).order_by(s.c.merchant_id)
    ).mappings()
    return [(_statement(r), str(r["pay_day"]), bool(r["paid"])) for r in rows]


def _statements(conn: Connection, bd: BusinessDay) -> tuple[tuple[Statement, str, bool], ...]:
    return tuple(statements_of(conn, bd.text))


def _statement(r: Any) -> Statement:
    return Statement(
        merchant_id=r["merchant_id"],
        name=r["name"],
        fee_plan=r["fee_plan"],
        agent=r["agent"],
        cycle=r["cycle"],
        currency=r["currency"],
        sales_count=int(r["sales_count"]),
        sales_minor=int(r["sales_minor"]),
        refunds_count=int(r["refunds_count"]),
        refunds_minor=int(r["refunds_minor"]),
        rate_ppm=int(r["rate_ppm"]),
        agent_ppm=int(r["agent_ppm"]),
        fee_minor=int(r["fee_minor"]),
        agent_minor=int(r["agent_minor"]),
        acquirer_fee_minor=int(r["fee_minor"]) - int(r["agent_minor"]),
        net_minor=int(r["net_minor"]),
    )
