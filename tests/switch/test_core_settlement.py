"""SwitchCore: batch settlement (0500) and batch upload (0320)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardtally.switch import Answer, BatchTotals, Forward, TerminalAnswer, TxnState, rrn_of
from cardtally.switch._batch import totals_of
from cardtally.terminal import balance_inquiry, refund, reversal_of, sale, settlement, void
from cardtally.wire import Message
from tests.switch.support import (
    CARD,
    NO_ROUTE_CARD,
    NOW_MS,
    OTHER_TERMINAL,
    TERMINAL,
    Device,
    SwitchRig,
    build_rig,
    decoded,
    issuer_answer,
    mac_ok,
    snapshot,
    upload_closing,
    upload_record,
    uploads,
)


@pytest.fixture
def rig(db_url: str) -> Iterator[SwitchRig]:
    opened = build_rig(db_url)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def device(rig: SwitchRig) -> Device:
    signed = rig.devices[TERMINAL]
    rig.sign_on(signed)
    return signed


def _sold(rig: SwitchRig, device: Device, amount: int, code: str = "00") -> tuple[Message, Message]:
    message = sale(device.who, device.next_stan(), device.batch_no, card=CARD, amount_minor=amount)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    answer = rig.issuer(issuer_answer(forward.body, code, f38="123456"))
    assert isinstance(answer, TerminalAnswer)
    return message, decoded(answer.body)


def _a_day_of_business(rig: SwitchRig, device: Device) -> dict[str, tuple[Message, Message]]:
    """Sales approved, declined, voided, reversed and refunded, and a balance inquiry."""
    done = {
        "kept": _sold(rig, device, 1_000),
        "voided": _sold(rig, device, 2_000),
        "declined": _sold(rig, device, 4_000, "51"),
        "reversed": _sold(rig, device, 8_000),
        "refunded": _sold(rig, device, 16_000),
    }
    voided, voided_answer = done["voided"]
    void_message = void(
        device.who,
        device.next_stan(),
        device.batch_no,
        card=CARD,
        original=voided,
        original_answer=voided_answer,
    )
    forward = rig.terminal(device.raw(void_message))
    assert isinstance(forward, Forward)
    assert rig.issuer(issuer_answer(forward.body, "00")).code == "00"
    assert rig.terminal(device.raw(reversal_of(done["reversed"][0], "98"))).code == "00"
    refund_message = refund(
        device.who,
        device.next_stan(),
        device.batch_no,
        card=CARD,
        original_rrn=done["refunded"][1].fields[37],
        amount_minor=500,
    )
    forward = rig.terminal(device.raw(refund_message))
    assert isinstance(forward, Forward)
    assert rig.issuer(issuer_answer(forward.body, "00")).code == "00"
    inquiry = balance_inquiry(device.who, device.next_stan(), device.batch_no, card=CARD)
    forward = rig.terminal(device.raw(inquiry))
    assert isinstance(forward, Forward)
    rig.issuer(issuer_answer(forward.body, "00", f54="1002156C000000098765"))
    refused = sale(device.who, device.next_stan(), 1, card=NO_ROUTE_CARD, amount_minor=32_000)
    assert rig.terminal(device.raw(refused)).code == "14"
    return done


#: What _a_day_of_business leaves in effect: sales 1000 + 2000 + 16000 (the declined and the
#: reversed ones do not count; the voided one does, and its void is a credit), credits: the
#: void (2000) and the refund (500).
EXPECTED = BatchTotals(19_000, 3, 2_500, 2)


def _settle(rig: SwitchRig, device: Device, field48: str, stan: int | None = None) -> Answer:
    message = settlement(device.who, device.next_stan() if stan is None else stan, 1, field48)
    answer = rig.terminal(device.raw(message), NOW_MS + 3_600_000)
    assert isinstance(answer, Answer)
    return answer


def test_the_switch_totals_count_voids_as_credits_and_skip_the_undone(
    rig: SwitchRig, device: Device
) -> None:
    _a_day_of_business(rig, device)
    assert totals_of(rig.run(lambda s: s.batch_txns(TERMINAL, 1))) == EXPECTED
    assert EXPECTED.field48("0") == "000000019000003000000002500002" + "0"


def test_matching_totals_are_balanced_and_close_the_batch(rig: SwitchRig, device: Device) -> None:
    _a_day_of_business(rig, device)
    totals = EXPECTED.field48("0")
    answer = _settle(rig, device, totals)
    assert answer.code == "00"
    response = decoded(answer.body)
    assert response.mti == "0510"
    assert response.response_code == "00"
    assert response.fields[48] == totals[:30] + "1"
    assert response.fields[37] == rrn_of(0)
    assert len(response.fields[15]) == 4
    assert response.fields[60] == "00000001201"
    assert mac_ok(device, answer.body)
    closed = rig.run(lambda s: s.batch(TERMINAL, 1))
    assert closed is not None
    assert closed.result == "balanced"
    assert closed.terminal_totals == closed.switch_totals == totals[:30]
    terminal = rig.run(lambda s: s.terminal(TERMINAL))
    assert terminal is not None and terminal.batch_no == 2
    other = rig.run(lambda s: s.terminal(OTHER_TERMINAL))
    assert other is not None and other.batch_no == 1
    assert rig.sign_on(device).fields[60] == "00000002003"  # the next sign-on says batch 2


def test_totals_of_an_empty_batch_balance(rig: SwitchRig, device: Device) -> None:
    answer = _settle(rig, device, "0" * 31)
    assert decoded(answer.body).fields[48] == "0" * 30 + "1"


def test_totals_without_the_result_digit_are_read_as_totals(rig: SwitchRig, device: Device) -> None:
    _a_day_of_business(rig, device)
    answer = _settle(rig, device, EXPECTED.field48(""))
    assert answer.code == "00"
    assert decoded(answer.body).fields[48] == EXPECTED.field48("1")
    closed = rig.run(lambda s: s.batch(TERMINAL, 1))
    assert closed is not None and closed.result == "balanced"


def test_wrong_totals_are_not_balanced_and_still_close_the_batch(
    rig: SwitchRig, device: Device
) -> None:
    _a_day_of_business(rig, device)
    claimed = BatchTotals(19_000, 3, 2_000, 1).field48("0")  # forgot the refund
    answer = _settle(rig, device, claimed)
    assert answer.code == "00"
    assert decoded(answer.body).fields[48] == claimed[:30] + "2"
    closed = rig.run(lambda s: s.batch(TERMINAL, 1))
    assert closed is not None
    assert closed.result == "not_balanced"
    assert closed.terminal_totals == claimed[:30]
    assert closed.switch_totals == EXPECTED.field48("")
    terminal = rig.run(lambda s: s.terminal(TERMINAL))
    assert terminal is not None and terminal.batch_no == 2


def test_a_repeated_settlement_gets_the_stored_answer(rig: SwitchRig, device: Device) -> None:
    _a_day_of_business(rig, device)
    first = _settle(rig, device, EXPECTED.field48("0"), stan=500)
    before = snapshot(rig)
    message = settlement(device.who, 500, 1, EXPECTED.field48("0"))
    for mti in ("0500", "0501"):
        again = rig.terminal(device.raw(message.with_fields({}, mti)), NOW_MS + 3_700_000)
        assert isinstance(again, Answer)
        assert again.outcome == "duplicate"
        assert again.body == first.body
    assert snapshot(rig) == before


def test_settling_a_closed_batch_again_gives_the_same_result(
    rig: SwitchRig, device: Device
) -> None:
    _a_day_of_business(rig, device)
    wrong = BatchTotals(1, 1, 0, 0).field48("0")
    first = _settle(rig, device, wrong)
    assert decoded(first.body).fields[48][-1] == "2"
    # A new STAN, now with the right totals: the batch was closed as it was.
    again = _settle(rig, device, EXPECTED.field48("0"))
    assert again.code == "00"
    assert decoded(again.body).fields[48] == EXPECTED.field48("2")
    closed = rig.run(lambda s: s.batch(TERMINAL, 1))
    assert closed is not None and closed.result == "not_balanced"
    assert closed.terminal_totals == wrong[:30]
    terminal = rig.run(lambda s: s.terminal(TERMINAL))
    assert terminal is not None and terminal.batch_no == 2


@pytest.mark.parametrize("field48", ["1", "0" * 29, "0" * 32, "0" * 45])
def test_a_malformed_field_48_is_30(rig: SwitchRig, device: Device, field48: str) -> None:
    before = snapshot(rig)
    answer = _settle(rig, device, field48)
    assert answer.code == "30"
    assert decoded(answer.body).mti == "0510"
    assert snapshot(rig) == before


def test_the_batch_after_settlement_settles_on_its_own(rig: SwitchRig, device: Device) -> None:
    _sold(rig, device, 1_000)
    _settle(rig, device, BatchTotals(1_000, 1, 0, 0).field48("0"))
    device.batch_no = 2
    _sold(rig, device, 3_000)
    message = settlement(
        device.who, device.next_stan(), 2, BatchTotals(3_000, 1, 0, 0).field48("0")
    )
    answer = rig.terminal(device.raw(message))
    assert decoded(answer.body).fields[48][-1] == "1"
    terminal = rig.run(lambda s: s.terminal(TERMINAL))
    assert terminal is not None and terminal.batch_no == 3


# -- batch upload -----------------------------------------------------------------------------


def test_an_upload_records_what_differs_and_the_closing_counts(
    rig: SwitchRig, device: Device
) -> None:
    done = _a_day_of_business(rig, device)
    _settle(rig, device, BatchTotals(1, 1, 0, 0).field48("0"))
    kept, kept_answer = done["kept"]
    declined, declined_answer = done["declined"]
    records = [
        upload_record(device.who, 1, pan=CARD.pan, txn=kept, answer=kept_answer),
        upload_record(
            device.who,
            1,
            pan=CARD.pan,
            txn=kept.with_fields({4: "000000001500", 11: done["voided"][0].fields[11]}),
            answer=done["voided"][1],
        ),
        upload_record(device.who, 1, pan=CARD.pan, txn=declined, answer=declined_answer),
        upload_record(
            device.who, 1, pan=CARD.pan, txn=kept.with_fields({11: "000099"}), answer=kept_answer
        ),
    ]
    for record in records:
        answer = rig.terminal(device.raw(record), NOW_MS + 3_700_000)
        assert isinstance(answer, Answer)
        assert answer.code == "00"
        response = decoded(answer.body)
        assert response.mti == "0330"
        assert response.fields[37] == record.fields[37]
        for number in (3, 4, 11, 41, 42, 49, 60):
            assert response.fields[number] == record.fields[number]
        assert mac_ok(device, answer.body)
    got = {row["stan"]: row for row in uploads(rig, TERMINAL, 1)}
    assert got[kept.fields[11]]["difference"] == ""
    assert got[done["voided"][0].fields[11]]["difference"] == "amount: terminal 1500, switch 2000"
    assert got[done["voided"][0].fields[11]]["amount_minor"] == 1_500
    assert got[declined.fields[11]]["difference"] == "switch has it declined"
    assert got["000099"]["difference"] == "unknown at the switch"
    assert len(got) == 4
    closing = rig.terminal(device.raw(upload_closing(device.who, device.next_stan(), 1, 4)))
    assert isinstance(closing, Answer)
    assert closing.code == "00"
    response = decoded(closing.body)
    assert response.mti == "0330"
    assert response.fields[48] == "0004"
    assert mac_ok(device, closing.body)


def test_an_uploaded_record_sent_twice_is_recorded_once(rig: SwitchRig, device: Device) -> None:
    kept, kept_answer = _sold(rig, device, 1_000)
    _settle(rig, device, "0" * 31)
    record = upload_record(device.who, 1, pan=CARD.pan, txn=kept, answer=kept_answer)
    first = rig.terminal(device.raw(record))
    again = rig.terminal(device.raw(record.with_fields({}, "0321")))
    assert isinstance(again, Answer) and again.outcome == "duplicate"
    assert again.body == first.body
    assert len(uploads(rig, TERMINAL, 1)) == 1


def test_an_upload_with_an_unknown_code_is_12(rig: SwitchRig, device: Device) -> None:
    message = upload_closing(device.who, 1, 1, 0).with_fields({60: "00000001999"})
    before = snapshot(rig)
    answer = rig.terminal(device.raw(message))
    assert isinstance(answer, Answer) and answer.code == "12"
    assert snapshot(rig) == before


def test_reversed_sales_are_not_in_the_totals_even_before_the_issuer_acks(
    rig: SwitchRig, device: Device
) -> None:
    sold, _ = _sold(rig, device, 5_000)
    rig.terminal(device.raw(reversal_of(sold, "98")))
    txns = rig.run(lambda s: s.batch_txns(TERMINAL, 1))
    assert [t.state for t in txns if t.stan == sold.fields[11] and t.kind.value == "sale"] == [
        TxnState.REVERSAL_PENDING
    ]
    assert totals_of(txns) == BatchTotals(0, 0, 0, 0)
