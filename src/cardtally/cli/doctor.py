"""``cardtally doctor``: say what is wrong with a home, precisely, and how to fix it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cardtally.cli._output import EXIT_PROBLEM, out
from cardtally.cli._state import state_of

if TYPE_CHECKING:
    # cardtally.doctor opens every part of a home: imported when the doctor runs.
    from cardtally.doctor import Finding


def doctor_command(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as a JSON list for machines.")
    ] = False,
) -> None:
    """Check a home and say what is wrong with it, precisely, and how to fix it.

    Checks, one line each (OK, INFO, WARN or PROBLEM, what was checked, what was
    found and, after "=>", how to fix it):

    - the home directory exists; the config file parses and validates;

    - the data keys and the issuer keys load (a missing key file is named; issuer
      keys without a zone MAC key are a warning);

    - the issuer's and the switch's databases are reachable and migrated to the
      latest revision (a SQLite file that was never created is a problem);

    - the issuer ledger and the acquirer ledger (in the switch's database, once a
      day end has run) balance, as `cardtally ledger verify` checks them;

    - the switch registry has an issuer link; each terminal's master key file
      (keys/terminals/TID.tmk) is present and matches the switch, unless the
      terminal is installed here (a warning: it is only needed to install);
      installed terminals' journals open;

    - whether anything accepts connections on the configured issuer and switch
      ports (information, never a problem).

    Read-only: it creates no file, migrates nothing and writes to no database, so
    it is safe on a broken home and on one in use. The last line counts problems
    and warnings.

    Exit code 0: no problem (warnings allowed); 1: at least one problem.

    Example:

        cardtally --home /srv/cardtally doctor
    """
    from cardtally.doctor import Level, examine  # noqa: PLC0415 - heavy, doctor only

    findings = examine(state_of(ctx).home)
    problems = sum(f.level is Level.PROBLEM for f in findings)
    if as_json:
        out.print_json(json.dumps([_as_json(f) for f in findings]))
    else:
        _print(findings)
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


def _as_json(finding: Finding) -> dict[str, str]:
    return {
        "level": finding.level.value,
        "check": finding.check,
        "detail": finding.detail,
        "fix": finding.fix,
    }


def _print(findings: list[Finding]) -> None:
    from cardtally.doctor import Level  # noqa: PLC0415 - heavy, doctor only

    style = {
        Level.OK: "green",
        Level.INFO: "cyan",
        Level.WARN: "yellow",
        Level.PROBLEM: "bold red",
    }
    level_width = max(len(level.value) for level in Level)
    check_width = max(len(f.check) for f in findings)
    shown_fix = ("", "")
    for f in findings:
        level = f.level.value.upper().ljust(level_width)
        # A fix already given for the line above (each ledger violation, say) is not repeated.
        repeated = shown_fix == (f.check, f.fix)
        fix = f" => {escape(f.fix)}" if f.fix and f.level is not Level.OK and not repeated else ""
        shown_fix = (f.check, f.fix)
        out.print(
            f"[{style[f.level]}]{level}[/]  {escape(f.check.ljust(check_width))}  "
            f"{escape(f.detail)}{fix}"
        )
    problems = sum(f.level is Level.PROBLEM for f in findings)
    warnings = sum(f.level is Level.WARN for f in findings)
    out.print(f"{_count(problems, 'problem')}, {_count(warnings, 'warning')}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
