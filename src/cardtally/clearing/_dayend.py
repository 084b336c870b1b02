"""Running a business day's day end, step by step, resumable and idempotent.

Steps, each committed before the next starts; the day's row records the last one done:

1. ``match``: the three legs loaded into DuckDB, every transaction placed in one class, the
   items and the claimed batches stored (switch database, one transaction);
2. ``files``: one CSV and one Parquet clearing file per issuer link (atomic writes);
3. ``issuer``: the issuer side reads each file, verifies it, and settles its net amount;
4. ``refunds``: each one-sided debit refunded through the issuer's ledger, with a notice;
5. ``settle``: merchant statements, the acquirer's postings, and today's payouts;
6. ``closed``: both ledgers verified.

A process killed between steps resumes at the next one; killed inside the issuer or refund
steps, the issuer's work is found by its ids (``clearing:<day>:<link>``,
``dayend:<day>:refund:<original>``) and only recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import duckdb
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cardtally.clearing._calendar import BusinessDay, business_day, day_of
from cardtally.clearing._clearing_out import (
    FORMATS,
    cleared_records,
    day_directory,
    file_path,
    header_for,
)
from cardtally.clearing._extract import (
    claimed_issuer_ids,
    load_issuer_leg,
    load_switch_leg,
)
from cardtally.clearing._fees import FeeError, FeeSchedule
from cardtally.clearing._files import (
    ClearingFile,
    ClearingFileError,
    ClearingRecord,
    ClearingTrailer,
    read_clearing_file,
    write_clearing_file,
)
from cardtally.clearing._issuer_leg import ClearingRefusedError, accept_clearing, refund_one_sided
from cardtally.clearing._match import create_inputs, reconcile
from cardtally.clearing._schema import (
    action_table,
    batch_claim_table,
    day_table,
    file_table,
    item_table,
)
from cardtally.clearing._settle import settle_day
from cardtally.clearing._tables import ReconClass
from cardtally.config import Config
from cardtally.issuer._store import SqlIssuerStore
from cardtally.ledger import SqlLedgerStore, verify_report
from cardtally.storage import append_event, transaction
from cardtally.switch._registry import list_issuer_links, list_merchants
from cardtally.switch._schema import txn_table

STEPS: Final = ("begun", "match", "files", "issuer", "refunds", "settle", "closed")
_WAITING_STATES: Final = ("received", "forwarded")
#: recon_item's columns, named as the stored items name them (the day aside).
_ITEM_COLUMNS: Final = tuple(c.name for c in item_table.columns if c.name != "day")

Progress = Callable[[str], None]


class DayendError(Exception):
    """The day end stopped: why, in one line. Nothing after the last recorded step was done."""


@dataclass(frozen=True, slots=True)
class Dayend:
    """What a day end works with: the config and both parties' databases."""

    config: Config
    switch: Engine
    issuer: Engine

    @property
    def cutoff_minutes(self) -> int:
        return self.config.dayend.cutoff_minutes

    def day(self, day: date) -> BusinessDay:
        return business_day(day, self.cutoff_minutes)

    def schedule(self) -> FeeSchedule:
        settings = self.config.dayend
        return FeeSchedule.from_percent(dict(settings.fee_plans), settings.agent_share)


@dataclass(frozen=True, slots=True)
class RunResult:
    day: BusinessDay
    already_closed: bool
    steps_done: tuple[str, ...]


def run_day(
    dayend: Dayend,
    day: date,
    now_ms: int,
    progress: Progress = lambda _: None,
    *,
    close_now: bool = False,
) -> RunResult:
    """Run (or resume) the day end of ``day``; raise :class:`DayendError` on a refusal.

    ``close_now`` ends the day at ``now_ms`` instead of its cutoff (an early close, as for a
    demonstration or a network holiday); the next day then starts at that moment.
    """
    with transaction(dayend.switch) as conn:
        bd = day_window(conn, dayend, day, now_ms if close_now else None)
        step = _step_of(conn, bd)
    if step == "closed":
        return RunResult(bd, True, ())
    _preflight(dayend, bd, now_ms, resuming=step is not None)
    done: list[str] = []
    actions: dict[str, Callable[[Dayend, BusinessDay, int, Progress], None]] = {
        "begun": _begin,
        "match": _match,
        "files": _write_files,
        "issuer": _issuer_reads,
        "refunds": _refunds,
        "settle": _settle,
        "closed": _close,
    }
    start = STEPS.index(step) + 1 if step is not None else 0
    for name in STEPS[start:]:
        try:
            actions[name](dayend, bd, now_ms, progress)
        except DayendError as exc:
            _record_error(dayend, bd, str(exc), now_ms)
            raise
        done.append(name)
    return RunResult(bd, False, tuple(done))


def day_window(
    conn: Connection, dayend: Dayend, day: date, close_at_ms: int | None = None
) -> BusinessDay:
    """The day's window: as recorded once its day end began, else from the cutoff, starting
    where the previous day's recorded window ended (it may have closed early)."""
    computed = dayend.day(day)
    recorded = conn.execute(
        sa.select(day_table.c.window_start_ms, day_table.c.window_end_ms).where(
            day_table.c.day == computed.text
        )
    ).one_or_none()
    if recorded is not None:
        return BusinessDay(day, int(recorded[0]), int(recorded[1]))
    before = conn.execute(
        sa.select(day_table.c.window_end_ms).where(
            day_table.c.day == computed.previous(dayend.cutoff_minutes).text
        )
    ).scalar()
    start = computed.start_ms if before is None else int(before)
    end = computed.end_ms if close_at_ms is None else min(close_at_ms, computed.end_ms)
    if end <= start:
        raise DayendError(f"business day {computed.text} has not begun yet")
    return BusinessDay(day, start, end)


# --- preconditions -----------------------------------------------------------------------


def _preflight(dayend: Dayend, bd: BusinessDay, now_ms: int, *, resuming: bool) -> None:
    if now_ms < bd.end_ms:
        raise DayendError(
            f"business day {bd.text} is still open: it closes at the cutoff "
            f"({bd.window_text().split(' to ')[1]}); --close-now ends it early"
        )
    with transaction(dayend.switch) as conn:
        if not resuming:
            _check_order(conn, bd, dayend.cutoff_minutes)
        _check_nothing_waiting(conn, bd)
        _check_fee_plans(conn, dayend)


def _check_order(conn: Connection, bd: BusinessDay, cutoff_minutes: int) -> None:
    later = conn.execute(
        sa.select(day_table.c.day).where(day_table.c.day > bd.text).limit(1)
    ).scalar()
    if later is not None:
        raise DayendError(f"the day end of {later} already ran; days close in order")
    open_day = conn.execute(
        sa.select(day_table.c.day).where(day_table.c.state != "closed").limit(1)
    ).scalar()
    if open_day is not None:
        raise DayendError(f"the day end of {open_day} has not finished; run it again first")
    last = conn.execute(sa.select(sa.func.max(day_table.c.day))).scalar()
    previous = bd.previous(cutoff_minutes)
    if last is not None and last != previous.text:
        raise DayendError(f"the last day closed is {last}; close {previous.text} first")
    if last is None:
        older = conn.execute(
            sa.select(sa.func.min(txn_table.c.received_at_ms)).where(
                txn_table.c.received_at_ms < bd.start_ms
            )
        ).scalar()
        if older is not None:
            first = day_of(int(older), cutoff_minutes)
            raise DayendError(
                f"the switch has swipes from business day {first.text}; close that day first"
            )


def _check_nothing_waiting(conn: Connection, bd: BusinessDay) -> None:
    t = txn_table
    waiting = conn.execute(
        sa.select(t.c.id)
        .where(t.c.state.in_(_WAITING_STATES))
        .where(t.c.received_at_ms < bd.end_ms)
        .order_by(t.c.id)
        .limit(1)
    ).scalar()
    if waiting is not None:
        raise DayendError(
            f"RRN {waiting:012d} is still waiting on the issuer; start the switch so it is "
            "answered or timed out (reversed), then run the day end again"
        )


def _check_fee_plans(conn: Connection, dayend: Dayend) -> None:
    try:
        schedule = dayend.schedule()
        for merchant in list_merchants(conn):
            schedule.plan(merchant.fee_plan)
    except FeeError as exc:
        raise DayendError(f"dayend.fee_plans: {exc}") from None


# --- steps -------------------------------------------------------------------------------


def _begin(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    with transaction(dayend.switch) as conn:
        if _step_of(conn, bd) is None:
            conn.execute(
                day_table.insert().values(
                    day=bd.text,
                    window_start_ms=bd.start_ms,
                    window_end_ms=bd.end_ms,
                    state="running",
                    step="begun",
                    started_at_ms=now_ms,
                )
            )
            append_event(conn, now_ms, "dayend.begun", bd.text, {"window": bd.window_text()})
    progress(f"business day {bd.text}: {bd.window_text()}")


def _match(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    con = duckdb.connect(":memory:")
    try:
        create_inputs(con)
        with transaction(dayend.switch) as conn:
            previous = bd.previous(dayend.cutoff_minutes).text
            leg = load_switch_leg(con, conn, bd, previous, dayend.config.currency)
            claimed = claimed_issuer_ids(conn, _day_before(leg.earliest_ms, dayend))
        grace = dayend.config.dayend.grace_ms
        with transaction(dayend.issuer) as conn:
            issuer_rows = load_issuer_leg(
                con, conn, leg.earliest_ms - grace, bd.end_ms + grace, claimed
            )
        counts = reconcile(con, cutoff_ms=bd.end_ms)
        items = con.execute(
            f"SELECT {', '.join(_ITEM_COLUMNS)} FROM recon_item ORDER BY item_no"  # noqa: S608
        ).fetchall()
    finally:
        con.close()
    with transaction(dayend.switch) as conn:
        _store_items(conn, bd, items)
        for terminal_id, batch_no in leg.batches:
            conn.execute(
                batch_claim_table.insert().values(
                    terminal_id=terminal_id, batch_no=batch_no, day=bd.text
                )
            )
        _set_step(conn, bd, "match", now_ms, {"items": len(items)})
    progress(
        f"matched {leg.txns} switch transactions ({leg.carried} carried), "
        f"{issuer_rows} issuer postings: "
        + ", ".join(f"{k.value} {n}" for k, n in counts.by_class.items() if n)
    )


def _day_before(earliest_ms: int, dayend: Dayend) -> str:
    """The business day before the one ``earliest_ms`` falls in: issuer records placed since
    then may overlap this day's window (grace), so they are looked up as claimed."""
    return day_of(earliest_ms, dayend.cutoff_minutes).previous(dayend.cutoff_minutes).text


def _store_items(conn: Connection, bd: BusinessDay, items: list[tuple[object, ...]]) -> None:
    keys = ["klass" if c == "class" else c for c in _ITEM_COLUMNS]
    rows = [{"day": bd.text, **dict(zip(keys, item, strict=True))} for item in items]
    for start in range(0, len(rows), 10_000):
        conn.execute(item_table.insert(), rows[start : start + 10_000])


def _write_files(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    settings = dayend.config.dayend
    with transaction(dayend.switch) as conn:
        started = conn.execute(
            sa.select(day_table.c.started_at_ms).where(day_table.c.day == bd.text)
        ).scalar_one()
        links = [link.link_id for link in list_issuer_links(conn)]
        day_directory(settings.clearing_dir, bd).mkdir(parents=True, exist_ok=True)
        for link_id in links:
            records = cleared_records(conn, bd, link_id)
            header = header_for(
                bd, link_id, dayend.config.acquirer_id, dayend.config.currency, started
            )
            for fmt in FORMATS:
                path = file_path(settings.clearing_dir, bd, link_id, fmt)
                digest = write_clearing_file(path, header, records)
                _record_file(
                    conn,
                    bd,
                    link_id=link_id,
                    fmt=fmt,
                    path=path,
                    digest=digest,
                    records=records,
                    now_ms=now_ms,
                )
            progress(f"clearing file for {link_id}: {len(records)} records")
        _set_step(conn, bd, "files", now_ms, {"links": len(links)})


def _record_file(
    conn: Connection,
    bd: BusinessDay,
    *,
    link_id: str,
    fmt: str,
    path: Path,
    digest: str,
    records: list[ClearingRecord],
    now_ms: int,
) -> None:
    trailer = ClearingTrailer.from_records(records)
    f = file_table
    exists = conn.execute(
        sa.select(f.c.sha256).where(
            (f.c.day == bd.text) & (f.c.link_id == link_id) & (f.c.fmt == fmt)
        )
    ).scalar()
    if exists is not None:
        return
    conn.execute(
        f.insert().values(
            day=bd.text,
            link_id=link_id,
            fmt=fmt,
            path=str(path),
            sha256=digest,
            records=trailer.record_count,
            debit_minor=trailer.debit_minor,
            credit_minor=trailer.credit_minor,
            at_ms=now_ms,
        )
    )


def _issuer_reads(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    fmt = dayend.config.dayend.issuer_reads
    with transaction(dayend.switch) as conn:
        files = conn.execute(
            sa.select(file_table.c.link_id, file_table.c.path, file_table.c.sha256)
            .where(file_table.c.day == bd.text)
            .where(file_table.c.fmt == fmt)
            .order_by(file_table.c.link_id)
        ).all()
    for link_id, path_text, digest in files:
        clearing = _read_verified(Path(path_text), bd, link_id, digest)
        try:
            with transaction(dayend.issuer) as conn:
                accepted = accept_clearing(
                    SqlIssuerStore(conn), clearing, dayend.config.acquirer_id, now_ms
                )
        except ClearingRefusedError as exc:
            raise DayendError(f"the issuer refused {path_text}: {exc}") from None
        progress(f"issuer accepted {link_id}: {accepted.records} records, net {accepted.net_minor}")
    with transaction(dayend.switch) as conn:
        _set_step(conn, bd, "issuer", now_ms, {"files": len(files)})


def _read_verified(path: Path, bd: BusinessDay, link_id: str, digest: str) -> ClearingFile:
    try:
        clearing = read_clearing_file(path, business_day=bd.compact, link_id=link_id)
    except ClearingFileError as exc:
        raise DayendError(str(exc)) from None
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise DayendError(
            f"clearing file {path} refused: it changed since the day end wrote it "
            f"(sha256 {digest[:16]}...)"
        )
    return clearing


def _refunds(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    i, a = item_table, action_table
    with transaction(dayend.switch) as conn:
        todo = conn.execute(
            sa.select(i.c.item_no, i.c.switch_txn_id, i.c.issuer_txn_id)
            .where(i.c.day == bd.text)
            .where(i.c.klass == ReconClass.ONE_SIDED_DEBIT.value)
            .where(sa.not_(sa.exists().where((a.c.day == i.c.day) & (a.c.item_no == i.c.item_no))))
            .order_by(i.c.item_no)
        ).all()
    for item_no, switch_txn_id, issuer_txn_id in todo:
        with transaction(dayend.issuer) as conn:
            refunded = refund_one_sided(SqlIssuerStore(conn), issuer_txn_id, bd.text, now_ms)
        with transaction(dayend.switch) as conn:
            conn.execute(
                a.insert().values(
                    day=bd.text,
                    item_no=item_no,
                    kind="refund",
                    switch_txn_id=switch_txn_id,
                    issuer_txn_id=issuer_txn_id,
                    result=refunded.result,
                    amount_minor=refunded.amount_minor,
                    reference=refunded.record_id,
                    notice_id=refunded.notice_id,
                    at_ms=now_ms,
                )
            )
            append_event(
                conn,
                now_ms,
                "dayend.refund",
                str(switch_txn_id or issuer_txn_id),
                {"day": bd.text, "result": refunded.result, "amount": refunded.amount_minor},
            )
    with transaction(dayend.switch) as conn:
        _set_step(conn, bd, "refunds", now_ms, {"refunds": len(todo)})
    if todo:
        progress(f"refunded {len(todo)} one-sided debits through the issuer, with notices")


def _settle(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    schedule = dayend.schedule()
    with transaction(dayend.switch) as conn:
        f = file_table
        nets = [
            (link_id, dayend.config.currency, debit - credit)
            for link_id, debit, credit in conn.execute(
                sa.select(f.c.link_id, f.c.debit_minor, f.c.credit_minor)
                .where(f.c.day == bd.text)
                .where(f.c.fmt == "csv")
            ).all()
        ]
        pay_t1 = bd.next(dayend.cutoff_minutes).text
        statements, payouts = settle_day(
            conn, bd, pay_day_t1=pay_t1, schedule=schedule, link_nets=nets, now_ms=now_ms
        )
        _set_step(conn, bd, "settle", now_ms, {"statements": len(statements)})
    paid = sum(p.amount_minor for p in payouts)
    progress(f"settled {len(statements)} merchants; paid out {len(payouts)} ({paid} minor)")


def _close(dayend: Dayend, bd: BusinessDay, now_ms: int, progress: Progress) -> None:
    problems = [
        f"{name}: {detail}" for name, healthy, detail in ledger_checks(dayend) if not healthy
    ]
    if problems:
        raise DayendError("ledger check failed: " + "; ".join(problems))
    with transaction(dayend.switch) as conn:
        _set_step(conn, bd, "closed", now_ms, {})
        conn.execute(
            day_table.update()
            .where(day_table.c.day == bd.text)
            .values(state="closed", finished_at_ms=now_ms, last_error=None)
        )
    progress(f"business day {bd.text} closed; both ledgers balance")


def ledger_checks(dayend: Dayend) -> tuple[tuple[str, bool, str], ...]:
    """(ledger, balanced, detail) for the issuer's and the acquirer's ledgers."""
    checks = []
    for name, engine in (("issuer ledger", dayend.issuer), ("acquirer ledger", dayend.switch)):
        with transaction(engine) as conn:
            report = verify_report(SqlLedgerStore(conn))
        detail = (
            f"{report.accounts_checked} accounts, {report.transfers_checked} transfers"
            if report.healthy
            else "; ".join(str(v) for v in report.violations[:3])
        )
        checks.append((name, report.healthy, detail))
    return tuple(checks)


# --- the day's row -----------------------------------------------------------------------


def _step_of(conn: Connection, bd: BusinessDay) -> str | None:
    step = conn.execute(sa.select(day_table.c.step).where(day_table.c.day == bd.text)).scalar()
    return None if step is None else str(step)


def _set_step(
    conn: Connection, bd: BusinessDay, step: str, now_ms: int, detail: dict[str, object]
) -> None:
    conn.execute(day_table.update().where(day_table.c.day == bd.text).values(step=step))
    append_event(conn, now_ms, f"dayend.{step}", bd.text, detail)


def _record_error(dayend: Dayend, bd: BusinessDay, reason: str, now_ms: int) -> None:
    with transaction(dayend.switch) as conn:
        if _step_of(conn, bd) is None:
            return
        conn.execute(day_table.update().where(day_table.c.day == bd.text).values(last_error=reason))
        append_event(conn, now_ms, "dayend.stopped", bd.text, {"reason": reason})
