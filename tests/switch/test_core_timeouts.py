"""SwitchCore: issuer timeouts, the reversal advice queue, late answers and recovery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardtally.switch import (
    AdviceAcked,
    AdviceSend,
    Answer,
    Forward,
    Ignored,
    SwitchCore,
    SwitchIdentity,
    SwitchPolicy,
    TerminalAnswer,
    TxnState,
    rrn_of,
)
from cardtally.terminal import sale
from cardtally.wire import Message
from tests.switch.support import (
    ACQUIRER,
    CARD,
    LINK,
    NO_ROUTE_CARD,
    NOW_MS,
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
LATER = NOW_MS + TIMEOUT_MS
BACKOFF_MIN_MS = 1000  # what build_rig configures


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


def _sale(device: Device, amount: int = 8_800) -> Message:
    return sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=amount)


def _forwarded(rig: SwitchRig, device: Device, amount: int = 8_800) -> tuple[bytes, Forward]:
    raw = device.raw(_sale(device, amount))
    forward = rig.terminal(raw)
    assert isinstance(forward, Forward)
    return raw, forward


def _timed_out(rig: SwitchRig, device: Device) -> tuple[bytes, Forward, TerminalAnswer]:
    raw, forward = _forwarded(rig, device)
    answer = rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    assert isinstance(answer, TerminalAnswer)
    return raw, forward, answer


def _due(rig: SwitchRig, now_ms: int, up: frozenset[str] = UP) -> list[AdviceSend]:
    return rig.run(lambda s: rig.core.advices_due(now_ms, s, up))


def test_a_timeout_answers_98_and_queues_a_reversal_advice(rig: SwitchRig, device: Device) -> None:
    raw, forward, answer = _timed_out(rig, device)
    assert answer.txn_id == forward.txn_id
    assert answer.code == "98"
    response = decoded(answer.body)
    assert response.mti == "0210"
    assert response.response_code == "98"
    assert response.fields[37] == rrn_of(forward.txn_id)
    assert 38 not in response.fields
    assert response.fields[11] == decoded(raw).fields[11]
    assert mac_ok(device, answer.body)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None
    assert txn.state is TxnState.TIMED_OUT
    assert txn.response_code == "98"
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None
    assert advice.link_id == LINK
    assert advice.attempts == 0
    assert advice.next_at_ms == LATER  # due at once
    assert advice.acked_at_ms is None and advice.ack_code is None
    assert CARD.pan.reveal() not in str(advice.fields)  # the PAN is added only when sent
    assert rig.run(lambda s: s.due_advices(LATER, 10, [LINK])) == [advice]


def test_the_advice_undoes_the_request_as_forwarded(rig: SwitchRig, device: Device) -> None:
    _, forward, _ = _timed_out(rig, device)
    [send] = _due(rig, LATER)
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None
    assert send == AdviceSend(advice.id, LINK, send.body, 0)
    sent = decoded(send.body)
    original = decoded(forward.body)
    assert sent.mti == "0420"
    assert sent.fields[2] == CARD.pan.reveal()
    assert sent.fields[3] == "000000"
    assert sent.fields[4] == "000000008800"
    assert sent.fields[7] == original.fields[7]
    assert sent.fields[11] == original.fields[11]
    assert sent.fields[32] == ACQUIRER and sent.fields[33] == ACQUIRER
    assert sent.fields[37] == original.fields[37] == rrn_of(forward.txn_id)
    assert sent.fields[39] == "98"
    assert sent.fields[41] == original.fields[41] and sent.fields[42] == original.fields[42]
    assert sent.fields[49] == "156"
    assert sent.fields[90] == (
        "0200" + original.fields[11] + original.fields[7] + f"{int(ACQUIRER):011d}" * 2
    )
    assert len(sent.fields[90]) == 42
    for number in (14, 22, 25, 43, 52, 60):
        assert number not in sent.fields


def test_resends_back_off_and_are_0421_with_the_same_fields(rig: SwitchRig, device: Device) -> None:
    _, forward, _ = _timed_out(rig, device)
    [first] = _due(rig, LATER)
    assert _due(rig, LATER) == []  # just sent: not again at once
    assert _due(rig, LATER + BACKOFF_MIN_MS - 1) == []
    [second] = _due(rig, LATER + BACKOFF_MIN_MS)
    assert second.advice_id == first.advice_id
    assert second.attempt == 1
    resent, sent = decoded(second.body), decoded(first.body)
    assert resent.mti == "0421"
    assert dict(resent.fields) == dict(sent.fields)
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None
    assert advice.attempts == 2
    assert advice.next_at_ms == LATER + BACKOFF_MIN_MS + 2 * BACKOFF_MIN_MS


def test_the_backoff_doubles_up_to_its_cap(rig: SwitchRig, device: Device) -> None:
    identity = SwitchIdentity(ACQUIRER, ACQUIRER, "156")
    core = SwitchCore(
        rig.zpk, SwitchPolicy(identity, advice_backoff_min_ms=100, advice_backoff_max_ms=700)
    )
    _, forward = _forwarded(rig, device)
    rig.run(lambda s: core.timed_out(forward.txn_id, LATER, s))
    now = LATER
    gaps = []
    for attempt in range(7):
        [send] = rig.run(lambda s, now=now: core.advices_due(now, s, UP))
        assert send.attempt == attempt
        advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
        assert advice is not None
        gaps.append(advice.next_at_ms - now)
        now = advice.next_at_ms
    assert gaps == [100, 200, 400, 700, 700, 700, 700]


def test_the_policy_backoff_never_overflows() -> None:
    policy = SwitchPolicy(SwitchIdentity(ACQUIRER, ACQUIRER, "156"))
    assert [policy.backoff_ms(n) for n in range(8)] == [
        500,
        1000,
        2000,
        4000,
        8000,
        16000,
        30000,
        30000,
    ]
    assert policy.backoff_ms(10_000) == 30_000


def test_advices_on_a_link_that_is_down_wait(rig: SwitchRig, device: Device) -> None:
    _, forward, _ = _timed_out(rig, device)
    assert _due(rig, LATER, frozenset()) == []
    assert _due(rig, LATER, frozenset({"issuer_b"})) == []
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None and advice.attempts == 0  # not counted as a try
    [send] = _due(rig, LATER + 60_000)
    assert decoded(send.body).mti == "0420"


def test_the_queue_sends_at_most_a_batch(rig: SwitchRig, device: Device) -> None:
    identity = SwitchIdentity(ACQUIRER, ACQUIRER, "156")
    core = SwitchCore(rig.zpk, SwitchPolicy(identity, advice_batch_max=2))
    for _ in range(3):
        _, forward = _forwarded(rig, device)
        rig.run(lambda s, txn_id=forward.txn_id: core.timed_out(txn_id, LATER, s))
    first = rig.run(lambda s: core.advices_due(LATER, s, UP))
    second = rig.run(lambda s: core.advices_due(LATER, s, UP))
    assert len(first) == 2 and len(second) == 1
    assert {a.advice_id for a in first}.isdisjoint({a.advice_id for a in second})


def test_a_0430_approved_acks_the_advice_and_the_txn_is_reversed(
    rig: SwitchRig, device: Device
) -> None:
    _, forward, _ = _timed_out(rig, device)
    [send] = _due(rig, LATER)
    result = rig.issuer(issuer_answer(send.body, "00"), LATER + 100)
    assert result == AdviceAcked(send.advice_id, LINK, "00")
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.REVERSED
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None
    assert advice.acked_at_ms == LATER + 100 and advice.ack_code == "00"
    assert _due(rig, LATER + 3_600_000) == []
    before = snapshot(rig)
    again = rig.issuer(issuer_answer(send.body, "00"), LATER + 200)
    assert again == Ignored("advice already acknowledged", forward.txn_id)
    assert snapshot(rig) == before


def test_a_0430_answering_a_resend_acks_it_too(rig: SwitchRig, device: Device) -> None:
    _, forward, _ = _timed_out(rig, device)
    _due(rig, LATER)
    [resend] = _due(rig, LATER + BACKOFF_MIN_MS)
    assert decoded(resend.body).mti == "0421"
    answer = issuer_answer(resend.body, "00")
    assert decoded(answer).mti == "0430"
    assert isinstance(rig.issuer(answer), AdviceAcked)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.REVERSED


@pytest.mark.parametrize("code", ["96", "98"])
def test_a_0430_asking_to_resend_leaves_the_advice_queued(
    rig: SwitchRig, device: Device, code: str
) -> None:
    _, forward, _ = _timed_out(rig, device)
    [send] = _due(rig, LATER)
    result = rig.issuer(issuer_answer(send.body, code))
    assert result == Ignored(f"issuer asks to resend ({code})", forward.txn_id)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.TIMED_OUT
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None and advice.acked_at_ms is None
    [again] = _due(rig, LATER + BACKOFF_MIN_MS)
    assert again.advice_id == send.advice_id


def test_a_0430_original_not_found_means_reversed(rig: SwitchRig, device: Device) -> None:
    _, forward, _ = _timed_out(rig, device)
    [send] = _due(rig, LATER)
    assert rig.issuer(issuer_answer(send.body, "25")) == AdviceAcked(send.advice_id, LINK, "25")
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.REVERSED
    assert _due(rig, LATER + 3_600_000) == []


def test_a_0430_refusing_the_reversal_ends_the_retries_in_reversal_refused(
    rig: SwitchRig, device: Device
) -> None:
    _, forward, _ = _timed_out(rig, device)
    [send] = _due(rig, LATER)
    assert rig.issuer(issuer_answer(send.body, "05")) == AdviceAcked(send.advice_id, LINK, "05")
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    # Final at the issuer, and flagged for the day end's exceptions.
    assert txn is not None and txn.state is TxnState.REVERSAL_REFUSED
    assert _due(rig, LATER + 3_600_000) == []


def test_a_late_approval_is_not_relayed_and_the_txn_stays_timed_out(
    rig: SwitchRig, device: Device
) -> None:
    raw, forward, timeout_answer = _timed_out(rig, device)
    before = snapshot(rig)
    late = rig.issuer(issuer_answer(forward.body, "00", f38="123456"), LATER + 500)
    assert late == Ignored("late: the stored reversal undoes it", forward.txn_id)
    assert snapshot(rig) == before
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None
    assert txn.state is TxnState.TIMED_OUT
    assert txn.response_code == "98" and txn.auth_code is None
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None and advice.acked_at_ms is None  # the reversal still goes
    repeat = rig.terminal(raw, LATER + 600)
    assert isinstance(repeat, Answer)
    assert repeat.outcome == "duplicate" and repeat.code == "98"
    assert repeat.body == timeout_answer.body
    assert mac_ok(device, repeat.body)


def test_a_late_approval_after_the_reversal_is_acked_changes_nothing(
    rig: SwitchRig, device: Device
) -> None:
    _, forward, _ = _timed_out(rig, device)
    [send] = _due(rig, LATER)
    rig.issuer(issuer_answer(send.body, "00"))
    late = rig.issuer(issuer_answer(forward.body, "00", f38="123456"))
    assert isinstance(late, Ignored) and late.reason.startswith("late")
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.REVERSED


def test_timed_out_on_an_answered_txn_repeats_its_answer_and_changes_nothing(
    rig: SwitchRig, device: Device
) -> None:
    _, approved = _forwarded(rig, device)
    rig.issuer(issuer_answer(approved.body, "00"))
    _, declined = _forwarded(rig, device)
    rig.issuer(issuer_answer(declined.body, "51"))
    _, timed_out, _ = _timed_out(rig, device)
    before = snapshot(rig)
    codes = []
    for txn_id in (approved.txn_id, declined.txn_id, timed_out.txn_id):
        expired = rig.run(lambda s, t=txn_id: rig.core.timed_out(t, LATER + 1, s))
        assert isinstance(expired, TerminalAnswer)
        codes.append(expired.code)
    assert codes == ["00", "51", "98"]
    unknown = rig.run(lambda s: rig.core.timed_out(9_999, LATER + 1, s))
    assert isinstance(unknown, Ignored)
    assert snapshot(rig) == before
    txns = [rig.run(lambda s, t=t: s.txn(t)) for t in (approved.txn_id, declined.txn_id)]
    txns.append(rig.run(lambda s: s.txn(timed_out.txn_id)))
    assert [t.state if t else None for t in txns] == [
        TxnState.APPROVED,
        TxnState.DECLINED,
        TxnState.TIMED_OUT,
    ]


def test_recover_queues_reversals_for_exactly_the_unfinished(
    rig: SwitchRig, device: Device
) -> None:
    _, answered = _forwarded(rig, device)
    rig.issuer(issuer_answer(answered.body, "00"))
    lost_raw, lost = _forwarded(rig, device)
    _, timed_out, _ = _timed_out(rig, device)
    other_raw, other = _forwarded(rig, device)
    refused = rig.terminal(
        device.raw(sale(device.who, device.next_stan(), 1, card=NO_ROUTE_CARD, amount_minor=1))
    )
    assert isinstance(refused, Answer) and refused.code == "14"
    # The switch "crashed" with lost and other forwarded; on start:
    restart = NOW_MS + 3_600_000
    assert rig.run(lambda s: rig.core.recover(restart, s)) == [lost.txn_id, other.txn_id]
    for txn_id in (lost.txn_id, other.txn_id):
        txn = rig.run(lambda s, t=txn_id: s.txn(t))
        assert txn is not None and txn.state is TxnState.TIMED_OUT and txn.response_code == "98"
        advice = rig.run(lambda s, t=txn_id: s.advice_for_txn(t))
        assert advice is not None and advice.next_at_ms == restart
    answered_txn = rig.run(lambda s: s.txn(answered.txn_id))
    assert answered_txn is not None and answered_txn.state is TxnState.APPROVED
    assert rig.run(lambda s: s.advice_for_txn(answered.txn_id)) is None
    sends = _due(rig, restart)
    assert sorted(decoded(s.body).fields[11] for s in sends) == sorted(
        f"{t:06d}" for t in (lost.txn_id, timed_out.txn_id, other.txn_id)
    )
    for raw in (lost_raw, other_raw):
        repeat = rig.terminal(raw, restart + 1)
        assert isinstance(repeat, Answer) and repeat.code == "98"
        assert mac_ok(device, repeat.body)
    assert rig.run(lambda s: rig.core.recover(restart + 2, s)) == []
