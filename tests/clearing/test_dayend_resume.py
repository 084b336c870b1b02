"""The day end killed halfway and run again: it finishes as if it had never stopped.

One business day is built once per module over real TCP (``terminal_network``): batch 1 is
two sales, settled balanced; batch 2 is a 5.00 sale the terminal receipted and a 7.00 sale
whose answer was lost and whose reversals never got through (a
:class:`~tests.terminal.proxy.FaultProxy` swallowed them), settled not balanced. The switch
and the issuer hold that 7.00 debit; the terminal never receipted it: a one-sided debit the
day end must refund, once, with one notice. The hosts are then stopped and every test works
on its own copy of the home and its two SQLite databases (:func:`clone`), so a day end can
be interrupted at any point and compared with one that was not.

The home's cutoff is moved twelve hours away from the moment the day is built, so the
swipes cannot straddle a cutoff whenever the suite runs; ``--close-now`` ends the day.

Three ways to stop a day end halfway:

- in process, :func:`cardtally.clearing._dayend.run_day` with a progress callback that
  raises after its Nth line, for every line it prints (each step boundary, and the two
  points inside a step where its work is done and not yet recorded);
- in process, a switch-side write that fails once just after the issuer committed a refund;
- for real, ``python -m cardtally dayend run`` killed with SIGKILL.

Then the day end runs again, and the day must be what an uninterrupted day end made: the
same items, actions, statements and postings, byte-identical clearing files, one refund
record and one notice per one-sided debit, identical ledgers on both sides, and
``cardtally ledger verify`` clean on both databases.
"""

from __future__ import annotations

import json
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa

from cardtally.clearing import _dayend
from cardtally.clearing._calendar import day_of
from cardtally.clearing._database import close_dayend, open_dayend
from cardtally.clearing._dayend import STEPS, RunResult, run_day
from cardtally.clearing._files import read_clearing_file
from cardtally.config import load_config
from cardtally.runtime import wall_clock_ms
from cardtally.storage import open_engine, transaction
from cardtally.wire import LOCAL_TIME
from tests.issuer.messages import DEBIT_PAN
from tests.issuer.tcp_support import _child_env, balances
from tests.switch.tcp_support import LINK
from tests.terminal.proxy import FaultProxy
from tests.terminal.tcp_support import (
    ADMIN,
    LOST_TIMEOUT_S,
    CliRun,
    cardtally_cli,
    terminal_network,
)

SALES: Final = ("10.00", "20.00")  # batch 1, settled balanced
KEPT: Final = "5.00"  # batch 2, receipted
LOST: Final = "7.00"  # batch 2: answer and reversals lost, the one-sided debit
LOST_MINOR: Final = 700
CLEARED_MINOR: Final = 1000 + 2000 + 500
#: The progress lines of an uninterrupted day end of the scenario, by what each says.
LINE_STARTS: Final = (
    "business day ",
    "matched ",
    f"clearing file for {LINK}",
    f"issuer accepted {LINK}",
    "refunded 1 one-sided debits",
    "settled 1 merchants",
    "closed; both ledgers balance",
)
#: The events the issuer logs for a day end's work.
ISSUER_DAYEND_EVENTS: Final = ("issuer.clearing_accepted", "issuer.dayend_refund")
#: Each step logged once by the switch, each piece of issuer work once by the issuer.
ONCE_EACH: Final = {
    "switch": Counter([f"dayend.{step}" for step in STEPS] + ["dayend.refund"]),
    "issuer": Counter(ISSUER_DAYEND_EVENTS),
}
#: How much later than the interrupted run the run that resumes it happens.
RESUME_LATER_MS: Final = 60_000
#: Columns saying when something happened: a resumed run happens later than an uninterrupted
#: one, so these are the only values of the databases allowed to differ.
TIME_COLUMNS: Final = frozenset({"at_ms", "created_at_ms", "finished_at_ms"})
#: Bound on a day end process: start, run, kill, wait.
PROCESS_S: Final = 120.0
NO_TRACEBACK: Final = "Traceback"


class CrashError(Exception):
    """Raised by a test to stop a day end where a crash would."""


# --- the business day, built once, cloned per test -------------------------------------------


@dataclass(frozen=True, slots=True)
class DayScenario:
    """The built day: its home and databases under ``root`` (hosts stopped)."""

    root: Path
    day: date
    #: After every swipe, well before the cutoff: when the in-process day ends run.
    now_ms: int
    opening_minor: int  # the debit card's balance before the day
    cutoff_minutes: int

    @property
    def text(self) -> str:
        return self.day.isoformat()

    @property
    def compact(self) -> str:
        return self.day.strftime("%Y%m%d")


def far_cutoff(now_ms: int) -> str:
    """``HH:MM`` CST twelve hours from ``now_ms``: no cutoff passes while a test runs."""
    later = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(LOCAL_TIME) + timedelta(hours=12)
    return later.strftime("%H:%M")


def set_config(home: Path, old: str, new: str) -> None:
    """Replace the one line ``old`` of the home's config (as ``init`` wrote it) by ``new``."""
    config = home / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"init wrote an unexpected config: {old!r}"
    config.write_text(text.replace(old, new), encoding="utf-8")


def build_scenario(root: Path) -> DayScenario:
    """Run the day's swipes and settlements over TCP; the hosts are stopped on return."""
    with terminal_network(root) as term, FaultProxy(term.switch_port) as proxy:
        set_config(term.home, 'cutoff = "23:00"', f'cutoff = "{far_cutoff(wall_clock_ms())}"')
        opening = term.issuer_balance()
        for amount in SALES:
            code, sold = term.sale(amount)
            assert code == 0, sold
        code, settled = term.term_json("settle", "--admin-password", ADMIN)
        assert (code, settled["result"]) == (0, "balanced"), settled
        code, kept = term.sale(KEPT)
        assert code == 0, kept
        proxy.drop_answers("0210")
        code, lost = term.sale(LOST, via=proxy.port, timeout_s=LOST_TIMEOUT_S)
        assert (code, lost["status"]) == (3, "failed_reversal_pending"), lost
        proxy.drop_requests("040", 3)  # the reversal and its two repeats never get through
        code, closing = term.term_json(
            "settle", "--admin-password", ADMIN, via=proxy.port, timeout_s=LOST_TIMEOUT_S
        )
        assert (code, closing["result"]) == (0, "not_balanced"), closing
        assert term.status()["pending_reversal"]["flagged"] is True
        term.net.wait_queue_drained()
        assert term.issuer_balance() == opening - CLEARED_MINOR - LOST_MINOR
    now_ms = wall_clock_ms()
    cutoff = load_config(term.home).dayend.cutoff_minutes
    return DayScenario(root, day_of(now_ms, cutoff).day, now_ms, opening, cutoff)


def clone(scenario: DayScenario, dest: Path) -> Path:
    """A copy of the built day under ``dest`` (its config pointed at the copied databases);
    its home."""
    shutil.copytree(scenario.root, dest)
    config = dest / "home" / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    assert text.count(str(scenario.root)) == 2, "expected the two database URLs under root"
    config.write_text(text.replace(str(scenario.root), str(dest)), encoding="utf-8")
    return dest / "home"


def run_in_process(
    home: Path,
    day: date,
    now_ms: int,
    progress: Callable[[str], None] = lambda _: None,
) -> RunResult:
    """``run_day`` as ``dayend run --close-now`` calls it, databases opened and closed."""
    dayend = open_dayend(load_config(home), now_ms)
    try:
        return run_day(dayend, day, now_ms, progress, close_now=True)
    finally:
        close_dayend(dayend)


def crash_after(count: int) -> tuple[Callable[[str], None], list[str]]:
    """A progress callback that raises :class:`CrashError` on its ``count``-th line, and
    the lines it saw."""
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if len(lines) == count:
            raise CrashError(f"crashed after line {count}: {line}")

    return progress, lines


# --- reading what a day end did ----------------------------------------------------------------


def urls(home: Path) -> dict[str, str]:
    config = load_config(home)
    return {"switch": config.switch.database, "issuer": config.issuer.database}


def _normal(value: object, root: str) -> object:
    """A stored value as compared: paths relative to the clone, times out of JSON payloads."""
    if not isinstance(value, str):
        return value
    value = value.replace(root, "<root>")
    if value.startswith("{"):
        try:
            found = json.loads(value)
        except ValueError:
            return value
        if isinstance(found, dict):
            return json.dumps({k: v for k, v in found.items() if k not in TIME_COLUMNS})
    return value


def db_state(home: Path, which: str, drop: frozenset[str] = TIME_COLUMNS) -> dict[str, list[Any]]:
    """Every row of every table of one database (the event log and migration stamps aside),
    without the columns ``drop``, sorted: what two day ends must agree on."""
    root = str(home.parent)
    engine = open_engine(urls(home)[which])
    state: dict[str, list[Any]] = {}
    try:
        names = sorted(
            n
            for n in sa.inspect(engine).get_table_names()
            if n != "event_log" and not n.startswith("alembic_version")
        )
        metadata = sa.MetaData()
        with transaction(engine) as conn:
            for name in names:
                table = sa.Table(name, metadata, autoload_with=conn)
                columns = [c for c in table.columns if c.name not in drop]
                rows = conn.execute(sa.select(*columns)).all()
                state[name] = sorted(
                    (tuple(_normal(v, root) for v in row) for row in rows), key=repr
                )
    finally:
        engine.dispose()
    return state


def rows(home: Path, which: str, sql: str, **params: object) -> list[dict[str, Any]]:
    engine = open_engine(urls(home)[which])
    try:
        with transaction(engine) as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def dayend_events(home: Path) -> dict[str, Counter[str]]:
    """How many events of each kind the day end's work left in each party's log."""
    switch = rows(home, "switch", "SELECT kind FROM event_log WHERE kind LIKE 'dayend.%'")
    issuer = rows(
        home,
        "issuer",
        "SELECT kind FROM event_log WHERE kind = :accepted OR kind = :refund",
        accepted=ISSUER_DAYEND_EVENTS[0],
        refund=ISSUER_DAYEND_EVENTS[1],
    )
    return {
        "switch": Counter(str(r["kind"]) for r in switch),
        "issuer": Counter(str(r["kind"]) for r in issuer),
    }


def day_row(home: Path, day: str) -> dict[str, Any]:
    [row] = rows(home, "switch", "SELECT * FROM dayend_day WHERE day = :day", day=day)
    return row


def clearing_files(home: Path, scenario: DayScenario) -> dict[str, bytes]:
    """The day's clearing files by name (temporary files of an interrupted write aside)."""
    directory = home / "clearing" / scenario.compact
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")
    }


def refund_records(home: Path) -> list[dict[str, Any]]:
    return rows(
        home,
        "issuer",
        "SELECT id, kind, amount_minor, original_id, transfer_id FROM issuer_txn"
        " WHERE id LIKE 'dayend:%' ORDER BY id",
    )


def refund_notices(home: Path) -> list[dict[str, Any]]:
    found = rows(home, "issuer", "SELECT id, payload FROM notice WHERE kind = 'refund'")
    return [{"id": r["id"], **json.loads(r["payload"])} for r in found]


def ledger_verify(home: Path) -> list[CliRun]:
    """``cardtally ledger verify --database URL`` on the issuer's and the switch's database."""
    return [
        cardtally_cli(home, "ledger", "verify", "--database", url) for url in urls(home).values()
    ]


@dataclass(frozen=True, slots=True)
class Observed:
    """What a closed day looks like from outside the day end."""

    switch: dict[str, list[Any]]
    issuer: dict[str, list[Any]]
    files: dict[str, bytes]


def observe(home: Path, scenario: DayScenario, drop: frozenset[str] = TIME_COLUMNS) -> Observed:
    return Observed(
        db_state(home, "switch", drop),
        db_state(home, "issuer", drop),
        clearing_files(home, scenario),
    )


@dataclass(frozen=True, slots=True)
class Reference:
    """A copy of the day closed by one uninterrupted day end, and what it printed."""

    home: Path
    lines: list[str]
    observed: Observed


def assert_one_refund(home: Path, scenario: DayScenario, original_id: str) -> None:
    """One refund record, one notice, for the one one-sided debit; the card made whole."""
    record_id = f"dayend:{scenario.text}:refund:{original_id}"
    assert refund_records(home) == [
        {
            "id": record_id,
            "kind": "refund",
            "amount_minor": LOST_MINOR,
            "original_id": original_id,
            "transfer_id": record_id,
        }
    ]
    notices = refund_notices(home)
    assert [(n["id"], n["amount"]["minor"], n["reason"]) for n in notices] == [
        (f"notice:{record_id}", LOST_MINOR, "day-end refund")
    ]
    [action] = rows(home, "switch", "SELECT * FROM dayend_action")
    assert (action["kind"], action["result"], action["amount_minor"]) == (
        "refund",
        "refunded",
        LOST_MINOR,
    )
    assert (action["reference"], action["notice_id"]) == (record_id, f"notice:{record_id}")
    assert balances(home, DEBIT_PAN) == (scenario.opening_minor - CLEARED_MINOR,) * 2


def assert_ledgers_verify(home: Path) -> None:
    for done in ledger_verify(home):
        assert done.exit_code == 0, done


def one_sided_original(reference: Reference) -> str:
    [item] = rows(
        reference.home,
        "switch",
        "SELECT issuer_txn_id FROM dayend_item WHERE class = 'one_sided_debit'",
    )
    return str(item["issuer_txn_id"])


def assert_same_day(home: Path, scenario: DayScenario, reference: Reference) -> None:
    """The day as the uninterrupted day end left it, to the byte, times aside."""
    observed = observe(home, scenario)
    assert day_row(home, scenario.text)["state"] == "closed"
    assert observed.files == reference.observed.files
    for table, expected in reference.observed.switch.items():
        assert observed.switch[table] == expected, f"switch database, table {table}"
    assert observed.switch.keys() == reference.observed.switch.keys()
    for table, expected in reference.observed.issuer.items():
        assert observed.issuer[table] == expected, f"issuer database, table {table}"
    assert observed.issuer.keys() == reference.observed.issuer.keys()
    assert_one_refund(home, scenario, one_sided_original(reference))
    assert_ledgers_verify(home)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> DayScenario:
    return build_scenario(tmp_path_factory.mktemp("dayend-day"))


@pytest.fixture(scope="module")
def reference(scenario: DayScenario, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    home = clone(scenario, tmp_path_factory.mktemp("reference") / "day")
    lines: list[str] = []
    result = run_in_process(home, scenario.day, scenario.now_ms, lines.append)
    assert result.steps_done == STEPS, result
    assert len(lines) == len(LINE_STARTS), lines
    for line, start in zip(lines, LINE_STARTS, strict=True):
        assert start in line, (start, lines)
    observed = observe(home, scenario)
    # The day itself, checked once here so every comparison below compares with a good day.
    [one_sided] = [
        i for i in rows(home, "switch", "SELECT * FROM dayend_item") if i["class"] != "matched"
    ]
    assert (one_sided["class"], one_sided["amount_minor"]) == ("one_sided_debit", LOST_MINOR)
    assert len(rows(home, "switch", "SELECT * FROM dayend_item")) == 4
    assert set(observed.files) == {f"{LINK}.csv", f"{LINK}.parquet"}
    csv = read_clearing_file(home / "clearing" / scenario.compact / f"{LINK}.csv")
    assert (csv.trailer.record_count, csv.net_minor) == (3, CLEARED_MINOR)
    assert dayend_events(home) == ONCE_EACH
    ref = Reference(home, lines, observed)
    assert_one_refund(home, scenario, one_sided_original(ref))
    assert_ledgers_verify(home)
    return ref


# --- 1. killed in process, after every line it prints -----------------------------------------

#: (lines printed before the crash, the step the day's row then records). Line 3 is printed
#: once the files are on disk but before the files step commits; line 4 once the issuer has
#: committed its acceptance but before the day end records the issuer step.
CRASH_POINTS: Final = [
    pytest.param(1, "begun", id="1-after-begun"),
    pytest.param(2, "match", id="2-after-match"),
    pytest.param(3, "match", id="3-files-written-not-recorded"),
    pytest.param(4, "files", id="4-issuer-accepted-not-recorded"),
    pytest.param(5, "refunds", id="5-after-refunds"),
    pytest.param(6, "settle", id="6-after-settle"),
    pytest.param(7, "closed", id="7-after-closed"),
]


@pytest.mark.parametrize(("lines_before", "recorded"), CRASH_POINTS)
def test_killed_after_a_progress_line_the_rerun_makes_the_same_day(
    scenario: DayScenario,
    reference: Reference,
    tmp_path: Path,
    lines_before: int,
    recorded: str,
) -> None:
    home = clone(scenario, tmp_path / "day")
    progress, lines = crash_after(lines_before)
    with pytest.raises(CrashError):
        run_in_process(home, scenario.day, scenario.now_ms, progress)
    assert lines == reference.lines[:lines_before]
    row = day_row(home, scenario.text)
    assert row["step"] == recorded
    assert row["state"] == ("closed" if recorded == "closed" else "running")

    resumed: list[str] = []
    result = run_in_process(home, scenario.day, scenario.now_ms + RESUME_LATER_MS, resumed.append)

    assert result.already_closed is (recorded == "closed")
    assert result.steps_done == STEPS[STEPS.index(recorded) + 1 :]
    assert_same_day(home, scenario, reference)
    assert day_row(home, scenario.text)["last_error"] is None


@pytest.mark.parametrize(("lines_before", "recorded"), CRASH_POINTS)
def test_killed_after_a_progress_line_the_audit_trail_logs_each_step_once(
    scenario: DayScenario, tmp_path: Path, lines_before: int, recorded: str
) -> None:
    """Both parties' event logs record each step and each piece of work once, resumed or not."""
    home = clone(scenario, tmp_path / "day")
    progress, _ = crash_after(lines_before)
    with pytest.raises(CrashError):
        run_in_process(home, scenario.day, scenario.now_ms, progress)
    assert day_row(home, scenario.text)["step"] == recorded
    run_in_process(home, scenario.day, scenario.now_ms + RESUME_LATER_MS)
    assert dayend_events(home) == ONCE_EACH


# --- 1b. killed inside the refunds step: the issuer committed, the day end did not record -----


def test_crash_between_the_issuers_refund_and_the_day_ends_record_refunds_once(
    scenario: DayScenario,
    reference: Reference,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = clone(scenario, tmp_path / "day")
    real_append = _dayend.append_event
    failed: list[str | None] = []

    def append_failing_once(
        conn: sa.Connection, at_ms: int, kind: str, txn_key: str | None, detail: Any
    ) -> int:
        if kind == "dayend.refund" and not failed:
            failed.append(txn_key)
            raise CrashError("the switch's database went away after the issuer committed")
        return real_append(conn, at_ms, kind, txn_key, detail)

    monkeypatch.setattr(_dayend, "append_event", append_failing_once)
    with pytest.raises(CrashError):
        run_in_process(home, scenario.day, scenario.now_ms)
    assert len(failed) == 1
    # The issuer refunded (its transaction committed); the day end has no record of it.
    assert len(refund_records(home)) == 1
    assert len(refund_notices(home)) == 1
    assert rows(home, "switch", "SELECT * FROM dayend_action") == []
    assert day_row(home, scenario.text)["step"] == "issuer"

    result = run_in_process(home, scenario.day, scenario.now_ms + RESUME_LATER_MS)

    assert result.steps_done == ("refunds", "settle", "closed")
    assert_same_day(home, scenario, reference)
    assert dayend_events(home) == ONCE_EACH


# --- 2. killed for real: SIGKILL to `python -m cardtally dayend run` ---------------------------


class _Lines:
    """The lines a child prints on stdout, read by a thread so every wait is bounded."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, needle: str, timeout_s: float) -> bool:
        """Wait (bounded) for a line holding ``needle``; False if the output ended first."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {needle!r} in {timeout_s} s: {self.seen}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                return False
            self.seen.append(line)
            if needle in line:
                return True

    def close(self) -> None:
        """Once the child is gone: the reader has seen the end; the pipe is closed."""
        self._thread.join(PROCESS_S)
        assert not self._thread.is_alive()
        self._stream.close()


def spawn_dayend(home: Path, day: str, stderr_path: Path) -> subprocess.Popen[str]:
    env = {**_child_env(), "PYTHONUNBUFFERED": "1"}
    with stderr_path.open("wb") as stderr:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "cardtally", "--home", str(home)),
                *("dayend", "run", "--date", day, "--close-now"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )


#: A later clock: what differs between two closes of the same day at different moments.
LATER_RUN_COLUMNS: Final = TIME_COLUMNS | {"started_at_ms", "window_end_ms", "sha256"}


def assert_same_money(home: Path, scenario: DayScenario, reference: Reference) -> None:
    """The day as the uninterrupted day end left it, except for when it ran: the window
    ends at another moment and the files' headers carry another creation time."""
    observed = observe(home, scenario, LATER_RUN_COLUMNS)
    expected = observe(reference.home, scenario, LATER_RUN_COLUMNS)
    assert observed.switch == expected.switch
    assert observed.issuer == expected.issuer
    assert set(observed.files) == set(expected.files)
    ours = home / "clearing" / scenario.compact
    theirs = reference.home / "clearing" / scenario.compact
    for name in expected.files:
        mine, good = read_clearing_file(ours / name), read_clearing_file(theirs / name)
        assert (mine.records, mine.trailer) == (good.records, good.trailer), name
    # The CSV differs in its header line only (created_at).
    body = lambda data: data.split(b"\n", 1)[1]  # noqa: E731
    assert body(observed.files[f"{LINK}.csv"]) == body(expected.files[f"{LINK}.csv"])
    assert_one_refund(home, scenario, one_sided_original(reference))
    assert_ledgers_verify(home)


#: The step a day end's row may record when it is killed on a line.
KILLED_IN: Final = {"clearing file for": ("match", "files"), "issuer accepted": ("files", "issuer")}
KILL_POINTS: Final = [
    pytest.param("clearing file for", id="on-clearing-file-line"),
    pytest.param("issuer accepted", id="on-issuer-accepted-line"),
    pytest.param(None, id="after-random-delay"),
]


@pytest.mark.parametrize("kill_on", KILL_POINTS)
def test_dayend_process_sigkilled_then_run_again_closes_the_day(
    scenario: DayScenario, reference: Reference, tmp_path: Path, kill_on: str | None
) -> None:
    home = clone(scenario, tmp_path / "day")
    seed = random.randrange(1 << 30)
    delay_s = random.Random(seed).uniform(0.3, 2.5)
    process = spawn_dayend(home, scenario.text, tmp_path / "dayend.stderr")
    lines = _Lines(process)
    try:
        if kill_on is not None:
            found = lines.wait_for(kill_on, PROCESS_S)
            assert found, (lines.seen, (tmp_path / "dayend.stderr").read_text())
        else:
            time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=PROCESS_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=PROCESS_S)
        lines.close()
    where = f"seed {seed}, delay {delay_s:.2f} s, printed {lines.seen}"
    if kill_on is not None:
        assert process.returncode == -signal.SIGKILL, where
        # Killed halfway: the day's row says running, at the step the line came from or the
        # one after it (the kill may land just after the step committed).
        killed_at = day_row(home, scenario.text)
        assert killed_at["state"] == "running", (killed_at, where)
        assert killed_at["step"] in KILLED_IN[kill_on], (killed_at, where)
    else:  # the delay may outlast the whole day end
        assert process.returncode in (-signal.SIGKILL, 0), where

    again = cardtally_cli(home, "dayend", "run", "--date", scenario.text, "--close-now")

    assert again.exit_code == 0, (again, where)
    assert f"business day {scenario.text}: closed (last step closed)" in again.stdout, where
    assert NO_TRACEBACK not in again.stdout + again.stderr
    assert_same_money(home, scenario, reference)
    assert dayend_events(home)["issuer"]["issuer.dayend_refund"] == 1


# --- 3. a closed day, run again ------------------------------------------------------------------


def everything(home: Path, scenario: DayScenario) -> dict[str, Any]:
    """Every row of both databases (event logs included), every file of the home."""
    state: dict[str, Any] = {
        "switch": db_state(home, "switch", frozenset()),
        "issuer": db_state(home, "issuer", frozenset()),
        "switch_events": rows(home, "switch", "SELECT * FROM event_log ORDER BY id"),
        "issuer_events": rows(home, "issuer", "SELECT * FROM event_log ORDER BY id"),
    }
    for path in sorted(home.rglob("*")):
        if path.is_file() and path.name != ".dayend.lock":
            stat = path.stat()
            state[str(path.relative_to(home))] = (path.read_bytes(), stat.st_mtime_ns)
    assert (home / "notices.jsonl").exists()
    assert (home / "clearing" / scenario.compact / f"{LINK}.csv").exists()
    return state


def test_rerunning_a_closed_day_says_so_and_changes_nothing(
    scenario: DayScenario, tmp_path: Path
) -> None:
    home = clone(scenario, tmp_path / "day")
    first = cardtally_cli(home, "dayend", "run", "--date", scenario.text, "--close-now")
    assert first.exit_code == 0, first
    assert "already closed" not in first.stdout
    before = everything(home, scenario)

    for extra in (["--close-now"], []):
        again = cardtally_cli(home, "dayend", "run", "--date", scenario.text, *extra)
        assert again.exit_code == 0, again
        assert f"business day {scenario.text} was already closed; nothing done" in again.stdout
        assert f"business day {scenario.text}: closed (last step closed)" in again.stdout
        assert NO_TRACEBACK not in again.stdout + again.stderr
    shown = cardtally_cli(home, "dayend", "run", "--date", scenario.text, "--json")
    assert shown.exit_code == 0, shown
    summary = shown.json()
    assert (summary["already_closed"], summary["state"], summary["last_error"]) == (
        True,
        "closed",
        None,
    )
    assert summary["refunds"] == {"count": 1, "amount_minor": LOST_MINOR}

    assert everything(home, scenario) == before
    assert_ledgers_verify(home)


# --- helpers the refusal tests share ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stopped:
    """A clone whose day end stopped right after the files step."""

    home: Path
    csv: Path
    digest: str


def stop_after_files(scenario: DayScenario, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Stopped:
    """A clone of the day whose day end crashed once its files step was committed."""
    home = clone(scenario, dest)

    def crash(*_: object) -> None:
        raise CrashError("crashed before the issuer read the files")

    with monkeypatch.context() as patch:
        patch.setattr(_dayend, "_issuer_reads", crash)
        with pytest.raises(CrashError):
            run_in_process(home, scenario.day, scenario.now_ms)
    assert day_row(home, scenario.text)["step"] == "files"
    [row] = rows(home, "switch", "SELECT path, sha256 FROM dayend_file WHERE fmt = 'csv'")
    csv = Path(row["path"])
    assert csv == home / "clearing" / scenario.compact / f"{LINK}.csv"
    return Stopped(home, csv, str(row["sha256"]))
