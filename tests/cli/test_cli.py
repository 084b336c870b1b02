"""The command line: help everywhere, clear errors, masked card data, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from cardtally.cli.main import app
from cardtally.wire import Tpdu, encode_frame, encode_message
from tests.wire.samples import PAN, SALE_0200

runner = CliRunner()
SALE_FRAME_HEX = encode_frame(Tpdu(1, 2), encode_message(SALE_0200)).hex()


def cardtally(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in a child process, as a user would."""
    env = {**os.environ, "CARDTALLY_HOME": str(home)}
    env.pop("CARDTALLY_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "cardtally", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert len(result.output.strip().splitlines()) > 3


def test_decode_framed_table_masks_the_card(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--home", str(tmp_path), "wire", "decode", "--framed", SALE_FRAME_HEX]
    )
    assert result.exit_code == 0, result.output
    assert "0200" in result.output and "financial request" in result.output
    assert PAN not in result.output
    assert PAN[:6] + "******" in result.output


def test_decode_json_masks_unless_asked(tmp_path: Path) -> None:
    result = runner.invoke(app, ["wire", "decode", "--framed", "--json", SALE_FRAME_HEX])
    doc = json.loads(result.output)
    assert doc["mti"] == "0200"
    assert doc["tpdu"] == {"destination": 1, "source": 2}
    assert doc["fields"]["2"] == PAN[:6] + "******" + PAN[-4:]
    assert PAN not in doc["fields"]["35"]
    assert doc["fields"]["52"] == "<PIN block>"
    shown = runner.invoke(
        app, ["wire", "decode", "--framed", "--json", "--show-pan", SALE_FRAME_HEX]
    )
    assert json.loads(shown.output)["fields"]["2"] == PAN


def test_decode_reads_stdin_and_tolerates_spaces() -> None:
    spaced = " ".join(SALE_FRAME_HEX[i : i + 2] for i in range(0, len(SALE_FRAME_HEX), 2))
    result = runner.invoke(app, ["wire", "decode", "--framed", "--json"], input=spaced + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["fields"]["4"] == "000000012345"


def test_encode_then_decode_round_trips() -> None:
    doc = {"mti": "0800", "fields": {"11": "000001", "41": "T0000001", "60": "00000001003"}}
    encoded = runner.invoke(app, ["wire", "encode", "--framed", json.dumps(doc)])
    assert encoded.exit_code == 0, encoded.output
    decoded = runner.invoke(app, ["wire", "decode", "--framed", "--json", encoded.output.strip()])
    assert json.loads(decoded.output)["fields"] == doc["fields"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["wire", "decode", "0200ZZ"], "not hex: character 'Z'"),
        (["wire", "decode", "020"], "odd count"),
        (["wire", "decode", "0200" + "0800000000000000"], "field p at byte 2"),
        (["wire", "decode", "--framed", "000A6000010002"], "incomplete frame"),
        (["wire", "encode", "{not json"], "invalid JSON"),
        (["wire", "encode", '{"mti": "0200", "fields": {"3": "12"}}'], "field 3"),
        (["wire", "encode", '{"mti": "0200", "fields": {"3": 12}}'], "must be a string"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = cardtally(*args, home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    result = cardtally("wire", "decode", "--no-such-option", home=tmp_path)
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_then_check(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = cardtally("init", home=home)
    assert first.returncode == 0, first.stderr
    assert (home / "cardtally.toml").exists()
    assert (home / "keys" / "data.keys").stat().st_mode & 0o777 == 0o600
    again = cardtally("init", home=home)
    assert "kept" in again.stdout
    assert cardtally("config", "check", home=home).returncode == 0


def test_broken_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    tmp_path.joinpath("cardtally.toml").write_text("[issuer]\nport = 'x'\n")
    result = cardtally("config", "show", home=tmp_path)
    assert result.returncode == 2
    assert "issuer.port: expected an integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_data_keys_fail_the_check(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "data.keys").write_text("abc\n")
    (keys / "data.keys").chmod(0o600)
    result = cardtally("config", "check", home=tmp_path)
    assert result.returncode == 1
    assert "data.keys" in result.stderr
