"""SwitchCore: terminal reversals (0400/0401) of every kind of original."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardtally.switch import (
    AdviceAcked,
    Answer,
    Forward,
    Join,
    TerminalAnswer,
    Txn,
    TxnKind,
    TxnState,
    rrn_of,
)
from cardtally.terminal import balance_inquiry, reversal_of, sale, void
from cardtally.wire import Message
from tests.switch.support import (
    CARD,
    LINK,
    NO_ROUTE_CARD,
    NOW_MS,
    OTHER_TERMINAL,
    TERMINAL,
    TIMEOUT_MS,
    Device,
    SwitchRig,
    build_rig,
    decoded,
    issuer_answer,
    mac_ok,
    snapshot,
)

UP = frozenset({LINK})


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


def _txn(rig: SwitchRig, txn_id: int) -> Txn:
    txn = rig.run(lambda s: s.txn(txn_id))
    assert txn is not None
    return txn


def _advices(rig: SwitchRig) -> int:
    count = snapshot(rig)["switch_advice"]
    assert isinstance(count, int)
    return count


def _sale(rig: SwitchRig, device: Device, amount: int = 4_200) -> tuple[Message, Forward]:
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=amount)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    return message, forward


def _approved(rig: SwitchRig, device: Device) -> tuple[Message, Forward, TerminalAnswer]:
    message, forward = _sale(rig, device)
    answer = rig.issuer(issuer_answer(forward.body, "00", f38="123456"))
    assert isinstance(answer, TerminalAnswer) and answer.code == "00"
    return message, forward, answer


def _reverse(rig: SwitchRig, device: Device, original: Message, *, repeat: bool = False) -> Answer:
    answer = rig.terminal(device.raw(reversal_of(original, "98", repeat=repeat)), NOW_MS + 5_000)
    assert isinstance(answer, Answer)
    return answer


def _reversal_txn(rig: SwitchRig) -> Txn:
    [txn] = [
        t
        for t in rig.run(lambda s: s.txns_in_state([TxnState.APPROVED]))
        if t.kind is TxnKind.REVERSAL
    ]
    return txn


def test_reversal_of_an_approved_sale_queues_an_advice(rig: SwitchRig, device: Device) -> None:
    message, forward, _ = _approved(rig, device)
    answer = _reverse(rig, device, message)
    assert answer.code == "00"
    response = decoded(answer.body)
    assert response.mti == "0410"
    assert response.response_code == "00"
    assert response.fields[11] == message.fields[11]
    assert response.fields[37] == rrn_of(forward.txn_id)  # names the sale it undid
    for number in (3, 4, 41, 42, 49, 60):
        assert response.fields[number] == message.fields[number]
    assert mac_ok(device, answer.body)
    sale_txn = _txn(rig, forward.txn_id)
    assert sale_txn.state is TxnState.REVERSAL_PENDING
    assert sale_txn.response_code == "00"  # what the issuer said stays on record
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None and advice.link_id == LINK and advice.acked_at_ms is None
    assert advice.fields[11] == decoded(forward.body).fields[11]
    reversal = _reversal_txn(rig)
    assert reversal.original_id == forward.txn_id
    assert reversal.stan == message.fields[11]
    assert _advices(rig) == 1
    # The queue finishes the job.
    [send] = rig.run(lambda s: rig.core.advices_due(NOW_MS + 5_000, s, UP))
    assert isinstance(rig.issuer(issuer_answer(send.body, "00")), AdviceAcked)
    assert _txn(rig, forward.txn_id).state is TxnState.REVERSED


def test_a_repeated_reversal_gets_the_same_answer_and_no_second_advice(
    rig: SwitchRig, device: Device
) -> None:
    message, forward, _ = _approved(rig, device)
    first = _reverse(rig, device, message)
    before = snapshot(rig)
    again = _reverse(rig, device, message, repeat=True)
    assert again.outcome == "duplicate"
    assert again.code == "00"
    assert decoded(again.body).mti == "0410"
    assert again.body == first.body
    assert snapshot(rig) == before
    assert _advices(rig) == 1
    assert _txn(rig, forward.txn_id).state is TxnState.REVERSAL_PENDING


def test_reversal_of_an_in_flight_sale_answers_its_waiters_98(
    rig: SwitchRig, device: Device
) -> None:
    message, forward = _sale(rig, device)
    answer = _reverse(rig, device, message)
    assert answer.code == "00"
    assert decoded(answer.body).fields[37] == rrn_of(forward.txn_id)
    assert _txn(rig, forward.txn_id).state is TxnState.REVERSAL_PENDING
    assert _advices(rig) == 1
    # The issuer approves after all: the terminal (and any joined repeat) hears 98.
    late = rig.issuer(issuer_answer(forward.body, "00", f38="123456"), NOW_MS + 6_000)
    assert isinstance(late, TerminalAnswer)
    assert late.txn_id == forward.txn_id
    assert late.code == "98"
    relayed = decoded(late.body)
    assert relayed.mti == "0210" and relayed.response_code == "98" and 38 not in relayed.fields
    assert mac_ok(device, late.body)
    txn = _txn(rig, forward.txn_id)
    assert txn.state is TxnState.REVERSAL_PENDING
    assert txn.auth_code is None
    assert _advices(rig) == 1
    repeat = rig.terminal(device.raw(message), NOW_MS + 7_000)
    assert isinstance(repeat, Answer) and repeat.code == "98"
    # The deadline passing afterwards changes nothing.
    expired = rig.run(lambda s: rig.core.timed_out(forward.txn_id, NOW_MS + TIMEOUT_MS, s))
    assert isinstance(expired, TerminalAnswer) and expired.code == "98"
    assert _advices(rig) == 1


def test_reversal_of_an_in_flight_sale_then_its_deadline_answers_98(
    rig: SwitchRig, device: Device
) -> None:
    message, forward = _sale(rig, device)
    _reverse(rig, device, message)
    result = rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    assert isinstance(result, TerminalAnswer) and result.code == "98"
    assert _txn(rig, forward.txn_id).state is TxnState.REVERSAL_PENDING
    assert _advices(rig) == 1  # the terminal's reversal already queued it
    late = rig.issuer(issuer_answer(forward.body, "00"))
    assert not isinstance(late, TerminalAnswer)


def test_a_repeat_of_an_in_flight_sale_the_terminal_reversed_joins(
    rig: SwitchRig, device: Device
) -> None:
    message, forward = _sale(rig, device)
    _reverse(rig, device, message)
    assert rig.terminal(device.raw(message), NOW_MS + 5_500) == Join(forward.txn_id)


def test_after_a_restart_a_reversed_in_flight_sale_repeats_as_98(
    rig: SwitchRig, device: Device
) -> None:
    message, _ = _sale(rig, device)
    _reverse(rig, device, message)
    rig.run(lambda s: rig.core.recover(NOW_MS + 3_600_000, s))
    repeat = rig.terminal(device.raw(message), NOW_MS + 3_600_001)
    assert isinstance(repeat, Answer) and repeat.code == "98"


def test_reversal_of_a_declined_sale_needs_no_advice(rig: SwitchRig, device: Device) -> None:
    message, forward = _sale(rig, device)
    rig.issuer(issuer_answer(forward.body, "51"))
    answer = _reverse(rig, device, message)
    assert answer.code == "00"
    assert _txn(rig, forward.txn_id).state is TxnState.DECLINED
    assert _advices(rig) == 0
    assert _reversal_txn(rig).original_id == forward.txn_id


def test_reversal_of_a_timed_out_sale_queues_no_second_advice(
    rig: SwitchRig, device: Device
) -> None:
    message, forward = _sale(rig, device)
    rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    assert _advices(rig) == 1
    answer = _reverse(rig, device, message)
    assert answer.code == "00"
    assert _txn(rig, forward.txn_id).state is TxnState.TIMED_OUT
    assert _advices(rig) == 1


def test_reversal_of_a_refused_sale_needs_no_advice(rig: SwitchRig, device: Device) -> None:
    message = sale(device.who, device.next_stan(), 1, card=NO_ROUTE_CARD, amount_minor=10)
    assert rig.terminal(device.raw(message)).code == "14"
    assert _reverse(rig, device, message).code == "00"
    assert _advices(rig) == 0


def test_reversal_with_no_original_is_00_and_queues_nothing(rig: SwitchRig, device: Device) -> None:
    message = sale(device.who, 77, 1, card=CARD, amount_minor=10)  # never sent
    answer = _reverse(rig, device, message)
    assert answer.code == "00"
    reversal = _reversal_txn(rig)
    assert reversal.original_id is None
    assert decoded(answer.body).fields[37] == rrn_of(reversal.id)
    assert _advices(rig) == 0


def test_a_reversal_from_another_terminal_does_not_touch_the_sale(
    rig: SwitchRig, device: Device
) -> None:
    message, forward, _ = _approved(rig, device)
    other = rig.devices[OTHER_TERMINAL]
    rig.sign_on(other)
    theirs = reversal_of(message.with_fields({41: OTHER_TERMINAL}), "98")
    answer = rig.terminal(other.raw(theirs))
    assert isinstance(answer, Answer) and answer.code == "00"
    assert _txn(rig, forward.txn_id).state is TxnState.APPROVED
    assert _advices(rig) == 0


def test_reversal_of_a_balance_inquiry_moves_nothing(rig: SwitchRig, device: Device) -> None:
    message = balance_inquiry(device.who, device.next_stan(), 1, card=CARD)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    rig.issuer(issuer_answer(forward.body, "00"))
    assert _reverse(rig, device, message).code == "00"
    assert _txn(rig, forward.txn_id).state is TxnState.APPROVED
    assert _advices(rig) == 0


def test_reversal_of_an_approved_void_undoes_the_void_only(rig: SwitchRig, device: Device) -> None:
    sold, sale_forward, sale_answer = _approved(rig, device)
    void_message = void(
        device.who,
        device.next_stan(),
        1,
        card=CARD,
        original=sold,
        original_answer=decoded(sale_answer.body),
    )
    void_forward = rig.terminal(device.raw(void_message))
    assert isinstance(void_forward, Forward)
    rig.issuer(issuer_answer(void_forward.body, "00", f38="222222"))
    answer = _reverse(rig, device, void_message)
    assert answer.code == "00"
    assert _txn(rig, void_forward.txn_id).state is TxnState.REVERSAL_PENDING
    assert _txn(rig, sale_forward.txn_id).state is TxnState.APPROVED
    advice = rig.run(lambda s: s.advice_for_txn(void_forward.txn_id))
    assert advice is not None
    assert advice.fields[3] == "200000"
    assert advice.fields[37] == rrn_of(sale_forward.txn_id)  # as the void was forwarded
    assert rig.run(lambda s: s.advice_for_txn(sale_forward.txn_id)) is None


def test_an_original_arriving_after_its_reversal_is_not_left_in_effect(
    rig: SwitchRig, device: Device
) -> None:
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=10)
    assert _reverse(rig, device, message).code == "00"
    outcome = rig.terminal(device.raw(message), NOW_MS + 6_000)
    if isinstance(outcome, Forward):
        assert _txn(rig, outcome.txn_id).state is not TxnState.FORWARDED
        assert rig.run(lambda s: s.advice_for_txn(outcome.txn_id)) is not None
