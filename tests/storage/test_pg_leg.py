"""The CI rule: a PostgreSQL leg that is down fails the run in CI and is skipped elsewhere.

Each case runs the real conftest in a child pytest against a URL where nothing
listens, so it checks the fixture, the header and the outcome as CI would see them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "conftest.py"
DOWN_URL = "postgresql+psycopg://cardtally:s3cret@127.0.0.1:1/test"
SHOWN_URL = "postgresql+psycopg://cardtally:***@127.0.0.1:1/test"


def _run_child(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_child="def test_uses_a_database(db_url):\n    assert db_url\n",
    )
    monkeypatch.setenv("CARDTALLY_TEST_PG_URL", DOWN_URL)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider")


def test_down_leg_fails_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run_child(pytester, monkeypatch, ci="true")
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert f"PostgreSQL leg: UNREACHABLE (cannot use database {SHOWN_URL}" in out
    assert "CI=true and the PostgreSQL leg is down" in out
    assert "Connection refused" in out
    assert "s3cret" not in out


def test_down_leg_is_skipped_with_a_reason_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_child(pytester, monkeypatch, ci=None)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"SKIPPED *PostgreSQL leg down (cannot use database {SHOWN_URL}*"])
    assert "s3cret" not in result.stdout.str()


def test_reachable_leg_is_announced(pytestconfig: pytest.Config) -> None:
    header = pytestconfig.hook.pytest_report_header(config=pytestconfig, start_path=Path.cwd())
    lines = [line for group in header for line in ([group] if isinstance(group, str) else group)]
    assert any(line.startswith("PostgreSQL leg: ") for line in lines)
