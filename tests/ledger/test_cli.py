"""``cardtally ledger verify`` as an operator runs it: a child process, exit codes, one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from cardtally.ledger import Ledger, SqlLedgerStore
from cardtally.storage import migrate, open_engine, sqlite_url, transaction
from tests.ledger.test_verify import healthy_history, write_unbalanced_transfer

CHILD_TIMEOUT_S = 120


def cardtally(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CARDTALLY_DEBUG", None)
    env.pop("CARDTALLY_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "cardtally", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_healthy_ledger_exits_0_with_totals(ledger_engine: Engine, tmp_path: Path) -> None:
    with transaction(ledger_engine) as conn:
        healthy_history(Ledger(SqlLedgerStore(conn)))
    result = cardtally("ledger", "verify", "--database", url_of(ledger_engine), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ledger healthy: 5 accounts, 11 transfers checked" in result.stdout
    assert "16600" in result.stdout
    assert "PROBLEM" not in result.stdout


def test_unbalanced_ledger_exits_1_naming_the_problem(
    ledger_engine: Engine, tmp_path: Path
) -> None:
    write_unbalanced_transfer(ledger_engine)
    result = cardtally("ledger", "verify", "--database", url_of(ledger_engine), home=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "PROBLEM balance_mismatch card: credits_posted is 10000, transfers imply 10500" in (
        result.stdout
    )
    assert "PROBLEM unbalanced_currency 156" in result.stdout
    assert "2 violation(s): 5 accounts, 12 transfers checked" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_json_report(ledger_engine: Engine, tmp_path: Path) -> None:
    write_unbalanced_transfer(ledger_engine)
    result = cardtally(
        "ledger", "verify", "--json", "--database", url_of(ledger_engine), home=tmp_path
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    assert report["transfers_checked"] == 12
    assert {v["kind"] for v in report["violations"]} == {"unbalanced_currency", "balance_mismatch"}
    cny = next(c for c in report["currencies"] if c["currency"] == "156")
    assert (cny["debits_posted"], cny["credits_posted"], cny["balanced"]) == (17_100, 16_600, False)


def test_default_database_is_the_issuers_in_the_home(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "issuer.db"))
    try:
        migrate(engine, "ledger")
        with transaction(engine) as conn:
            healthy_history(Ledger(SqlLedgerStore(conn)))
    finally:
        engine.dispose()
    result = cardtally("ledger", "verify", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "issuer.db" in result.stdout


def test_unmigrated_database_is_one_line_exit_2(engine: Engine, tmp_path: Path) -> None:
    migrate(engine, "core")
    result = cardtally("ledger", "verify", "--database", url_of(engine), home=tmp_path)
    assert result.returncode == 2
    assert "is not migrated to the ledger schema ledger_0001 (found: no ledger tables)" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    result = cardtally("ledger", "verify", "--database", "sqlite:///nosuch.db", home=tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path / 'nosuch.db'} does not exist" in result.stderr
    assert not (tmp_path / "nosuch.db").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql+psycopg://ops:s3cret@127.0.0.1:1/issuer", "cannot use database"),
        ("mysql://x/y", "unsupported database"),
    ],
)
def test_unusable_database_is_one_line_exit_2(tmp_path: Path, url: str, fragment: str) -> None:
    result = cardtally("ledger", "verify", "--database", url, home=tmp_path)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
