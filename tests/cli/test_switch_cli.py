"""``cardtally switch``: registry commands, key injection files, and bad input in one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.security import kcv_hex, key_check_value
from tests.cli.test_cli import cardtally

MID: Final = "898440358120001"
TID: Final = "10300001"
KEY_HEX: Final = "0123456789ABCDEFFEDCBA9876543210"


def ok(*args: str, home: Path) -> str:
    result = cardtally(*args, home=home)
    assert result.returncode == 0, result.stderr
    return result.stdout


def listed(home: Path, *what: str) -> Any:
    return json.loads(ok("switch", *what, "--json", home=home))


def refused(*args: str, home: Path) -> str:
    """Run a command that must fail as bad input: exit 2, one line on stderr, no traceback."""
    result = cardtally(*args, home=home)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def tmk(home: Path, terminal_id: str = TID) -> Path:
    return home / "keys" / "terminals" / f"{terminal_id}.tmk"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ok("init", home=tmp_path)
    added = ok(
        "switch",
        "merchants",
        "add",
        "--id",
        MID,
        "--name",
        "LUCKY MART",
        "--mcc",
        "5411",
        "--city",
        "SHENZHEN",
        "--settlement",
        "d0",
        home=tmp_path,
    )
    assert f"merchant {MID} added" in added
    return tmp_path


def test_merchants_add_and_list(home: Path) -> None:
    ok(
        "switch",
        "merchants",
        "add",
        "--id",
        "M002           ",
        "--name",
        "WAREHOUSE CLUB",
        "--mcc",
        "5300",
        "--fee-plan",
        "warehouse",
        "--agent",
        "agent-7",
        "--account",
        "bank:6222020000000001",
        home=home,
    )
    merchants = listed(home, "merchants", "list")
    assert [(m["merchant_id"], m["settlement_cycle"]) for m in merchants] == [
        (MID, "d0"),
        ("M002", "t1"),
    ]
    assert merchants[0]["settlement_account"] == f"merchant:{MID}"
    assert merchants[1]["settlement_account"] == "bank:6222020000000001"
    assert merchants[1]["agent"] == "agent-7" and merchants[1]["fee_plan"] == "warehouse"
    table = ok("switch", "merchants", "list", home=home)
    assert MID in table and "WAREHOUSE" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", MID, "--name", "AGAIN", "--mcc", "5411"], f"merchant {MID} already exists"),
        (["--id", "M003", "--name", "X", "--mcc", "541"], "MCC must be exactly 4 digits"),
        (["--id", "M003", "--name", "X", "--mcc", "54111"], "got '54111'"),
        (["--id", "M-003", "--name", "X", "--mcc", "5411"], "merchant ID must be 1-15"),
        (["--id", "M003", "--name", "N" * 41, "--mcc", "5411"], "must be 1-40 printable ASCII"),
    ],
    ids=["duplicate", "short-mcc", "long-mcc", "bad-id", "long-name"],
)
def test_bad_merchants_are_one_line_and_change_nothing(
    home: Path, args: list[str], message: str
) -> None:
    before = listed(home, "merchants", "list")
    assert message in refused("switch", "merchants", "add", *args, home=home)
    assert listed(home, "merchants", "list") == before


def test_terminal_add_writes_the_master_key_for_injection(home: Path) -> None:
    out = ok("switch", "terminals", "add", "--id", TID, "--merchant", MID, home=home)
    path = tmk(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text(encoding="ascii")
    assert len(text) == 33 and text.endswith("\n")
    key = bytes.fromhex(text.strip())
    kcv = key_check_value(key).hex().upper()
    assert f"master key KCV {kcv}" in out
    assert text.strip() not in out and text.strip().lower() not in out
    [terminal] = listed(home, "terminals", "list")
    assert terminal == terminal | {
        "terminal_id": TID,
        "merchant_id": MID,
        "status": "active",
        "mac_required": True,
        "mac_algorithm": "x9.19",
        "batch_no": 1,
        "master_key_kcv": kcv,
        "signed_on_at_ms": None,
    }
    # The key file is never overwritten, and the terminal is not registered twice.
    assert "refusing to overwrite" in refused(
        "switch", "terminals", "add", "--id", TID, "--merchant", MID, home=home
    )
    assert path.read_text(encoding="ascii") == text
    path.unlink()
    assert f"terminal {TID} already exists" in refused(
        "switch", "terminals", "add", "--id", TID, "--merchant", MID, home=home
    )
    assert not path.exists()


def test_terminal_with_a_given_key_and_no_mac(home: Path) -> None:
    out = ok(
        "switch",
        "terminals",
        "add",
        "--id",
        "T0000002",
        "--merchant",
        MID,
        "--no-mac",
        "--mac-algorithm",
        "cup-ecb",
        "--master-key",
        KEY_HEX.lower(),
        home=home,
    )
    kcv = kcv_hex(bytes.fromhex(KEY_HEX))
    assert f"master key KCV {kcv}" in out
    assert tmk(home, "T0000002").read_text(encoding="ascii") == KEY_HEX + "\n"
    [terminal] = listed(home, "terminals", "list")
    assert (terminal["mac_required"], terminal["mac_algorithm"]) == (False, "cup-ecb")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", TID, "--merchant", "M404"], "unknown merchant M404"),
        (["--id", "1030001", "--merchant", MID], "exactly 8 ASCII letters and digits"),
        (["--id", TID, "--merchant", MID, "--master-key", "0123"], "--master-key: expected 32 hex"),
        (["--id", TID, "--merchant", MID, "--master-key", "Z" * 32], "not all hex digits"),
    ],
    ids=["unknown-merchant", "bad-tid", "short-key", "not-hex"],
)
def test_bad_terminals_write_nothing(home: Path, args: list[str], message: str) -> None:
    assert message in refused("switch", "terminals", "add", *args, home=home)
    assert listed(home, "terminals", "list") == []
    assert not tmk(home).exists()


def test_disable_and_enable(home: Path) -> None:
    ok("switch", "terminals", "add", "--id", TID, "--merchant", MID, home=home)
    assert "disabled" in ok("switch", "terminals", "disable", "--id", TID, home=home)
    assert listed(home, "terminals", "list")[0]["status"] == "disabled"
    assert "active" in ok("switch", "terminals", "enable", "--id", TID, home=home)
    assert listed(home, "terminals", "list")[0]["status"] == "active"
    assert "unknown terminal T0000009" in refused(
        "switch", "terminals", "disable", "--id", "T0000009", home=home
    )


def test_issuer_links(home: Path) -> None:
    config = home / "cardtally.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "issuer_timeout_ms = 5000", "issuer_timeout_ms = 7000"
        ),
        encoding="utf-8",
    )
    out = ok(
        "switch",
        "issuers",
        "add",
        "--bin",
        "622588",
        "--bin",
        "625807",
        "--host",
        "127.0.0.1",
        "--port",
        "9583",
        home=home,
    )
    assert "issuer-127.0.0.1-9583" in out
    ok(
        "switch",
        "issuers",
        "add",
        "--bin",
        "62580799",
        "--host",
        "127.0.0.1",
        "--port",
        "9583",
        home=home,
    )
    ok(
        "switch",
        "issuers",
        "add",
        "--bin",
        "621700",
        "--host",
        "10.0.0.2",
        "--port",
        "9600",
        "--timeout-ms",
        "800",
        "--name",
        "ccb",
        home=home,
    )
    assert listed(home, "issuers", "list") == [
        {"link_id": "ccb", "host": "10.0.0.2", "port": 9600, "timeout_ms": 800, "bins": ["621700"]},
        {
            "link_id": "issuer-127.0.0.1-9583",
            "host": "127.0.0.1",
            "port": 9583,
            "timeout_ms": 7000,
            "bins": ["622588", "625807", "62580799"],
        },
    ]
    before = listed(home, "issuers", "list")
    assert "BIN 622588 is already routed to issuer link issuer-127.0.0.1-9583" in refused(
        "switch",
        "issuers",
        "add",
        "--bin",
        "622588",
        "--host",
        "10.0.0.3",
        "--port",
        "1",
        home=home,
    )
    assert "BIN must be 6-11 digits" in refused(
        "switch", "issuers", "add", "--bin", "62", "--host", "10.0.0.3", "--port", "1", home=home
    )
    assert listed(home, "issuers", "list") == before


def test_empty_queue_and_log(home: Path) -> None:
    assert "depth 0" in ok("switch", "queue", home=home)
    queue = listed(home, "queue")
    assert queue == {"depth": 0, "oldest_age_ms": 0, "by_link": {}, "acked_total": 0, "pending": []}
    assert listed(home, "txns") == []
    assert "transactions (0" in ok("switch", "txns", "--terminal", TID, home=home)
    assert "terminal ID must be exactly 8" in refused(
        "switch", "txns", "--terminal", "x", home=home
    )


def test_uninitialised_home_is_one_line(tmp_path: Path) -> None:
    message = refused("switch", "terminals", "add", "--id", TID, "--merchant", MID, home=tmp_path)
    assert "data.keys is missing" in message
    assert not tmk(tmp_path).exists()
