"""SwitchCore: what goes to the issuer, and what comes back to the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardtally.security import decrypt_pin_block, encrypt_pin_block, generate_master_key
from cardtally.storage import sqlite_url
from cardtally.switch import (
    Answer,
    Forward,
    Ignored,
    TerminalAnswer,
    TxnKind,
    TxnState,
    rrn_of,
)
from cardtally.terminal import Card, balance_inquiry, sale
from cardtally.wire import Message, encode_message
from tests.switch.support import (
    ACQUIRER,
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

PIN = "123456"
PIN_CARD = Card(CARD.pan, expiry="2812", pin=PIN)


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
def lite(tmp_path: Path) -> Iterator[tuple[SwitchRig, Device]]:
    """A SQLite-only rig, for the many shapes of one input (the paths run on both above)."""
    opened = build_rig(sqlite_url(tmp_path / "switch.sqlite3"))
    signed = opened.devices[TERMINAL]
    opened.sign_on(signed)
    yield opened, signed
    opened.engine.dispose()


def _pin_sale(device: Device, amount: int = 12_345) -> Message:
    assert device.keys is not None
    return sale(
        device.who,
        device.next_stan(),
        device.batch_no,
        card=PIN_CARD,
        amount_minor=amount,
        pin_key=device.keys.pin_key,
    )


def _forward(rig: SwitchRig, device: Device, message: Message) -> Forward:
    outcome = rig.terminal(device.raw(message))
    assert isinstance(outcome, Forward), outcome
    return outcome


# -- forwarding ----------------------------------------------------------------------------------


def test_a_sale_goes_to_the_issuer_as_the_switch_speaks(rig: SwitchRig, device: Device) -> None:
    message = _pin_sale(device)
    forward = _forward(rig, device, message)
    assert forward.link_id == LINK
    assert forward.deadline_ms == NOW_MS + TIMEOUT_MS
    sent = decoded(forward.body)
    assert sent.mti == "0200"
    assert sent.fields[7] == datetime.fromtimestamp(NOW_MS / 1000, UTC).strftime("%m%d%H%M%S")
    assert sent.fields[11] == f"{forward.txn_id:06d}"  # the switch's own trace number
    assert sent.fields[32] == ACQUIRER
    assert sent.fields[37] == rrn_of(forward.txn_id)
    assert sent.fields[43] == f"{'COFFEE SHOP':<25}{'':<13}CN"
    assert len(sent.fields[43]) == 40
    for number in (2, 3, 4, 14, 22, 25, 26, 41, 42, 49, 53, 60, 63):
        assert sent.fields[number] == message.fields[number], number
    assert 64 not in sent.fields and 128 not in sent.fields
    block = bytes.fromhex(sent.fields[52])
    assert block != bytes.fromhex(message.fields[52])
    assert decrypt_pin_block(rig.zpk, block, CARD.pan) == PIN
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None
    assert txn.kind is TxnKind.SALE
    assert txn.state is TxnState.FORWARDED
    assert txn.link_id == LINK
    assert txn.issuer_stan == sent.fields[11]
    assert txn.transmitted == sent.fields[7]
    assert txn.forwarded_mti == "0200"
    assert txn.forwarded_rrn == sent.fields[37]
    assert txn.amount_minor == 12_345 and txn.currency == "156"
    assert txn.stan == message.fields[11] and txn.batch_no == 1
    assert txn.pan_masked == CARD.pan.masked
    assert CARD.pan.reveal() not in repr(txn)
    assert txn.response_code is None
    assert rig.run(lambda s: s.response(txn.request_key)) is None  # nobody answered yet
    assert rig.run(lambda s: s.advice_for_txn(txn.id)) is None


def test_each_forward_has_its_own_trace_number(rig: SwitchRig, device: Device) -> None:
    first = _forward(rig, device, _pin_sale(device))
    second = _forward(rig, device, _pin_sale(device))
    assert decoded(first.body).fields[11] != decoded(second.body).fields[11]
    assert decoded(first.body).fields[37] != decoded(second.body).fields[37]


def test_a_card_with_no_route_is_14_and_is_stored_refused(rig: SwitchRig, device: Device) -> None:
    message = sale(device.who, device.next_stan(), 1, card=NO_ROUTE_CARD, amount_minor=100)
    answer = rig.terminal(device.raw(message))
    assert isinstance(answer, Answer)
    assert answer.code == "14"
    response = decoded(answer.body)
    assert response.mti == "0210"
    assert response.response_code == "14"
    assert mac_ok(device, answer.body)
    [txn] = rig.run(lambda s: s.txns_in_state([TxnState.REFUSED]))
    assert response.fields[37] == rrn_of(txn.id)
    assert txn.response_code == "14"
    assert txn.link_id is None and txn.issuer_stan is None
    stored = rig.run(lambda s: s.response(txn.request_key))
    assert stored is not None
    mti, fields = stored
    assert mti == "0200"
    assert fields[39] == "14"
    assert 64 not in fields  # kept unsigned, signed when sent
    assert rig.run(lambda s: s.advice_for_txn(txn.id)) is None


def test_a_pin_block_that_does_not_decrypt_is_55(rig: SwitchRig, device: Device) -> None:
    garbage = encrypt_pin_block(generate_master_key(), PIN, CARD.pan).hex().upper()
    message = _pin_sale(device).with_fields({52: garbage})
    answer = rig.terminal(device.raw(message))
    assert isinstance(answer, Answer)
    assert answer.code == "55"
    [txn] = rig.run(lambda s: s.txns_in_state([TxnState.REFUSED]))
    assert txn.response_code == "55"


@pytest.fixture
def mac_off_rig(db_url: str) -> Iterator[SwitchRig]:
    opened = build_rig(db_url, mac_required=False)
    yield opened
    opened.engine.dispose()


def test_a_pin_block_from_a_terminal_that_never_signed_on_is_refused(
    mac_off_rig: SwitchRig,
) -> None:
    rig = mac_off_rig
    device = rig.devices[TERMINAL]
    message = sale(device.who, 1, 1, card=PIN_CARD, amount_minor=100, pin_key=generate_master_key())
    answer = rig.terminal(encode_message(message))
    assert isinstance(answer, Answer)
    assert answer.code == "A0"  # PIN key unknown: sign on again
    [txn] = rig.run(lambda s: s.txns_in_state([TxnState.REFUSED]))
    assert txn.response_code == "A0"


# -- issuer answers ------------------------------------------------------------------------------


def test_an_approval_is_relayed_signed_with_the_rrn_and_auth_code(
    rig: SwitchRig, device: Device
) -> None:
    message = _pin_sale(device)
    forward = _forward(rig, device, message)
    result = rig.issuer(issuer_answer(forward.body, "00", f38="A1B2C3"), NOW_MS + 400)
    assert isinstance(result, TerminalAnswer)
    assert result.txn_id == forward.txn_id
    assert result.code == "00"
    answer = decoded(result.body)
    assert answer.mti == "0210"
    assert answer.response_code == "00"
    assert answer.fields[37] == rrn_of(forward.txn_id)
    assert answer.fields[38] == "A1B2C3"
    for number in (3, 4, 11, 41, 42, 49, 60):  # what the terminal matches on
        assert answer.fields[number] == message.fields[number], number
    assert 12 in answer.fields and 13 in answer.fields
    for number in (2, 7, 14, 22, 32, 35, 43, 52, 53):
        assert number not in answer.fields, number
    assert mac_ok(device, result.body)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None
    assert txn.state is TxnState.APPROVED
    assert txn.response_code == "00" and txn.auth_code == "A1B2C3"
    assert txn.approved
    stored = rig.run(lambda s: s.response(txn.request_key))
    assert stored is not None and stored[1][39] == "00" and stored[1][38] == "A1B2C3"
    assert rig.run(lambda s: s.advice_for_txn(txn.id)) is None


def test_a_decline_is_relayed_and_the_txn_declined(rig: SwitchRig, device: Device) -> None:
    forward = _forward(rig, device, _pin_sale(device))
    result = rig.issuer(issuer_answer(forward.body, "51", f38="999999"))
    assert isinstance(result, TerminalAnswer)
    assert result.code == "51"
    answer = decoded(result.body)
    assert answer.mti == "0210"
    assert answer.response_code == "51"
    assert answer.fields[37] == rrn_of(forward.txn_id)
    assert 38 not in answer.fields  # no auth code on a decline
    assert mac_ok(device, result.body)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None
    assert txn.state is TxnState.DECLINED
    assert txn.response_code == "51" and txn.auth_code is None
    assert rig.run(lambda s: s.advice_for_txn(txn.id)) is None


def test_a_balance_inquiry_approval_relays_the_balance(rig: SwitchRig, device: Device) -> None:
    assert device.keys is not None
    message = balance_inquiry(
        device.who, device.next_stan(), 1, card=PIN_CARD, pin_key=device.keys.pin_key
    )
    forward = _forward(rig, device, message)
    sent = decoded(forward.body)
    assert 4 not in sent.fields and sent.fields[3] == "310000"
    balance = "1002156C000000098765"
    result = rig.issuer(issuer_answer(forward.body, "00", f54=balance))
    assert isinstance(result, TerminalAnswer)
    answer = decoded(result.body)
    assert answer.response_code == "00"
    assert answer.fields[54] == balance
    assert 4 not in answer.fields
    assert mac_ok(device, result.body)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.kind is TxnKind.BALANCE and txn.state is TxnState.APPROVED


def test_a_declined_balance_inquiry_does_not_relay_a_balance(
    rig: SwitchRig, device: Device
) -> None:
    message = balance_inquiry(device.who, device.next_stan(), 1, card=CARD)
    forward = _forward(rig, device, message)
    result = rig.issuer(issuer_answer(forward.body, "55", f54="1002156C000000098765"))
    assert isinstance(result, TerminalAnswer)
    assert 54 not in decoded(result.body).fields


def _reshaped(forwarded: bytes, code: str, changes: dict[int, str | None], mti: str = "") -> bytes:
    answer = decoded(issuer_answer(forwarded, code, f38="123456"))
    return encode_message(answer.with_fields(changes, mti or None))


@pytest.mark.parametrize(
    "case",
    [
        ("0230", {}, "answer of another message type", True),
        ("0110", {}, "answer of another message type", True),
        ("", {41: OTHER_TERMINAL}, "answer does not match the request", True),
        ("", {3: "310000"}, "answer does not match the request", True),
        ("", {11: "999998"}, "matches nothing forwarded", False),
        ("", {7: "0101000000"}, "matches nothing forwarded", False),
        ("", {7: None}, "matches nothing forwarded", False),
        ("0810", {}, "echo answer", False),
    ],
)
def test_an_answer_that_does_not_fit_is_ignored_and_changes_nothing(
    lite: tuple[SwitchRig, Device], case: tuple[str, dict[int, str | None], str, bool]
) -> None:
    rig, device = lite
    mti, changes, reason, names_txn = case
    forward = _forward(rig, device, _pin_sale(device))
    before = snapshot(rig)
    txn_before = rig.run(lambda s: s.txn(forward.txn_id))
    result = rig.issuer(_reshaped(forward.body, "00", changes, mti))
    assert result == Ignored(reason, forward.txn_id if names_txn else None)
    assert snapshot(rig) == before
    assert rig.run(lambda s: s.txn(forward.txn_id)) == txn_before
    # The right answer still gets through afterwards.
    assert isinstance(rig.issuer(issuer_answer(forward.body, "00")), TerminalAnswer)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x02", b"\x02\x10\xff", b"\xff" * 40, bytes.fromhex("0210") + bytes(7)],
)
def test_garbage_from_the_issuer_is_ignored(lite: tuple[SwitchRig, Device], raw: bytes) -> None:
    rig, device = lite
    forward = _forward(rig, device, _pin_sale(device))
    before = snapshot(rig)
    assert rig.issuer(raw) == Ignored("undecodable")
    assert snapshot(rig) == before
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.FORWARDED


def test_a_second_answer_after_the_first_changes_nothing(rig: SwitchRig, device: Device) -> None:
    forward = _forward(rig, device, _pin_sale(device))
    first = rig.issuer(issuer_answer(forward.body, "00", f38="123456"))
    assert isinstance(first, TerminalAnswer)
    before = snapshot(rig)
    for code in ("00", "51"):
        again = rig.issuer(issuer_answer(forward.body, code))
        assert isinstance(again, Ignored)
        assert again.txn_id == forward.txn_id
    assert snapshot(rig) == before
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.APPROVED and txn.auth_code == "123456"


def test_an_issuer_answer_without_a_response_code_is_not_a_decline(
    rig: SwitchRig, device: Device
) -> None:
    """Such an answer is no answer: nothing is relayed, and the deadline reverses it."""
    forward = _forward(rig, device, _pin_sale(device))
    result = rig.issuer(_reshaped(forward.body, "00", {39: None}))
    assert isinstance(result, Ignored)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.FORWARDED
    expired = rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    assert isinstance(expired, TerminalAnswer) and expired.code == "98"
    assert rig.run(lambda s: s.advice_for_txn(forward.txn_id)) is not None
