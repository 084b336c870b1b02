"""``cardtally demo``: the main job, a business day end to end, and its tally."""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, err, fail, out
from cardtally.cli._state import state_of
from cardtally.money import Money

if TYPE_CHECKING:
    # The demo (and the day end it runs) is imported when it runs, not whenever the CLI starts.
    from cardtally.clearing._fees import Statement
    from cardtally.demo import DemoResult, Tally

#: The default of --swipes: cardtally.demo._run.SWIPES_DEFAULT, which is not imported here
#: to keep the CLI's start light (tests/cli/test_startup.py checks they are equal).
SWIPES_DEFAULT: Final = 2_000
SWIPES_MIN: Final = 50
SWIPES_MAX: Final = 200_000


class _RichUi:
    """Progress bars on stderr: one line per stage, a bar where the stage has a size."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def stage(self, title: str, total: int | None = None) -> None:
        with self._lock:
            self._finish()
            self._task = self._progress.add_task(title, total=total)

    def advance(self, steps: int = 1) -> None:
        with self._lock:
            if self._task is not None:
                self._progress.advance(self._task, steps)

    def note(self, text: str) -> None:
        self._progress.console.print(f"  [dim]{escape(text)}[/]")

    def close(self) -> None:
        with self._lock:
            self._finish()

    def _finish(self) -> None:
        if self._task is None:
            return
        task = self._progress.tasks[self._task]
        self._progress.update(self._task, total=task.total or 1, completed=task.total or 1)


def _home(ctx: typer.Context) -> Path:
    """--home when given (it must be new or empty), else a fresh directory here."""
    state = state_of(ctx)
    if not state.home_given:
        return Path.cwd() / f"cardtally-demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if state.home.exists() and (not state.home.is_dir() or any(state.home.iterdir())):
        fail(f"{state.home} is not an empty directory; the demo builds a fresh home")
    return state.home


def demo_command(
    ctx: typer.Context,
    swipes: Annotated[
        int,
        typer.Option(
            "--swipes",
            min=SWIPES_MIN,
            max=SWIPES_MAX,
            help="Card transactions in the day (sales, balance inquiries, voids, refunds, "
            "pre-authorisations and completions), shared by all terminals.",
        ),
    ] = SWIPES_DEFAULT,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, help="Seed of the day's shoppers and faults."),
    ] = 1,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Leave the network running afterwards (issuer, switch, proxy) until Ctrl-C, "
            "to explore it with the other commands (--home DIR).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tally as JSON (progress stays on stderr).")
    ] = False,
) -> None:
    """Run a business day over real TCP with real faults, then the day end and the tally.

    Builds a sample network in a fresh home (--home DIR, or ./cardtally-demo-<time>): an
    issuer with a few hundred cardholders on two BINs; merchants of several categories and
    fee plans, one signed by an agent, some paid D0; a few dozen terminals with master keys.
    Starts the issuer and the switch as separate processes on loopback ports, with fault
    proxies between terminals and switch and between switch and issuer. Every terminal signs
    on and sells at once while answers get lost, links drop, the issuer turns slow, terminals
    are switched off mid-sale and printers run out of paper; late in the day the reversal
    advices stop reaching the issuer until after the day end. Then every terminal settles,
    the day end runs, and the tally is read from the databases: swipes, approvals, declines
    by reason, interruptions and how each ended, refunds, notices, merchant settlement and
    fees, and the promise's checks.

    Writes the HTML day report and prints its path. Exit 0 when every check holds, 1 when
    one fails, 2 on bad options.
    """
    from cardtally.demo import DemoOptions, run_demo  # noqa: PLC0415 - heavy, demo only

    home = _home(ctx)
    options = DemoOptions(swipes=swipes, seed=seed)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    err.print(
        Panel.fit(
            f"[bold]cardtally demo[/]: a business day of {swipes:,} swipes over real TCP\n"
            f"home {escape(str(home))}",
        )
    )
    with ExitStack() as stack:
        with Progress(*columns, console=err, transient=False) as progress:
            ui = _RichUi(progress)
            result = run_demo(home, options, ui, stack)
            ui.close()
        if as_json:
            out.print_json(json.dumps(_json(result)))
        else:
            _print(result)
        if keep:
            _wait_for_ctrl_c(result)
    if not result.ok:
        raise typer.Exit(EXIT_PROBLEM)


# -- the tally on screen ---------------------------------------------------------------------


def _money(minor: int) -> str:
    return str(Money(minor, "156"))


def _amount(minor: int) -> str:
    return Money(minor, "156").decimal_text()


def _print(result: DemoResult) -> None:
    tally = result.tally
    out.print()
    out.print(_day_table(tally))
    out.print(_interruption_table(tally))
    out.print(_fault_table(result))
    out.print(_settlement_table(tally.statements))
    out.print(_check_table(tally))
    verdict = "[bold green]the tally comes out even[/]" if result.ok else "[bold red]FAILED[/]"
    out.print(f"\n{verdict}: {_unresolved_line(tally)}; took {result.elapsed_s:.0f} s")
    for problem in [*result.fleet.errors, *(f"unsettled {t}" for t in result.fleet.unsettled)]:
        out.print(f"[red]problem:[/] {escape(problem)}")
    out.print(f"HTML day report: {result.report_path}", markup=False)
    out.print(
        f"Explore: cardtally --home {result.home} lookup --help   "
        f"(cards in {result.network.cards_file})",
        markup=False,
    )


def _unresolved_line(tally: Tally) -> str:
    return f"unresolved {tally.unresolved}, ledger {'balanced' if _balanced(tally) else 'NOT'}"


def _balanced(tally: Tally) -> bool:
    return all(c.ok for c in tally.checks if c.name.endswith("ledger balanced"))


def _day_table(tally: Tally) -> Table:
    table = Table(title=f"Business day {tally.day}", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("swipes", f"{tally.swipes:,}")
    table.add_row("approved", f"{tally.approved:,}")
    table.add_row("declined", f"{sum(n for _, _, n in tally.declined):,}")
    for code, meaning, n in tally.declined:
        table.add_row(f"  {code} {meaning}", f"{n:,}")
    table.add_row("no answer (inquiries, no money)", f"{tally.no_answer:,}")
    table.add_row("interrupted", f"{tally.interrupted:,}")
    table.add_row(
        "refunded at day end", f"{tally.dayend_refunds:,} ({_money(tally.dayend_refunded_minor)})"
    )
    table.add_row("notices sent", f"{tally.notices_delivered:,} of {tally.notices:,}")
    return table


def _interruption_table(tally: Tally) -> Table:
    from cardtally.clearing._resolution import (  # noqa: PLC0415 - heavy, demo only
        RESOLUTIONS,
        UNRESOLVED,
    )

    table = Table(title="How each interrupted swipe ended", title_justify="left")
    table.add_column("resolution")
    table.add_column("count", justify="right")
    counts = dict(tally.resolutions)
    for name in RESOLUTIONS:
        n = counts.get(name, 0)
        label = f"{name} (must be 0)" if name == UNRESOLVED else name
        style = "bold red" if name == UNRESOLVED and n else ""
        table.add_row(label, f"{n:,}", style=style)
    return table


def _fault_table(result: DemoResult) -> Table:
    table = Table(title="Faults injected", title_justify="left")
    table.add_column("fault")
    table.add_column("count", justify="right")
    for fault, n in sorted(result.injected.items()):
        table.add_row(fault, f"{n:,}")
    return table


def _settlement_table(statements: tuple[Statement, ...]) -> Table:
    table = Table(title="Merchant settlement (CNY)", title_justify="left")
    for name in ("merchant", "MDR", "pay", "sales", "refunds", "fee", "agent", "net"):
        table.add_column(name, justify="left" if name == "merchant" else "right")
    for s in statements:
        table.add_row(
            f"{s.name} ({s.merchant_id[-4:]})",
            f"{s.rate_ppm / 10_000:.2f}%",
            s.cycle.upper(),
            f"{_amount(s.sales_minor)} ({s.sales_count})",
            _amount(s.refunds_minor),
            _amount(s.fee_minor),
            _amount(s.agent_minor) if s.agent else "-",
            _amount(s.net_minor),
        )
    totals = (
        sum(s.sales_minor for s in statements),
        sum(s.refunds_minor for s in statements),
        sum(s.fee_minor for s in statements),
        sum(s.agent_minor for s in statements),
        sum(s.net_minor for s in statements),
    )
    sales, refunds, fee, agent, net = (_amount(t) for t in totals)
    table.add_row("total", "", "", sales, refunds, fee, agent, net, style="bold")
    return table


def _check_table(tally: Tally) -> Table:
    table = Table(title="The promise, checked against the databases", title_justify="left")
    table.add_column("")
    table.add_column("check")
    table.add_column("seen")
    for check in tally.checks:
        mark = "[green]ok[/]" if check.ok else "[bold red]FAIL[/]"
        table.add_row(mark, escape(check.name), escape(check.detail))
    operations = tally.exceptions
    mark = "[green]ok[/]" if operations.ok else "[yellow]note[/]"
    table.add_row(mark, escape(operations.name), escape(operations.detail))
    return table


def _json(result: DemoResult) -> dict[str, Any]:
    from cardtally.clearing._resolution import RESOLUTIONS  # noqa: PLC0415 - heavy, demo only

    tally = result.tally
    return {
        "ok": result.ok,
        "home": str(result.home),
        "report": str(result.report_path),
        "elapsed_s": round(result.elapsed_s, 1),
        "day": tally.day,
        "swipes": tally.swipes,
        "approved": tally.approved,
        "declined": {code: n for code, _, n in tally.declined},
        "no_answer": tally.no_answer,
        "interrupted": tally.interrupted,
        "resolutions": {name: dict(tally.resolutions).get(name, 0) for name in RESOLUTIONS},
        "dayend_refunds": tally.dayend_refunds,
        "dayend_refunded_minor": tally.dayend_refunded_minor,
        "notices": tally.notices,
        "notices_delivered": tally.notices_delivered,
        "statements": [asdict(s) for s in tally.statements],
        "checks": [asdict(c) for c in tally.checks],
        "exceptions": asdict(tally.exceptions),
        "injected": dict(result.injected),
        "fleet": {
            "power_offs": result.fleet.power_offs,
            "paper_outs": result.fleet.paper_outs,
            "errors": result.fleet.errors,
            "unsettled": result.fleet.unsettled,
        },
    }


def _wait_for_ctrl_c(result: DemoResult) -> None:
    """Keep the network up (the caller's stack holds it) until Ctrl-C or SIGTERM."""
    from cardtally.demo._hosts import run_until_stopped  # noqa: PLC0415 - heavy, demo only

    home = result.home
    err.print(
        f"\n[bold]The network is running.[/] In another shell, try:\n"
        f"  cardtally --home {home} switch txns\n"
        f"  cardtally --home {home} dayend report --date {result.tally.day}\n"
        f"  cardtally --home {home} doctor\n"
        "Press Ctrl-C to stop it.",
        highlight=False,
    )
    gone = run_until_stopped(result.hosts)
    if gone is not None:
        err.print(f"the {gone.party} stopped on its own: {escape(gone.log_tail())}")
    err.print("stopping the switch, the issuer and the proxies")
