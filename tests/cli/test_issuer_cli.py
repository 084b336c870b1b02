"""``cardtally issuer``: cards, accounts, and bad input answered in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import cardtally
from tests.issuer.messages import CREDIT_PAN, DEBIT_PAN, pan


@pytest.fixture
def home(tmp_path: Path) -> Path:
    assert cardtally("init", home=tmp_path).returncode == 0
    added = cardtally(
        "issuer",
        "cards",
        "add",
        "--pan",
        DEBIT_PAN,
        "--expiry",
        "2812",
        "--balance",
        "100.00",
        "--pin",
        "123456",
        home=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert "622588******" in added.stdout and DEBIT_PAN not in added.stdout
    return tmp_path


def _show(home: Path, card: str, *extra: str) -> dict[str, object]:
    shown = cardtally("issuer", "cards", "show", "--pan", card, "--json", *extra, home=home)
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert isinstance(result, dict)
    return result


def test_show_gives_minor_units_and_masks_the_pan(home: Path) -> None:
    shown = _show(home, DEBIT_PAN)
    assert shown["balance_minor"] == 10_000
    assert shown["available_minor"] == 10_000
    assert shown["kind"] == "debit"
    assert shown["card"] == DEBIT_PAN[:6] + "******" + DEBIT_PAN[-4:]
    assert _show(home, DEBIT_PAN, "--show-pan")["card"] == DEBIT_PAN


def test_credit_card_and_list(home: Path) -> None:
    added = cardtally(
        "issuer",
        "cards",
        "add",
        "--pan",
        CREDIT_PAN,
        "--expiry",
        "2901",
        "--credit-limit",
        "2000",
        home=home,
    )
    assert added.returncode == 0, added.stderr
    listed = cardtally("issuer", "cards", "list", "--json", home=home)
    rows = json.loads(listed.stdout)
    assert [(r["kind"], r["available_minor"]) for r in rows] == [
        ("debit", 10_000),
        ("credit", 200_000),
    ]
    table = cardtally("issuer", "cards", "list", home=home)
    assert CREDIT_PAN not in table.stdout and CREDIT_PAN[-4:] in table.stdout


def test_block_and_unblock(home: Path) -> None:
    blocked = cardtally("issuer", "cards", "block", "--pan", DEBIT_PAN, "--lost", home=home)
    assert blocked.returncode == 0 and "lost" in blocked.stdout
    assert _show(home, DEBIT_PAN)["status"] == "lost"
    assert cardtally("issuer", "cards", "unblock", "--pan", DEBIT_PAN, home=home).returncode == 0
    assert _show(home, DEBIT_PAN)["status"] == "active"


def test_accounts_show_lists_balances_and_transfers(home: Path) -> None:
    shown = cardtally("issuer", "accounts", "show", "--pan", DEBIT_PAN, "--json", home=home)
    [account] = json.loads(shown.stdout)
    assert account["balance_minor"] == 10_000
    assert account["transfers"][0]["reference"] == "opening balance"
    everything = cardtally("issuer", "accounts", "show", home=home)
    assert (
        "issuer:funding:156" in everything.stdout and "issuer:settlement:156" in everything.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pan", "6225880000000002", "--expiry", "2812"], "fails the Luhn check"),
        (["--pan", pan("411111000000000"), "--expiry", "2812"], "not under this issuer's BINs"),
        (["--pan", pan("622588000000077"), "--expiry", "2813"], "expiry must be YYMM"),
        (["--pan", pan("622588000000077"), "--expiry", "2812", "--balance", "1.234"], "--balance"),
        (["--pan", pan("622588000000077"), "--expiry", "2812", "--pin", "12"], "PIN"),
        (["--pan", DEBIT_PAN, "--expiry", "2812"], "already exists"),
    ],
    ids=["luhn", "bin", "expiry", "amount", "pin", "duplicate"],
)
def test_bad_card_input_is_one_line_and_changes_nothing(
    home: Path, args: list[str], message: str
) -> None:
    before = cardtally("issuer", "cards", "list", "--json", home=home).stdout
    result = cardtally("issuer", "cards", "add", *args, home=home)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert cardtally("issuer", "cards", "list", "--json", home=home).stdout == before


def test_unknown_card_is_a_clear_error(home: Path) -> None:
    result = cardtally("issuer", "cards", "show", "--pan", pan("622588000000088"), home=home)
    assert result.returncode == 2
    assert "no card 622588******" in result.stderr
