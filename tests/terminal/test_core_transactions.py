"""Void, refund, pre-authorisation and completion, balance, PIN, amounts, reprint and detail
list: the terminal core against the real switch core, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtally.terminal import (
    Balance,
    Card,
    Command,
    Complete,
    Detail,
    PreAuth,
    Refund,
    Reprint,
    Sale,
    Settle,
    SignOn,
    Status,
    TxnState,
    Void,
)
from cardtally.wire import TxnKind
from tests.switch.support import CARD, pan
from tests.terminal.support import (
    ADMIN,
    PIN_CARD,
    UNREACHABLE,
    Rig,
    build,
    faults_on,
    sent,
    sent_mtis,
)

OTHER_CARD = Card(pan("622588000000002"), expiry="2901")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    built = build(tmp_path)
    assert built.run(SignOn()).status is Status.APPROVED
    return built


def approved(rig: Rig, command: Command) -> tuple[int, str]:
    """Run ``command``, which must be approved; its voucher (STAN) and RRN."""
    outcome = rig.run(command)
    assert outcome.status is Status.APPROVED, outcome.screen
    assert outcome.txn is not None and outcome.txn.rrn is not None
    return outcome.txn.stan, outcome.txn.rrn


def refused_without_send(rig: Rig, command: Command) -> tuple[str, ...]:
    before = len(rig.sends)
    outcome = rig.run(command)
    assert outcome.status is Status.REFUSED, outcome.screen
    assert len(rig.sends) == before, "a refused command sends nothing"
    return outcome.screen


# -- void -----------------------------------------------------------------------------------------


def test_void_marks_the_sale_voided_and_prints_a_negative_amount(rig: Rig) -> None:
    stan, rrn = approved(rig, Sale(CARD, 1234))
    sale_txn = rig.journal.txn_by_voucher(1, stan)
    assert sale_txn is not None and sale_txn.host_at is not None
    outcome = rig.run(Void(stan, ADMIN))
    assert outcome.status is Status.APPROVED
    request = sent(rig)[-1]
    assert (request.mti, request.get(3), request.get(4)) == ("0200", "200000", "000000001234")
    assert request.get(37) == rrn and request.get(38) == "123456"
    mmdd = sale_txn.host_at[5:7] + sale_txn.host_at[8:10]
    assert request.get(61) == f"000001{stan:06d}{mmdd}"
    assert request.get(60) == "23000001000"
    assert rig.journal.txn(sale_txn.id).voided
    assert outcome.txn is not None and outcome.txn.kind is TxnKind.VOID
    assert outcome.txn.original_stan == stan
    merchant, cardholder = outcome.printout
    for slip in (merchant, cardholder):
        assert "TXN TYPE: VOID" in slip
        assert "AMOUNT: CNY -12.34" in slip
        assert f"ORIG VOUCHER: {stan:06d}" in slip


def test_void_with_a_wrong_admin_password_is_refused_before_any_send(rig: Rig) -> None:
    stan, _ = approved(rig, Sale(CARD, 1234))
    screen = refused_without_send(rig, Void(stan, "000000"))
    assert screen == ("WRONG ADMINISTRATOR PASSWORD (1 OF 3)",)
    assert not rig.journal.txn_by_voucher(1, stan).voided  # type: ignore[union-attr]


def test_a_voided_sale_cannot_be_voided_again(rig: Rig) -> None:
    stan, _ = approved(rig, Sale(CARD, 1234))
    approved(rig, Void(stan, ADMIN))
    screen = refused_without_send(rig, Void(stan, ADMIN))
    assert screen == (f"VOUCHER {stan:06d} IS ALREADY VOIDED",)


def test_void_with_another_card_is_refused(rig: Rig) -> None:
    stan, _ = approved(rig, Sale(CARD, 1234))
    screen = refused_without_send(rig, Void(stan, ADMIN, card=OTHER_CARD))
    assert screen == ("THIS IS NOT THE CARD OF THE SALE",)


def test_void_with_the_sale_card_goes(rig: Rig) -> None:
    stan, _ = approved(rig, Sale(CARD, 1234))
    outcome = rig.run(Void(stan, ADMIN, card=CARD))
    assert outcome.status is Status.APPROVED
    assert sent(rig)[-1].get(2) == CARD.pan.reveal()


@pytest.mark.parametrize("kind", ["void", "refund"])
def test_a_card_with_a_pin_on_void_or_refund_neither_crashes_nor_wedges_the_core(
    rig: Rig, kind: str
) -> None:
    stan, rrn = approved(rig, Sale(PIN_CARD, 1234))
    command = (
        Void(stan, ADMIN, card=PIN_CARD) if kind == "void" else Refund(PIN_CARD, rrn, 100, ADMIN)
    )
    outcome = rig.run(command)
    assert outcome.status in (Status.APPROVED, Status.REFUSED)
    assert rig.run(Balance(CARD)).status is Status.APPROVED


def test_void_of_a_sale_of_a_settled_batch_is_refused(rig: Rig) -> None:
    stan, _ = approved(rig, Sale(CARD, 1234))
    assert rig.run(Settle(ADMIN)).status is Status.APPROVED
    screen = refused_without_send(rig, Void(stan, ADMIN))
    assert screen == (
        f"NO APPROVED SALE WITH VOUCHER {stan:06d} IN BATCH 000002: "
        "A VOID IS FOR THE CURRENT BATCH ONLY",
    )


def test_void_of_a_declined_sale_or_a_preauth_is_refused(rig: Rig) -> None:
    rig.issuer.code = "05"
    declined = rig.run(Sale(CARD, 1234))
    assert declined.status is Status.DECLINED and declined.txn is not None
    rig.issuer.code = "00"
    hold, _ = approved(rig, PreAuth(CARD, 5000))
    for voucher in (declined.txn.stan, hold, 999):
        screen = refused_without_send(rig, Void(voucher, ADMIN))
        assert screen[0].startswith(f"NO APPROVED SALE WITH VOUCHER {voucher:06d}")


# -- refund ---------------------------------------------------------------------------------------


def test_refund_by_rrn_is_a_0220_with_the_original_rrn(rig: Rig) -> None:
    _, rrn = approved(rig, Sale(CARD, 5000))
    outcome = rig.run(Refund(CARD, rrn, 1500, ADMIN))
    assert outcome.status is Status.APPROVED
    request = sent(rig)[-1]
    assert (request.mti, request.get(3), request.get(4)) == ("0220", "200000", "000000001500")
    assert request.get(37) == rrn
    assert request.get(60) == "25000001000"
    assert outcome.txn is not None and outcome.txn.original_rrn == rrn
    assert "AMOUNT: CNY -15.00" in outcome.printout[0]
    assert f"ORIG REF NO: {rrn}" in outcome.printout[0]


def test_refund_needs_the_admin_password(rig: Rig) -> None:
    _, rrn = approved(rig, Sale(CARD, 5000))
    screen = refused_without_send(rig, Refund(CARD, rrn, 1500, "999999"))
    assert screen == ("WRONG ADMINISTRATOR PASSWORD (1 OF 3)",)


@pytest.mark.parametrize("rrn", ["12345", "0000000000012", "00000000001A", " 00000000001"])
def test_refund_rrn_must_be_12_digits(rig: Rig, rrn: str) -> None:
    screen = refused_without_send(rig, Refund(CARD, rrn, 1500, ADMIN))
    assert screen == (f"REF NO MUST BE 12 DIGITS, NOT {rrn!r}",)


def test_refund_of_an_rrn_the_switch_does_not_know_is_declined_25(rig: Rig) -> None:
    outcome = rig.run(Refund(CARD, "000000009999", 1500, ADMIN))
    assert outcome.status is Status.DECLINED and outcome.code == "25"
    assert "NOTHING REFUNDED" in outcome.printout[0]
    assert rig.journal.pending_reversal() is None


# -- pre-authorisation and completion ------------------------------------------------------------


def test_completion_defaults_to_the_hold_and_marks_it_completed(rig: Rig) -> None:
    held = rig.run(PreAuth(CARD, 10000))
    assert held.status is Status.APPROVED and held.txn is not None
    assert sent(rig)[-1].mti == "0100" and sent(rig)[-1].get(25) == "06"
    hold = held.txn
    outcome = rig.run(Complete(hold.stan))
    assert outcome.status is Status.APPROVED
    request = sent(rig)[-1]
    assert (request.mti, request.get(3), request.get(4)) == ("0200", "000000", "000000010000")
    assert request.get(60) == "20000001000" and request.get(25) == "06"
    assert request.get(38) == hold.auth_code == "123456"
    assert hold.host_at is not None
    assert request.get(61) == f"000001{hold.stan:06d}{hold.host_at[5:7]}{hold.host_at[8:10]}"
    assert rig.journal.txn(hold.id).completed
    assert outcome.txn is not None and outcome.txn.amount_minor == 10000
    assert "TXN TYPE: PRE-AUTH COMPLETION" in outcome.printout[0]


def test_completion_below_the_hold_takes_the_amount_given(rig: Rig) -> None:
    hold, _ = approved(rig, PreAuth(CARD, 10000))
    outcome = rig.run(Complete(hold, amount_minor=7550))
    assert outcome.status is Status.APPROVED
    assert sent(rig)[-1].get(4) == "000000007550"


def test_completion_above_the_hold_is_refused(rig: Rig) -> None:
    hold, _ = approved(rig, PreAuth(CARD, 10000))
    screen = refused_without_send(rig, Complete(hold, amount_minor=10001))
    assert screen == ("COMPLETION ABOVE THE HELD AMOUNT",)


def test_a_completed_hold_cannot_be_completed_again(rig: Rig) -> None:
    hold, _ = approved(rig, PreAuth(CARD, 10000))
    approved(rig, Complete(hold))
    screen = refused_without_send(rig, Complete(hold))
    assert screen == (f"PRE-AUTHORISATION {hold:06d} IS ALREADY COMPLETED",)


def test_completion_of_a_sale_voucher_is_refused(rig: Rig) -> None:
    stan, _ = approved(rig, Sale(CARD, 10000))
    screen = refused_without_send(rig, Complete(stan))
    assert screen == (f"NO APPROVED PRE-AUTHORISATION WITH VOUCHER {stan:06d} IN BATCH 000001",)


def test_completion_of_amount_zero_is_refused(rig: Rig) -> None:
    hold, _ = approved(rig, PreAuth(CARD, 10000))
    screen = refused_without_send(rig, Complete(hold, amount_minor=0))
    assert screen == ("AMOUNT MUST BE ABOVE ZERO AND FIT 12 DIGITS",)


# -- balance, PIN, amounts ------------------------------------------------------------------------


def test_balance_inquiry_shows_the_available_balance(rig: Rig) -> None:
    outcome = rig.run(Balance(CARD))
    assert outcome.status is Status.APPROVED
    assert outcome.screen == ("APPROVED", "AVAILABLE BALANCE: CNY 987.65")
    assert outcome.printout == ()
    assert outcome.txn is not None and outcome.txn.balance_minor == 98765
    request = sent(rig)[-1]
    assert request.get(3) == "310000" and 4 not in request


def test_a_debit_balance_shows_negative(rig: Rig) -> None:
    rig.issuer.balance = "1002156D000000000150"
    outcome = rig.run(Balance(CARD))
    assert "AVAILABLE BALANCE: CNY -1.50" in outcome.screen


def test_a_pin_card_sends_a_pin_block(rig: Rig) -> None:
    outcome = rig.run(Sale(PIN_CARD, 3850))
    assert outcome.status is Status.APPROVED
    request = sent(rig)[-1]
    assert request.get(22) == "021" and request.get(26) == "06"
    assert request.get(53) == "2600000000000000"
    block = request.get(52)
    assert block is not None and len(bytes.fromhex(block)) == 8
    assert "123456" not in block
    assert outcome.txn is not None and 52 not in outcome.txn.request  # never journalled


def test_a_card_without_pin_sends_no_pin_block(rig: Rig) -> None:
    approved(rig, Sale(CARD, 3850))
    request = sent(rig)[-1]
    assert request.get(22) == "022"
    assert 52 not in request and 53 not in request and 26 not in request


@pytest.mark.parametrize("pin", ["12a", "123", "1234567890123", ""])
def test_a_bad_pin_is_refused_without_any_send(rig: Rig, pin: str) -> None:
    card = Card(CARD.pan, CARD.expiry, pin=pin)
    assert refused_without_send(rig, Sale(card, 100)) == ("PIN MUST BE 4 TO 12 DIGITS",)
    assert rig.journal.txns(1) == []


def test_a_bad_pin_is_refused_on_balance_and_preauth_too(rig: Rig) -> None:
    card = Card(CARD.pan, CARD.expiry, pin="12a")
    for command in (Balance(card), PreAuth(card, 100)):
        assert refused_without_send(rig, command) == ("PIN MUST BE 4 TO 12 DIGITS",)
    assert rig.journal.txns(1) == []


@pytest.mark.parametrize("amount", [0, -1, 1_000_000_000_000])
def test_an_amount_out_of_range_is_refused_without_any_send(rig: Rig, amount: int) -> None:
    _, rrn = approved(rig, Sale(CARD, 100))
    for command in (
        Sale(CARD, amount),
        PreAuth(CARD, amount),
        Refund(CARD, rrn, amount, ADMIN),
    ):
        screen = refused_without_send(rig, command)
        assert screen == ("AMOUNT MUST BE ABOVE ZERO AND FIT 12 DIGITS",)


def test_a_transaction_before_sign_on_is_refused(tmp_path: Path) -> None:
    fresh = build(tmp_path)
    screen = refused_without_send(fresh, Sale(CARD, 100))
    assert screen == ("NOT SIGNED ON: SIGN ON FIRST",)


# -- reprint --------------------------------------------------------------------------------------


def test_reprint_by_voucher_is_the_receipt_marked_reprint(rig: Rig) -> None:
    first, _ = approved(rig, Sale(CARD, 1111))
    approved(rig, Sale(CARD, 2222))
    before = len(rig.sends)
    outcome = rig.run(Reprint(first))
    assert outcome.status is Status.DONE
    assert len(rig.sends) == before
    assert outcome.screen == (f"REPRINT OF VOUCHER {first:06d}",)
    merchant, cardholder = outcome.printout
    assert "*** REPRINT ***" in merchant and "MERCHANT COPY" in merchant
    assert "*** REPRINT ***" in cardholder and "CARDHOLDER COPY" in cardholder
    assert "AMOUNT: CNY 11.11" in merchant
    assert rig.journal.txn_by_voucher(1, first).printed == 2  # type: ignore[union-attr]


def test_reprint_last_is_the_newest_receipt(rig: Rig) -> None:
    approved(rig, Sale(CARD, 1111))
    last, _ = approved(rig, Sale(CARD, 2222))
    rig.run(Balance(CARD))  # no receipt
    outcome = rig.run(Reprint())
    assert outcome.status is Status.DONE
    assert outcome.txn is not None and outcome.txn.stan == last
    assert "AMOUNT: CNY 22.22" in outcome.printout[0]


def test_reprint_of_a_declined_voucher_is_refused(rig: Rig) -> None:
    rig.issuer.code = "51"
    declined = rig.run(Sale(CARD, 1111))
    assert declined.txn is not None
    screen = refused_without_send(rig, Reprint(declined.txn.stan))
    assert screen == (f"VOUCHER {declined.txn.stan:06d} HAS NO RECEIPT (declined)",)


def test_reprint_of_a_failed_or_unknown_voucher_is_refused(rig: Rig) -> None:
    failed = rig.run(Sale(CARD, 1111), faults_on(2, what=UNREACHABLE))
    assert failed.txn is not None
    screen = refused_without_send(rig, Reprint(failed.txn.stan))
    assert screen == (f"VOUCHER {failed.txn.stan:06d} HAS NO RECEIPT (failed)",)
    screen = refused_without_send(rig, Reprint(4242))
    assert screen == ("NO VOUCHER 004242 IN BATCH 000001",)


def test_reprint_last_with_no_receipt_is_refused(rig: Rig) -> None:
    rig.run(Balance(CARD))
    assert refused_without_send(rig, Reprint()) == ("NO RECEIPT TO REPRINT",)


def test_paper_out_journals_the_approval_and_prints_nothing(rig: Rig) -> None:
    outcome = rig.run(Sale(CARD, 1111, paper_out=True))
    assert outcome.status is Status.APPROVED
    assert outcome.printout == ()
    assert "PRINTER OUT OF PAPER: REPRINT THE LAST RECEIPT" in outcome.screen
    assert outcome.txn is not None and outcome.txn.state is TxnState.APPROVED
    assert rig.journal.txn(outcome.txn.id).printed == 0


# -- detail list ----------------------------------------------------------------------------------


def parse48(text: str) -> tuple[int, int, int, int]:
    return int(text[0:12]), int(text[12:15]), int(text[15:27]), int(text[27:30])


def test_detail_totals_equal_what_the_settlement_sends(rig: Rig) -> None:
    voided, _ = approved(rig, Sale(CARD, 1000))
    _, rrn = approved(rig, Sale(CARD, 2000))  # refunded in part; a voided sale cannot be
    approved(rig, Void(voided, ADMIN))
    approved(rig, Refund(CARD, rrn, 300, ADMIN))
    hold, _ = approved(rig, PreAuth(CARD, 7000))
    approved(rig, Complete(hold, amount_minor=6000))
    rig.issuer.code = "51"
    assert rig.run(Sale(CARD, 40000)).status is Status.DECLINED
    rig.issuer.code = "00"
    rig.run(Balance(CARD))
    detail = rig.run(Detail())
    assert detail.status is Status.DONE
    totals = detail.data["totals_field48"]
    # debits: two sales (the voided one still counts) and the completion; credits: void, refund
    assert parse48(totals) == (1000 + 2000 + 6000, 3, 1000 + 300, 2)
    listing = detail.printout[0]
    assert "DEBITS     3                   CNY 90.00" in listing
    assert "HOLD, NOT IN TOTALS" in listing and "VOIDED" in listing
    assert "CNY 400.00" not in listing  # the declined sale is not listed
    before = len(rig.sends)
    assert rig.run(Settle(ADMIN)).status is Status.APPROVED
    settlement = next(m for m in sent(rig, before) if m.mti == "0500")
    assert settlement.get(48) == totals
    assert sent_mtis(rig, before) == ["0500"]  # balanced: the switch counted the same


def test_detail_of_an_older_batch(rig: Rig) -> None:
    approved(rig, Sale(CARD, 1000))
    rig.run(Settle(ADMIN))
    approved(rig, Sale(CARD, 2500))
    old = rig.run(Detail(1))
    new = rig.run(Detail())
    assert old.data == {"batch": 1, "totals_field48": "0000000010000010000000000000000"}
    assert new.data == {"batch": 2, "totals_field48": "0000000025000010000000000000000"}
    assert "BATCH NO: 000001" in old.printout[0]
