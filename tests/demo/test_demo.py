"""``cardtally demo``: the whole day as a user runs it, its tally checked against the databases.

One real run (``python -m cardtally demo --swipes 300 --json``: real issuer and switch
processes, fault proxies, terminals killed mid-sale) is shared by the module. The tally it
printed is compared with figures computed here with plain SQL on the terminals' journals,
the switch's log and day-end record and the issuer's outbox, never with the demo's counters.
Then each of the promise's checks is shown to fail on a copy of the home in which that
promise was broken by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.demo._run import tally_of
from cardtally.demo._tally import Tally
from tests.clearing.headless import Chromium
from tests.clearing.test_report_browser import VIEWPORT, chromium_or_skip, look
from tests.issuer.tcp_support import _child_env
from tests.terminal.tcp_support import cardtally_cli

SWIPES: Final = 300
DEMO_TIMEOUT_S: Final = 600
#: Journal states and switch states that make a money-moving swipe an interruption.
_MONEY: Final = "('sale', 'void', 'refund', 'preauth', 'completion')"
_SWITCH_INTERRUPTED: Final = "('timed_out', 'reversal_pending', 'reversed', 'reversal_refused')"


def run_cardtally(
    *args: str, timeout_s: float = DEMO_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardtally", *args],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("demo") / "home"
    done = run_cardtally("--home", str(home), "demo", "--swipes", str(SWIPES), "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    yield home, json.loads(done.stdout)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def journals(home: Path) -> list[Path]:
    return sorted((home / "terminals").glob("*.journal.sqlite3"))


def journal_rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    return [row for path in journals(home) for row in rows(path, sql)]


# -- the tally agrees with the databases ---------------------------------------------------


def test_the_day_keeps_the_promise(demo: tuple[Path, dict[str, Any]]) -> None:
    _, tally = demo
    assert tally["ok"] is True
    assert tally["resolutions"]["unresolved"] == 0
    assert all(check["ok"] for check in tally["checks"]), tally["checks"]
    names = {check["name"] for check in tally["checks"]}
    assert {"issuer ledger balanced", "acquirer ledger balanced"} <= names
    assert tally["fleet"]["errors"] == [] and tally["fleet"]["unsettled"] == []


def test_swipes_and_outcomes_are_the_journals(demo: tuple[Path, dict[str, Any]]) -> None:
    home, tally = demo
    states = Counter(state for (state,) in journal_rows(home, "SELECT state FROM terminal_txn"))
    assert tally["swipes"] == sum(states.values()) >= SWIPES
    assert tally["approved"] == states["approved"] > 0
    assert tally["no_answer"] == states["no_answer"]
    declined = Counter(
        code
        for (code,) in journal_rows(
            home, "SELECT response_code FROM terminal_txn WHERE state = 'declined'"
        )
    )
    assert tally["declined"] == dict(declined)
    assert "51" in declined  # the sample has empty accounts


def test_interruptions_are_those_of_journals_and_switch(demo: tuple[Path, dict[str, Any]]) -> None:
    home, tally = demo
    keys = {
        (path.name.split(".")[0], batch, f"{stan:06d}")
        for path in journals(home)
        for batch, stan in rows(
            path,
            f"SELECT batch_no, stan FROM terminal_txn WHERE state = 'failed' AND kind IN {_MONEY}",
        )
    }
    keys |= set(
        rows(
            home / "switch.db",
            "SELECT terminal_id, batch_no, stan FROM switch_txn"
            f" WHERE state IN {_SWITCH_INTERRUPTED} AND kind IN {_MONEY}",
        )
    )
    assert tally["interrupted"] == len(keys) == sum(tally["resolutions"].values())
    assert tally["interrupted"] > 0


def test_refunds_notices_and_settlement_are_the_records(demo: tuple[Path, dict[str, Any]]) -> None:
    home, tally = demo
    day = tally["day"]
    [(refunds, refunded)] = rows(
        home / "switch.db",
        "SELECT count(*), coalesce(sum(amount_minor), 0) FROM dayend_action"
        f" WHERE day = '{day}' AND kind = 'refund'",
    )
    assert (tally["dayend_refunds"], tally["dayend_refunded_minor"]) == (refunds, refunded)
    assert tally["resolutions"]["refunded at day end"] <= refunds
    [(notices,)] = rows(home / "issuer.db", "SELECT count(*) FROM notice")
    delivered = {
        json.loads(line)["id"]
        for line in (home / "notices.jsonl").read_text(encoding="utf-8").splitlines()
    }
    assert tally["notices"] == notices == tally["notices_delivered"] == len(delivered)
    statements = {
        mid: (sales, fee, net)
        for mid, sales, fee, net in rows(
            home / "switch.db",
            "SELECT merchant_id, sales_minor, fee_minor, net_minor FROM dayend_statement"
            f" WHERE day = '{day}'",
        )
    }
    shown = {
        s["merchant_id"]: (s["sales_minor"], s["fee_minor"], s["net_minor"])
        for s in tally["statements"]
    }
    assert shown == statements and len(statements) >= 4


def test_the_faults_were_injected_and_the_report_written(demo: tuple[Path, dict[str, Any]]) -> None:
    home, tally = demo
    injected = tally["injected"]
    assert injected["terminal switched off mid-sale"] == 2
    assert injected["answer to a terminal switched off"] == 2
    assert injected["answer late"] > 0  # the slow issuer's spells
    report = Path(tally["report"])
    assert report.is_file() and report.is_relative_to(home)
    assert report.read_text(encoding="utf-8").count("<svg") >= 4
    # Never a card number in the hosts' logs: every sample card checked.
    cards = (home / "keys" / "sample-cards.csv").read_text(encoding="utf-8").splitlines()[1:]
    logs = "".join(
        (home / "logs" / name).read_text(encoding="utf-8") for name in ("issuer.log", "switch.log")
    )
    assert not [line for line in cards if line.split(",")[0] in logs]


def test_both_ledgers_verify_from_the_command_line(demo: tuple[Path, dict[str, Any]]) -> None:
    home, _ = demo
    for database in ("issuer.db", "switch.db"):
        url = f"sqlite:///{home / database}"
        done = run_cardtally("--home", str(home), "ledger", "verify", "--database", url)
        assert done.returncode == 0, done.stdout + done.stderr


# -- each check fails when its promise is broken -------------------------------------------


@pytest.fixture
def broken(demo: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, date]:
    """A copy of the demo's home (the hosts have stopped) to break by hand."""
    home, tally = demo
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    return copy, date.fromisoformat(tally["day"])


def failing(tally: Tally) -> set[str]:
    return {check.name for check in tally.checks if not check.ok}


def execute(path: Path, sql: str, *, unguard: str | None = None) -> int:
    """Run ``sql``; with ``unguard``, first drop that table's append-only triggers, as
    someone changing the records behind the system's back would."""
    with closing(sqlite3.connect(path)) as conn:
        if unguard is not None:
            triggers = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                (unguard,),
            ).fetchall()
            for (name,) in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
        changed = conn.execute(sql).rowcount
        conn.commit()
    return changed


def test_the_untouched_copy_passes(broken: tuple[Path, date]) -> None:
    assert failing(tally_of(*broken)) == set()


def test_a_reversal_the_issuer_forgot_is_unresolved(broken: tuple[Path, date]) -> None:
    home, day = broken
    forgot = execute(
        home / "issuer.db",
        "DELETE FROM issuer_txn WHERE kind = 'reversal' AND response_code = '00'"
        " AND transfer_id IS NOT NULL",
        unguard="issuer_txn",
    )
    assert forgot > 0
    tally = tally_of(home, day)
    assert tally.unresolved > 0
    assert "no interrupted swipe left unresolved" in failing(tally)


def test_a_ledger_changed_behind_its_back_is_caught(broken: tuple[Path, date]) -> None:
    home, day = broken
    execute(
        home / "issuer.db",
        "UPDATE ledger_account SET credits_posted = credits_posted + 1"
        " WHERE id = (SELECT id FROM ledger_account ORDER BY id LIMIT 1)",
    )
    assert "issuer ledger balanced" in failing(tally_of(home, day))


def test_an_advice_still_queued_is_caught(broken: tuple[Path, date]) -> None:
    home, day = broken
    changed = execute(
        home / "switch.db",
        "UPDATE switch_advice SET acked_at_ms = NULL, ack_code = NULL"
        " WHERE id = (SELECT max(id) FROM switch_advice)",
    )
    assert changed == 1
    assert "store-and-forward queue drained" in failing(tally_of(home, day))


def test_a_double_debit_is_caught(broken: tuple[Path, date]) -> None:
    home, day = broken
    execute(
        home / "issuer.db",
        "INSERT INTO issuer_txn SELECT id || '-again', kind, card_id, pan_masked, amount_minor,"
        " currency, response_code, reason, rrn, auth_code, acquirer_id, terminal_id,"
        " merchant_id, merchant_name, stan, transmitted, local_date, original_id,"
        " transfer_id, at_ms FROM issuer_txn WHERE kind = 'sale' AND response_code = '00'"
        " AND transfer_id IS NOT NULL LIMIT 1",
    )
    assert "nothing charged twice" in failing(tally_of(home, day))


def test_a_receipt_missing_from_settlement_is_caught(broken: tuple[Path, date]) -> None:
    home, day = broken
    execute(
        home / "switch.db",
        "UPDATE dayend_item SET class = 'unsuccessful', cleared_as = NULL"
        " WHERE item_no = (SELECT min(item_no)"
        " FROM dayend_item WHERE class = 'matched' AND kind = 'sale')",
        unguard="dayend_item",
    )
    assert "every receipt is in the merchant's settlement" in failing(tally_of(home, day))


def test_an_undelivered_notice_is_caught(broken: tuple[Path, date]) -> None:
    home, day = broken
    execute(
        home / "issuer.db",
        "DELETE FROM notice_delivery"
        " WHERE notice_id = (SELECT min(notice_id) FROM notice_delivery)",
        unguard="notice_delivery",
    )
    assert "every cardholder notice delivered" in failing(tally_of(home, day))


def test_a_pending_reversal_at_a_terminal_is_caught(broken: tuple[Path, date]) -> None:
    home, day = broken
    with_reversals = [j for j in journals(home) if rows(j, "SELECT id FROM terminal_reversal")]
    assert with_reversals, "the day had interruptions, so some terminal reversed"
    changed = execute(
        with_reversals[0],
        "UPDATE terminal_reversal SET pending_slot = 1, cleared_at_ms = NULL,"
        " cleared_code = NULL WHERE id = (SELECT max(id) FROM terminal_reversal)",
    )
    assert changed == 1
    assert "every terminal settled, no reversal pending" in failing(tally_of(home, day))


# -- refusals ----------------------------------------------------------------------------------


def test_bad_options_are_refused_in_one_line(tmp_path: Path) -> None:
    done = run_cardtally("--home", str(tmp_path / "h"), "demo", "--swipes", "3", timeout_s=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something").write_text("x")
    done = run_cardtally("--home", str(tmp_path / "used"), "demo", timeout_s=120)
    assert done.returncode == 2
    assert "not an empty directory" in done.stderr
    assert (tmp_path / "used" / "something").read_text() == "x"


def test_keep_leaves_the_network_running_until_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "kept"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cardtally", "--home", str(home)),
            *("demo", "--swipes", "100", "--keep", "--json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        seen = ""
        while "The network is running" not in seen:
            line = proc.stderr.readline()
            assert line, f"the demo ended early: {seen}"
            seen += line
        txns = cardtally_cli(home, "switch", "txns", "--json")
        assert txns.exit_code == 0, txns
        assert json.loads(txns.stdout), "the switch answers with its log"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    assert proc.returncode == 0, err
    assert json.loads(out)["ok"] is True
    assert "stopping the switch, the issuer and the proxies" in err


def test_the_demo_report_draws_its_charts_in_chromium(
    demo: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The report the demo printed the path of, opened in headless Chromium: every chart
    laid out with its marks painted (the check of tests/clearing/test_report_browser.py)."""
    _, tally = demo
    with Chromium(chromium_or_skip(), tmp_path / "chromium") as browser:
        page = browser.new_page(*VIEWPORT)
        seen = look(page, Path(tally["report"]), tmp_path / "report.png")
    assert seen.problems == []
    assert tally["day"] in seen.text
