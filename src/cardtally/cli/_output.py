"""Console output shared by the commands: one Rich console each for stdout and stderr."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from cardtally.wire import local_text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit codes: 0 success, 1 a check found a problem, 2 bad input or config.
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE from sysexits.h: a bug, not the user's fault


def cst(at_ms: int | None) -> str:
    """An instant as operators read it: China Standard Time, as on receipts; "-" for none."""
    return "-" if at_ms is None else local_text(at_ms)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one clear line on stderr and exit; never a traceback."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    raise typer.Exit(code)
