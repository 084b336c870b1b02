"""``cardtally ledger``: audit the double-entry ledger in a database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Engine

from cardtally.cli._output import EXIT_PROBLEM, fail, out
from cardtally.cli._state import state_of
from cardtally.config import resolve_database_url
from cardtally.ledger import LEDGER_TREE, SqlLedgerStore, VerifyReport, verify_report
from cardtally.storage import (
    check_reachable,
    current_revision,
    head_revision,
    is_up_to_date,
    mask_url,
    open_engine,
    transaction,
)

app = typer.Typer(help="Audit the double-entry ledger kept by the issuer.", no_args_is_help=True)


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            metavar="URL",
            help=(
                "Database to audit: sqlite:///NAME (relative names live in the home) or "
                "postgresql+psycopg://user:password@host/db. Default: the issuer's "
                "database from the home's config."
            ),
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON for machines.")
    ] = False,
) -> None:
    """Recompute every balance from the transfers and check the ledger's invariants.

    Checks that debits equal credits in each currency (posted and pending),
    that each account's cached balances equal what its transfers imply, that
    no account is below its floor, and that every transfer names existing
    accounts of its currency and resolves an existing hold at most once.

    Read-only: one read transaction, nothing written. Exit code 0: healthy;
    1: violations found (each is printed); 2: the database cannot be read or
    has no ledger tables.
    """
    home = state_of(ctx).home
    url = resolve_database_url(home, database or state_of(ctx).config().issuer.database)
    engine = _open(url)
    try:
        report = _audit(engine)
    finally:
        engine.dispose()
    if as_json:
        out.print_json(json.dumps(_as_json(report)))
    else:
        _print(report, mask_url(url))
    if not report.healthy:
        raise typer.Exit(EXIT_PROBLEM)


def _open(url: str) -> Engine:
    engine = open_engine(url)
    sqlite_path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    # Connecting to SQLite would create a missing file, and then report it unmigrated.
    if sqlite_path and not Path(sqlite_path).exists():
        fail(f"no database at {mask_url(url)}: {sqlite_path} does not exist")
    check_reachable(engine)
    if not is_up_to_date(engine, LEDGER_TREE):
        found = current_revision(engine, LEDGER_TREE) or "no ledger tables"
        fail(
            f"database {mask_url(engine.url)} is not migrated to the ledger schema "
            f"{head_revision(LEDGER_TREE)} (found: {found}); is it the issuer's database?"
        )
    return engine


def _audit(engine: Engine) -> VerifyReport:
    # Every query must see one snapshot, or a transfer committed between two of
    # them would look like a broken balance. SQLite's BEGIN IMMEDIATE gives that;
    # PostgreSQL needs REPEATABLE READ.
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with transaction(engine) as conn:
        return verify_report(SqlLedgerStore(conn))


def _as_json(report: VerifyReport) -> dict[str, object]:
    return {
        "healthy": report.healthy,
        "accounts_checked": report.accounts_checked,
        "transfers_checked": report.transfers_checked,
        "currencies": [
            {
                "currency": t.currency,
                "accounts": t.accounts,
                "debits_posted": t.debits_posted,
                "credits_posted": t.credits_posted,
                "debits_pending": t.debits_pending,
                "credits_pending": t.credits_pending,
                "balanced": t.balanced,
            }
            for t in report.totals
        ],
        "violations": [
            {"kind": v.kind, "subject": v.subject, "detail": v.detail} for v in report.violations
        ],
    }


def _print(report: VerifyReport, where: str) -> None:
    table = Table(title=f"ledger totals (minor units) in {where}", title_justify="left")
    for column in ("currency", "accounts", "debits posted", "credits posted", "debits pending"):
        table.add_column(column, justify="right")
    table.add_column("credits pending", justify="right")
    table.add_column("balanced")
    for t in report.totals:
        table.add_row(
            t.currency,
            str(t.accounts),
            str(t.debits_posted),
            str(t.credits_posted),
            str(t.debits_pending),
            str(t.credits_pending),
            "yes" if t.balanced else "[bold red]NO[/]",
        )
    out.print(table)
    for v in report.violations:
        out.print(f"[bold red]PROBLEM[/] {escape(v.kind)} {escape(v.subject)}: {escape(v.detail)}")
    checked = f"{report.accounts_checked} accounts, {report.transfers_checked} transfers checked"
    if report.healthy:
        out.print(f"[green]ledger healthy[/]: {checked}")
    else:
        out.print(f"[bold red]{len(report.violations)} violation(s)[/]: {checked}")
