"""The day end refusing bad input: a clear answer, exit 1 or 2, and nothing changed.

Clearing files the issuer side must not accept (a trailer that no longer adds up, a missing
file, another day's file, a file rewritten with a valid trailer), ``dayend run`` with a bad
date, too early, out of order, with a broken config or an unknown fee plan, or while another
day end holds the lock, and ``dayend check-file`` on good and bad files.

The business day is the one :mod:`tests.clearing.test_dayend_resume` builds over TCP (with a
one-sided debit, so a day end that went too far would refund it and send a notice), cloned
per test; checks that need no swipes use a fresh home made by ``cardtally init``. Commands
run in process through the real Typer app (``cardtally_cli``); the config errors, which the
entry point itself turns into one line, run as ``python -m cardtally``.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.clearing._calendar import day_of
from cardtally.clearing._files import read_clearing_file, write_clearing_file
from cardtally.cli import dayend as dayend_cli
from cardtally.runtime import wall_clock_ms
from tests.clearing.test_dayend_resume import (
    CLEARED_MINOR,
    LINK,
    LOST_MINOR,
    NO_TRACEBACK,
    DayScenario,
    Stopped,
    assert_ledgers_verify,
    build_scenario,
    clone,
    day_row,
    db_state,
    refund_records,
    rows,
    set_config,
    stop_after_files,
)
from tests.issuer.tcp_support import cli as cli_process
from tests.terminal.tcp_support import CliRun, cardtally_cli

DAY_MS: Final = 86_400_000
FIRST_AMOUNT: Final = ",sale,D,1000,"  # the first record of the scenario's CSV
EDITED_AMOUNT: Final = ",sale,D,1001,"
BUSY: Final = "another day end is running in this home; wait for it to finish"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> DayScenario:
    return build_scenario(tmp_path_factory.mktemp("dayend-day"))


@pytest.fixture
def bare_home(tmp_path: Path) -> Path:
    """A home made by ``cardtally init``: no merchants, no swipes, default config."""
    home = tmp_path / "home"
    done = cardtally_cli(home, "init")
    assert done.exit_code == 0, done
    return home


def one_line(done: CliRun) -> str:
    """The one line a refused command printed on stderr (and no traceback anywhere)."""
    assert NO_TRACEBACK not in done.stdout + done.stderr, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done
    return lines[0]


def run_day(home: Path, day: str, *extra: str) -> CliRun:
    return cardtally_cli(home, "dayend", "run", "--date", day, *extra)


def status(home: Path) -> dict[str, Any]:
    done = cardtally_cli(home, "dayend", "status", "--json")
    assert done.exit_code == 0, done
    return done.json()


def issuer_side(home: Path) -> dict[str, Any]:
    """Everything the issuer holds and has sent: its database, its log, its notice file."""
    return {
        "tables": db_state(home, "issuer", frozenset()),
        "events": rows(home, "issuer", "SELECT * FROM event_log ORDER BY id"),
        "notices.jsonl": (home / "notices.jsonl").read_bytes(),
    }


def switch_side(home: Path) -> dict[str, Any]:
    """The switch's database without the day's row (a refusal records its reason there)."""
    tables = db_state(home, "switch", frozenset())
    del tables["dayend_day"]
    return tables


def everything(home: Path) -> dict[str, Any]:
    """Both databases, event logs included."""
    return {
        "switch": db_state(home, "switch", frozenset()),
        "switch_events": rows(home, "switch", "SELECT * FROM event_log ORDER BY id"),
        "issuer": issuer_side(home),
    }


def tomorrow_of(day: date) -> str:
    return (day + timedelta(days=1)).isoformat()


# --- clearing files the issuer side must refuse ----------------------------------------------


def assert_stopped_at_the_issuer_step(
    stopped: Stopped, scenario: DayScenario, reason: str, issuer_before: dict[str, Any]
) -> None:
    """The day end refused with ``reason``: exit 1, nothing posted, the reason kept."""
    home = stopped.home
    switch_before = switch_side(home)
    done = run_day(home, scenario.text, "--close-now")
    assert done.exit_code == 1, done
    assert one_line(done) == f"day end stopped: {reason}"
    assert "closed" not in done.stdout

    assert issuer_side(home) == issuer_before  # no transfer, no refund, no notice
    assert switch_side(home) == switch_before  # no action, no statement, no posting
    row = day_row(home, scenario.text)
    assert (row["state"], row["step"], row["last_error"]) == ("running", "files", reason)
    [shown] = status(home)["days"]
    assert (shown["day"], shown["state"], shown["step"]) == (scenario.text, "running", "files")
    assert shown["last_error"] == reason
    text = cardtally_cli(home, "dayend", "status")
    assert f"{scenario.text} stopped: {reason}" in text.stdout
    # Run again without fixing it: the same answer, still nothing posted.
    again = run_day(home, scenario.text, "--close-now")
    assert (again.exit_code, one_line(again)) == (1, f"day end stopped: {reason}")
    assert issuer_side(home) == issuer_before


def test_an_edited_amount_is_refused_naming_the_file_and_the_figure_until_restored(
    scenario: DayScenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = stop_after_files(scenario, tmp_path / "day", monkeypatch)
    home, csv = stopped.home, stopped.csv
    issuer_before = issuer_side(home)
    original = csv.read_bytes()
    text = original.decode("ascii")
    assert text.count(FIRST_AMOUNT) == 1, text
    csv.write_bytes(text.replace(FIRST_AMOUNT, EDITED_AMOUNT).encode("ascii"))

    reason = (
        f"clearing file {csv} refused: trailer says debits total {CLEARED_MINOR}, "
        f"the file's debits total {CLEARED_MINOR + 1}"
    )
    assert_stopped_at_the_issuer_step(stopped, scenario, reason, issuer_before)

    csv.write_bytes(original)
    done = run_day(home, scenario.text, "--close-now")
    assert done.exit_code == 0, done
    assert f"business day {scenario.text}: closed (last step closed)" in done.stdout
    row = day_row(home, scenario.text)
    assert (row["state"], row["last_error"]) == ("closed", None)
    assert status(home)["days"][0]["last_error"] is None
    assert [r["amount_minor"] for r in refund_records(home)] == [LOST_MINOR]
    assert_ledgers_verify(home)


def _missing(stopped: Stopped, scenario: DayScenario) -> str:
    stopped.csv.unlink()
    return f"clearing file {stopped.csv} refused: file not found"


def _another_days_file(stopped: Stopped, scenario: DayScenario) -> str:
    clearing = read_clearing_file(stopped.csv)
    other = (scenario.day - timedelta(days=1)).strftime("%Y%m%d")
    header = replace(clearing.header, business_day=other)
    write_clearing_file(stopped.csv, header, clearing.records)
    return (
        f"clearing file {stopped.csv} refused: file is for business day {other}, "
        f"expected {scenario.compact}"
    )


def _rewritten_with_the_writer(stopped: Stopped, scenario: DayScenario) -> str:
    clearing = read_clearing_file(stopped.csv)
    first, *rest = clearing.records
    records = [replace(first, amount_minor=first.amount_minor + 1), *rest]
    write_clearing_file(stopped.csv, clearing.header, records)
    # A sound file by itself: its trailer adds up; only the day end's digest catches it.
    checked = cardtally_cli(stopped.home, "dayend", "check-file", str(stopped.csv))
    assert checked.exit_code == 0, checked
    return (
        f"clearing file {stopped.csv} refused: it changed since the day end wrote it "
        f"(sha256 {stopped.digest[:16]}...)"
    )


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_missing, id="missing"),
        pytest.param(_another_days_file, id="another-days-file"),
        pytest.param(_rewritten_with_the_writer, id="rewritten-with-a-matching-trailer"),
    ],
)
def test_a_bad_clearing_file_is_refused_and_nothing_is_posted(
    scenario: DayScenario,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spoil: Callable[[Stopped, DayScenario], str],
) -> None:
    stopped = stop_after_files(scenario, tmp_path / "day", monkeypatch)
    issuer_before = issuer_side(stopped.home)
    reason = spoil(stopped, scenario)
    assert_stopped_at_the_issuer_step(stopped, scenario, reason, issuer_before)


# --- dayend run: bad dates, too early, out of order ------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param(
            "2026-13-01", "business day '2026-13-01' is not a calendar date", id="month-13"
        ),
        pytest.param("2026-02-30", "business day '2026-02-30' is not a calendar date", id="feb-30"),
        pytest.param(
            "22/11/2026", "business day must be YYYY-MM-DD, got '22/11/2026'", id="slashes"
        ),
        pytest.param("tomorrow", "business day must be YYYY-MM-DD, got 'tomorrow'", id="word"),
    ],
)
def test_a_malformed_date_is_one_line_and_exit_2(bare_home: Path, text: str, says: str) -> None:
    for args in (["dayend", "run", "--date", text], ["dayend", "check-file", "x.csv"]):
        if args[1] == "check-file":
            args += ["--date", text]
        done = cardtally_cli(bare_home, *args)
        assert done.exit_code == 2, done
        assert one_line(done).startswith(f"error: {says}"), done
    assert status(bare_home)["days"] == []


def test_a_day_before_its_cutoff_needs_close_now(bare_home: Path) -> None:
    today = day_of(wall_clock_ms(), 23 * 60).text
    done = run_day(bare_home, today)
    assert done.exit_code == 1, done
    line = one_line(done)
    assert line.startswith(f"day end stopped: business day {today} is still open"), line
    assert f"it closes at the cutoff ({today} 23:00 CST)" in line
    assert "--close-now" in line
    assert status(bare_home)["days"] == []


@contextmanager
def clock_at(monkeypatch: pytest.MonkeyPatch, now_ms: int) -> Iterator[None]:
    """``cardtally dayend`` (in process) reading ``now_ms`` from the wall clock."""
    with monkeypatch.context() as patch:
        patch.setattr(dayend_cli, "wall_clock_ms", lambda: now_ms)
        yield


def test_tomorrow_before_today_is_refused_while_today_has_swipes(
    scenario: DayScenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = clone(scenario, tmp_path / "day")
    assert status(home)["days"] == []  # opening the day end's tables changes no data
    before = everything(home)
    tomorrow = tomorrow_of(scenario.day)

    # Now: tomorrow starts where today ends, at today's cutoff, still ahead.
    early = run_day(home, tomorrow, "--close-now")
    assert early.exit_code == 1, early
    assert one_line(early) == f"day end stopped: business day {tomorrow} has not begun yet"

    # Two days on, tomorrow's cutoff has passed too; today's swipes are still not closed.
    with clock_at(monkeypatch, scenario.now_ms + 2 * DAY_MS):
        late = run_day(home, tomorrow)
    assert late.exit_code == 1, late
    assert one_line(late) == (
        f"day end stopped: the switch has swipes from business day {scenario.text}; "
        "close that day first"
    )
    assert everything(home) == before
    assert status(home)["days"] == []


def test_tomorrow_is_refused_while_todays_day_end_has_not_finished(
    scenario: DayScenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = stop_after_files(scenario, tmp_path / "day", monkeypatch)
    before = everything(stopped.home)
    with clock_at(monkeypatch, scenario.now_ms + 2 * DAY_MS):
        done = run_day(stopped.home, tomorrow_of(scenario.day))
    assert done.exit_code == 1, done
    assert one_line(done) == (
        f"day end stopped: the day end of {scenario.text} has not finished; run it again first"
    )
    assert everything(stopped.home) == before


def test_a_day_before_a_closed_one_is_refused(scenario: DayScenario, tmp_path: Path) -> None:
    home = clone(scenario, tmp_path / "day")
    closed = run_day(home, scenario.text, "--close-now")
    assert closed.exit_code == 0, closed
    before = everything(home)
    yesterday = (scenario.day - timedelta(days=1)).isoformat()

    for extra in ([], ["--close-now"]):
        done = run_day(home, yesterday, *extra)
        assert done.exit_code == 1, done
        assert one_line(done) == (
            f"day end stopped: the day end of {scenario.text} already ran; days close in order"
        )
    assert everything(home) == before
    assert [d["day"] for d in status(home)["days"]] == [scenario.text]


# --- dayend run: config, fee plans, the lock --------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        pytest.param(
            'cutoff = "23:00"',
            'cutoff = "25:00"',
            "dayend.cutoff: expected a time \"HH:MM\" (00:00..23:59), got '25:00'",
            id="cutoff",
        ),
        pytest.param(
            'fee_plans = { standard = "0.60", warehouse = "0.38" }',
            'fee_plans = { standard = "abc", warehouse = "0.38" }',
            "dayend.fee_plans.standard: expected a percent",
            id="fee-plan-rate",
        ),
        pytest.param(
            'issuer_reads = "csv"',
            'issuer_reads = "xml"',
            "dayend.issuer_reads",
            id="issuer-reads",
        ),
    ],
)
def test_a_broken_config_value_names_its_key(
    bare_home: Path, old: str, new: str, says: str
) -> None:
    set_config(bare_home, old, new)
    done = cli_process(bare_home, "dayend", "run", "--date", "2026-11-21", check=False)
    assert done.returncode == 2, done
    assert NO_TRACEBACK not in done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    assert says in line, line


def test_a_merchant_on_an_unknown_fee_plan_stops_the_day_end(bare_home: Path) -> None:
    added = cardtally_cli(
        bare_home,
        *("switch", "merchants", "add", "--id", "898310048169999", "--name", "GOLD CLUB"),
        *("--mcc", "5812", "--fee-plan", "gold"),
    )
    assert added.exit_code == 0, added
    today = day_of(wall_clock_ms(), 23 * 60).text
    done = run_day(bare_home, today, "--close-now")
    assert done.exit_code == 1, done
    assert one_line(done) == (
        "day end stopped: dayend.fee_plans: fee plan 'gold' is not defined "
        "(defined: standard, warehouse)"
    )
    assert status(bare_home)["days"] == []


def test_a_second_day_end_while_one_runs_is_refused(bare_home: Path) -> None:
    clearing = bare_home / "clearing"
    clearing.mkdir()
    today = day_of(wall_clock_ms(), 23 * 60).text
    with (clearing / dayend_cli.LOCK_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a day end is running
        done = run_day(bare_home, today, "--close-now")
        assert done.exit_code == 2, done
        assert one_line(done) == f"error: {BUSY}"
        assert status(bare_home)["days"] == []
        fcntl.flock(held, fcntl.LOCK_UN)
    done = run_day(bare_home, today, "--close-now")
    assert done.exit_code == 0, done
    assert [d["state"] for d in status(bare_home)["days"]] == ["closed"]


# --- dayend check-file ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def closed_files(scenario: DayScenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the scenario's clearing files, its day closed."""
    home = clone(scenario, tmp_path_factory.mktemp("closed") / "day")
    done = run_day(home, scenario.text, "--close-now")
    assert done.exit_code == 0, done
    return home / "clearing" / scenario.compact


def check_file(home: Path, path: Path, *args: str) -> CliRun:
    return cardtally_cli(home, "dayend", "check-file", str(path), *args)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_check_file_says_a_sound_file_is_sound(
    scenario: DayScenario, closed_files: Path, bare_home: Path, suffix: str
) -> None:
    path = closed_files / f"{LINK}{suffix}"
    done = check_file(bare_home, path, "--date", scenario.text, "--link", LINK)
    assert done.exit_code == 0, done
    assert NO_TRACEBACK not in done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"{path}: sound. Business day {scenario.compact}, issuer link {LINK}, 3 records: "
        "3 debits CNY 35.00, 0 credits CNY 0.00, net CNY 35.00"
    )
    shown = check_file(bare_home, path, "--json")
    assert shown.exit_code == 0, shown
    assert shown.json() == {
        "business_day": scenario.compact,
        "link": LINK,
        "acquirer": "48020000",
        "records": 3,
        "debits": [3, CLEARED_MINOR],
        "credits": [0, 0],
        "net_minor": CLEARED_MINOR,
    }


def test_check_file_refuses_a_bad_file_with_the_reason(
    scenario: DayScenario, closed_files: Path, bare_home: Path, tmp_path: Path
) -> None:
    good = closed_files / f"{LINK}.csv"
    before = good.read_bytes()

    def refused(path: Path, *args: str) -> str:
        done = check_file(bare_home, path, *args)
        assert done.exit_code == 1, done
        assert done.stdout == "", done
        line = one_line(done)
        prefix = f"refused: clearing file {path} refused: "
        assert line.startswith(prefix), line
        return line.removeprefix(prefix)

    edited = tmp_path / f"{LINK}.csv"
    text = before.decode("ascii")
    edited.write_text(text.replace(FIRST_AMOUNT, EDITED_AMOUNT), encoding="ascii")
    assert refused(edited) == (
        f"trailer says debits total {CLEARED_MINOR}, the file's debits total {CLEARED_MINOR + 1}"
    )
    other = (scenario.day - timedelta(days=1)).isoformat()
    assert refused(good, "--date", other) == (
        f"file is for business day {scenario.compact}, expected {other.replace('-', '')}"
    )
    assert refused(good, "--link", "issuer_b") == (
        f"file is for issuer link {LINK}, expected issuer_b"
    )
    as_text = tmp_path / "issuer_a.txt"
    shutil.copyfile(good, as_text)
    assert refused(as_text) == "not a clearing file: unknown suffix '.txt' (.csv or .parquet)"
    assert refused(tmp_path / "nowhere.csv") == "file not found"
    assert refused(tmp_path) == "not a regular file"
    cut = tmp_path / "cut.csv"
    cut.write_bytes(before[: before.rindex(b"\nT,") + 1])
    assert refused(cut).startswith("trailer missing: no T line after line 4")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes((closed_files / f"{LINK}.parquet").read_bytes()[:-20])
    assert refused(broken).startswith("not a clearing file: not readable as Parquet")
    assert good.read_bytes() == before  # checking a file never changes it
