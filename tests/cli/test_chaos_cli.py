"""``cardtally chaos``: options refused with one line, a clean run exits 0, a violation 1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cardtally.cli.main import app
from cardtally.sim import simulate

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--faults", "bogus"], "unknown fault 'bogus'"),
        (["--faults", "loss=2"], "between 0 and 1"),
        (["--faults", "crash@si"], "not a network fault"),
        (["--faults", "loss@xx"], "unknown hop 'xx'"),
        (["--replay"], "--replay needs --seed"),
        (["--only-faults", "1,2"], "--only-faults needs --seed"),
        (["--seed", "1", "--only-faults", "a"], "fault numbers"),
        (["--swipes", "0"], "--swipes"),
        (["--jobs", "999"], "--jobs"),
    ],
)
def test_bad_options_get_one_clear_line_and_exit_2(args: list[str], says: str) -> None:
    result = runner.invoke(app, ["chaos", *args])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


def test_a_clean_run_exits_0_with_the_summary_in_json() -> None:
    result = runner.invoke(app, ["chaos", "--seeds", "2", "--swipes", "60", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["ok"] is True
    assert summary["seeds"] == 2
    assert summary["swipes"] >= 120
    assert summary["resolutions"]["unresolved"] == 0


def test_one_seed_replays_to_its_digest() -> None:
    expected = simulate(7, 80).digest
    result = runner.invoke(app, ["chaos", "--seed", "7", "--swipes", "80", "--replay"])
    assert result.exit_code == 0, result.output
    assert f"digest {expected}" in result.output
    assert "start" in result.output  # every event of the run is printed


def test_a_violation_exits_1_with_seed_invariant_timeline_and_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cardtally.switch._core import SwitchCore

    monkeypatch.setattr(SwitchCore, "advices_due", lambda self, now_ms, store, links_up: [])
    result = runner.invoke(
        app, ["chaos", "--seeds", "4", "--swipes", "200", "--faults", "loss=0.1"]
    )
    assert result.exit_code == 1, result.output
    assert "VIOLATION seed" in result.output
    assert "queues_drain" in result.output
    assert "replay: cardtally chaos --seed" in result.output
