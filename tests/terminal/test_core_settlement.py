"""Batch settlement at the terminal: 0500, the result, the upload, interruptions (wire profile
6.7-6.8, docs/terminal.md "Settlement"), against the real switch core in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtally.terminal import (
    AUTO_REVERSAL_FAILED,
    AUTO_REVERSAL_OK,
    Balance,
    Refund,
    Sale,
    Settle,
    SignOn,
    Status,
    Void,
)
from cardtally.terminal._model import BatchState
from tests.switch.support import CARD, TERMINAL, uploads
from tests.terminal.support import (
    ADMIN,
    LOSE_ANSWER,
    UNREACHABLE,
    Fault,
    Rig,
    both,
    build,
    faults_for,
    faults_on,
    sent,
    sent_mtis,
    switch_rows,
)

REVERSALS = faults_for("0400", "0401")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    built = build(tmp_path)
    assert built.run(SignOn()).status is Status.APPROVED
    return built


def sale(rig: Rig, amount: int, fault: Fault | None = None) -> int:
    outcome = rig.run(Sale(CARD, amount), fault)
    assert outcome.txn is not None, outcome.screen
    return outcome.txn.stan


def switch_batch(rig: Rig, batch_no: int) -> dict[str, object]:
    rows = switch_rows(
        rig,
        "SELECT result, terminal_totals, switch_totals, uploaded FROM switch_batch"
        " WHERE terminal_id = :tid AND batch_no = :batch",
        tid=TERMINAL,
        batch=batch_no,
    )
    assert len(rows) == 1, rows
    return rows[0]


# -- balanced -------------------------------------------------------------------------------------


def test_balanced_settlement_closes_the_batch_and_opens_the_next(rig: Rig) -> None:
    sale(rig, 1000)
    sale(rig, 2500)
    before = len(rig.sends)
    outcome = rig.run(Settle(ADMIN))
    assert outcome.status is Status.APPROVED
    assert sent_mtis(rig, before) == ["0500"]
    request = sent(rig, before)[0]
    assert request.get(48) == "0000000035000020000000000000000"
    assert request.get(60) == "00000001201"
    assert request.mac is not None
    assert outcome.data == {"batch": 1, "result": "balanced", "next_batch": 2}
    assert outcome.screen == ("SETTLEMENT OF BATCH 000001: BALANCED", "NEW BATCH: 000002")
    assert rig.journal.profile().batch_no == 2
    closed, opened = rig.journal.batch(1), rig.journal.batch(2)
    assert closed.state is BatchState.SETTLED and closed.result == "balanced"
    assert closed.totals_field48 == request.get(48)
    assert opened.state is BatchState.OPEN
    slip = outcome.printout[0]
    assert "BALANCED" in slip and "NOT BALANCED" not in slip
    assert "BATCH 000001 CLOSED" in slip and "REVERSAL PENDING" not in slip
    assert switch_batch(rig, 1)["result"] == "balanced"


def test_a_sale_after_settlement_goes_in_the_new_batch(rig: Rig) -> None:
    first = sale(rig, 1000)
    rig.run(Settle(ADMIN))
    outcome = rig.run(Sale(CARD, 700))
    assert outcome.status is Status.APPROVED
    assert outcome.txn is not None and outcome.txn.batch_no == 2
    assert outcome.txn.stan > first  # the STAN runs on across batches
    assert sent(rig)[-1].get(60) == "22000002000"
    assert [t.stan for t in rig.journal.txns(2)] == [outcome.txn.stan]
    assert "BATCH NO: 000002" in outcome.printout[0]
    rows = switch_rows(
        rig, "SELECT batch_no, state FROM switch_txn WHERE stan = :s", s=f"{outcome.txn.stan:06d}"
    )
    assert rows == [{"batch_no": 2, "state": "approved"}]


def test_settling_twice_advances_the_batch_twice(rig: Rig) -> None:
    sale(rig, 1000)
    assert rig.run(Settle(ADMIN)).data["next_batch"] == 2
    empty = rig.run(Settle(ADMIN))
    assert empty.status is Status.APPROVED
    assert empty.data == {"batch": 2, "result": "balanced", "next_batch": 3}
    assert sent(rig)[-1].get(48) == "0" * 31


def test_settlement_needs_the_admin_password(rig: Rig) -> None:
    sale(rig, 1000)
    before = len(rig.sends)
    outcome = rig.run(Settle("000000"))
    assert outcome.status is Status.REFUSED
    assert outcome.screen == ("WRONG ADMINISTRATOR PASSWORD (1 OF 3)",)
    assert len(rig.sends) == before
    assert rig.journal.batch(1).state is BatchState.OPEN


def test_settlement_before_sign_on_is_refused(tmp_path: Path) -> None:
    fresh = build(tmp_path)
    outcome = fresh.run(Settle(ADMIN))
    assert outcome.status is Status.REFUSED
    assert outcome.screen == ("NOT SIGNED ON: SIGN ON FIRST",)
    assert fresh.sends == []


def test_voids_and_refunds_are_the_credits_and_the_switch_agrees(rig: Rig) -> None:
    stan = sale(rig, 1000)
    other = sale(rig, 4000)
    # The refund is of the other sale: the switch refuses to refund a voided one.
    rrn = rig.journal.txn_by_voucher(1, other).rrn  # type: ignore[union-attr]
    assert rig.run(Void(stan, ADMIN)).status is Status.APPROVED
    assert rrn is not None
    assert rig.run(Refund(CARD, rrn, 250, ADMIN)).status is Status.APPROVED
    before = len(rig.sends)
    outcome = rig.run(Settle(ADMIN))
    assert outcome.data["result"] == "balanced"
    assert sent(rig, before)[0].get(48) == "0000000050000020000000012500020"


# -- not balanced: the upload ---------------------------------------------------------------------


def test_not_balanced_uploads_every_approved_transaction_then_closes(rig: Rig) -> None:
    a = sale(rig, 1000)
    b = sale(rig, 2000)
    rig.run(Balance(CARD))  # no record: moves no money
    rig.issuer.code = "05"
    sale(rig, 3000)  # declined: no record
    rig.issuer.code = "00"
    lost = sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    before = len(rig.sends)
    outcome = rig.run(Settle(ADMIN), REVERSALS)
    assert outcome.status is Status.APPROVED
    assert sent_mtis(rig, before) == ["0400", "0401", "0401", "0500", "0320", "0320", "0320"]
    messages = sent(rig, before)
    assert {m.get(11) for m in messages[:3]} == {f"{lost:06d}"}
    assert messages[3].get(48) == "0000000030000020000000000000000"
    records, closing = messages[4:6], messages[6]
    assert [m.get(11) for m in records] == [f"{a:06d}", f"{b:06d}"]
    assert [m.get(60) for m in records] == ["00000001202", "00000001202"]
    assert closing.get(60) == "00000001207" and closing.get(48) == "0002"
    closing_stan = closing.get(11)
    assert closing_stan is not None and int(closing_stan) > lost  # a STAN of its own
    assert outcome.data == {"batch": 1, "result": "not_balanced", "next_batch": 2}
    assert [u["stan"] for u in uploads(rig.switch, TERMINAL, 1)] == [f"{a:06d}", f"{b:06d}"]
    host = switch_batch(rig, 1)
    assert host["result"] == "not_balanced" and host["uploaded"] == 2
    assert host["switch_totals"] == "000000007000003000000000000000"  # it counted the lost sale


def test_the_upload_records_carry_the_transactions_own_values(rig: Rig) -> None:
    a = sale(rig, 1000)
    sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    before = len(rig.sends)
    rig.run(Settle(ADMIN), REVERSALS)
    record = next(m for m in sent(rig, before) if m.mti == "0320" and m.get(48) is None)
    txn = rig.journal.txn_by_voucher(1, a)
    assert txn is not None and txn.host_at is not None
    assert (record.get(3), record.get(4), record.get(11)) == ("000000", "000000001000", "000002")
    assert record.get(37) == txn.rrn and record.get(38) == txn.auth_code
    assert record.get(13) == txn.host_at[5:7] + txn.host_at[8:10]
    assert record.get(12) == txn.host_at[11:19].replace(":", "")
    assert record.get(2) == CARD.pan.reveal()
    assert rig.journal.txn(txn.id).uploaded


def test_the_settlement_slip_reports_the_flagged_reversal(rig: Rig) -> None:
    sale(rig, 1000)
    lost = sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    outcome = rig.run(Settle(ADMIN), REVERSALS)
    assert outcome.screen[0] == AUTO_REVERSAL_FAILED
    assert outcome.auto_reversal == "unsuccessful"
    assert outcome.screen[-1] == f"REVERSAL OF VOUCHER {lost:06d} STILL PENDING: CALL ACQUIRER"
    assert "SETTLEMENT OF BATCH 000001: NOT BALANCED, BATCH UPLOADED" in outcome.screen
    slip = outcome.printout[0]
    assert "*** REVERSAL PENDING ***" in slip
    assert f"VOUCHER NO: {lost:06d}      BATCH NO: 000001" in slip
    assert "REASON: 98 ISSUER TIMEOUT / NO RESPONSE" in slip
    assert "SENDS: 3" in slip
    assert "FLAGGED: CONTACT ACQUIRER" in slip
    assert "BATCH UPLOADED (1 RECORDS)" in slip


def test_the_reversal_of_a_settled_batch_still_goes_first_and_finds_its_original(
    rig: Rig,
) -> None:
    lost = sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    rig.run(Settle(ADMIN), REVERSALS)
    before = len(rig.sends)
    outcome = rig.run(Sale(CARD, 100))
    assert outcome.status is Status.APPROVED
    assert outcome.screen[0] == AUTO_REVERSAL_OK
    assert sent_mtis(rig, before) == ["0401", "0200"]
    reversal, new_sale = sent(rig, before)
    assert reversal.get(60) == "22000001000"  # the original's batch
    assert new_sale.get(60) == "22000002000"
    rows = switch_rows(
        rig, "SELECT state FROM switch_txn WHERE kind = 'sale' AND stan = :s", s=f"{lost:06d}"
    )
    assert rows == [{"state": "reversal_pending"}]


def test_a_reversal_that_clears_at_settlement_keeps_the_batch_balanced(rig: Rig) -> None:
    sale(rig, 1000)
    sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    before = len(rig.sends)
    outcome = rig.run(Settle(ADMIN))
    assert outcome.screen[0] == AUTO_REVERSAL_OK
    assert sent_mtis(rig, before) == ["0400", "0500"]
    assert outcome.data["result"] == "balanced"
    assert "REVERSAL PENDING" not in outcome.printout[0]


# -- interrupted ----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", [UNREACHABLE, LOSE_ANSWER])
def test_no_answer_to_the_0500_leaves_the_batch_settling(rig: Rig, what: str) -> None:
    sale(rig, 1000)
    outcome = rig.run(Settle(ADMIN), faults_on(len(rig.sends) + 1, what=what))
    assert outcome.status is Status.NO_ANSWER
    assert outcome.screen[0] == "SETTLEMENT FAILED: NO VALID ANSWER"
    assert rig.journal.batch(1).state is BatchState.SETTLING
    assert rig.journal.profile().batch_no == 1
    for command in (Sale(CARD, 100), Balance(CARD)):
        before = len(rig.sends)
        refused = rig.run(command)
        assert refused.status is Status.REFUSED
        assert refused.screen == ("SETTLEMENT OF BATCH 000001 IN PROGRESS: FINISH IT (SETTLE)",)
        assert len(rig.sends) == before
    again = rig.run(Settle(ADMIN))
    assert again.status is Status.APPROVED
    assert again.data == {"batch": 1, "result": "balanced", "next_batch": 2}
    after = rig.run(Sale(CARD, 100))
    assert after.status is Status.APPROVED
    assert after.txn is not None and after.txn.batch_no == 2


def test_an_interrupted_upload_resumes_without_resending_acknowledged_records(
    rig: Rig,
) -> None:
    a = sale(rig, 1000)
    b = sale(rig, 2000)
    c = sale(rig, 3000)
    sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    n = len(rig.sends)
    # reversal x3, 0500, record a (ok), record b (unreachable)
    first = rig.run(Settle(ADMIN), both(REVERSALS, faults_on(n + 6, what=UNREACHABLE)))
    assert first.status is Status.NO_ANSWER
    assert first.screen[-2:] == (
        "BATCH UPLOAD INTERRUPTED: NO VALID ANSWER",
        "SETTLE AGAIN TO FINISH IT",
    )
    assert sent_mtis(rig, n) == ["0400", "0401", "0401", "0500", "0320", "0320"]
    assert rig.journal.batch(1).state is BatchState.SETTLING
    assert rig.journal.batch(1).uploaded == 1
    assert [t.uploaded for t in rig.journal.txns(1)] == [True, False, False, False]
    assert rig.run(Sale(CARD, 100)).status is Status.REFUSED

    n = len(rig.sends)
    second = rig.run(Settle(ADMIN), REVERSALS)
    assert second.status is Status.APPROVED
    assert sent_mtis(rig, n) == ["0401", "0401", "0401", "0500", "0320", "0320", "0320"]
    messages = sent(rig, n)
    assert [m.get(11) for m in messages[4:6]] == [f"{b:06d}", f"{c:06d}"]
    assert messages[6].get(48) == "0003"
    assert [u["stan"] for u in uploads(rig.switch, TERMINAL, 1)] == [
        f"{a:06d}",
        f"{b:06d}",
        f"{c:06d}",
    ]
    assert rig.journal.batch(1).uploaded == 3
    assert rig.journal.batch(1).state is BatchState.SETTLED
    assert "BATCH UPLOADED (3 RECORDS)" in second.printout[0]


def test_an_interrupted_closing_message_resends_only_the_closing(rig: Rig) -> None:
    a = sale(rig, 1000)
    sale(rig, 4000, faults_on(len(rig.sends) + 1, what=LOSE_ANSWER))
    n = len(rig.sends)
    # reversal x3, 0500, record a (ok), closing (answer lost)
    first = rig.run(Settle(ADMIN), both(REVERSALS, faults_on(n + 6, what=LOSE_ANSWER)))
    assert first.status is Status.NO_ANSWER
    n = len(rig.sends)
    second = rig.run(Settle(ADMIN), REVERSALS)
    assert second.status is Status.APPROVED
    assert sent_mtis(rig, n) == ["0401", "0401", "0401", "0500", "0320"]
    closing = sent(rig, n)[4]
    assert closing.get(60) == "00000001207" and closing.get(48) == "0001"
    assert [u["stan"] for u in uploads(rig.switch, TERMINAL, 1)] == [f"{a:06d}"]
