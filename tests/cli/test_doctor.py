"""``cardtally doctor`` on a real home made with the CLI, healthy and deliberately broken.

The home is built once per module (``init``, cards issued, a merchant, two terminals, an
issuer link, one terminal installed) and copied for each test, which then breaks its copy
the way an operator's home breaks: a key file lost or garbled, a ledger edited by hand, a
database never created or not migrated, a config with a bad value.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.clearing._database import DAYEND_TREES
from cardtally.ledger import LEDGER_TREE
from cardtally.security import DATA_KEYS_ENV, ISSUER_KEYS_ENV
from cardtally.storage import migrate, open_engine, transaction
from tests.issuer.tcp_support import _child_env
from tests.switch.tcp_support import MERCHANT, TERMINAL_IDS, Network, run_cli, switch_database
from tests.terminal.tcp_support import CliRun, cardtally_cli

INSTALLED: Final = TERMINAL_IDS[0]
NOT_INSTALLED: Final = TERMINAL_IDS[1]
ISSUER_PORT: Final = 9583


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy home, SQLite databases inside it; never changed by a test (they copy it)."""
    root = tmp_path_factory.mktemp("doctor")
    with Network(root, "sqlite:///issuer.db", "sqlite:///switch.db") as net:
        net.link_issuer(ISSUER_PORT)
        run_cli(
            net.home,
            *("terminal", "install", "--terminal", INSTALLED, "--merchant", MERCHANT),
            *("--admin-password", "314159", "--unlock-password", "27182818"),
        )
        return net.home


@pytest.fixture
def home(built_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the healthy home for one test to break; keys from the files only."""
    monkeypatch.delenv(DATA_KEYS_ENV, raising=False)
    monkeypatch.delenv(ISSUER_KEYS_ENV, raising=False)
    copy = tmp_path / "home"
    shutil.copytree(built_home, copy)
    return copy


def doctor(home: Path, *args: str) -> CliRun:
    """``cardtally --home HOME doctor ARGS`` in process; never a traceback."""
    result = cardtally_cli(home, "doctor", *args)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def lines(result: CliRun, level: str, check: str) -> list[str]:
    """The output lines of one level about one check."""
    return [
        line
        for line in result.stdout.splitlines()
        if line.startswith(level) and line[len("PROBLEM") :].strip().startswith(check)
    ]


def problem(result: CliRun, check: str) -> str:
    """The one PROBLEM line about ``check``, after making sure the doctor exited 1."""
    assert result.exit_code == 1, result.stdout
    found = lines(result, "PROBLEM", check)
    assert found, result.stdout
    return "\n".join(found)


def files_of(home: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and directory under ``home``: a file's size, mtime and mode, a directory's mode.

    Not a directory's mtime: reading a WAL database (as the parties do, and the doctor) makes
    SQLite create and remove its ``-wal`` and ``-shm`` files next to it.
    """
    shown = {}
    for path in sorted(home.rglob("*")):
        stat = path.lstat()
        size = 0 if path.is_dir() else stat.st_size
        mtime = 0 if path.is_dir() else stat.st_mtime_ns
        shown[str(path.relative_to(home))] = (size, mtime, stat.st_mode)
    return shown


def sql(database: Path, statement: str) -> None:
    """Change a database behind cardtally's back, as a careless operator would."""
    conn = sqlite3.connect(database)
    try:
        conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def set_config(home: Path, old: str, new: str) -> None:
    config = home / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    config.write_text(text.replace(old, new), encoding="utf-8")


# --- a healthy home ------------------------------------------------------------------------


def test_healthy_home_has_no_problem(home: Path) -> None:
    result = doctor(home)
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[-1] == "0 problems, 0 warnings"
    for check in ("home", "config", "data keys", "issuer keys", "issuer database"):
        assert lines(result, "OK", check), (check, result.stdout)
    assert "balanced: " in lines(result, "OK", "issuer ledger")[0]
    assert lines(result, "INFO", "acquirer ledger")  # no day end has run yet
    assert "issuer_a 127.0.0.1:9583" in lines(result, "OK", "issuer links")[0]
    assert "2 registered" in lines(result, "OK", "terminals")[0]
    assert "1 installed" in lines(result, "OK", "terminal journals")[0]
    # Installed: its clear master key may go; never a warning.
    assert f"{INSTALLED}.tmk is still on disk" in lines(result, "INFO", f"terminal {INSTALLED}")[0]


def test_acquirer_ledger_is_checked_once_a_day_end_made_it(home: Path) -> None:
    engine = open_engine(f"sqlite:///{home / 'switch.db'}")
    try:
        for tree in DAYEND_TREES:
            migrate(engine, tree)
    finally:
        engine.dispose()
    result = doctor(home)
    assert result.exit_code == 0, result.stdout
    assert "balanced: 0 accounts" in lines(result, "OK", "acquirer ledger")[0]


def test_database_restored_out_of_wal_mode_is_read_read_only(home: Path) -> None:
    """Opening it as the parties do would switch it to WAL: a write the doctor must not make."""
    sql(home / "issuer.db", "PRAGMA journal_mode = DELETE")
    before = files_of(home)
    result = doctor(home)
    assert result.exit_code == 0, result.stdout
    assert lines(result, "OK", "issuer ledger")
    assert f"sqlite:///{home / 'issuer.db'}" in lines(result, "OK", "issuer database")[0]
    assert files_of(home) == before


def test_json_is_a_list_of_findings(home: Path) -> None:
    (home / "keys" / "issuer.keys").unlink()
    result = doctor(home, "--json")
    assert result.exit_code == 1
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    assert isinstance(findings, list)
    for finding in findings:
        assert set(finding) == {"level", "check", "detail", "fix"}, finding
        assert finding["level"] in {"ok", "info", "warn", "problem"}
    problems = [f for f in findings if f["level"] == "problem"]
    assert [f["check"] for f in problems] == ["issuer keys"]
    assert "issuer.keys is missing" in problems[0]["detail"]
    assert "backup" in problems[0]["fix"]


# --- the issue's examples: a key file lost, a ledger edited by hand -------------------------


def test_missing_issuer_key_file_is_named(home: Path) -> None:
    (home / "keys" / "issuer.keys").unlink()
    line = problem(doctor(home), "issuer keys")
    assert f"{home / 'keys' / 'issuer.keys'} is missing (and {ISSUER_KEYS_ENV} is not set)" in line
    assert "restore" in line and "backup" in line


def test_unbalanced_ledger_names_the_ledger_and_the_account(home: Path) -> None:
    sql(
        home / "issuer.db",
        "UPDATE ledger_account SET debits_posted = debits_posted + 1 "
        "WHERE id = (SELECT min(id) FROM ledger_account)",
    )
    account = sqlite3.connect(home / "issuer.db").execute("SELECT min(id) FROM ledger_account")
    account_id = account.fetchone()[0]
    result = doctor(home)
    shown = problem(result, "issuer ledger")
    assert f"account '{account_id}': its stored totals disagree with its transfers" in shown
    assert "debits and credits differ in CNY (156)" in shown
    assert "cardtally ledger verify" in shown
    assert result.stdout.splitlines()[-1] == "2 problems, 0 warnings"


def test_corrupted_home_through_the_real_entry_point(home: Path) -> None:
    """The issue's acceptance: both corruptions caught, one clear line each, exit 1."""
    (home / "keys" / "issuer.keys").unlink()
    sql(home / "issuer.db", "UPDATE ledger_account SET credits_posted = credits_posted + 7")
    result = subprocess.run(
        [sys.executable, "-m", "cardtally", "--home", str(home), "doctor"],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "PROBLEM  issuer keys" in result.stdout
    assert "issuer.keys is missing" in result.stdout
    assert "PROBLEM  issuer ledger" in result.stdout


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("garbage", "is not hexadecimal"),
        ("short", "holds 3 characters"),
        ("readable", "has mode 0644"),
        ("directory", "is not a regular file"),
    ],
)
def test_broken_data_key_file_is_a_problem(home: Path, damage: str, fragment: str) -> None:
    path = home / "keys" / "data.keys"
    if damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text({"garbage": "zz" * 64, "short": "abc", "readable": "ab" * 64}[damage])
        path.chmod(0o644 if damage == "readable" else 0o600)
    line = problem(doctor(home), "data keys")
    assert fragment in line


def test_bad_key_in_the_environment_is_named(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_KEYS_ENV, "not hex")
    line = problem(doctor(home), "data keys")
    assert f"environment variable {DATA_KEYS_ENV}" in line
    assert f"correct {DATA_KEYS_ENV}, or unset it" in line


def test_issuer_keys_without_zone_mac_key_are_a_warning(home: Path) -> None:
    path = home / "keys" / "issuer.keys"
    path.write_text(path.read_text().strip()[:64] + "\n")
    result = doctor(home)
    assert result.exit_code == 0, result.stdout
    assert "no zone MAC key" in lines(result, "WARN", "issuer keys")[0]
    assert result.stdout.splitlines()[-1] == "0 problems, 1 warning"


def test_missing_master_key_file_of_a_terminal_not_installed_is_a_warning(home: Path) -> None:
    path = home / "keys" / "terminals" / f"{NOT_INSTALLED}.tmk"
    path.unlink()
    result = doctor(home)
    assert result.exit_code == 0, result.stdout
    warning = lines(result, "WARN", f"terminal {NOT_INSTALLED}")[0]
    assert f"{path} is missing" in warning
    assert "needed only to install" in warning


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("port = 9583", "port = 'abc'", "issuer.port: expected an integer"),
        ("port = 9583", "prot = 9583", "issuer.prot: unknown key"),
        ("[issuer]", "[issuer", "invalid TOML"),
    ],
)
def test_broken_config_is_a_problem_naming_the_key(
    home: Path, old: str, new: str, fragment: str
) -> None:
    set_config(home, old, new)
    result = doctor(home)
    assert fragment in problem(result, "config")
    # Without a config the database URLs are unknown: said once, not as a problem.
    assert lines(result, "INFO", "databases")
    assert lines(result, "OK", "data keys")


def test_config_that_is_a_directory_is_a_problem(home: Path) -> None:
    (home / "cardtally.toml").unlink()
    (home / "cardtally.toml").mkdir()
    assert "cannot read config" in problem(doctor(home), "config")


def test_missing_home(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = doctor(missing)
    line = problem(result, "home")
    assert f"{missing} does not exist" in line
    assert "init" in line
    assert not missing.exists()


# --- databases -------------------------------------------------------------------------------


def test_database_never_created(home: Path) -> None:
    (home / "switch.db").unlink()
    line = problem(doctor(home), "switch database")
    assert f"{home / 'switch.db'} was never created" in line
    assert "cardtally switch merchants list" in line
    assert not (home / "switch.db").exists()


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("empty", "is an empty file: no tables, not migrated"),
        ("garbage", "is not a SQLite database"),
        ("truncated", "database disk image is malformed"),
        ("directory", "is not a file"),
    ],
)
def test_damaged_database_file_is_a_problem(home: Path, damage: str, fragment: str) -> None:
    path = home / "issuer.db"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        with path.open("r+b") as handle:
            handle.truncate(8192)
    else:
        path.unlink()
        path.mkdir()
    assert fragment in problem(doctor(home), "issuer database")


def test_database_not_migrated(home: Path) -> None:
    sql(home / "issuer.db", "DELETE FROM alembic_version_issuer")
    line = problem(doctor(home), "issuer database")
    assert "is not migrated: issuer tree never migrated" in line
    assert "cardtally issuer cards list" in line


def test_half_a_day_end_schema_is_not_migrated(home: Path) -> None:
    engine = open_engine(f"sqlite:///{home / 'switch.db'}")
    try:
        migrate(engine, LEDGER_TREE)  # the day end adds the clearing tree with it
    finally:
        engine.dispose()
    assert "clearing tree never migrated" in problem(doctor(home), "switch database")


def test_postgres_that_refuses_names_the_url_without_password(home: Path) -> None:
    url = "postgresql+psycopg://cardtally:s3cret-pw@127.0.0.1:1/cardtally"
    set_config(home, 'database = "sqlite:///issuer.db"', f'database = "{url}"')
    result = doctor(home)
    line = problem(result, "issuer database")
    assert "postgresql+psycopg://cardtally:***@127.0.0.1:1/cardtally" in line
    assert "s3cret-pw" not in result.stdout


@pytest.mark.postgres
def test_home_on_postgres(tmp_path: Path, pg_url: str, request: pytest.FixtureRequest) -> None:
    with (
        switch_database(pg_url, request.config, tmp_path) as switch_url,
        Network(tmp_path, pg_url, switch_url) as net,
    ):
        net.link_issuer(ISSUER_PORT)
        healthy = doctor(net.home)
        assert healthy.exit_code == 0, healthy.stdout
        assert lines(healthy, "OK", "issuer ledger")
        engine = open_engine(pg_url)
        try:
            with transaction(engine) as conn:
                conn.exec_driver_sql(
                    "UPDATE ledger_account SET credits_pending = credits_pending + 5"
                )
        finally:
            engine.dispose()
        assert "[unbalanced_currency]" in problem(doctor(net.home), "issuer ledger")


def test_unregistered_installed_terminal_is_a_warning_and_its_journal_is_checked(
    home: Path,
) -> None:
    journal = home / "terminals" / f"{INSTALLED}.journal.sqlite3"
    shutil.copy(journal, home / "terminals" / "10399999.journal.sqlite3")
    journal.write_bytes(b"not a journal")
    result = doctor(home)
    assert "not a SQLite database" in problem(result, f"terminal {INSTALLED}")
    assert "not registered at the switch" in lines(result, "WARN", "terminal 10399999")[0]


# --- doctor only reads -----------------------------------------------------------------------


def _healthy(home: Path) -> None:
    pass


def _broken(home: Path) -> None:
    (home / "switch.db").write_bytes(b"")
    (home / "issuer.db").unlink()
    (home / "keys" / "data.keys").chmod(0o644)


@pytest.fixture(params=[_healthy, _broken], ids=["healthy", "broken"])
def damaged_home(home: Path, request: pytest.FixtureRequest) -> Path:
    request.param(home)
    return home


def test_doctor_changes_nothing(damaged_home: Path) -> None:
    before = files_of(damaged_home)
    doctor(damaged_home)
    doctor(damaged_home, "--json")
    assert files_of(damaged_home) == before
