"""SwitchCore: what a request must carry, bytes that are not a request, and repeats."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cardtally.storage import sqlite_url
from cardtally.switch import MANDATORY, Answer, Forward, Join, TerminalAnswer, TxnState
from cardtally.switch._request import MONEY_FIELDS
from cardtally.terminal import (
    balance_inquiry,
    preauth,
    refund,
    reversal_of,
    sale,
    settlement,
    sign_on,
)
from cardtally.wire import Message, encode_message
from tests.switch.support import (
    CARD,
    NO_ROUTE_CARD,
    NOW_MS,
    TERMINAL,
    Device,
    SwitchRig,
    build_rig,
    decoded,
    issuer_answer,
    mac_ok,
    snapshot,
    txn_ids,
    upload_record,
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


def _sale_message(device: Device, amount: int = 1_000, stan: int | None = None) -> Message:
    return sale(
        device.who,
        device.next_stan() if stan is None else stan,
        device.batch_no,
        card=CARD,
        amount_minor=amount,
    )


# -- mandatory fields: one rig for the lot, since a refused request changes nothing ------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SwitchRig, Device]]:
    opened = build_rig(sqlite_url(tmp_path_factory.mktemp("mandatory") / "switch.sqlite3"))
    device = opened.devices[TERMINAL]
    opened.sign_on(device)
    yield opened, device
    opened.engine.dispose()


_FIRST_ANSWER = Message("0210", {13: "0315", 37: "000000000001", 38: "123456"})

#: A well-formed request of each MTI the switch serves.
REQUESTS: dict[str, Callable[[Device], Message]] = {
    "0100": lambda d: preauth(d.who, 101, 1, card=CARD, amount_minor=5_000),
    "0200": lambda d: sale(d.who, 102, 1, card=CARD, amount_minor=5_000),
    "0220": lambda d: refund(
        d.who, 103, 1, card=CARD, original_rrn="000000000001", amount_minor=100
    ),
    "0400": lambda d: reversal_of(sale(d.who, 104, 1, card=CARD, amount_minor=5_000), "98"),
    "0500": lambda d: settlement(d.who, 105, 1, "0" * 31),
    "0320": lambda d: upload_record(
        d.who,
        1,
        pan=CARD.pan,
        txn=sale(d.who, 106, 1, card=CARD, amount_minor=1),
        answer=_FIRST_ANSWER,
    ),
    "0800": lambda d: sign_on(d.who, 107, 1),
}

CASES = [
    (mti, number)
    for mti, needed in MANDATORY.items()
    for number in (*needed, *(MONEY_FIELDS if mti == "0200" else ()))
]


def test_every_served_mti_has_a_request_here() -> None:
    assert set(REQUESTS) == set(MANDATORY)


@pytest.mark.parametrize(("mti", "number"), CASES)
def test_a_missing_mandatory_field_is_30_and_changes_nothing(
    shared: tuple[SwitchRig, Device], mti: str, number: int
) -> None:
    rig, device = shared
    complete = REQUESTS[mti](device)
    assert complete.mti == mti and number in complete.fields
    before = snapshot(rig)
    answer = rig.terminal(device.raw(complete.with_fields({number: None})))
    assert isinstance(answer, Answer)
    assert answer.code == "30"
    response = decoded(answer.body)
    assert response.mti == mti[:2] + str(int(mti[2]) + 1) + "0"
    assert response.response_code == "30"
    assert number not in response.fields
    assert snapshot(rig) == before


def test_a_balance_inquiry_needs_no_amount_or_currency(shared: tuple[SwitchRig, Device]) -> None:
    rig, device = shared
    message = balance_inquiry(device.who, 201, 1, card=CARD).with_fields({49: None})
    assert 4 not in message.fields
    assert isinstance(rig.terminal(device.raw(message)), Forward)


@pytest.mark.parametrize("number", [12, 13, 22, 25, 60])
def test_a_sale_without_an_optional_field_is_still_forwarded(
    shared: tuple[SwitchRig, Device], number: int
) -> None:
    rig, device = shared
    full = _sale_message(device, 300 + number).with_fields({12: "101500", 13: "0315"})
    forward = rig.terminal(device.raw(full.with_fields({number: None})))
    assert isinstance(forward, Forward)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.FORWARDED
    assert txn.batch_no == 1  # without 60, the batch the switch holds
    assert number not in decoded(forward.body).fields


def test_a_sale_without_a_card_number_is_30(rig: SwitchRig, device: Device) -> None:
    message = _sale_message(device).with_fields({2: None})
    before = snapshot(rig)
    answer = rig.terminal(device.raw(message))
    assert isinstance(answer, Answer) and answer.code == "30"
    assert snapshot(rig) == before


def test_a_card_number_that_fails_luhn_is_14(rig: SwitchRig, device: Device) -> None:
    digits = CARD.pan.reveal()
    bad = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    before = snapshot(rig)
    answer = rig.terminal(device.raw(_sale_message(device).with_fields({2: bad})))
    assert isinstance(answer, Answer) and answer.code == "14"
    assert snapshot(rig) == before


def test_a_processing_code_not_served_is_12(rig: SwitchRig, device: Device) -> None:
    before = snapshot(rig)
    answer = rig.terminal(device.raw(_sale_message(device).with_fields({3: "400000"})))
    assert isinstance(answer, Answer) and answer.code == "12"
    assert snapshot(rig) == before


def test_a_request_mti_not_served_is_12(rig: SwitchRig, device: Device) -> None:
    message = Message("0420", dict(_sale_message(device).fields))
    answer = rig.terminal(encode_message(message))
    assert isinstance(answer, Answer) and answer.code == "12"
    assert decoded(answer.body).mti == "0430"


# -- bytes that are not a request ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mti"),
    [
        (bytes.fromhex("0200") + b"\xff\xff", "0210"),  # bitmap cut short
        (bytes.fromhex("0400"), "0410"),  # nothing after the MTI
        (bytes.fromhex("0401") + b"\x80", "0410"),  # a repeat, bitmap cut short
        (bytes.fromhex("0800") + bytes.fromhex("2000000000000000") + b"\x12", "0810"),
    ],
)
def test_undecodable_bytes_of_a_request_mti_get_30_with_only_39(
    shared: tuple[SwitchRig, Device], raw: bytes, mti: str
) -> None:
    rig, _ = shared
    before = snapshot(rig)
    answer = rig.terminal(raw)
    assert isinstance(answer, Answer)
    assert not answer.close
    assert answer.code == "30"
    response = decoded(answer.body)
    assert response.mti == mti
    assert dict(response.fields) == {39: "30"}
    assert snapshot(rig) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xff\x00\x00",  # not an MTI
        bytes.fromhex("9999") + bytes(8),  # digits, but no such message
        bytes.fromhex("0210") + b"\xff",  # a response MTI, undecodable
        bytes.fromhex("0430") + b"\xff",
    ],
)
def test_bytes_without_a_request_mti_close_the_connection(
    shared: tuple[SwitchRig, Device], raw: bytes
) -> None:
    rig, _ = shared
    before = snapshot(rig)
    answer = rig.terminal(raw)
    assert answer == Answer(None, close=True, outcome="malformed")
    assert snapshot(rig) == before


@pytest.mark.parametrize("raw", [b"", b"\x02"])
def test_a_message_shorter_than_an_mti_closes_the_connection(
    shared: tuple[SwitchRig, Device], raw: bytes
) -> None:
    rig, _ = shared
    answer = rig.terminal(raw)
    assert isinstance(answer, Answer)
    assert answer.body is None and answer.close


def test_a_response_sent_by_a_terminal_closes_the_connection(
    rig: SwitchRig, device: Device
) -> None:
    response = _sale_message(device).response("00", {37: "000000000001"})
    before = snapshot(rig)
    answer = rig.terminal(device.raw(response))
    assert isinstance(answer, Answer)
    assert answer.body is None and answer.close
    assert answer.outcome == "not_a_request"
    assert snapshot(rig) == before


# -- repeats -------------------------------------------------------------------------------------


def test_a_repeat_while_forwarded_joins_and_is_never_forwarded_again(
    rig: SwitchRig, device: Device
) -> None:
    raw = device.raw(_sale_message(device))
    forward = rig.terminal(raw)
    assert isinstance(forward, Forward)
    before = snapshot(rig)
    assert rig.terminal(raw) == Join(forward.txn_id)
    assert rig.terminal(raw, NOW_MS + 1_500) == Join(forward.txn_id)
    assert snapshot(rig) == before
    assert txn_ids(rig) == [forward.txn_id]


def test_a_repeat_after_the_answer_gets_the_stored_answer_resigned(
    rig: SwitchRig, device: Device
) -> None:
    message = _sale_message(device)
    raw = device.raw(message)
    forward = rig.terminal(raw)
    assert isinstance(forward, Forward)
    answered = rig.issuer(issuer_answer(forward.body, "00", f38="654321"), NOW_MS + 300)
    assert isinstance(answered, TerminalAnswer)
    before = snapshot(rig)
    again = rig.terminal(raw, NOW_MS + 60_000)
    assert isinstance(again, Answer)
    assert again.outcome == "duplicate"
    assert again.code == "00"
    assert again.body == answered.body  # same fields, same key: the same bytes
    assert mac_ok(device, again.body)
    assert snapshot(rig) == before
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.state is TxnState.APPROVED


def test_a_repeat_after_a_new_sign_on_verifies_under_the_new_mac_key(
    rig: SwitchRig, device: Device
) -> None:
    message = _sale_message(device)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    answered = rig.issuer(issuer_answer(forward.body, "00", f38="654321"))
    assert isinstance(answered, TerminalAnswer)
    old = device.keys
    rig.sign_on(device)
    assert device.keys != old
    again = rig.terminal(device.raw(message))  # the terminal re-signs under its new key
    assert isinstance(again, Answer)
    assert again.outcome == "duplicate"
    assert mac_ok(device, again.body)
    assert again.body != answered.body
    assert decoded(again.body).fields == {
        n: v for n, v in decoded(answered.body).fields.items() if n != 64
    } | {64: decoded(again.body).fields[64]}


def test_a_repeat_while_forwarded_after_a_new_sign_on_joins(rig: SwitchRig, device: Device) -> None:
    message = _sale_message(device)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward)
    rig.sign_on(device)
    assert rig.terminal(device.raw(message)) == Join(forward.txn_id)
    answered = rig.issuer(issuer_answer(forward.body, "00", f38="654321"))
    assert isinstance(answered, TerminalAnswer)
    assert mac_ok(device, answered.body)  # the waiters' answer is signed with the new key


def test_same_key_different_content_is_94_and_stores_nothing(
    rig: SwitchRig, device: Device
) -> None:
    first = _sale_message(device, 1_000)
    forward = rig.terminal(device.raw(first))
    assert isinstance(forward, Forward)
    before = snapshot(rig)
    other = _sale_message(device, 2_000, stan=int(first.fields[11]))
    answer = rig.terminal(device.raw(other))
    assert isinstance(answer, Answer)
    assert answer.code == "94"
    response = decoded(answer.body)
    assert response.mti == "0210" and response.response_code == "94"
    assert response.fields[4] == other.fields[4]
    assert snapshot(rig) == before
    # The first one is untouched, and its own repeats still join it.
    assert rig.terminal(device.raw(first)) == Join(forward.txn_id)
    rig.issuer(issuer_answer(forward.body, "00"))
    answer = rig.terminal(device.raw(other))
    assert isinstance(answer, Answer) and answer.code == "94"


def test_the_same_stan_in_a_new_batch_is_a_new_request(rig: SwitchRig, device: Device) -> None:
    first = _sale_message(device, stan=5)
    forward = rig.terminal(device.raw(first))
    assert isinstance(forward, Forward)
    next_batch = sale(device.who, 5, 2, card=CARD, amount_minor=1_000)
    again = rig.terminal(device.raw(next_batch))
    assert isinstance(again, Forward)
    assert again.txn_id != forward.txn_id


def test_the_same_stan_on_another_day_is_a_new_request(rig: SwitchRig, device: Device) -> None:
    raw = device.raw(_sale_message(device, stan=5))
    forward = rig.terminal(raw)
    assert isinstance(forward, Forward)
    again = rig.terminal(raw, NOW_MS + 24 * 3_600_000)
    assert isinstance(again, Forward)
    assert again.txn_id != forward.txn_id


def test_a_refused_request_repeated_gets_the_stored_refusal(rig: SwitchRig, device: Device) -> None:
    message = sale(device.who, device.next_stan(), 1, card=NO_ROUTE_CARD, amount_minor=100)
    first = rig.terminal(device.raw(message))
    assert isinstance(first, Answer) and first.code == "14"
    before = snapshot(rig)
    again = rig.terminal(device.raw(message))
    assert isinstance(again, Answer)
    assert again.outcome == "duplicate" and again.code == "14"
    assert again.body == first.body
    assert snapshot(rig) == before
