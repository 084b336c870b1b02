"""``cardtally dayend``: close a business day, and read what each day end did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import sqlalchemy as sa
import typer
from rich.markup import escape
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, cst, err, fail, out
from cardtally.cli._state import state_of
from cardtally.money import Money
from cardtally.runtime import BusyError, exclusive, wall_clock_ms
from cardtally.storage import transaction
from cardtally.switch._schema import txn_table

if TYPE_CHECKING:
    # cardtally.clearing (duckdb, pyarrow, jinja2) is imported when a day-end command runs,
    # not whenever the CLI starts.
    from cardtally.clearing._dayend import Dayend

LOCK_FILE: Final = ".dayend.lock"

app = typer.Typer(
    help=(
        "Day end: close a business day at its cutoff (reconcile terminal batches, the switch "
        "log and the issuer's postings; refund one-sided debits; write clearing files; settle "
        "merchants net of the MDR), and report on it."
    ),
    no_args_is_help=True,
)

DateOpt = Annotated[
    str,
    typer.Option(
        "--date",
        metavar="YYYY-MM-DD",
        help="The business day (it ends at dayend.cutoff, 23:00 CST by default).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def _dayend(ctx: typer.Context) -> Iterator[Dayend]:
    from cardtally.clearing._database import (  # noqa: PLC0415 - heavy, day end only
        close_dayend,
        open_dayend,
    )

    dayend = open_dayend(state_of(ctx).config(), wall_clock_ms())
    try:
        yield dayend
    finally:
        close_dayend(dayend)


def _day(text: str) -> date:
    from cardtally.clearing._calendar import DayError, parse_day  # noqa: PLC0415 - heavy

    try:
        return parse_day(text)
    except DayError as exc:
        fail(str(exc))


@app.command("run")
def run_command(
    ctx: typer.Context,
    day_text: DateOpt,
    close_now: Annotated[
        bool,
        typer.Option(
            "--close-now",
            help=(
                "End the business day now instead of at its cutoff (an early close); "
                "later swipes belong to the next day."
            ),
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Close a business day, or resume one that stopped; a closed day is left as it is.

    Days close in order. Exit 0 when the day is closed, 1 when the day end stopped (the reason
    is printed and kept in `dayend status`; fix it and run again), 2 on bad input.
    """
    from cardtally.clearing._dayend import DayendError, run_day  # noqa: PLC0415 - heavy

    day = _day(day_text)
    config = state_of(ctx).config()
    config.dayend.clearing_dir.mkdir(parents=True, exist_ok=True)
    lock = config.dayend.clearing_dir / LOCK_FILE
    busy = "another day end is running in this home; wait for it to finish"
    progress = (lambda _: None) if as_json else (lambda line: out.print(f"• {escape(line)}"))
    try:
        with exclusive(lock, busy), _dayend(ctx) as dayend:
            result = run_day(dayend, day, wall_clock_ms(), progress, close_now=close_now)
            summary = day_summary(dayend, result.day.text)
    except BusyError as exc:
        fail(str(exc))
    except DayendError as exc:
        err.print(f"[bold red]day end stopped:[/] {escape(str(exc))}", markup=True)
        raise typer.Exit(EXIT_PROBLEM) from None
    if as_json:
        summary["already_closed"] = result.already_closed
        out.print_json(json.dumps(summary))
        return
    if result.already_closed:
        out.print(f"business day {result.day.text} was already closed; nothing done")
    _print_summary(summary)


@app.command("status")
def status_command(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the business days closed or in progress, and the day still open."""
    with _dayend(ctx) as dayend:
        days = _days(dayend)
        open_day = _open_day(dayend)
    if as_json:
        out.print_json(json.dumps({"days": days, "open": open_day}))
        return
    table = Table("day", "window (CST)", "state", "step", "items", "refunds", "exceptions")
    for d in days:
        table.add_row(
            d["day"],
            d["window"],
            d["state"],
            d["step"],
            str(d["items"]),
            str(d["refunds"]),
            str(d["exceptions"]),
        )
    out.print(table)
    for d in days:
        if d["last_error"]:
            out.print(f"{d['day']} stopped: {escape(d['last_error'])}")
    out.print(
        f"open: business day {open_day['day']} ({open_day['window']}), "
        f"{open_day['swipes']} swipes so far"
    )


@app.command("check-file")
def check_file_command(
    path: Annotated[Path, typer.Argument(help="A clearing file (.csv or .parquet).")],
    day_text: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="Refuse a file for another day."),
    ] = None,
    link: Annotated[
        str | None, typer.Option("--link", help="Refuse a file for another issuer link.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read a clearing file as an issuer does and verify its header and trailer.

    Exit 0 when the file is sound, 1 when it is refused (with the reason).
    """
    from cardtally.clearing._files import (  # noqa: PLC0415 - heavy, day end only
        ClearingFileError,
        read_clearing_file,
    )

    compact = None if day_text is None else _day(day_text).strftime("%Y%m%d")
    try:
        clearing = read_clearing_file(path, business_day=compact, link_id=link)
    except ClearingFileError as exc:
        err.print(f"[bold red]refused:[/] {escape(str(exc))}", markup=True)
        raise typer.Exit(EXIT_PROBLEM) from None
    header, trailer = clearing.header, clearing.trailer
    facts = {
        "business_day": header.business_day,
        "link": header.link_id,
        "acquirer": header.acquirer_id,
        "records": trailer.record_count,
        "debits": [trailer.debit_count, trailer.debit_minor],
        "credits": [trailer.credit_count, trailer.credit_minor],
        "net_minor": clearing.net_minor,
    }
    if as_json:
        out.print_json(json.dumps(facts))
        return

    def money(minor: int) -> str:
        return str(Money(minor, header.currency))

    out.print(
        f"{path}: sound. Business day {header.business_day}, issuer link {header.link_id}, "
        f"{trailer.record_count} records: {trailer.debit_count} debits "
        f"{money(trailer.debit_minor)}, {trailer.credit_count} credits "
        f"{money(trailer.credit_minor)}, net {money(clearing.net_minor)}"
    )


# --- reading the record ------------------------------------------------------------------


def day_summary(dayend: Dayend, day: str) -> dict[str, Any]:
    from cardtally.clearing._schema import (  # noqa: PLC0415 - heavy, day end only
        action_table,
        day_table,
        item_table,
    )

    with transaction(dayend.switch) as conn:
        row = conn.execute(sa.select(day_table).where(day_table.c.day == day)).mappings().one()
        i = item_table
        classes = conn.execute(
            sa.select(i.c.klass, sa.func.count(), sa.func.sum(i.c.amount_minor))
            .where(i.c.day == day)
            .group_by(i.c.klass)
            .order_by(i.c.klass)
        ).all()
        refunds = conn.execute(
            sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(action_table.c.amount_minor), 0)
            )
            .where(action_table.c.day == day)
            .where(action_table.c.result == "refunded")
        ).one()
    return {
        "day": day,
        "state": row["state"],
        "step": row["step"],
        "last_error": row["last_error"],
        "classes": {k: {"count": n, "amount_minor": int(a or 0)} for k, n, a in classes},
        "refunds": {"count": refunds[0], "amount_minor": int(refunds[1])},
        "currency": dayend.config.currency,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    from cardtally.clearing._tables import EXCEPTIONS  # noqa: PLC0415 - heavy, day end only

    currency = summary["currency"]
    out.print(f"business day {summary['day']}: {summary['state']} (last step {summary['step']})")
    for klass, figures in summary["classes"].items():
        flag = "  ← exception" if klass in EXCEPTIONS else ""
        out.print(
            f"  {klass:<18} {figures['count']:>7}  {Money(figures['amount_minor'], currency)}{flag}"
        )
    refunds = summary["refunds"]
    out.print(
        f"  refunded at day end: {refunds['count']} "
        f"({Money(refunds['amount_minor'], currency)}), each with a notice to the cardholder"
    )


def _days(dayend: Dayend) -> list[dict[str, Any]]:
    from cardtally.clearing._schema import (  # noqa: PLC0415 - heavy, day end only
        action_table,
        day_table,
        item_table,
    )
    from cardtally.clearing._tables import EXCEPTIONS  # noqa: PLC0415 - heavy, day end only

    i = item_table
    exceptions = sa.func.sum(sa.case((i.c.klass.in_([c.value for c in EXCEPTIONS]), 1), else_=0))
    with transaction(dayend.switch) as conn:
        counts = {
            day: (int(n), int(x or 0))
            for day, n, x in conn.execute(
                sa.select(i.c.day, sa.func.count(), exceptions).group_by(i.c.day)
            ).all()
        }
        refunds: dict[str, int] = dict(
            conn.execute(
                sa.select(action_table.c.day, sa.func.count()).group_by(action_table.c.day)
            ).all()
        )
        rows = conn.execute(sa.select(day_table).order_by(day_table.c.day)).mappings().all()
    return [
        {
            "day": r["day"],
            "window": f"{cst(r['window_start_ms'])[:16]} to {cst(r['window_end_ms'])[:16]}",
            "state": r["state"],
            "step": r["step"],
            "items": counts.get(r["day"], (0, 0))[0],
            "exceptions": counts.get(r["day"], (0, 0))[1],
            "refunds": int(refunds.get(r["day"], 0)),
            "started_at": cst(r["started_at_ms"]),
            "finished_at": cst(r["finished_at_ms"]) if r["finished_at_ms"] else None,
            "last_error": r["last_error"],
        }
        for r in rows
    ]


def _open_day(dayend: Dayend) -> dict[str, Any]:
    """The first business day not closed yet: the one after the last day end."""
    from cardtally.clearing._calendar import day_of, parse_day  # noqa: PLC0415 - heavy
    from cardtally.clearing._dayend import day_window  # noqa: PLC0415 - heavy, day end only
    from cardtally.clearing._schema import day_table  # noqa: PLC0415 - heavy, day end only

    now_ms = wall_clock_ms()
    with transaction(dayend.switch) as conn:
        last = conn.execute(sa.select(sa.func.max(day_table.c.day))).scalar()
        if last is None:
            day = day_of(now_ms, dayend.cutoff_minutes).day
        else:
            day = parse_day(str(last)) + timedelta(days=1)
        window = day_window(conn, dayend, day)
        swipes = conn.execute(
            sa.select(sa.func.count()).where(
                txn_table.c.received_at_ms.between(window.start_ms, window.end_ms - 1)
            )
        ).scalar_one()
    return {"day": window.text, "window": window.window_text(), "swipes": int(swipes)}


@app.command("report")
def report_command(
    ctx: typer.Context,
    day_text: DateOpt,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="PATH",
            help=(
                "Where to write the HTML report with charts "
                "(default: <clearing dir>/<YYYYMMDD>/dayend-report.html)."
            ),
        ),
    ] = None,
) -> None:
    """Print a business day's day-end summary and write its HTML report.

    The summary gives the outcomes, each reconciliation class, the interruptions and how each
    was resolved, the exceptions for operations, the clearing files, the settlement per
    merchant, and the ledger checks. The HTML report adds charts: volume by hour, outcomes,
    interruptions by resolution, settlement per merchant.
    """
    from cardtally.clearing._clearing_out import day_directory  # noqa: PLC0415 - heavy
    from cardtally.clearing._day_report import (  # noqa: PLC0415 - heavy, day end only
        NoSuchDayError,
        day_report,
    )
    from cardtally.clearing._report import render_html, render_text  # noqa: PLC0415 - heavy

    day = _day(day_text)
    with _dayend(ctx) as dayend:
        try:
            report = day_report(dayend, dayend.day(day))
        except NoSuchDayError as exc:
            fail(str(exc), EXIT_PROBLEM)
        target = html or (
            day_directory(dayend.config.dayend.clearing_dir, dayend.day(day)) / "dayend-report.html"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    out.print(render_text(report), markup=False)
    out.print(f"HTML report: {target}", markup=False)


@app.command("statement")
def statement_command(
    ctx: typer.Context,
    day_text: DateOpt,
    merchant: Annotated[
        str | None,
        typer.Option("--merchant", metavar="MID", help="Only this merchant (field 42)."),
    ] = None,
) -> None:
    """Print the settlement statements of a business day: sales, refunds, MDR, agent share,
    net, and when the merchant is (or was) paid."""
    from cardtally.clearing._day_report import statements_of  # noqa: PLC0415 - heavy
    from cardtally.clearing._fees import render_statement  # noqa: PLC0415 - heavy

    day = _day(day_text)
    with _dayend(ctx) as dayend, transaction(dayend.switch) as conn:
        statements = statements_of(conn, day.isoformat())
    chosen = [s for s in statements if merchant is None or s[0].merchant_id == merchant]
    if not chosen:
        who = f" for merchant {merchant}" if merchant else ""
        fail(f"no settlement statement{who} on business day {day.isoformat()}", EXIT_PROBLEM)
    for st, pay_day, paid in chosen:
        out.print(
            render_statement(st, business_day=day.isoformat(), pay_day=pay_day, paid=paid),
            markup=False,
        )
