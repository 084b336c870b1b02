"""The seeds' stories, told by ``cardtally terminal`` over real TCP to real hosts.

Each test runs ``issuer serve`` and ``switch serve`` as child processes (SQLite databases),
installs and signs on a terminal with the CLI, and drives it with ``cardtally terminal``
commands; a :class:`~tests.terminal.proxy.FaultProxy` between terminal and switch loses
the frames a story needs lost. Whatever goes wrong on the way, the story ends with the
cardholder's money where it started (or with a receipt for it), and with the terminal, the
switch and the issuer agreeing.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.terminal import AUTO_REVERSAL_FAILED, AUTO_REVERSAL_OK
from tests.issuer.messages import DEBIT_PAN, EXPIRY, PIN
from tests.issuer.tcp_support import notice_lines, wait_for_notices
from tests.terminal.proxy import FaultProxy
from tests.terminal.tcp_support import (
    ADMIN,
    DEBIT_CARD_ARGS,
    LOST_TIMEOUT_S,
    UNLOCK,
    TerminalNet,
    closed_port,
    sale_args,
    strip_printed_at,
    strip_reprint,
    terminal_network,
)

#: Bound on anything a test waits for from another process.
SEEN_S: Final = 30.0
CARD_TAIL: Final = DEBIT_PAN[-4:]


@pytest.fixture
def term(tmp_path: Path) -> Iterator[TerminalNet]:
    with terminal_network(tmp_path) as terminal:
        yield terminal


@pytest.fixture
def proxy(term: TerminalNet) -> Iterator[FaultProxy]:
    with FaultProxy(term.switch_port) as fault_proxy:
        yield fault_proxy


def _voucher(outcome: dict[str, Any]) -> str:
    txn = outcome["txn"]
    assert txn is not None, outcome
    voucher = txn["voucher"]
    assert isinstance(voucher, str)
    return voucher


def _card_notices(term: TerminalNet) -> list[tuple[str, str, int]]:
    """(kind, reason, amount) of the notices sent for the test card."""
    return [
        (n["kind"], n["reason"], n["amount"]["minor"])
        for n in notice_lines(term.home)
        if n is not None and n["card_tail"] == CARD_TAIL
    ]


# --- a. the answer to a sale is lost -------------------------------------------------------------


def test_lost_sale_answer_is_reversed_by_the_next_balance_inquiry(
    term: TerminalNet, proxy: FaultProxy
) -> None:
    opening = term.issuer_balance()
    proxy.drop_answers("0210")
    code, lost = term.sale("12.34", via=proxy.port, timeout_s=LOST_TIMEOUT_S)

    assert code == 3, lost
    assert lost["status"] == "failed_reversal_pending"
    assert lost["screen"][0] == "TRANSACTION FAILED"
    assert any(line.startswith("REVERSAL PENDING") for line in lost["screen"]), lost
    assert lost["printout"] == []  # no receipt: the sale did not succeed
    assert proxy.dropped == [("answer", "0210")]
    # The story of the seeds: the issuer took the money, the terminal never heard of it.
    assert term.issuer_balance() == opening - 1234
    pending = term.status()["pending_reversal"]
    assert pending is not None and pending["voucher"] == _voucher(lost), pending
    assert pending["reason"] == "98"

    code, inquiry = term.balance(via=proxy.port)
    assert code == 0, inquiry
    assert AUTO_REVERSAL_OK in inquiry["screen"], inquiry
    assert inquiry["auto_reversal"] == "successful"
    assert proxy.seen_requests == ["0200", "0400", "0200"]  # the reversal went first
    assert term.status()["pending_reversal"] is None

    term.net.wait_queue_drained()
    assert term.issuer_balance() == opening
    wait_for_notices(term.home, 2)  # the debit, then its refund
    assert sorted(_card_notices(term)) == [("debit", "sale", 1234), ("refund", "reversal", 1234)]


# --- b. the switch is unreachable -----------------------------------------------------------------


def test_unreachable_switch_then_reversal_clears_against_the_real_switch(
    term: TerminalNet,
) -> None:
    opening = term.issuer_balance()
    code, failed = term.sale("25.00", via=closed_port(), timeout_s=LOST_TIMEOUT_S)

    assert code == 3, failed
    assert failed["status"] == "failed_reversal_pending"
    assert any("unreachable" in line for line in failed["screen"]), failed
    voucher = _voucher(failed)
    assert term.status()["pending_reversal"]["voucher"] == voucher
    assert term.issuer_balance() == opening  # nothing reached anyone
    assert [t for t in term.switch_txns() if t["kind"] == "sale"] == []

    code, inquiry = term.balance()
    assert code == 0, inquiry
    assert AUTO_REVERSAL_OK in inquiry["screen"], inquiry
    assert term.status()["pending_reversal"] is None
    # The switch answered the reversal of a sale it never saw: nothing to undo.
    reversals = [t for t in term.switch_txns() if t["kind"] == "reversal"]
    assert [(t["stan"], t["state"], t["original_rrn"]) for t in reversals] == [
        (voucher, "approved", None)
    ]
    term.net.wait_queue_drained()
    assert term.issuer_balance() == opening


# --- c. the printer is out of paper ------------------------------------------------------------


def test_paper_out_then_reprint_gives_the_receipt_marked_reprint(term: TerminalNet) -> None:
    code, first = term.sale("11.00")
    assert code == 0, first
    assert len(first["printout"]) == 2
    assert "MERCHANT COPY" in first["printout"][0]
    assert "CARDHOLDER COPY" in first["printout"][1]

    code, second = term.sale("22.00", "--paper-out")
    assert code == 0, second
    assert second["printout"] == []
    assert "PRINTER OUT OF PAPER: REPRINT THE LAST RECEIPT" in second["screen"]
    assert second["txn"]["printed"] == 0
    code, text = term.term("sale", *sale_args("3.00"), "--paper-out", as_json=False)
    assert code == 0
    assert "POS SALES SLIP" not in text  # the human output prints no slip either

    # The last receipt of the batch is now the 3.00 sale; the 22.00 one is reprinted by voucher.
    code, last = term.term_json("reprint")
    assert code == 0, last
    assert "AMOUNT: CNY 3.00" in last["printout"][0]
    code, again = term.term_json("reprint", "--voucher", str(int(_voucher(second))))
    assert code == 0, again
    assert again["txn"]["voucher"] == _voucher(second)
    code, once_more = term.term_json("reprint", "--voucher", str(int(_voucher(second))))
    assert code == 0, once_more
    assert once_more["printout"] == again["printout"]
    for slip in again["printout"]:
        assert "*** REPRINT ***" in slip
        assert f"VOUCHER NO: {_voucher(second)}" in slip
        assert f"REF NO: {second['txn']['rrn']}" in slip
        assert "AMOUNT: CNY 22.00" in slip

    # A reprint differs from the original only by its mark.
    code, reprinted = term.term_json("reprint", "--voucher", str(int(_voucher(first))))
    assert code == 0, reprinted
    assert [strip_reprint(s) for s in reprinted["printout"]] == first["printout"]
    assert reprinted["printout"] != first["printout"]


def test_json_txn_counts_the_receipt_just_printed(term: TerminalNet) -> None:
    """The outcome's ``printed`` includes the print it reports (reprints count too)."""
    code, sold = term.sale("4.00")
    assert code == 0, sold
    assert len(sold["printout"]) == 2
    printed_after_sale = sold["txn"]["printed"]
    code, again = term.term_json("reprint")
    assert code == 0, again
    assert (printed_after_sale, again["txn"]["printed"]) == (1, 2)


# --- d. the detail list and settlement agree --------------------------------------------------


def test_detail_list_shows_successful_only_and_settles_balanced(term: TerminalNet) -> None:
    opening = term.issuer_balance()
    sales = []
    for amount in ("10.00", "20.00", "30.00"):
        code, sold = term.sale(amount)
        assert code == 0, sold
        sales.append(sold)
    code, declined = term.sale(f"{opening // 100 + 1}.00")  # more than the card holds
    assert code == 1, declined
    assert declined["code"] == "51"
    assert "TRANSACTION DECLINED" in declined["printout"][0]
    code, wrong_pin = term.sale("1.00", "--pin", "999999")
    assert (code, wrong_pin["code"]) == (1, "55"), wrong_pin

    voided_voucher = _voucher(sales[1])
    code, voided = term.term_json(
        "void", "--voucher", str(int(voided_voucher)), "--admin-password", ADMIN
    )
    assert code == 0, voided
    code, refunded = term.term_json(
        "refund",
        *("--rrn", sales[2]["txn"]["rrn"], "--amount", "5.00"),
        *("--pan", DEBIT_PAN, "--expiry", EXPIRY, "--admin-password", ADMIN),
    )
    assert code == 0, refunded

    code, detail = term.term_json("detail")
    assert code == 0, detail
    [listing] = detail["printout"]
    rows = {line.split()[0]: line for line in listing.splitlines() if line[:6].isdigit()}
    listed = {_voucher(o) for o in (*sales, voided, refunded)}
    assert set(rows) == listed, listing
    assert _voucher(declined) not in rows and _voucher(wrong_pin) not in rows
    assert "VOIDED" in listing  # the voided sale stays listed, marked
    # Debits: the three sales (a voided sale still counts; its void is the credit).
    field48 = detail["totals_field48"]
    assert field48 == f"{6000:012d}003{2500:012d}002" + "0"

    code, settled = term.term_json("settle", "--admin-password", ADMIN)
    assert code == 0, settled
    assert settled["result"] == "balanced"
    assert "BALANCED" in settled["printout"][0]
    assert "NOT BALANCED" not in settled["printout"][0]
    record = term.switch_batch(settled["batch"])
    assert record["result"] == "balanced"
    assert record["switch_totals"] == record["terminal_totals"] == field48[:30]

    term.net.wait_queue_drained()
    assert term.issuer_balance() == opening - 1000 - 3000 + 500


# --- e. the terminal dies waiting --------------------------------------------------------------


def test_terminal_killed_after_sending_a_sale_reverses_it_first_next_time(
    term: TerminalNet, proxy: FaultProxy
) -> None:
    opening = term.issuer_balance()
    trace = int(term.status()["trace"])
    proxy.hold_answers()
    process = term.spawn(
        "sale", *("--amount", "42.00", *DEBIT_CARD_ARGS), via=proxy.port, timeout_s=60
    )
    try:
        proxy.wait_for_request("0200", SEEN_S)
        # Wait until the switch answered (held here), so the issuer surely took the money.
        proxy.wait_for_answer("0210", SEEN_S)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=SEEN_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=SEEN_S)
    assert process.returncode == -signal.SIGKILL
    assert term.issuer_balance() == opening - 4200

    voucher = f"{trace + 1:06d}"
    pending = term.status()["pending_reversal"]
    assert pending is not None, "the reversal record was written before the send"
    assert (pending["voucher"], pending["sends"]) == (voucher, 0), pending

    code, inquiry = term.balance()
    assert code == 0, inquiry
    assert AUTO_REVERSAL_OK in inquiry["screen"], inquiry
    assert f"VOUCHER {voucher}: NO ANSWER BEFORE THE TERMINAL STOPPED" in inquiry["screen"]
    assert term.status()["pending_reversal"] is None
    order = [(t["kind"], t["stan"]) for t in term.switch_txns()]
    assert order == [("sale", voucher), ("reversal", voucher), ("balance", _voucher(inquiry))]

    term.net.wait_queue_drained()
    assert term.issuer_balance() == opening


# --- f. settlement, balanced and not --------------------------------------------------------------


def test_settlement_balanced_then_not_balanced_with_batch_upload(
    term: TerminalNet, proxy: FaultProxy
) -> None:
    opening = term.issuer_balance()
    for amount in ("10.00", "20.00"):
        code, sold = term.sale(amount)
        assert code == 0, sold
    assert term.status()["batch"] == "000001"
    code, settled = term.term_json("settle", "--admin-password", ADMIN)
    assert code == 0, settled
    assert (settled["batch"], settled["result"], settled["next_batch"]) == (1, "balanced", 2)
    assert "BALANCED" in settled["printout"][0]
    status = term.status()
    assert (status["batch"], status["batch_txns"], status["batch_state"]) == ("000002", 0, "open")

    # Batch 2: one good sale, one whose answer is lost and whose reversal cannot get through.
    code, kept = term.sale("5.00")
    assert code == 0, kept
    proxy.drop_answers("0210")
    code, lost = term.sale("7.00", via=proxy.port, timeout_s=LOST_TIMEOUT_S)
    assert code == 3, lost
    lost_voucher = _voucher(lost)
    proxy.drop_requests("040", 3)
    before = len(proxy.seen_requests)
    code, closing = term.term_json(
        "settle", "--admin-password", ADMIN, via=proxy.port, timeout_s=LOST_TIMEOUT_S
    )

    assert code == 0, closing
    assert proxy.requests_since(before) == ["0400", "0401", "0401", "0500", "0320", "0320"]
    assert AUTO_REVERSAL_FAILED in closing["screen"], closing
    assert closing["result"] == "not_balanced"
    assert f"REVERSAL OF VOUCHER {lost_voucher} STILL PENDING: CALL ACQUIRER" in closing["screen"]
    [slip] = closing["printout"]
    assert "NOT BALANCED" in slip and "BATCH UPLOADED (1 RECORDS)" in slip
    assert "*** REVERSAL PENDING ***" in slip and f"VOUCHER NO: {lost_voucher}" in slip
    # The switch counted the lost sale; the terminal did not.
    record = term.switch_batch(2)
    assert record["result"] == "not_balanced"
    assert record["terminal_totals"] == f"{500:012d}001{0:012d}000"
    assert record["switch_totals"] == f"{1200:012d}002{0:012d}000"
    uploads = term.switch_rows(
        "SELECT stan, amount_minor, difference FROM switch_upload WHERE batch_no = 2"
    )
    assert uploads == [{"stan": _voucher(kept), "amount_minor": 500, "difference": ""}]
    status = term.status()
    assert status["batch"] == "000003"
    assert status["pending_reversal"]["voucher"] == lost_voucher
    assert status["pending_reversal"]["flagged"] is True

    # The reversal still goes first, and clears.
    code, inquiry = term.balance()
    assert code == 0, inquiry
    assert AUTO_REVERSAL_OK in inquiry["screen"], inquiry
    assert term.status()["pending_reversal"] is None
    term.net.wait_queue_drained()
    assert term.issuer_balance() == opening - 3000 - 500


# --- g. protection mode ---------------------------------------------------------------------


def test_protection_mode_locks_until_unlocked_and_keeps_the_journal(term: TerminalNet) -> None:
    code, sold = term.sale("10.00")
    assert code == 0, sold
    code, before = term.term_json("detail")
    assert code == 0, before

    code, tampered = term.term_json("tamper")
    assert code == 0, tampered
    code, refused = term.sale("10.00")
    assert code == 4, refused
    assert refused["screen"][0].startswith("TERMINAL LOCKED (PROTECTION MODE: TAMPER SIGNAL)")
    assert term.status_process()["protection"] == "locked (TAMPER SIGNAL)"
    code, wrong = term.term_json("unlock", "--password", "wrong-password")
    assert code == 4, wrong
    assert term.status()["protection"] == "locked (TAMPER SIGNAL)"
    code, unlocked = term.term_json("unlock", "--password", UNLOCK)
    assert (code, unlocked["screen"]) == (0, ["TERMINAL UNLOCKED"])
    code, after = term.term_json("detail")
    assert code == 0, after
    assert strip_printed_at(after["printout"][0]) == strip_printed_at(before["printout"][0])
    code, sold_again = term.sale("10.00")
    assert code == 0, sold_again

    # Three wrong administrator passwords lock it too.
    voucher = str(int(_voucher(sold)))
    for attempt in (1, 2):
        code, bad = term.term_json("void", "--voucher", voucher, "--admin-password", "0000")
        assert code == 4, bad
        assert bad["screen"] == [f"WRONG ADMINISTRATOR PASSWORD ({attempt} OF 3)"]
    code, bad = term.term_json("void", "--voucher", voucher, "--admin-password", "0000")
    assert code == 4, bad
    assert "TERMINAL LOCKED" in bad["screen"][0], bad
    assert term.status()["protection"] == "locked (3 WRONG ADMINISTRATOR PASSWORDS)"
    code, refused = term.term_json("void", "--voucher", voucher, "--admin-password", ADMIN)
    assert code == 4 and "TERMINAL LOCKED" in refused["screen"][0], refused
    code, _ = term.term_json("unlock", "--password", UNLOCK)
    assert code == 0
    status = term.status()
    assert (status["protection"], status["admin_failures"]) == ("off", 0)
    code, voided = term.term_json("void", "--voucher", voucher, "--admin-password", ADMIN)
    assert code == 0, voided
    assert term.status()["pending_reversal"] is None


# --- h. two commands at once on one terminal -----------------------------------------------------


def test_second_command_while_a_sale_is_in_flight_leaves_no_receipt_without_money(
    term: TerminalNet, proxy: FaultProxy
) -> None:
    """A device does one thing at a time: a second command must not recover (and reverse)
    the sale another process still waits on, which would then print a receipt for money
    the cardholder has back."""
    opening = term.issuer_balance()
    proxy.hold_answers()
    process = term.spawn(
        "sale", *("--amount", "42.00", *DEBIT_CARD_ARGS), via=proxy.port, timeout_s=30
    )
    try:
        proxy.wait_for_answer("0210", SEEN_S)  # the issuer took the money; the answer waits
        meanwhile = term.run("balance", *DEBIT_CARD_ARGS, "--pin", PIN)  # the cashier tries
        proxy.release_answers(deliver=True)
        out, err = process.communicate(timeout=SEEN_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=SEEN_S)
    assert meanwhile.exit_code in (0, 4), meanwhile  # served, or refused as busy
    if meanwhile.exit_code == 4:
        assert "busy" in meanwhile.stderr + meanwhile.stdout, meanwhile
    term.net.wait_queue_drained()
    if process.returncode == 0:  # the sale printed its receipt: the money must be there
        sold = json.loads(out)
        assert len(sold["printout"]) == 2, sold
        assert term.issuer_balance() == opening - 4200, (meanwhile, sold["screen"])
        assert [t["state"] for t in term.switch_txns() if t["kind"] == "sale"] == ["approved"]
    else:
        assert term.issuer_balance() == opening, err
