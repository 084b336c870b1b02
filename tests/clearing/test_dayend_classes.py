"""One story per reconciliation class, each caused by a real fault over real TCP.

Every story runs ``issuer serve`` and ``switch serve`` as child processes (SQLite databases),
drives an installed, signed-on terminal with ``cardtally terminal``, breaks something the way
it breaks in production (an answer lost on a link, a reversal that cannot get through, a
database restored from a backup, a field changed in transit, a terminal that has not settled),
then closes the business day with ``cardtally dayend run --close-now`` and checks the class
and reason of each item and what happened to the money: the cardholder's balance at the
issuer, the notices, the clearing file's records, the merchant's statement and payout. After
every day end both ledgers verify (``cardtally ledger verify --database``, exit 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.clearing._issuer_leg import REFUND_REASON
from cardtally.wire import Message
from tests.clearing.dayend_tcp_support import (
    AGENT,
    CURRENCY,
    D0_MERCHANT,
    WAIT_S,
    DayendNet,
    backup_database,
    dayend_network,
    restore_database,
)
from tests.issuer.messages import DEBIT_PAN, EXPIRY
from tests.runtime.logs import count_events
from tests.switch.tcp_support import LINK, MERCHANT
from tests.terminal.proxy import FaultProxy
from tests.terminal.tcp_support import ADMIN, LOST_TIMEOUT_S

#: A day end's refund summary when it refunded nothing.
NO_REFUND: Final = {"count": 0, "amount_minor": 0}
BALANCED_REASON: Final = "switch and issuer agree; terminal batch balanced"


def _rrn(outcome: dict[str, Any]) -> str:
    txn = outcome["txn"]
    assert txn is not None and txn["rrn"], outcome
    rrn = txn["rrn"]
    assert isinstance(rrn, str)
    return rrn


def _approved(outcome: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    code, shown = outcome
    assert code == 0 and shown["status"] == "approved", shown
    return shown


def _classes(summary: dict[str, Any]) -> dict[str, int]:
    return {klass: figures["count"] for klass, figures in summary["classes"].items()}


def _verdicts(day: DayendNet, business_day: str) -> dict[int | None, tuple[str, str, str | None]]:
    """Each item's (class, reason, cleared_as), by switch transaction id (for days whose
    items all have a switch row)."""
    return {
        i["switch_txn_id"]: (i["class"], i["reason"], i["cleared_as"])
        for i in day.items(business_day)
    }


# --- 1. matched ------------------------------------------------------------------------------


@pytest.fixture
def matched(tmp_path: Path) -> Iterator[DayendNet]:
    with dayend_network(tmp_path, d0_merchant=True) as day:
        yield day


def test_matched_day_clears_sales_and_refunds_and_pays_merchants_d0_and_t1(
    matched: DayendNet,
) -> None:
    day, term, d0 = matched, matched.term, matched.d0_term
    assert d0 is not None
    opening = day.balance()
    s1 = _approved(term.sale("100.00"))
    s2 = _approved(term.sale("50.00"))
    s3 = _approved(term.sale("30.00"))
    void = _approved(
        term.term_json(
            "void", "--voucher", str(int(s3["txn"]["voucher"])), "--admin-password", ADMIN
        )
    )
    refund = _approved(
        term.term_json(
            "refund",
            *("--rrn", _rrn(s1), "--amount", "20.00"),
            *("--pan", DEBIT_PAN, "--expiry", EXPIRY, "--admin-password", ADMIN),
        )
    )
    assert day.settle()["result"] == "balanced"
    s4 = _approved(d0.sale("200.00"))
    assert day.settle(d0)["result"] == "balanced"
    assert day.balance() == opening - 10000 - 5000 + 2000 - 20000

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"matched": 6}
    assert summary["refunds"] == NO_REFUND
    txn_ids = {name: int(_rrn(o)) for name, o in [("s1", s1), ("s2", s2), ("s4", s4)]}
    by_kind = {
        (t["kind"], t["original_id"]): t["id"] for t in day.switch_rows("SELECT * FROM switch_txn")
    }
    void_id = by_kind[("void", int(_rrn(s3)))]
    refund_id = by_kind[("refund", txn_ids["s1"])]
    assert _verdicts(day, today) == {
        txn_ids["s1"]: ("matched", BALANCED_REASON, "debit"),
        txn_ids["s2"]: ("matched", BALANCED_REASON, "debit"),
        int(_rrn(s3)): ("matched", "voided the same day", None),
        void_id: ("matched", "voids a sale of the same day", None),
        refund_id: ("matched", BALANCED_REASON, "credit"),
        txn_ids["s4"]: ("matched", BALANCED_REASON, "debit"),
    }
    assert void["txn"]["kind"] == "void" and refund["txn"]["kind"] == "refund"

    # The clearing file: exactly the two sales and the refund of merchant 1, the D0 sale.
    assert day.cleared(today) == [
        (_rrn(s1), "sale", "D", 10000),
        (_rrn(s2), "sale", "D", 5000),
        (f"{refund_id:012d}", "refund", "C", 2000),
        (_rrn(s4), "sale", "D", 20000),
    ]
    csv_path, clearing = day.clearing(today)
    _, parquet = day.clearing(today, "parquet")
    assert parquet.records == clearing.records
    checked = day.check_file(csv_path, "--date", today, "--link", LINK, "--json")
    assert checked.exit_code == 0, checked
    assert checked.json() == {
        "business_day": today.replace("-", ""),
        "link": LINK,
        "acquirer": "48020000",
        "records": 4,
        "debits": [3, 35000],
        "credits": [1, 2000],
        "net_minor": 33000,
    }
    said = day.check_file(csv_path)
    assert said.exit_code == 0 and ": sound." in said.stdout, said
    # The issuer settled the file's net amount with the network.
    [settled] = day.issuer_rows(
        "SELECT amount_minor, debit_account_id, credit_account_id FROM ledger_transfer"
        " WHERE id = :id",
        id=f"clearing:{today.replace('-', '')}:{LINK}",
    )
    assert settled == {
        "amount_minor": 33000,
        "debit_account_id": f"issuer:settlement:{CURRENCY}",
        "credit_account_id": f"issuer:paid-to-network:{CURRENCY}",
    }

    # Statements: MDR 0.60% of the sales (standard plan), net = sales - refunds - fee.
    tomorrow = day.next_day(today)
    statements = day.statements(today)
    assert set(statements) == {MERCHANT, D0_MERCHANT}
    t1 = statements[MERCHANT]
    assert {k: t1[k] for k in ("fee_plan", "rate_ppm", "agent", "agent_minor", "cycle")} == {
        "fee_plan": "standard",
        "rate_ppm": 6000,
        "agent": None,
        "agent_minor": 0,
        "cycle": "t1",
    }
    assert (t1["sales_count"], t1["sales_minor"], t1["refunds_count"], t1["refunds_minor"]) == (
        2,
        15000,
        1,
        2000,
    )
    assert (t1["fee_minor"], t1["net_minor"], t1["pay_day"]) == (90, 15000 - 2000 - 90, tomorrow)
    d0_st = statements[D0_MERCHANT]
    assert (d0_st["cycle"], d0_st["agent"], d0_st["agent_ppm"]) == ("d0", AGENT, 800)
    assert (d0_st["sales_count"], d0_st["sales_minor"], d0_st["refunds_minor"]) == (1, 20000, 0)
    # 0.60% of 200.00 = 1.20, of which the agent's 0.08% = 0.16.
    assert (d0_st["fee_minor"], d0_st["agent_minor"]) == (120, 16)
    assert (d0_st["net_minor"], d0_st["pay_day"]) == (20000 - 120, today)

    # D0 is paid at today's day end; T+1 is not.
    [paid_d0] = day.payouts(today)
    assert (paid_d0["merchant_id"], paid_d0["for_day"], paid_d0["amount_minor"]) == (
        D0_MERCHANT,
        today,
        19880,
    )
    assert paid_d0["transfer_id"] == f"dayend:{today}:payout:{D0_MERCHANT}:{today}"
    assert day.account(f"merchant:{MERCHANT}") == 12910
    assert day.account(f"merchant:{D0_MERCHANT}") == 0
    assert day.account(f"acquirer:clearing:{CURRENCY}") == 0
    assert day.account(f"acquirer:issuer:{LINK}") == -33000
    assert day.account(f"acquirer:mdr:{CURRENCY}") == 90 + (120 - 16)
    assert day.account(f"agent:{AGENT}") == 16
    assert day.account(f"acquirer:payouts:{CURRENCY}") == 19880
    assert day.balance() == opening - 33000  # clearing moves no cardholder money
    assert REFUND_REASON not in {reason for _, reason, _ in day.notices()}

    # The next day end pays the T+1 merchant for today, and nothing else.
    nothing = day.run_dayend(tomorrow)
    assert _classes(nothing) == {}
    assert day.cleared(tomorrow) == []
    assert day.statements(tomorrow) == {}
    [paid_t1] = day.payouts(tomorrow)
    assert (paid_t1["merchant_id"], paid_t1["for_day"], paid_t1["amount_minor"]) == (
        MERCHANT,
        today,
        12910,
    )
    assert paid_t1["transfer_id"] == f"dayend:{tomorrow}:payout:{MERCHANT}:{today}"
    assert day.account(f"merchant:{MERCHANT}") == 0
    assert day.account(f"acquirer:payouts:{CURRENCY}") == 19880 + 12910
    assert day.payouts(today) == [paid_d0]  # nobody paid twice
    assert day.balance() == opening - 33000


# --- 2. one_sided_debit: the seeds' story ---------------------------------------------------


@pytest.fixture
def seeds(tmp_path: Path) -> Iterator[DayendNet]:
    with dayend_network(tmp_path) as day:
        yield day


def test_lost_answer_and_lost_reversals_make_a_one_sided_debit_refunded_once(
    seeds: DayendNet,
) -> None:
    day, term = seeds, seeds.term
    opening = day.balance()
    kept = _approved(term.sale("5.00"))
    with FaultProxy(term.switch_port) as proxy:
        proxy.drop_answers("0210")
        code, lost = term.sale("7.00", via=proxy.port, timeout_s=LOST_TIMEOUT_S)
        assert (code, lost["status"]) == (3, "failed_reversal_pending"), lost
        assert lost["printout"] == []  # no receipt
        proxy.drop_requests("040", 3)  # the reversal and both repeats never reach the switch
        before = len(proxy.seen_requests)
        settled = day.settle(via=proxy.port, timeout_s=LOST_TIMEOUT_S)
        assert proxy.requests_since(before) == ["0400", "0401", "0401", "0500", "0320", "0320"]
    assert settled["result"] == "not_balanced"
    assert term.status()["pending_reversal"]["flagged"] is True
    lost_rrn = next(
        f"{t['id']:012d}"
        for t in day.switch_rows("SELECT id, amount_minor FROM switch_txn WHERE kind = 'sale'")
        if t["amount_minor"] == 700
    )
    assert day.switch_txn(lost_rrn)["state"] == "approved"  # the switch did the work
    assert day.balance() == opening - 500 - 700

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"matched": 1, "one_sided_debit": 1}
    assert summary["refunds"] == {"count": 1, "amount_minor": 700}
    assert _verdicts(day, today) == {
        int(_rrn(kept)): ("matched", "switch, issuer and the terminal's upload agree", "debit"),
        int(lost_rrn): (
            "one_sided_debit",
            "approved but never receipted at the terminal: not in the upload of its "
            "not-balanced batch 000001",
            None,
        ),
    }
    item = day.item(today, int(lost_rrn))
    [issuer_sale] = [t for t in day.issuer_txns() if t["id"] == item["issuer_txn_id"]]
    assert (issuer_sale["kind"], issuer_sale["amount_minor"], issuer_sale["rrn"]) == (
        "sale",
        700,
        lost_rrn,
    )
    # Refunded at the issuer, through its ledger, with the action linked to both records.
    refund_id = f"dayend:{today}:refund:{issuer_sale['id']}"
    [action] = day.actions(today)
    assert action == {
        "day": today,
        "item_no": item["item_no"],
        "kind": "refund",
        "switch_txn_id": int(lost_rrn),
        "issuer_txn_id": issuer_sale["id"],
        "result": "refunded",
        "amount_minor": 700,
        "reference": refund_id,
        "notice_id": f"notice:{refund_id}",
        "at_ms": action["at_ms"],
    }
    [refund] = [t for t in day.issuer_txns() if t["id"] == refund_id]
    assert (refund["kind"], refund["amount_minor"], refund["original_id"]) == (
        "refund",
        700,
        issuer_sale["id"],
    )
    assert day.balance() == opening - 500
    expected_notices = [
        ("debit", "sale", 500),
        ("debit", "sale", 700),
        ("refund", REFUND_REASON, 700),
    ]
    assert day.notices() == expected_notices
    assert day.wait_delivered() == expected_notices
    # The merchant is paid for the receipted sale only.
    assert day.cleared(today) == [(_rrn(kept), "sale", "D", 500)]
    statement = day.statements(today)[MERCHANT]
    assert (statement["sales_count"], statement["sales_minor"], statement["net_minor"]) == (
        1,
        500,
        500 - 3,
    )

    # Running the same day end again changes nothing.
    items = day.items(today)
    again = day.cli("dayend", "run", "--date", today, "--close-now", "--json")
    assert again.exit_code == 0, again
    assert again.json()["already_closed"] is True
    assert again.json()["refunds"] == {"count": 1, "amount_minor": 700}
    day.assert_ledgers_verify()
    assert day.items(today) == items
    assert day.actions() == [action]
    assert day.balance() == opening - 500
    assert day.notices() == expected_notices

    # The terminal's flagged reversal finally gets through: the issuer finds nothing left.
    code, inquiry = term.balance()
    assert code == 0 and inquiry["auto_reversal"] == "successful", inquiry
    day.net.wait_queue_drained()
    [undo] = [t for t in day.issuer_txns() if t["kind"] == "reversal"]
    assert (undo["original_id"], undo["response_code"], undo["transfer_id"]) == (
        issuer_sale["id"],
        "00",
        None,
    )
    assert undo["reason"] == "nothing to undo: already refunded in full"
    assert day.balance() == opening - 500
    assert day.notices() == expected_notices
    day.assert_ledgers_verify()


# --- 3. one_sided_debit: the issuer's answer to the switch is lost -----------------------------


@pytest.fixture
def via_link_proxy(tmp_path: Path) -> Iterator[DayendNet]:
    with dayend_network(tmp_path, issuer_proxy=True) as day:
        yield day


def test_lost_issuer_answer_is_refunded_at_day_end_and_the_late_advice_undoes_nothing(
    via_link_proxy: DayendNet,
) -> None:
    day, term, link = via_link_proxy, via_link_proxy.term, via_link_proxy.link_proxy
    assert link is not None
    opening = day.balance()
    link.drop_answers("0210")  # the issuer debits; the switch never hears of it
    link.drop_requests("042", 100_000)  # and its reversal advice cannot get through
    code, failed = term.sale("9.00")
    assert (code, failed["code"]) == (1, "98"), failed
    assert (
        failed["printout"][0].count("DECLINED") or "TRANSACTION DECLINED" in failed["printout"][0]
    )
    rrn = _rrn(failed)
    day.wait_state(rrn, "timed_out")
    link.wait_for_request("0421", WAIT_S)  # the advice is being repeated, and dropped
    assert day.balance() == opening - 900
    assert day.settle()["result"] == "balanced"  # the terminal declined it, the switch too

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"one_sided_debit": 1}
    assert summary["refunds"] == {"count": 1, "amount_minor": 900}
    assert _verdicts(day, today) == {
        int(rrn): (
            "one_sided_debit",
            "switch has it timed_out; the issuer's debit is still in effect",
            None,
        )
    }
    [action] = day.actions(today)
    item = day.item(today, int(rrn))
    assert (action["switch_txn_id"], action["issuer_txn_id"], action["result"]) == (
        int(rrn),
        item["issuer_txn_id"],
        "refunded",
    )
    assert day.balance() == opening
    expected_notices = [("debit", "sale", 900), ("refund", REFUND_REASON, 900)]
    assert day.notices() == expected_notices
    assert day.cleared(today) == []
    assert day.statements(today) == {}

    # Now the advice gets through: the issuer answers it with nothing to undo.
    assert link.pending_drops() > 0
    link.clear_rules()
    day.net.wait_queue_drained()
    assert day.wait_state(rrn, "reversed")["state"] == "reversed"
    [undo] = [t for t in day.issuer_txns() if t["kind"] == "reversal"]
    assert (undo["original_id"], undo["response_code"], undo["transfer_id"]) == (
        item["issuer_txn_id"],
        "00",
        None,
    )
    assert undo["reason"] == "nothing to undo: already refunded in full"
    assert day.balance() == opening
    assert day.notices() == expected_notices
    assert day.wait_delivered() == expected_notices
    day.assert_ledgers_verify()
    # And the next day end finds nothing more to do about it.
    tomorrow = day.next_day(today)
    assert _classes(day.run_dayend(tomorrow)) == {}
    assert day.actions() == [action]
    assert day.balance() == opening


# --- 4. missing_at_issuer: the issuer's database restored from a backup -----------------------


def test_issuer_restored_from_backup_leaves_the_sale_missing_at_issuer(
    seeds: DayendNet,
) -> None:
    day, term = seeds, seeds.term
    issuer = day.net.issuer
    assert issuer is not None and day.net.switch is not None
    opening = day.balance()
    backup = day.root / "issuer-backup.sqlite3"
    backup_database(day.issuer_db, backup)
    sold = _approved(term.sale("60.00"))
    assert len(sold["printout"]) == 2  # receipted
    assert day.balance() == opening - 6000
    assert day.settle()["result"] == "balanced"
    assert day.wait_delivered() == [("debit", "sale", 6000)]  # the cardholder was told

    # The issuer's disk fails; the operator restores last night's backup and restarts it.
    port = issuer.port
    issuer.stop_ok()
    restore_database(day.issuer_db, backup)
    day.net.start_issuer(port)
    day.net.switch.wait_log("event=link.connected", count=2)
    assert day.balance() == opening  # the debit is gone with the restore

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"missing_at_issuer": 1}
    assert summary["refunds"] == NO_REFUND
    assert _verdicts(day, today) == {
        int(_rrn(sold)): ("missing_at_issuer", "issuer has no posting for it", None)
    }
    assert day.cleared(today) == []  # not cleared
    assert day.statements(today) == {}  # not paid
    assert day.payouts(today) == []
    assert day.actions() == []  # nothing refunded
    assert day.balance() == opening
    assert day.notices() == []  # the restored outbox has no notice either
    assert day.wait_delivered() == [("debit", "sale", 6000)]  # and no refund notice followed
    [status] = day.cli("dayend", "status", "--json").json()["days"]
    assert (status["day"], status["exceptions"], status["refunds"]) == (today, 1, 0)


# --- 5. unknown_to_host: the switch's database restored from a backup --------------------------


@dataclass(frozen=True, slots=True)
class RestoredSwitch:
    """The day a switch was restored from a backup taken before a receipted sale."""

    day: DayendNet
    today: str
    opening: int
    sold: dict[str, Any]
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def restored_switch(tmp_path_factory: pytest.TempPathFactory) -> RestoredSwitch:
    """The story, up to its day end; the two tests below read what it left (the databases
    stay on disk once the hosts stopped)."""
    with dayend_network(tmp_path_factory.mktemp("restored-switch")) as day:
        switch = day.net.switch
        assert switch is not None
        opening = day.balance()
        backup = day.root / "switch-backup.sqlite3"
        backup_database(day.switch_db, backup)
        sold = _approved(day.term.sale("80.00"))
        assert len(sold["printout"]) == 2  # receipted
        assert day.balance() == opening - 8000

        # The switch's disk fails; the operator restores the backup and restarts it.
        switch.stop_ok()
        restore_database(day.switch_db, backup)
        day.net.start_switch()
        assert day.switch_rows("SELECT id FROM switch_txn WHERE kind = 'sale'") == []
        assert day.settle()["result"] == "not_balanced"
        uploads = day.switch_rows("SELECT stan, rrn, amount_minor, difference FROM switch_upload")
        assert uploads == [
            {
                "stan": sold["txn"]["voucher"],
                "rrn": _rrn(sold),
                "amount_minor": 8000,
                "difference": "unknown at the switch",
            }
        ]
        today = day.today()
        summary = day.run_dayend(today)
        day.wait_delivered()
    return RestoredSwitch(day, today, opening, sold, summary)


def test_switch_restored_from_backup_makes_the_uploaded_sale_unknown_to_host(
    restored_switch: RestoredSwitch,
) -> None:
    day, today, sold = restored_switch.day, restored_switch.today, restored_switch.sold
    unknown = [i for i in day.items(today) if i["class"] == "unknown_to_host"]
    assert [
        (i["reason"], i["rrn"], i["amount_minor"], i["terminal_amount_minor"], i["switch_txn_id"])
        for i in unknown
    ] == [
        (
            "uploaded by the terminal and posted at the issuer, unknown at the switch",
            _rrn(sold),
            8000,
            8000,
            None,
        )
    ]
    # One swipe, one item: the issuer's debit is joined to the receipt by RRN, not refunded.
    assert unknown[0]["issuer_txn_id"] is not None
    assert unknown[0]["issuer_amount_minor"] == 8000
    assert restored_switch.summary["classes"]["unknown_to_host"]["count"] == 1
    assert day.cleared(today) == []  # not cleared
    assert day.statements(today) == {}  # not paid
    assert day.payouts() == []
    [status] = day.cli("dayend", "status", "--json").json()["days"]
    assert status["exceptions"] == 1


def test_switch_restored_from_backup_refunds_nothing_behind_the_receipt(
    restored_switch: RestoredSwitch,
) -> None:
    """The cardholder holds a receipt and the issuer holds the debit: the sale happened.
    Nothing automatic may undo it while operations look at the exception."""
    day, today, opening = restored_switch.day, restored_switch.today, restored_switch.opening
    summary = restored_switch.summary
    assert _classes(summary) == {"unknown_to_host": 1}, day.items(today)
    assert summary["refunds"] == NO_REFUND
    assert day.actions() == []
    assert day.balance() == opening - 8000
    assert day.notices() == [("debit", "sale", 8000)]


# --- 6. amount_mismatch: field 4 changed on the switch -> issuer link -------------------------


@pytest.fixture
def via_link_proxy_without_mac(tmp_path: Path) -> Iterator[DayendNet]:
    """A home whose key file predates the zone MAC key: nothing on the switch -> issuer link
    says a field was changed, so the issuer acts on what it receives."""
    with dayend_network(tmp_path, issuer_proxy=True, link_mac=False) as day:
        yield day


def test_amount_changed_in_transit_is_an_amount_mismatch_not_cleared(
    via_link_proxy_without_mac: DayendNet,
) -> None:
    day, term = via_link_proxy_without_mac, via_link_proxy_without_mac.term
    link = day.link_proxy
    assert link is not None
    opening = day.balance()

    def one_yuan_more(message: Message) -> Message:
        return message.with_fields({4: f"{int(message.fields[4]) + 100:012d}"})

    link.rewrite_requests("0200", one_yuan_more)
    sold = _approved(term.sale("70.00"))
    assert link.rewritten == ["0200"]
    assert sold["txn"]["amount_minor"] == 7000
    assert day.balance() == opening - 7100  # the issuer took what it was sent
    assert day.settle()["result"] == "balanced"  # terminal and switch agree on 70.00

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"amount_mismatch": 1}
    assert summary["refunds"] == NO_REFUND
    assert _verdicts(day, today) == {
        int(_rrn(sold)): ("amount_mismatch", "amount differs: switch 7000, issuer 7100", None)
    }
    item = day.item(today, int(_rrn(sold)))
    assert (item["amount_minor"], item["issuer_amount_minor"]) == (7000, 7100)
    assert day.cleared(today) == []
    assert day.statements(today) == {}
    assert day.actions() == []
    assert day.balance() == opening - 7100
    assert day.notices() == [("debit", "sale", 7100)]


def test_amount_changed_in_transit_under_the_link_mac_is_refused_and_moves_nothing(
    via_link_proxy: DayendNet,
) -> None:
    """The same change on a home with a zone MAC key: the issuer refuses the request
    unanswered, the terminal gets 98, the reversal advice finds nothing, and no money moved."""
    day, term, link = via_link_proxy, via_link_proxy.term, via_link_proxy.link_proxy
    assert link is not None
    opening = day.balance()

    def one_yuan_more(message: Message) -> Message:
        return message.with_fields({4: f"{int(message.fields[4]) + 100:012d}"})

    link.rewrite_requests("0200", one_yuan_more)
    code, failed = term.sale("70.00")
    assert link.rewritten == ["0200"]
    assert (code, failed["code"]) == (1, "98"), failed
    rrn = _rrn(failed)
    day.wait_state(rrn, "reversed")  # the advice was answered 25: nothing to undo
    assert day.balance() == opening
    assert day.notices() == []
    assert day.net.issuer is not None
    refused = 'event=issuer.answer reason="MAC missing or wrong on the acquirer link"'
    assert count_events(day.net.issuer.log(), refused) >= 1
    assert day.settle()["result"] == "balanced"

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"unsuccessful": 1}, summary
    assert _verdicts(day, today) == {
        int(rrn): ("unsuccessful", "reversed; nothing in effect at the issuer", None)
    }
    assert summary["refunds"] == NO_REFUND
    assert day.cleared(today) == []
    assert day.actions() == []
    assert day.balance() == opening


# --- 7. awaiting_batch, then matched the next day -------------------------------------------


def test_unsettled_sale_awaits_its_batch_then_clears_the_next_day(seeds: DayendNet) -> None:
    day, term = seeds, seeds.term
    opening = day.balance()
    sold = _approved(term.sale("42.00"))
    rrn = _rrn(sold)

    today = day.today()
    summary = day.run_dayend(today)

    assert _classes(summary) == {"awaiting_batch": 1}
    assert _verdicts(day, today) == {
        int(rrn): ("awaiting_batch", "terminal batch 000001 not settled yet", None)
    }
    assert day.cleared(today) == []
    assert day.statements(today) == {}
    assert day.payouts(today) == []
    assert day.actions() == []
    assert day.balance() == opening - 4200
    assert day.notices() == [("debit", "sale", 4200)]

    assert day.settle()["result"] == "balanced"  # the next morning
    tomorrow = day.next_day(today)
    carried = day.run_dayend(tomorrow)

    assert _classes(carried) == {"matched": 1}
    assert _verdicts(day, tomorrow) == {int(rrn): ("matched", BALANCED_REASON, "debit")}
    assert day.cleared(tomorrow) == [(rrn, "sale", "D", 4200)]
    statement = day.statements(tomorrow)[MERCHANT]
    assert (statement["sales_minor"], statement["fee_minor"], statement["net_minor"]) == (
        4200,
        25,
        4175,
    )
    assert statement["pay_day"] == day.next_day(tomorrow)
    assert day.payouts() == []  # T+1: paid the day after
    assert _verdicts(day, today) == {
        int(rrn): ("awaiting_batch", "terminal batch 000001 not settled yet", None)
    }
    assert day.actions() == []
    assert day.balance() == opening - 4200
    assert day.notices() == [("debit", "sale", 4200)]
