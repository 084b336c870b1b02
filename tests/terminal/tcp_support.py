"""The POS terminal at the command line against real hosts over TCP.

:func:`terminal_network` builds a :class:`~tests.switch.tcp_support.Network` (a home made
with the CLI, SQLite databases for the issuer and the switch), starts ``issuer serve`` and
``switch serve`` as child processes, links them, installs a terminal with
``cardtally terminal install`` (its master key from the file ``switch terminals add`` wrote)
and signs it on. :class:`TerminalNet` then runs ``cardtally terminal ...`` commands against
the switch, or against a :class:`~tests.terminal.proxy.FaultProxy` in front of it.

Terminal commands run in this process through the real Typer app (:func:`terminal_cli`),
with the exit codes ``python -m cardtally`` gives: a user error the entry point prints as
one line (:data:`cardtally.cli.main.USER_ERRORS`) is exit 2 here too. Only a test that must
kill the terminal mid-flight starts a real process (:meth:`TerminalNet.spawn`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from typer.testing import CliRunner

from cardtally.cli.main import USER_ERRORS
from cardtally.cli.main import app as cardtally_app
from cardtally.storage import open_engine, sqlite_url, transaction
from tests.issuer.messages import DEBIT_PAN, EXPIRY, PIN
from tests.issuer.tcp_support import HOST, _child_env
from tests.switch.tcp_support import MERCHANT, TERMINAL_IDS, Network

TERMINAL_ID: Final = TERMINAL_IDS[0]
ADMIN: Final = "314159"
UNLOCK: Final = "27182818"
#: How long a terminal command waits for an answer when the test expects one.
ANSWER_TIMEOUT_S: Final = 15.0
#: How long it waits when the test arranged for the answer never to come.
LOST_TIMEOUT_S: Final = 2.0
#: Subcommands that talk to the switch and take --switch and --timeout-s.
ONLINE: Final = frozenset(
    {"signon", "sale", "balance", "void", "refund", "preauth", "complete", "settle"}
)
DEBIT_CARD_ARGS: Final = ("--pan", DEBIT_PAN, "--expiry", EXPIRY)

_runner = CliRunner()


@dataclass(frozen=True, slots=True)
class CliRun:
    """One ``cardtally`` command as its user sees it: exit code, stdout, stderr."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        shown = json.loads(self.stdout)
        assert isinstance(shown, dict), shown
        return shown


def cardtally_cli(home: Path, *args: str) -> CliRun:
    """``cardtally --home HOME ARGS`` in process, with the entry point's exit codes.

    :func:`cardtally.cli.main.run` prints a user error as one line and exits 2; the Typer
    app alone lets it escape, so this does the same mapping. Any other exception is a bug
    and is raised here, traceback and all.
    """
    result = _runner.invoke(cardtally_app, ["--home", str(home), *args])
    error = result.exception
    if error is None or isinstance(error, SystemExit):
        return CliRun(result.exit_code, result.stdout, result.stderr)
    if isinstance(error, USER_ERRORS):
        return CliRun(2, result.stdout, result.stderr + f"error: {error}\n")
    raise error


def terminal_cli(home: Path, *args: str) -> CliRun:
    return cardtally_cli(home, "terminal", *args)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def install_args(terminal_id: str = TERMINAL_ID) -> list[str]:
    return [
        "install",
        *("--terminal", terminal_id, "--merchant", MERCHANT),
        *("--admin-password", ADMIN, "--unlock-password", UNLOCK),
    ]


def sale_args(amount: str, *, pin: str | None = PIN) -> list[str]:
    return ["--amount", amount, *DEBIT_CARD_ARGS, *(() if pin is None else ("--pin", pin))]


def strip_reprint(slip: str) -> str:
    """A slip without its REPRINT mark line."""
    return "".join(line for line in slip.splitlines(keepends=True) if "*** REPRINT ***" not in line)


def strip_printed_at(slip: str) -> str:
    """A detail list without its PRINTED line (the time of printing)."""
    return "".join(
        line for line in slip.splitlines(keepends=True) if not line.startswith("PRINTED")
    )


class TerminalNet:
    """An installed, signed-on terminal in a network with a real issuer and switch."""

    def __init__(self, net: Network, switch_db: str, terminal_id: str = TERMINAL_ID) -> None:
        self.net = net
        self.switch_db = switch_db
        self.terminal_id = terminal_id

    @property
    def home(self) -> Path:
        return self.net.home

    @property
    def switch_port(self) -> int:
        assert self.net.switch is not None and self.net.switch.port
        return self.net.switch.port

    # -- commands ----------------------------------------------------------------------------

    def run(
        self,
        command: str,
        *args: str,
        via: int | None = None,
        timeout_s: float = ANSWER_TIMEOUT_S,
        as_json: bool = True,
    ) -> CliRun:
        """``cardtally terminal COMMAND --terminal TID [ARGS]``; an online command goes to the
        switch, or to the port ``via`` (a proxy, a closed port)."""
        full = [command, "--terminal", self.terminal_id, *args]
        if command in ONLINE:
            port = self.switch_port if via is None else via
            full += ["--switch", f"{HOST}:{port}", "--timeout-s", str(timeout_s)]
        if as_json:
            full.append("--json")
        done = terminal_cli(self.home, *full)
        # Card numbers are masked on every screen and slip.
        assert DEBIT_PAN not in done.stdout + done.stderr, done
        return done

    def term(self, command: str, *args: str, **options: Any) -> tuple[int, str]:
        """(exit code, stdout) of a terminal command (see :meth:`run`)."""
        done = self.run(command, *args, **options)
        return done.exit_code, done.stdout

    def term_json(self, command: str, *args: str, **options: Any) -> tuple[int, dict[str, Any]]:
        """(exit code, the --json outcome) of a terminal command."""
        done = self.run(command, *args, as_json=True, **options)
        assert done.stdout.strip(), f"terminal {command} printed nothing: {done.stderr}"
        return done.exit_code, done.json()

    def sale(self, amount: str, *extra: str, **options: Any) -> tuple[int, dict[str, Any]]:
        return self.term_json("sale", *sale_args(amount), *extra, **options)

    def balance(self, **options: Any) -> tuple[int, dict[str, Any]]:
        return self.term_json("balance", *DEBIT_CARD_ARGS, "--pin", PIN, **options)

    def status(self) -> dict[str, Any]:
        code, shown = self.term_json("status")
        assert code == 0, shown
        return shown

    def spawn(self, command: str, *args: str, via: int, timeout_s: float) -> subprocess.Popen[str]:
        """The same command as a real ``python -m cardtally`` process (to be killed)."""
        full = [
            *(sys.executable, "-m", "cardtally", "--home", str(self.home)),
            *("terminal", command, "--terminal", self.terminal_id, *args),
            *("--switch", f"{HOST}:{via}", "--timeout-s", str(timeout_s), "--json"),
        ]
        return subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )

    def status_process(self) -> dict[str, Any]:
        """``terminal status --json`` in a new process: what the journal on disk says."""
        result = subprocess.run(
            [
                *(sys.executable, "-m", "cardtally", "--home", str(self.home)),
                *("terminal", "status", "--terminal", self.terminal_id, "--json"),
            ],
            capture_output=True,
            text=True,
            env=_child_env(),
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert isinstance(shown, dict)
        return shown

    # -- what the hosts hold ---------------------------------------------------------------

    def issuer_balance(self) -> int:
        return self.net.balance(DEBIT_PAN)

    def switch_txns(self) -> list[dict[str, Any]]:
        """The switch's log (``switch txns --json``), oldest first."""
        return sorted(self.net.txns(), key=lambda t: (t["received_at_ms"], t["rrn"]))

    def switch_rows(self, sql: str, **params: object) -> list[dict[str, Any]]:
        """Rows of a query on the switch's database (its batches and uploads)."""
        engine = open_engine(self.switch_db)
        try:
            with transaction(engine) as conn:
                return [dict(row) for row in conn.execute(sa.text(sql), params).mappings()]
        finally:
            engine.dispose()

    def switch_batch(self, batch_no: int) -> dict[str, Any]:
        """The switch's record of this terminal's settled batch ``batch_no``."""
        [row] = self.switch_rows(
            "SELECT result, terminal_totals, switch_totals, uploaded FROM switch_batch"
            " WHERE terminal_id = :tid AND batch_no = :batch",
            tid=self.terminal_id,
            batch=batch_no,
        )
        return row


@contextmanager
def terminal_network(root: Path, *, signed_on: bool = True) -> Iterator[TerminalNet]:
    """Issuer and switch running and linked, terminal :data:`TERMINAL_ID` installed (and
    signed on): SQLite databases under ``root``; both hosts stopped on the way out."""
    issuer_db = sqlite_url(root / "issuer.sqlite3")
    switch_db = sqlite_url(root / "switch.sqlite3")
    with Network(root, issuer_db, switch_db) as net:
        issuer = net.start_issuer()
        net.link_issuer(issuer.port)
        net.start_switch()
        installed = terminal_cli(net.home, *install_args())
        assert installed.exit_code == 0, installed
        terminal = TerminalNet(net, switch_db)
        if signed_on:
            code, shown = terminal.term_json("signon")
            assert code == 0, shown
        yield terminal
