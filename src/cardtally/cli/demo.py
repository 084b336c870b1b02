"""``cardtally demo``: the main job, end to end, with a plain account of what it showed."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.panel import Panel

from cardtally.cli._output import EXIT_PROBLEM, out
from cardtally.cli._state import state_of
from cardtally.demo import Step, run_foundation_demo


def demo_command(ctx: typer.Context) -> None:
    """Run what exists of cardtally end to end over real loopback TCP and report each check.

    Today that is the floor every party stands on: the ISO 8583 wire profile,
    working keys, MACs, PIN blocks and PIN verification, card-number protection
    and the storage layer. The full business day (issuer, switch, terminals,
    faults, day end) arrives with the later issues. Writes into the home
    (--home, default ./.cardtally). Exit code 1 if any check fails.
    """
    home = state_of(ctx).home
    out.print(
        Panel.fit(
            "[bold]cardtally foundation demo[/]\n"
            "A test terminal and a key host trade ISO 8583 frames over TCP (127.0.0.1).\n"
            "Issuer, switch and POS terminal are built (try `cardtally terminal --help`).\n"
            "The business-day demo comes with the day end; this checks their footing.",
        )
    )

    def report(step: Step) -> None:
        mark = "[green]PASS[/]" if step.ok else "[bold red]FAIL[/]"
        out.print(f"{mark}  [bold]{escape(step.name)}[/]: {escape(step.shown)}")

    result = run_foundation_demo(home, report)
    passed = sum(step.ok for step in result.steps)
    out.print(f"\n{passed}/{len(result.steps)} checks passed; files in {home}")
    if not result.ok:
        raise typer.Exit(EXIT_PROBLEM)
