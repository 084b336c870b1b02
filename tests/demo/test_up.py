"""``cardtally init --sample`` and ``cardtally up``: the sample network, run in the foreground.

``up`` runs as a real process; a terminal signs on and sells through it, the switch's
metrics endpoint answers, and SIGINT (what Ctrl-C sends) stops both hosts cleanly.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Final

import pytest

from cardtally.demo._sample import Ports, free_port, sample_config_text
from cardtally.runtime import wall_clock_ms
from tests.issuer.tcp_support import _child_env
from tests.terminal.tcp_support import cardtally_cli

WAIT_S: Final = 60.0


def count(path: Path, sql: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    home = tmp_path / "shop"
    done = cardtally_cli(home, "init", "--sample")
    assert done.exit_code == 0, done
    # Fresh ports: the sample's defaults (9583, 9584, 9590, 9591) may be taken here.
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    (home / "cardtally.toml").write_text(
        sample_config_text(ports, wall_clock_ms()), encoding="utf-8"
    )
    return home


def test_init_sample_builds_the_network(sample: Path) -> None:
    issuer, switch = sample / "issuer.db", sample / "switch.db"
    assert count(issuer, "SELECT count(*) FROM issuer_card") == 250
    assert count(issuer, "SELECT count(DISTINCT substr(pan_masked, 1, 6)) FROM issuer_card") == 2
    assert count(switch, "SELECT count(*) FROM switch_merchant") == 8
    assert count(switch, "SELECT count(DISTINCT mcc) FROM switch_merchant") == 4
    assert count(switch, "SELECT count(DISTINCT fee_plan) FROM switch_merchant") == 2
    assert count(switch, "SELECT count(*) FROM switch_merchant WHERE agent IS NOT NULL") >= 1
    assert count(switch, "SELECT count(*) FROM switch_merchant WHERE settlement_cycle = 'd0'") >= 1
    assert count(switch, "SELECT count(*) FROM switch_terminal") == 33
    assert len(list((sample / "terminals").glob("*.journal.sqlite3"))) == 33
    cards = sample / "keys" / "sample-cards.csv"
    assert stat.S_IMODE(cards.stat().st_mode) == 0o600
    with cards.open(encoding="utf-8") as file:
        assert len(list(csv.DictReader(file))) == 250
    doctor = cardtally_cli(sample, "doctor")
    assert doctor.exit_code == 0, doctor


def test_init_sample_refuses_an_existing_home(sample: Path) -> None:
    before = (sample / "cardtally.toml").read_text(encoding="utf-8")
    again = cardtally_cli(sample, "init", "--sample")
    assert again.exit_code == 2
    assert "already holds a home" in again.stderr
    assert (sample / "cardtally.toml").read_text(encoding="utf-8") == before


@pytest.fixture
def up(sample: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cardtally", "--home", str(sample), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        start_new_session=True,  # SIGINT below reaches `up` alone, as its own decision
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(WAIT_S)


def wait_for_line(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    pytest.fail(f"`up` never printed {text!r}: {seen}")


def test_up_serves_until_ctrl_c(sample: Path, up: subprocess.Popen[str]) -> None:
    wait_for_line(up, "Ctrl-C stops both")
    with (sample / "keys" / "sample-cards.csv").open(encoding="utf-8") as file:
        holder = next(csv.DictReader(file))
    signon = cardtally_cli(sample, "terminal", "signon", "--terminal", "10300001", "--json")
    assert signon.exit_code == 0, signon
    sale = cardtally_cli(
        sample,
        *("terminal", "balance", "--terminal", "10300001", "--pan", holder["pan"]),
        *("--expiry", holder["expiry"], "--pin", holder["pin"], "--json"),
    )
    assert sale.exit_code in (0, 1), sale  # approved, or declined by the issuer: answered
    config = (sample / "cardtally.toml").read_text(encoding="utf-8")
    metrics_port = int(config.split("[switch]")[1].split("metrics_port = ")[1].split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as page:
        assert 'type="signon"' in page.read().decode()
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=WAIT_S)
    assert up.returncode == 0, err
    assert "stopped cleanly (exit codes: switch 0, issuer 0)" in out
    assert "Traceback" not in err


def test_up_on_a_broken_home_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cardtally", "--home", str(tmp_path / "none"), "up"],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
