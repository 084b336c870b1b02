"""The ``cardtally`` command: one root with a subcommand per party or job."""

from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from cardtally import __version__
from cardtally.cli import bench as bench_cli
from cardtally.cli import chaos as chaos_cli
from cardtally.cli import dayend as dayend_cli
from cardtally.cli import demo as demo_cli
from cardtally.cli import doctor as doctor_cli
from cardtally.cli import home as home_cli
from cardtally.cli import issuer as issuer_cli
from cardtally.cli import ledger as ledger_cli
from cardtally.cli import lookup as lookup_cli
from cardtally.cli import switch as switch_cli
from cardtally.cli import terminal as terminal_cli
from cardtally.cli import up as up_cli
from cardtally.cli import wire as wire_cli
from cardtally.cli._output import EXIT_INTERNAL, EXIT_USAGE, err
from cardtally.cli._state import CliState
from cardtally.config import HOME_ENV, ConfigError, resolve_home
from cardtally.issuer import CardError
from cardtally.ledger import LedgerError
from cardtally.money import MoneyError
from cardtally.notices import NoticeError
from cardtally.security import SecurityError
from cardtally.storage import StorageError
from cardtally.switch._errors import RegistryError, SwitchError
from cardtally.terminal import TerminalError
from cardtally.wire import WireError

app = typer.Typer(
    name="cardtally",
    help=(
        "Card-present payments where an interrupted swipe never costs anyone money: "
        "POS terminal -> acquirer switch -> issuer over ISO 8583."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(wire_cli.app, name="wire")
app.add_typer(home_cli.config_app, name="config")
app.add_typer(issuer_cli.app, name="issuer")
app.add_typer(switch_cli.app, name="switch")
app.add_typer(terminal_cli.app, name="terminal")
app.add_typer(ledger_cli.app, name="ledger")
app.add_typer(dayend_cli.app, name="dayend")
app.command("init")(home_cli.init_command)
app.command("doctor")(doctor_cli.doctor_command)
app.command("demo")(demo_cli.demo_command)
app.command("up")(up_cli.up_command)
app.command("lookup")(lookup_cli.lookup_command)
app.command("chaos")(chaos_cli.chaos_command)
app.command("bench")(bench_cli.bench_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cardtally {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            # CARDTALLY_HOME is read by resolve_home, the one place that knows the order.
            help=(
                "Where this deployment keeps config, databases and keys "
                f"(default: ${HOME_ENV}, else ./.cardtally)."
            ),
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    given = home is not None or bool(os.environ.get(HOME_ENV))
    ctx.obj = CliState(home=resolve_home(home), home_given=given)


#: Errors that are the user's input or environment, not our bug: one line, exit 2.
USER_ERRORS = (
    ConfigError,
    WireError,
    SecurityError,
    StorageError,
    LedgerError,
    CardError,
    NoticeError,
    MoneyError,
    RegistryError,
    SwitchError,
    TerminalError,
)


def run() -> None:
    """Console-script entry: user errors as one line, bugs without a traceback wall."""
    try:
        app()
    except USER_ERRORS as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            _internal_error(exc)
        # A port taken or not ours to bind: the environment, not a bug.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for developers
        _internal_error(exc)


#: OS errors that mean "the machine says no" (address in use, permission, no such address).
_ENVIRONMENT_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})


def _internal_error(exc: BaseException) -> NoReturn:
    if os.environ.get("CARDTALLY_DEBUG"):
        traceback.print_exc()
    err.print(
        f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
        "This is a bug in cardtally. Set CARDTALLY_DEBUG=1 to see the traceback.",
        markup=True,
    )
    sys.exit(EXIT_INTERNAL)
