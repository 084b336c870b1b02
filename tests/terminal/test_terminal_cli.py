"""``cardtally terminal`` at the command line, without a network: usage errors, install,
status, and what the terminal refuses before it ever opens a link.

Commands run in process through the real Typer app (:func:`terminal_cli`, with the entry
point's exit codes); one test runs the real entry point to see the one-line error a user
gets for an unknown terminal. Online commands that must not get as far as a link are
pointed at a closed port, so a mistake shows as exit 5 rather than a hang.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from tests.issuer.messages import DEBIT_PAN, EXPIRY, PIN
from tests.issuer.tcp_support import HOST, _child_env
from tests.switch.tcp_support import MERCHANT
from tests.terminal.tcp_support import (
    DEBIT_CARD_ARGS,
    TERMINAL_ID,
    UNLOCK,
    cardtally_cli,
    closed_port,
    install_args,
    sale_args,
    terminal_cli,
)

UNKNOWN_ID: Final = "10399999"
NOT_REGISTERED_ID: Final = "10300009"
BAD_LUHN_PAN: Final = DEBIT_PAN[:-1] + str((int(DEBIT_PAN[-1]) + 1) % 10)


@pytest.fixture(scope="module")
def installed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the merchant and terminal registered at the switch and the terminal
    installed (not signed on); made once, copied for each test."""
    home = tmp_path_factory.mktemp("template") / "home"
    for args in (
        ["init"],
        ["switch", "merchants", "add", "--id", MERCHANT, "--name", "COFFEE SHOP", "--mcc", "5812"],
        ["switch", "terminals", "add", "--id", TERMINAL_ID, "--merchant", MERCHANT],
        ["terminal", *install_args()],
    ):
        done = cardtally_cli(home, *args)
        assert done.exit_code == 0, done
    return home


@pytest.fixture
def home(installed_home: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(installed_home, tmp_path / "home"))


def _closed() -> list[str]:
    return ["--switch", f"{HOST}:{closed_port()}", "--timeout-s", "2"]


def _status(home: Path) -> dict[str, object]:
    done = terminal_cli(home, "status", "--terminal", TERMINAL_ID, "--json")
    assert done.exit_code == 0, done
    return done.json()


# --- unknown terminal -----------------------------------------------------------------------------


def test_unknown_terminal_is_one_line_naming_it(home: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "cardtally", "--home", str(home)),
            *("terminal", "status", "--terminal", UNKNOWN_ID),
        ],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert UNKNOWN_ID in line and TERMINAL_ID in line, line  # what is installed instead
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["sale", *sale_args("1.00")],
        ["balance", *DEBIT_CARD_ARGS],
        ["reprint"],
        ["detail"],
        ["tamper"],
        ["unlock", "--password", UNLOCK],
    ],
    ids=lambda a: a[0],
)
def test_unknown_terminal_for_every_command(home: Path, args: list[str]) -> None:
    online = args[0] in {"sale", "balance"}
    done = terminal_cli(
        home, args[0], "--terminal", UNKNOWN_ID, *args[1:], *(_closed() if online else [])
    )
    assert done.exit_code == 2, done
    assert f"unknown terminal {UNKNOWN_ID!r}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- usage errors ---------------------------------------------------------------------------------

CARD: Final = ("--pan", DEBIT_PAN, "--expiry", EXPIRY)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--amount", "1.001", *CARD], "--amount"),
        (["--amount", "12,34", *CARD], "--amount"),
        (["--amount", "abc", *CARD], "--amount"),
        (["--amount", "0", *CARD], "--amount"),
        (["--amount", "-1.00", *CARD], "--amount"),
        (["--amount", "1.00", "--pan", DEBIT_PAN, "--expiry", "281"], "--expiry"),
        (["--amount", "1.00", "--pan", DEBIT_PAN, "--expiry", "28AB"], "--expiry"),
        (["--amount", "1.00", "--pan", BAD_LUHN_PAN, "--expiry", EXPIRY], "--pan"),
        (["--amount", "1.00", "--pan", "6225880019", "--expiry", EXPIRY], "--pan"),
        (["--amount", "1.00", *CARD, "--track2", f"{DEBIT_PAN}={EXPIRY}"], "--track2"),
        (["--amount", "1.00", "--track2", f"{DEBIT_PAN}{EXPIRY}"], "--track2"),
        (["--amount", "1.00"], "--pan"),
        (["--amount", "1.00", *CARD, "--switch", "localhost"], "--switch"),
        (["--amount", "1.00", *CARD, "--switch", "127.0.0.1:99999"], "--switch"),
        (["--amount", "1.00", *CARD, "--switch", "127.0.0.1:0"], "--switch"),
        (["--amount", "1.00", *CARD, "--switch", ":9584"], "--switch"),
        (["--amount", "1.00", *CARD, "--switch", "127.0.0.1:http"], "--switch"),
        (["--amount", "1.00", *CARD, "--timeout-s", "0"], "--timeout-s"),
        (["--amount", "1.00", *CARD, "--pin", "12", "--ask-pin"], "--ask-pin"),
    ],
)
def test_bad_sale_input_is_a_usage_error(home: Path, args: list[str], option: str) -> None:
    if "--switch" not in args:
        args = [*args, "--switch", f"{HOST}:{closed_port()}"]
    done = terminal_cli(home, "sale", "--terminal", TERMINAL_ID, *args)
    assert done.exit_code == 2, done
    assert done.stdout == ""
    assert option in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert DEBIT_PAN not in done.stderr  # not even in an error
    assert _status(home)["trace"] == "000000"  # nothing reached the journal


@pytest.mark.parametrize(
    ("card", "option"),
    [
        (["--pan", DEBIT_PAN, "--expiry", "2813"], "--expiry"),
        (["--pan", DEBIT_PAN, "--expiry", "2800"], "--expiry"),
        (["--track2", f"{DEBIT_PAN}=2813101"], "--track2"),
    ],
)
def test_expiry_month_out_of_range_is_a_usage_error(
    home: Path, card: list[str], option: str
) -> None:
    """YYMM with a month of 13 or 00 is no expiry date: refused before it reaches field 14."""
    done = terminal_cli(
        home, "sale", "--terminal", TERMINAL_ID, "--amount", "1.00", *card, *_closed()
    )
    assert done.exit_code == 2, done
    assert option in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["void", "--voucher", "0", "--admin-password", "314159"],
        ["void", "--voucher", "1000000", "--admin-password", "314159"],
        ["refund", "--amount", "1.00", *CARD, "--admin-password", "314159"],  # no --rrn
        ["reprint", "--voucher", "0"],
        ["detail", "--batch", "0"],
    ],
    ids=lambda a: " ".join(a[:3]),
)
def test_bad_options_of_other_commands(home: Path, args: list[str]) -> None:
    online = args[0] in {"void", "refund"}
    done = terminal_cli(
        home, args[0], "--terminal", TERMINAL_ID, *args[1:], *(_closed() if online else [])
    )
    assert done.exit_code == 2, done
    assert "Traceback" not in done.stderr


# --- install --------------------------------------------------------------------------------------


def test_install_twice_refuses_and_keeps_the_journal(home: Path) -> None:
    before = _status(home)
    done = terminal_cli(home, *install_args())
    assert done.exit_code == 2, done
    assert f"terminal {TERMINAL_ID} is already installed" in done.stderr
    assert _status(home) == before


def test_install_without_the_master_key_file_says_so(home: Path) -> None:
    done = terminal_cli(home, *install_args(NOT_REGISTERED_ID))
    assert done.exit_code == 2, done
    key_file = home / "keys" / "terminals" / f"{NOT_REGISTERED_ID}.tmk"
    assert f"cannot read the master key file {key_file}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    listed = terminal_cli(home, "list")
    assert listed.stdout.split() == [TERMINAL_ID]  # nothing half-installed


def test_install_refuses_a_master_key_file_that_is_not_a_key(home: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "short.tmk"
    key_file.write_text("0123456789ABCDEF\n", encoding="ascii")
    done = terminal_cli(home, *install_args(NOT_REGISTERED_ID), "--master-key-file", str(key_file))
    assert done.exit_code == 2, done
    assert "holds 8 bytes" in done.stderr


@pytest.mark.parametrize("which", ["--admin-password", "--unlock-password"])
def test_install_refuses_a_password_a_keypad_could_not_take(home: Path, which: str) -> None:
    args = install_args(NOT_REGISTERED_ID)
    args[args.index(which) + 1] = "123"
    key_file = home / "keys" / "terminals" / f"{TERMINAL_ID}.tmk"
    done = terminal_cli(home, *args, "--master-key-file", str(key_file))
    assert done.exit_code == 2, done
    assert "4 to 32 characters" in done.stderr


# --- status and what a fresh terminal refuses -----------------------------------------------------


def test_status_of_a_fresh_terminal(home: Path) -> None:
    shown = _status(home)
    assert shown["terminal"] == TERMINAL_ID
    assert (shown["batch"], shown["trace"], shown["batch_state"]) == ("000001", "000000", "open")
    assert (shown["pending_reversal"], shown["protection"], shown["signed_on"]) == (
        None,
        "off",
        None,
    )
    text = terminal_cli(home, "status", "--terminal", TERMINAL_ID)
    assert text.exit_code == 0, text
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in text.stdout.splitlines()}
    assert lines["batch"] == "000001"
    assert lines["trace"] == "000000"
    assert lines["pending_reversal"] == "none"
    assert lines["protection"] == "off"


def test_sale_before_signon_is_refused_without_a_send(home: Path) -> None:
    done = terminal_cli(
        home, "sale", "--terminal", TERMINAL_ID, *sale_args("1.00"), *_closed(), "--json"
    )
    assert done.exit_code == 4, done
    outcome = done.json()
    assert outcome["status"] == "refused"
    assert outcome["screen"] == ["NOT SIGNED ON: SIGN ON FIRST"]
    assert outcome["txn"] is None
    assert _status(home)["trace"] == "000000"


def test_signon_against_a_closed_port_is_no_answer(home: Path) -> None:
    done = terminal_cli(home, "signon", "--terminal", TERMINAL_ID, *_closed(), "--json")
    assert done.exit_code == 5, done
    outcome = done.json()
    assert outcome["screen"][0] == "SIGN-ON FAILED"
    assert "unreachable" in outcome["screen"][1]
    shown = _status(home)
    assert (shown["signed_on"], shown["pending_reversal"]) == (None, None)


def test_local_jobs_of_a_fresh_terminal(home: Path) -> None:
    def run(*args: str) -> tuple[int, list[str], dict[str, object]]:
        done = terminal_cli(home, args[0], "--terminal", TERMINAL_ID, *args[1:], "--json")
        outcome = done.json()
        return done.exit_code, outcome["screen"], outcome

    assert run("reprint")[:2] == (4, ["NO RECEIPT TO REPRINT"])
    code, _, detail = run("detail")
    assert code == 0
    assert detail["totals_field48"] == "0" * 31
    assert "NO TRANSACTIONS" in str(detail["printout"])
    assert run("unlock", "--password", UNLOCK)[:2] == (0, ["TERMINAL IS NOT LOCKED"])

    assert run("tamper")[0] == 0
    done = terminal_cli(
        home, "sale", "--terminal", TERMINAL_ID, *sale_args("1.00", pin=PIN), *_closed()
    )
    assert done.exit_code == 4, done
    assert "TERMINAL LOCKED" in done.stdout
    assert run("unlock", "--password", "not-it")[:2] == (
        4,
        ["WRONG UNLOCK PASSWORD: TERMINAL STAYS LOCKED"],
    )
    assert run("unlock", "--password", UNLOCK)[:2] == (0, ["TERMINAL UNLOCKED"])
