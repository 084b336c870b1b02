"""SwitchCore: voids (same terminal, same batch) and refunds (up to the sale's amount)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardtally.switch import Answer, Forward, TerminalAnswer, Txn, TxnKind, TxnState, rrn_of
from cardtally.terminal import balance_inquiry, refund, reversal_of, sale, void
from cardtally.wire import Message
from tests.switch.support import (
    CARD,
    OTHER_TERMINAL,
    TERMINAL,
    Device,
    SwitchRig,
    build_rig,
    decoded,
    issuer_answer,
    mac_ok,
)

AMOUNT = 10_000


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


@pytest.fixture
def other(rig: SwitchRig) -> Device:
    signed = rig.devices[OTHER_TERMINAL]
    rig.sign_on(signed)
    return signed


def _txn(rig: SwitchRig, txn_id: int) -> Txn:
    txn = rig.run(lambda s: s.txn(txn_id))
    assert txn is not None
    return txn


def _sold(
    rig: SwitchRig, device: Device, code: str = "00", amount: int = AMOUNT
) -> tuple[Message, Message, int]:
    """A sale answered ``code``: the request, the terminal's answer, and its txn id."""
    message = sale(device.who, device.next_stan(), device.batch_no, card=CARD, amount_minor=amount)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    answer = rig.issuer(issuer_answer(forward.body, code, f38="777777"))
    assert isinstance(answer, TerminalAnswer)
    return message, decoded(answer.body), forward.txn_id


def _void_of(device: Device, original: Message, answer: Message) -> Message:
    return void(
        device.who,
        device.next_stan(),
        device.batch_no,
        card=CARD,
        original=original,
        original_answer=answer,
    )


def _refund_of(device: Device, rrn: str, amount: int) -> Message:
    return refund(
        device.who,
        device.next_stan(),
        device.batch_no,
        card=CARD,
        original_rrn=rrn,
        amount_minor=amount,
    )


def _refused(rig: SwitchRig, device: Device, message: Message, code: str) -> Txn:
    answer = rig.terminal(device.raw(message))
    assert isinstance(answer, Answer), answer
    assert answer.code == code
    response = decoded(answer.body)
    assert response.response_code == code
    assert response.mti == message.mti[:2] + str(int(message.mti[2]) + 1) + "0"
    assert mac_ok(device, answer.body)
    [txn] = rig.run(lambda s: s.txns_in_state([TxnState.REFUSED]))
    assert txn.response_code == code
    assert rig.run(lambda s: s.response(txn.request_key)) is not None
    assert response.fields[37] == rrn_of(txn.id)
    return txn


# -- voids -------------------------------------------------------------------------------------


def test_a_void_goes_to_the_issuer_with_the_sales_rrn(rig: SwitchRig, device: Device) -> None:
    sold, answer, sale_id = _sold(rig, device)
    message = _void_of(device, sold, answer)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    sent = decoded(forward.body)
    assert sent.mti == "0200"
    assert sent.fields[3] == "200000"
    assert sent.fields[4] == sold.fields[4]
    assert sent.fields[37] == rrn_of(sale_id)
    assert sent.fields[38] == "777777"
    assert sent.fields[61] == message.fields[61]
    assert sent.fields[11] == f"{forward.txn_id:06d}"
    void_txn = _txn(rig, forward.txn_id)
    assert void_txn.kind is TxnKind.VOID
    assert void_txn.original_id == sale_id
    assert void_txn.forwarded_rrn == rrn_of(sale_id)
    result = rig.issuer(issuer_answer(forward.body, "00", f38="888888"))
    assert isinstance(result, TerminalAnswer) and result.code == "00"
    relayed = decoded(result.body)
    assert relayed.fields[37] == rrn_of(forward.txn_id)  # the void's own RRN
    assert relayed.fields[38] == "888888"
    assert mac_ok(device, result.body)
    assert _txn(rig, forward.txn_id).state is TxnState.APPROVED
    assert _txn(rig, sale_id).state is TxnState.APPROVED  # settled as debit + credit


def test_a_void_from_another_terminal_is_12(rig: SwitchRig, device: Device, other: Device) -> None:
    sold, answer, sale_id = _sold(rig, device)
    txn = _refused(rig, other, _void_of(other, sold, answer), "12")
    assert txn.kind is TxnKind.VOID and txn.original_id == sale_id


def test_a_void_in_another_batch_is_12(rig: SwitchRig, device: Device) -> None:
    sold, answer, _ = _sold(rig, device)
    device.batch_no = 2
    _refused(rig, device, _void_of(device, sold, answer), "12")


def test_a_void_of_another_amount_is_13(rig: SwitchRig, device: Device) -> None:
    sold, answer, _ = _sold(rig, device)
    message = _void_of(device, sold, answer).with_fields({4: f"{AMOUNT - 1:012d}"})
    _refused(rig, device, message, "13")


@pytest.mark.parametrize("rrn", ["000000009999", "ABCDEFGHIJKL", "000000000000"])
def test_a_void_of_an_unknown_rrn_is_25(rig: SwitchRig, device: Device, rrn: str) -> None:
    sold, answer, _ = _sold(rig, device)
    message = _void_of(device, sold, answer).with_fields({37: rrn})
    txn = _refused(rig, device, message, "25")
    assert txn.original_id is None


def test_a_void_naming_a_balance_inquiry_is_25(rig: SwitchRig, device: Device) -> None:
    inquiry = balance_inquiry(device.who, device.next_stan(), 1, card=CARD)
    forward = rig.terminal(device.raw(inquiry))
    assert isinstance(forward, Forward)
    rig.issuer(issuer_answer(forward.body, "00"))
    sold, answer, _ = _sold(rig, device)
    message = _void_of(device, sold, answer).with_fields({37: rrn_of(forward.txn_id)})
    _refused(rig, device, message, "25")


def test_a_second_void_is_12_while_the_first_is_in_flight_or_approved(
    rig: SwitchRig, device: Device
) -> None:
    sold, answer, _ = _sold(rig, device)
    first = rig.terminal(device.raw(_void_of(device, sold, answer)))
    assert isinstance(first, Forward)
    _refused(rig, device, _void_of(device, sold, answer), "12")  # first still in flight
    rig.issuer(issuer_answer(first.body, "00"))
    again = rig.terminal(device.raw(_void_of(device, sold, answer)))
    assert isinstance(again, Answer) and again.code == "12"
    refused = rig.run(lambda s: s.txns_in_state([TxnState.REFUSED]))
    assert [t.kind for t in refused] == [TxnKind.VOID, TxnKind.VOID]  # logged, never forwarded


def test_a_sale_can_be_voided_again_after_a_declined_void(rig: SwitchRig, device: Device) -> None:
    sold, answer, _ = _sold(rig, device)
    first = rig.terminal(device.raw(_void_of(device, sold, answer)))
    assert isinstance(first, Forward)
    rig.issuer(issuer_answer(first.body, "05"))
    assert isinstance(rig.terminal(device.raw(_void_of(device, sold, answer))), Forward)


def test_a_void_of_a_declined_sale_is_12(rig: SwitchRig, device: Device) -> None:
    sold, answer, sale_id = _sold(rig, device, code="51")
    assert _txn(rig, sale_id).state is TxnState.DECLINED
    _refused(rig, device, _void_of(device, sold, answer).with_fields({38: "000000"}), "12")


def test_a_void_of_a_reversed_sale_is_12(rig: SwitchRig, device: Device) -> None:
    sold, answer, _ = _sold(rig, device)
    assert rig.terminal(device.raw(reversal_of(sold, "06"))).code == "00"
    _refused(rig, device, _void_of(device, sold, answer), "12")


# -- refunds -------------------------------------------------------------------------------------


def test_a_refund_goes_to_the_issuer_as_0220_with_the_sales_rrn(
    rig: SwitchRig, device: Device
) -> None:
    _, _, sale_id = _sold(rig, device)
    message = _refund_of(device, rrn_of(sale_id), AMOUNT)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    sent = decoded(forward.body)
    assert sent.mti == "0220"
    assert sent.fields[37] == rrn_of(sale_id)
    assert sent.fields[4] == f"{AMOUNT:012d}"
    refund_txn = _txn(rig, forward.txn_id)
    assert refund_txn.kind is TxnKind.REFUND and refund_txn.original_id == sale_id
    assert refund_txn.forwarded_mti == "0220"
    result = rig.issuer(issuer_answer(forward.body, "00"))
    assert isinstance(result, TerminalAnswer)
    relayed = decoded(result.body)
    assert relayed.mti == "0230"
    assert relayed.fields[37] == rrn_of(forward.txn_id)
    assert mac_ok(device, result.body)
    assert _txn(rig, forward.txn_id).state is TxnState.APPROVED


def test_refunds_may_not_total_more_than_the_sale(
    rig: SwitchRig, device: Device, other: Device
) -> None:
    _, _, sale_id = _sold(rig, device)
    rrn = rrn_of(sale_id)
    first = rig.terminal(device.raw(_refund_of(device, rrn, 6_000)))
    assert isinstance(first, Forward)
    rig.issuer(issuer_answer(first.body, "00"))
    _refused(rig, device, _refund_of(device, rrn, 4_001), "13")
    # Another terminal of the same merchant may refund the rest; one in flight counts.
    second = rig.terminal(other.raw(_refund_of(other, rrn, 4_000)))
    assert isinstance(second, Forward)
    answer = rig.terminal(device.raw(_refund_of(device, rrn, 1)))
    assert isinstance(answer, Answer) and answer.code == "13"


def test_a_voided_sale_cannot_be_refunded(rig: SwitchRig, device: Device) -> None:
    message, answer, sale_id = _sold(rig, device)
    voided = rig.terminal(device.raw(_void_of(device, message, answer)))
    assert isinstance(voided, Forward)
    rig.issuer(issuer_answer(voided.body, "00", f38="888888"))
    _refused(rig, device, _refund_of(device, rrn_of(sale_id), 1), "12")


def test_a_refunded_sale_cannot_be_voided(rig: SwitchRig, device: Device) -> None:
    message, answer, sale_id = _sold(rig, device)
    first = rig.terminal(device.raw(_refund_of(device, rrn_of(sale_id), 1_000)))
    assert isinstance(first, Forward)
    rig.issuer(issuer_answer(first.body, "00"))
    _refused(rig, device, _void_of(device, message, answer), "12")


def test_a_declined_refund_does_not_count(rig: SwitchRig, device: Device) -> None:
    _, _, sale_id = _sold(rig, device)
    first = rig.terminal(device.raw(_refund_of(device, rrn_of(sale_id), AMOUNT)))
    assert isinstance(first, Forward)
    rig.issuer(issuer_answer(first.body, "05"))
    again = rig.terminal(device.raw(_refund_of(device, rrn_of(sale_id), AMOUNT)))
    assert isinstance(again, Forward)


def test_a_refund_of_nothing_is_13(rig: SwitchRig, device: Device) -> None:
    _, _, sale_id = _sold(rig, device)
    _refused(rig, device, _refund_of(device, rrn_of(sale_id), 0), "13")


def test_a_refund_of_an_unknown_rrn_is_25(rig: SwitchRig, device: Device) -> None:
    _sold(rig, device)
    txn = _refused(rig, device, _refund_of(device, "000000009999", 100), "25")
    assert txn.kind is TxnKind.REFUND and txn.original_id is None


def test_a_refund_of_a_declined_sale_is_12(rig: SwitchRig, device: Device) -> None:
    _, _, sale_id = _sold(rig, device, code="51")
    _refused(rig, device, _refund_of(device, rrn_of(sale_id), 100), "12")
