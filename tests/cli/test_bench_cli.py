"""``cardtally bench``: a real script gives a figure, a failing one FAILED and exit 1.

No assertion on what a figure is beyond being positive: tests never assert on timing.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardtally.cli.main import app

runner = CliRunner()


def test_quick_codec_runs_the_real_script_and_reports_a_positive_figure() -> None:
    result = runner.invoke(app, ["bench", "--only", "codec", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["quick"] is True
    assert report["machine"]["cpus"] >= 1
    rows = report["rows"]
    assert {row["benchmark"] for row in rows} == {"codec"}
    assert all(row["status"] == "ok" and row["figure"] > 0 for row in rows)
    assert all(row["command"].startswith("python ") for row in rows)
    assert "benchmarks/codec.py" in rows[0]["command"]


def test_the_table_names_the_figure_its_unit_and_the_command(tmp_path: Path) -> None:
    (tmp_path / "codec.py").write_text(
        textwrap.dedent(
            """
            import json, sys
            print("working...", file=sys.stderr)
            sale = {"encode": 12345.0, "decode": 1.0, "frame+decode": 6789.0, "bytes": 120.0}
            print(json.dumps({"results": {"0200 sale": sale}}))
            """
        )
    )
    result = runner.invoke(app, ["bench", "--only", "codec", "--scripts", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "12,345" in result.stdout and "6,789" in result.stdout
    assert "messages/s" in result.stdout
    as_json = runner.invoke(app, ["bench", "--only", "codec", "--scripts", str(tmp_path), "--json"])
    commands = {row["command"] for row in json.loads(as_json.stdout)["rows"]}
    assert commands == {f"python {tmp_path / 'codec.py'} --messages 20000 --runs 5"}


def test_a_failing_script_gives_failed_with_its_reason_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "codec.py").write_text(
        "import sys\nprint('run 1: the host fell over', file=sys.stderr)\nsys.exit(1)\n"
    )
    result = runner.invoke(
        app, ["bench", "--only", "codec,issuer", "--scripts", str(tmp_path), "--json"]
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    by_name = {row["benchmark"]: row for row in report["rows"]}
    assert by_name["codec"]["status"] == "FAILED"
    assert "exit 1" in by_name["codec"]["reason"]
    assert "the host fell over" in by_name["codec"]["reason"]
    # No issuer.py in that directory: its row fails too, and says why.
    assert by_name["issuer"]["status"] == "FAILED"
    assert "no script" in by_name["issuer"]["reason"]


def test_a_script_without_json_fails_in_the_table(tmp_path: Path) -> None:
    (tmp_path / "simulator.py").write_text("print('not json')\n")
    result = runner.invoke(app, ["bench", "--only", "simulator", "--scripts", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.stdout
    as_json = runner.invoke(
        app, ["bench", "--only", "simulator", "--scripts", str(tmp_path), "--json"]
    )
    (row,) = json.loads(as_json.stdout)["rows"]
    assert row["status"] == "FAILED"
    assert row["reason"].startswith("no figures in its JSON output")


def test_a_script_over_its_time_is_stopped_and_fails(tmp_path: Path) -> None:
    (tmp_path / "codec.py").write_text("import time\ntime.sleep(60)\n")
    result = runner.invoke(
        app, ["bench", "--only", "codec", "--scripts", str(tmp_path), "--timeout-s", "1", "--json"]
    )
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["status"] == "FAILED" and "timed out after 1 s" in row["reason"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--only", "codec,bogus"], "unknown benchmark 'bogus'"),
        (["--only", ","], "name at least one benchmark"),
        (["--scripts", "/no/such/dir"], "is not a directory"),
        (["--timeout-s", "0"], "--timeout-s"),
    ],
)
def test_bad_options_get_one_clear_line_and_exit_2(args: list[str], says: str) -> None:
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


def test_our_own_refusals_are_one_line() -> None:
    result = runner.invoke(app, ["bench", "--only", "nothing"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0, result.output
