"""The reversal discipline of the terminal core (domain brief "Reversal", wire profile 6.5).

Each test drives the real switch core in process; faults decide, send by send, whether an
answer is lost, the switch unreachable, or the answer tampered with. Send numbers count every
send since the rig was built: the sign-on of the fixture is send 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtally.terminal import (
    AUTO_REVERSAL_FAILED,
    AUTO_REVERSAL_OK,
    REVERSAL_TRIES_MAX,
    Answer,
    Balance,
    Command,
    Complete,
    Done,
    NoAnswer,
    PendingReversal,
    PreAuth,
    Refund,
    Sale,
    Send,
    Settle,
    SignOn,
    Status,
    TerminalCore,
    TxnState,
    Void,
    Wait,
)
from cardtally.wire import Message
from tests.switch.support import CARD
from tests.terminal.support import (
    ADMIN,
    BAD_MAC,
    LOSE_ANSWER,
    PIN_CARD,
    UNREACHABLE,
    Fault,
    Rewrite,
    Rig,
    build,
    changed,
    faults_for,
    faults_on,
    journal_rows,
    rewrite_on,
    sent,
    sent_mtis,
    signed_by_terminal,
    switch_rows,
)

REVERSALS = ("0400", "0401")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    built = build(tmp_path)
    assert built.run(SignOn()).status is Status.APPROVED
    return built


def upcoming(rig: Rig, k: int = 1) -> int:
    """The number the ``k``-th next send will have."""
    return len(rig.sends) + k


def lost_sale(rig: Rig, amount: int = 5000, what: str = LOSE_ANSWER) -> Message:
    """A sale whose answer never arrives; returns the request as sent."""
    outcome = rig.run(Sale(CARD, amount), faults_on(upcoming(rig), what=what))
    assert outcome.status is Status.REVERSAL_PENDING, outcome.screen
    return sent(rig)[-1]


def switch_txn(rig: Rig, kind: str, stan: int) -> list[dict[str, object]]:
    return switch_rows(
        rig,
        "SELECT id, state, amount_minor FROM switch_txn WHERE kind = :kind AND stan = :stan",
        kind=kind,
        stan=f"{stan:06d}",
    )


# -- written before the send ---------------------------------------------------------------------


def test_reversal_record_is_committed_before_the_sale_goes_out(rig: Rig) -> None:
    seen: list[tuple[int, PendingReversal | None, TxnState | None]] = []

    def look(n: int, _body: bytes) -> None:
        pending = rig.journal.pending_reversal()
        state = None if pending is None else rig.journal.txn(pending.txn_id).state
        seen.append((n, pending, state))

    outcome = rig.run(Sale(CARD, 1234), look)
    assert outcome.status is Status.APPROVED
    [(n, pending, state)] = seen
    assert n == 2 and pending is not None
    assert (pending.stan, pending.sends, pending.reason) == (2, 0, "06")
    assert state is TxnState.SENDING
    assert rig.journal.pending_reversal() is None  # the approval cleared it


@pytest.mark.parametrize("kind", ["preauth", "refund", "void", "completion"])
def test_every_money_moving_request_has_its_record_before_the_send(rig: Rig, kind: str) -> None:
    sold = rig.run(Sale(CARD, 2000))
    held = rig.run(PreAuth(CARD, 9000))
    assert sold.txn is not None and held.txn is not None and sold.txn.rrn is not None
    commands: dict[str, Command] = {
        "preauth": PreAuth(CARD, 100),
        "refund": Refund(CARD, sold.txn.rrn, 100, ADMIN),
        "void": Void(sold.txn.stan, ADMIN),
        "completion": Complete(held.txn.stan),
    }
    pendings: list[object] = []

    def look(_n: int, _body: bytes) -> None:
        pendings.append(rig.journal.pending_reversal())

    outcome = rig.run(commands[kind], look)
    assert outcome.status is Status.APPROVED, outcome.screen
    assert len(pendings) == 1 and pendings[0] is not None
    assert outcome.txn is not None
    assert pendings[0].txn_id == outcome.txn.id  # type: ignore[attr-defined]


def test_balance_inquiry_writes_no_reversal_and_a_lost_answer_leaves_none(rig: Rig) -> None:
    seen: list[object] = []

    def lose(n: int, _body: bytes) -> str:
        seen.append(rig.journal.pending_reversal())
        return LOSE_ANSWER

    outcome = rig.run(Balance(CARD), lose)
    assert seen == [None]
    assert outcome.status is Status.NO_ANSWER
    assert outcome.txn is not None and outcome.txn.state is TxnState.NO_ANSWER
    assert rig.journal.pending_reversal() is None
    assert journal_rows(rig, "terminal_reversal") == []


# -- the reason -----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", [LOSE_ANSWER, UNREACHABLE])
def test_no_answer_gives_reason_98(rig: Rig, what: str) -> None:
    outcome = rig.run(Sale(CARD, 5000), faults_on(2, what=what))
    assert outcome.status is Status.REVERSAL_PENDING
    assert outcome.code == "98"
    assert outcome.printout == ()
    assert "DO NOT HAND OVER GOODS; NO RECEIPT" in outcome.screen
    assert outcome.txn is not None and outcome.txn.state is TxnState.FAILED
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.reason == "98" and pending.stan == 2
    rig.run(Balance(CARD))
    reversal = sent(rig)[2]
    assert (reversal.mti, reversal.get(39), reversal.get(11)) == ("0400", "98", "000002")


def test_answer_with_a_bad_mac_gives_reason_a0(rig: Rig) -> None:
    outcome = rig.run(Sale(CARD, 5000), faults_on(2, what=BAD_MAC))
    assert outcome.status is Status.REVERSAL_PENDING
    assert outcome.code == "A0"
    assert "(the answer's MAC does not verify)" in outcome.screen
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.reason == "A0"
    rig.run(Balance(CARD))
    assert sent(rig)[2].get(39) == "A0"


@pytest.mark.parametrize(
    ("number", "value"),
    [(4, "000000009999"), (3, "200000"), (41, "10300002"), (42, "898310048160002")],
)
def test_a_signed_answer_that_does_not_match_gives_reason_06(
    rig: Rig, number: int, value: str
) -> None:
    fault = rewrite_on(2, change=changed({number: value}, resign=rig))
    outcome = rig.run(Sale(CARD, 5000), fault)
    assert outcome.status is Status.REVERSAL_PENDING
    assert outcome.code == "06"
    assert f"(field {number} does not match)" in outcome.screen
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.reason == "06"
    rig.run(Balance(CARD))
    assert (sent(rig)[2].mti, sent(rig)[2].get(39)) == ("0400", "06")


def test_an_unreadable_answer_gives_reason_06(rig: Rig) -> None:
    outcome = rig.run(Sale(CARD, 5000), garbage_on(2))
    assert outcome.status is Status.REVERSAL_PENDING
    assert outcome.code == "06"
    assert any(line.startswith("(unreadable answer") for line in outcome.screen)


def garbage_on(send: int) -> Fault:
    return lambda n, _body: Rewrite(lambda _answer: b"\x99\x99") if n == send else None


def test_an_approval_without_a_mac_is_not_accepted(rig: Rig) -> None:
    outcome = rig.run(Sale(CARD, 5000), rewrite_on(2, change=changed({64: None})))
    assert outcome.status is Status.REVERSAL_PENDING
    assert outcome.code == "A0"
    assert "(an answer without a MAC)" in outcome.screen
    assert outcome.printout == ()
    assert outcome.txn is not None and outcome.txn.state is TxnState.FAILED
    assert outcome.txn.rrn is None and outcome.txn.auth_code is None
    assert rig.journal.pending_reversal() is not None


def test_a_decline_without_a_mac_does_not_clear_the_reversal(rig: Rig) -> None:
    """Wire profile 6: once keyed, every answer's MAC must verify. An unsigned "05" could
    stand in for an approval; trusting it would leave a one-sided debit."""
    rig.issuer.code = "05"
    outcome = rig.run(Sale(CARD, 5000), rewrite_on(2, change=changed({64: None})))
    assert switch_txn(rig, "sale", 2)[0]["state"] == "declined"
    assert outcome.status is Status.REVERSAL_PENDING and outcome.code == "A0"
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.reason == "A0"


# -- answers that are not ours --------------------------------------------------------------------


def test_an_answer_to_another_stan_makes_the_core_wait_for_its_own(rig: Rig) -> None:
    core = rig.core
    step = core.start(Sale(CARD, 700), rig.now_ms)
    assert isinstance(step, Send) and step.what == "0200 STAN 000002"
    answer = rig.host(step.body)
    other = changed({11: "000999"}, resign=rig)(answer)
    assert isinstance(core.on_event(Answer(other), rig.now_ms), Wait)
    assert rig.journal.txn_by_voucher(1, 2).state is TxnState.SENDING  # type: ignore[union-attr]
    done = core.on_event(Answer(answer), rig.now_ms)
    assert isinstance(done, Done)
    assert done.outcome.status is Status.APPROVED
    assert rig.journal.pending_reversal() is None


def test_a_late_reversal_answer_while_waiting_for_the_sale_is_not_ours(rig: Rig) -> None:
    core = rig.core
    step = core.start(Sale(CARD, 700), rig.now_ms)
    assert isinstance(step, Send)
    answer = rig.host(step.body)
    reversal = Message("0400", {3: "000000", 11: "000002", 41: "10300001", 42: "898310048160001"})
    late_0410 = signed_by_terminal(rig, reversal.response("00", {37: "000000000042"}))
    assert isinstance(core.on_event(Answer(late_0410), rig.now_ms), Wait)
    done = core.on_event(Answer(answer), rig.now_ms)
    assert isinstance(done, Done) and done.outcome.status is Status.APPROVED


def test_not_ours_then_the_deadline_gives_reason_98(rig: Rig) -> None:
    core = rig.core
    step = core.start(Sale(CARD, 700), rig.now_ms)
    assert isinstance(step, Send)
    other = changed({11: "000999"}, resign=rig)(rig.host(step.body))
    assert isinstance(core.on_event(Answer(other), rig.now_ms), Wait)
    done = core.on_event(NoAnswer("timeout"), rig.now_ms)
    assert isinstance(done, Done)
    assert done.outcome.status is Status.REVERSAL_PENDING and done.outcome.code == "98"
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.reason == "98"


# -- the pending reversal goes first --------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [Sale(CARD, 100), Balance(CARD), Settle(ADMIN), SignOn(), PreAuth(CARD, 100)],
    ids=["sale", "balance", "settle", "sign-on", "preauth"],
)
def test_the_pending_reversal_is_the_first_send_of_the_next_exchange(
    rig: Rig, command: Command
) -> None:
    original = lost_sale(rig)
    before = len(rig.sends)
    outcome = rig.run(command)
    assert outcome.status is Status.APPROVED, outcome.screen
    first = sent(rig, before)[0]
    assert first.mti == "0400"
    assert first.get(11) == original.get(11)
    assert first.get(4) == original.get(4)
    assert first.get(39) == "98"
    assert outcome.screen[0] == AUTO_REVERSAL_OK
    assert outcome.auto_reversal == "successful"
    assert len(rig.sends) > before + 1  # the command itself went after it


def test_the_reversal_copies_the_original_and_adds_reason_and_mac(rig: Rig) -> None:
    original = lost_sale(rig)
    rig.run(Balance(CARD))
    reversal = sent(rig)[2]
    for number in (2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 60):
        assert reversal.get(number) == original.get(number), number
    assert reversal.get(39) == "98"
    assert reversal.mac is not None
    assert 63 not in reversal and 52 not in reversal


def test_the_reversal_of_a_pin_sale_carries_no_pin_block(rig: Rig) -> None:
    outcome = rig.run(Sale(PIN_CARD, 5000), faults_on(2))
    assert outcome.status is Status.REVERSAL_PENDING
    assert 52 in sent(rig)[1]
    rig.run(Balance(CARD))
    reversal = sent(rig)[2]
    assert reversal.mti == "0400"
    assert reversal.get(22) == "021"
    assert 52 not in reversal and 53 not in reversal and 26 not in reversal


def test_repeats_of_the_reversal_are_0401_with_the_same_stan(rig: Rig) -> None:
    lost_sale(rig)
    before = len(rig.sends)
    outcome = rig.run(Balance(CARD), faults_on(before + 1, before + 2, what=UNREACHABLE))
    assert outcome.status is Status.APPROVED
    assert AUTO_REVERSAL_OK in outcome.screen
    assert sent_mtis(rig, before) == ["0400", "0401", "0401", "0200"]
    assert {m.get(11) for m in sent(rig, before)[:3]} == {"000002"}
    assert {m.get(39) for m in sent(rig, before)[:3]} == {"98"}
    cleared = journal_rows(rig, "terminal_reversal")[0]
    assert cleared["sends"] == 3 and cleared["cleared_code"] == "00"


def test_a_reversal_answer_with_a_bad_mac_is_sent_again(rig: Rig) -> None:
    lost_sale(rig)
    before = len(rig.sends)
    outcome = rig.run(Balance(CARD), faults_on(before + 1, what=BAD_MAC))
    assert AUTO_REVERSAL_OK in outcome.screen
    assert sent_mtis(rig, before) == ["0400", "0401", "0200"]


# -- three sends, then flagged, never deleted ----------------------------------------------------


def test_three_sends_per_exchange_then_flagged_and_a_sale_is_refused(rig: Rig) -> None:
    lost_sale(rig)
    before = len(rig.sends)
    outcome = rig.run(Sale(CARD, 100), faults_for(*REVERSALS))
    assert outcome.status is Status.REFUSED
    assert len(rig.sends) - before == REVERSAL_TRIES_MAX == 3
    assert sent_mtis(rig, before) == ["0400", "0401", "0401"]
    assert outcome.screen[0] == AUTO_REVERSAL_FAILED
    assert outcome.auto_reversal == "unsuccessful"
    assert "TRANSACTION NOT SENT: A REVERSAL IS PENDING" in outcome.screen
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.flagged and pending.sends == 3
    assert [t.stan for t in rig.journal.txns(1)] == [2]  # no new transaction journalled


@pytest.mark.parametrize("kind", ["preauth", "void", "refund", "completion"])
def test_other_money_moving_commands_are_refused_while_flagged(rig: Rig, kind: str) -> None:
    sold = rig.run(Sale(CARD, 2000))
    held = rig.run(PreAuth(CARD, 9000))
    assert sold.txn is not None and held.txn is not None and sold.txn.rrn is not None
    lost_sale(rig)
    commands: dict[str, Command] = {
        "preauth": PreAuth(CARD, 100),
        "void": Void(sold.txn.stan, ADMIN),
        "refund": Refund(CARD, sold.txn.rrn, 100, ADMIN),
        "completion": Complete(held.txn.stan),
    }
    before = len(rig.sends)
    outcome = rig.run(commands[kind], faults_for(*REVERSALS))
    assert outcome.status is Status.REFUSED
    assert sent_mtis(rig, before) == ["0400", "0401", "0401"]
    assert len(rig.journal.txns(1)) == 3


def test_a_balance_inquiry_still_goes_while_the_reversal_is_flagged(rig: Rig) -> None:
    lost_sale(rig)
    before = len(rig.sends)
    outcome = rig.run(Balance(CARD), faults_for(*REVERSALS))
    assert outcome.status is Status.APPROVED
    assert sent_mtis(rig, before) == ["0400", "0401", "0401", "0200"]
    assert sent(rig, before)[3].get(3) == "310000"
    assert outcome.screen[:1] == (AUTO_REVERSAL_FAILED,)
    assert "AVAILABLE BALANCE: CNY 987.65" in outcome.screen
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.flagged


def test_the_flagged_record_is_never_deleted_and_its_sends_keep_counting(rig: Rig) -> None:
    lost_sale(rig)
    first = rig.journal.pending_reversal()
    assert first is not None
    for exchange in range(1, 4):
        before = len(rig.sends)
        rig.run(Balance(CARD), faults_for(*REVERSALS))
        pending = rig.journal.pending_reversal()
        assert pending is not None and pending.id == first.id
        assert pending.flagged and pending.sends == 3 * exchange
        if exchange > 1:
            assert sent_mtis(rig, before)[:3] == ["0401", "0401", "0401"]
    rows = journal_rows(rig, "terminal_reversal")
    assert len(rows) == 1 and rows[0]["pending_slot"] == 1 and rows[0]["cleared_at_ms"] is None


def test_once_the_switch_answers_the_flagged_reversal_clears_and_stays_on_record(
    rig: Rig,
) -> None:
    lost_sale(rig)
    rig.run(Balance(CARD), faults_for(*REVERSALS))
    before = len(rig.sends)
    outcome = rig.run(Sale(CARD, 100))
    assert outcome.status is Status.APPROVED
    assert outcome.screen[:2] == (AUTO_REVERSAL_OK, "(VOUCHER 000002 REVERSED)")
    assert outcome.auto_reversal == "successful"
    assert sent_mtis(rig, before) == ["0401", "0200"]
    assert rig.journal.pending_reversal() is None
    rows = journal_rows(rig, "terminal_reversal")
    assert len(rows) == 2  # the cleared one and the new sale's, cleared by its approval
    cleared = rows[0]
    assert cleared["stan"] == 2 and cleared["cleared_code"] == "00"
    assert cleared["pending_slot"] is None and cleared["cleared_at_ms"] is not None
    assert cleared["sends"] == 4 and cleared["flagged"]


def test_the_switch_undoes_the_sale_it_approved(rig: Rig) -> None:
    lost_sale(rig)
    assert switch_txn(rig, "sale", 2)[0]["state"] == "approved"
    rig.run(Balance(CARD))
    sale_row = switch_txn(rig, "sale", 2)[0]
    assert sale_row["state"] == "reversal_pending"
    advices = switch_rows(rig, "SELECT txn_id FROM switch_advice")
    assert advices == [{"txn_id": sale_row["id"]}]


def test_a_reversal_of_a_sale_that_never_reached_the_switch_clears_with_nothing_to_do(
    rig: Rig,
) -> None:
    lost_sale(rig, what=UNREACHABLE)
    assert switch_txn(rig, "sale", 2) == []
    outcome = rig.run(Balance(CARD))
    assert AUTO_REVERSAL_OK in outcome.screen
    assert switch_rows(rig, "SELECT id FROM switch_advice") == []
    assert journal_rows(rig, "terminal_reversal")[0]["cleared_code"] == "00"


# -- a decline is an answer -----------------------------------------------------------------------


def test_a_decline_clears_the_reversal_and_prints_a_decline_slip(rig: Rig) -> None:
    rig.issuer.code = "51"
    outcome = rig.run(Sale(CARD, 5000))
    assert outcome.status is Status.DECLINED
    assert outcome.code == "51"
    assert outcome.screen == ("DECLINED 51: INSUFFICIENT FUNDS",)
    assert len(outcome.printout) == 1
    slip = outcome.printout[0]
    assert "TRANSACTION DECLINED" in slip and "CARD NOT CHARGED - NO MONEY TAKEN" in slip
    assert "POS SALES SLIP" not in slip
    assert outcome.txn is not None and outcome.txn.state is TxnState.DECLINED
    assert rig.journal.pending_reversal() is None
    row = journal_rows(rig, "terminal_reversal")[0]
    assert row["cleared_code"] == "51" and row["pending_slot"] is None
    rig.issuer.code = "00"
    before = len(rig.sends)
    rig.run(Balance(CARD))
    assert sent_mtis(rig, before) == ["0200"]  # nothing to reverse


# -- a process killed between the send and the answer ----------------------------------------------


def crash_after_send(rig: Rig, command: Command, *, delivered: bool) -> Send:
    """Start ``command``, let its request reach the switch (or not), then lose the process."""
    step = rig.core.start(command, rig.now_ms)
    assert isinstance(step, Send)
    rig.sends.append(step.body)
    if delivered:
        rig.host(step.body)
    rig.core = TerminalCore(rig.journal, timeout_ms=1000)  # the old core is gone
    return step


def test_a_killed_sale_is_failed_on_restart_and_reversed_first(rig: Rig) -> None:
    crash_after_send(rig, Sale(CARD, 8000), delivered=True)
    stranded = rig.journal.txn_by_voucher(1, 2)
    assert stranded is not None and stranded.state is TxnState.SENDING
    assert switch_txn(rig, "sale", 2)[0]["state"] == "approved"
    before = len(rig.sends)
    outcome = rig.run(Balance(CARD))
    assert outcome.status is Status.APPROVED
    assert outcome.screen[:2] == (
        "VOUCHER 000002: NO ANSWER BEFORE THE TERMINAL STOPPED",
        AUTO_REVERSAL_OK,
    )
    assert sent_mtis(rig, before) == ["0400", "0200"]
    reversal = sent(rig, before)[0]
    assert (reversal.get(11), reversal.get(39), reversal.get(4)) == (
        "000002",
        "06",
        "000000008000",
    )
    assert rig.journal.txn(stranded.id).state is TxnState.FAILED
    sale_row = switch_txn(rig, "sale", 2)[0]
    assert sale_row["state"] == "reversal_pending"
    assert switch_rows(rig, "SELECT txn_id FROM switch_advice") == [{"txn_id": sale_row["id"]}]


def test_a_killed_sale_that_never_left_is_reversed_too(rig: Rig) -> None:
    crash_after_send(rig, Sale(CARD, 8000), delivered=False)
    before = len(rig.sends)
    outcome = rig.run(Sale(CARD, 100))
    assert outcome.status is Status.APPROVED
    assert sent_mtis(rig, before) == ["0400", "0200"]
    assert sent(rig, before)[1].get(11) == "000003"  # the killed sale kept its STAN
    assert switch_txn(rig, "sale", 2) == []
    assert rig.journal.pending_reversal() is None


def test_recovery_keeps_the_reversal_for_the_next_exchange_when_the_switch_is_down(
    rig: Rig,
) -> None:
    crash_after_send(rig, Sale(CARD, 8000), delivered=True)
    outcome = rig.run(Sale(CARD, 100), faults_for(*REVERSALS))
    assert outcome.status is Status.REFUSED
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.reason == "06" and pending.flagged
