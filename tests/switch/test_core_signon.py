"""SwitchCore: sign-on, echo test, terminal and merchant checks, and the MAC on requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardtally.security import (
    KCV_BYTES,
    WorkingKeys,
    decode_signon_keys,
    generate_working_keys,
    key_check_value,
)
from cardtally.storage import transaction
from cardtally.switch import Answer, Forward, TerminalStatus
from cardtally.switch._registry import add_merchant, add_terminal, set_terminal_status
from cardtally.switch._store import SqlSwitchStore
from cardtally.terminal import TerminalIdentity, echo_test, sale, sign, sign_on
from cardtally.wire import encode_message, pad_merchant_id
from tests.switch.support import (
    CARD,
    MERCHANT,
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
)

DOUBLE_KEY = 16


@pytest.fixture
def rig(db_url: str) -> Iterator[SwitchRig]:
    opened = build_rig(db_url)
    yield opened
    opened.engine.dispose()


def _sale(device: Device, amount: int = 1_000) -> bytes:
    message = sale(device.who, device.next_stan(), device.batch_no, card=CARD, amount_minor=amount)
    return device.raw(message)


# -- sign-on -----------------------------------------------------------------------------------


def test_sign_on_delivers_working_keys_under_the_master_key(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    answer = rig.terminal(encode_message(sign_on(device.who, 7, 1)))
    assert isinstance(answer, Answer)
    assert answer.code == "00"
    assert not answer.close
    response = decoded(answer.body)
    assert response.mti == "0810"
    assert response.response_code == "00"
    assert response.stan == "000007"
    assert response.terminal_id == TERMINAL
    assert response.merchant_id == MERCHANT
    assert len(response.fields[12]) == 6 and len(response.fields[13]) == 4
    assert response.fields[60] == "00000001003"  # 60.2: the batch the switch has for it
    assert 64 not in response.fields  # network management carries no MAC
    field62 = bytes.fromhex(response.fields[62])
    assert len(field62) == 2 * (DOUBLE_KEY + KCV_BYTES)
    keys = decode_signon_keys(device.master_key, field62)  # raises on a wrong check value
    assert key_check_value(keys.pin_key) == field62[DOUBLE_KEY : DOUBLE_KEY + KCV_BYTES]
    assert key_check_value(keys.mac_key) == field62[-KCV_BYTES:]
    assert keys.pin_key != keys.mac_key
    terminal = rig.run(lambda s: s.terminal(TERMINAL))
    assert terminal is not None and terminal.signed_on_at_ms == NOW_MS
    assert rig.run(lambda s: s.terminal_keys(terminal)).working == keys


def test_sign_on_answers_the_batch_the_switch_holds_not_the_terminals(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    with transaction(rig.engine) as conn:
        SqlSwitchStore(conn, rig.data_keys).set_batch(TERMINAL, 42)
    response = decoded(rig.terminal(encode_message(sign_on(device.who, 1, 7))).body)
    assert response.fields[60] == "00000042003"


def test_a_second_sign_on_replaces_the_keys_and_the_old_mac_key_gets_a0(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    old = device.keys
    assert old is not None
    assert isinstance(rig.terminal(_sale(device)), Forward)  # the first keys work
    rig.sign_on(device)
    assert device.keys is not None and device.keys != old
    assert device.keys.mac_key != old.mac_key and device.keys.pin_key != old.pin_key
    before = snapshot(rig)
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=500)
    answer = rig.terminal(sign(message, device.algorithm, old))
    assert isinstance(answer, Answer)
    assert answer.code == "A0"
    assert decoded(answer.body).response_code == "A0"
    assert snapshot(rig) == before
    assert isinstance(rig.terminal(device.raw(message)), Forward)  # the new keys work


def test_echo_test_answers_00_without_keys(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    before = snapshot(rig)
    answer = rig.terminal(encode_message(echo_test(device.who, 9, 1)))
    assert isinstance(answer, Answer)
    assert answer.code == "00"
    response = decoded(answer.body)
    assert response.mti == "0810"
    assert response.response_code == "00"
    assert response.stan == "000009"
    assert response.fields[60] == "00000001301"
    assert 62 not in response.fields and 64 not in response.fields
    assert 12 in response.fields and 13 in response.fields
    assert snapshot(rig) == before
    terminal = rig.run(lambda s: s.terminal(TERMINAL))
    assert terminal is not None and terminal.signed_on_at_ms is None


def test_an_unknown_network_code_is_12(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    message = sign_on(device.who, 1, 1).with_fields({60: "00000001999"})
    answer = rig.terminal(encode_message(message))
    assert isinstance(answer, Answer) and answer.code == "12"
    assert 62 not in decoded(answer.body).fields


def test_an_unknown_terminal_is_03(rig: SwitchRig) -> None:
    who = TerminalIdentity("10399999", MERCHANT)
    before = snapshot(rig)
    answer = rig.terminal(encode_message(sign_on(who, 1, 1)))
    assert isinstance(answer, Answer)
    assert answer.code == "03"
    response = decoded(answer.body)
    assert response.mti == "0810" and response.response_code == "03"
    assert 62 not in response.fields
    assert snapshot(rig) == before


def test_a_disabled_terminal_is_58_for_sign_on_and_sales(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    with transaction(rig.engine) as conn:
        set_terminal_status(conn, TERMINAL, TerminalStatus.DISABLED, NOW_MS)
    before = snapshot(rig)
    signon = rig.terminal(encode_message(sign_on(device.who, device.next_stan(), 1)))
    assert isinstance(signon, Answer) and signon.code == "58"
    assert 62 not in decoded(signon.body).fields
    purchase = rig.terminal(_sale(device))
    assert isinstance(purchase, Answer) and purchase.code == "58"
    assert decoded(purchase.body).mti == "0210"
    assert snapshot(rig) == before
    with transaction(rig.engine) as conn:
        set_terminal_status(conn, TERMINAL, TerminalStatus.ACTIVE, NOW_MS)
    assert isinstance(rig.terminal(_sale(device)), Forward)


def test_a_merchant_that_is_not_the_terminals_is_03(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    stranger = TerminalIdentity(TERMINAL, "898310048169999")
    before = snapshot(rig)
    signon = rig.terminal(encode_message(sign_on(stranger, 50, 1)))
    assert isinstance(signon, Answer) and signon.code == "03"
    message = sale(stranger, 51, 1, card=CARD, amount_minor=100)
    purchase = rig.terminal(device.raw(message))  # correctly MACed, still the wrong merchant
    assert isinstance(purchase, Answer) and purchase.code == "03"
    assert snapshot(rig) == before


def test_a_merchant_id_space_padded_to_15_is_the_merchant(rig: SwitchRig) -> None:
    with transaction(rig.engine) as conn:
        add_merchant(conn, merchant_id="M001", name="NOODLE BAR", mcc="5814", at_ms=NOW_MS)
        _, tmk = add_terminal(
            conn, rig.data_keys, terminal_id="10300009", merchant_id="M001", at_ms=NOW_MS
        )
    device = Device(TerminalIdentity("10300009", "M001"), tmk)
    request = sign_on(device.who, 1, 1)
    assert request.fields[42] == pad_merchant_id("M001") == "M001" + " " * 11
    response = rig.sign_on(device)
    assert response.response_code == "00"
    assert response.fields[42] == "M001" + " " * 11
    forward = rig.terminal(_sale(device))
    assert isinstance(forward, Forward)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.merchant_id == "M001"


# -- the MAC -----------------------------------------------------------------------------------


def test_a_request_without_a_mac_is_a0_and_logs_nothing(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    before = snapshot(rig)
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=100)
    answer = rig.terminal(encode_message(message))
    assert isinstance(answer, Answer)
    assert answer.code == "A0"
    response = decoded(answer.body)
    assert response.mti == "0210" and response.response_code == "A0"
    assert response.stan == message.stan
    assert 64 not in response.fields  # a refusal is not signed: the keys are in doubt
    assert snapshot(rig) == before
    # The same STAN, now signed, is a new request: the refusal logged nothing to repeat.
    assert isinstance(rig.terminal(device.raw(message)), Forward)


def test_a_request_before_any_sign_on_is_a0(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    before = snapshot(rig)
    answer = rig.terminal(_sale(device))  # no keys yet: sent without a MAC
    assert isinstance(answer, Answer) and answer.code == "A0"
    forged = sign(
        sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=100),
        device.algorithm,
        generate_working_keys(),
    )
    answer = rig.terminal(forged)
    assert isinstance(answer, Answer) and answer.code == "A0"
    assert snapshot(rig) == before


def test_a_wrong_mac_is_a0_and_logs_nothing(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    before = snapshot(rig)
    raw = _sale(device)
    tampered = raw[:-1] + bytes([raw[-1] ^ 0x01])
    answer = rig.terminal(tampered)
    assert isinstance(answer, Answer) and answer.code == "A0"
    other_keys = rig.devices[OTHER_TERMINAL]
    rig.sign_on(other_keys)
    assert other_keys.keys is not None
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=100)
    answer = rig.terminal(sign(message, device.algorithm, other_keys.keys))
    assert isinstance(answer, Answer) and answer.code == "A0"
    assert snapshot(rig) == before


def test_a_changed_field_under_a_good_mac_is_a0(rig: SwitchRig) -> None:
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    raw = _sale(device, 100)
    # Amount field (4) bytes: change 100 fen to 900 fen without re-signing.
    amount = bytes.fromhex("000000000100")
    assert raw.count(amount) == 1
    tampered = raw.replace(amount, bytes.fromhex("000000000900"))
    before = snapshot(rig)
    answer = rig.terminal(tampered)
    assert isinstance(answer, Answer) and answer.code == "A0"
    assert snapshot(rig) == before


@pytest.fixture
def mac_off_rig(db_url: str) -> Iterator[SwitchRig]:
    opened = build_rig(db_url, mac_required=False)
    yield opened
    opened.engine.dispose()


def test_a_mac_off_terminal_transacts_without_mac_or_sign_on(mac_off_rig: SwitchRig) -> None:
    rig = mac_off_rig
    device = rig.devices[TERMINAL]
    raw = _sale(device, 2_500)
    assert decoded(raw).mac is None
    forward = rig.terminal(raw)
    assert isinstance(forward, Forward)
    txn = rig.run(lambda s: s.txn(forward.txn_id))
    assert txn is not None and txn.amount_minor == 2_500


def test_a_mac_off_terminal_with_a_wrong_mac_is_still_a0(mac_off_rig: SwitchRig) -> None:
    rig = mac_off_rig
    device = rig.devices[TERMINAL]
    before = snapshot(rig)
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=100)
    answer = rig.terminal(sign(message, device.algorithm, generate_working_keys()))
    assert isinstance(answer, Answer) and answer.code == "A0"  # no keys at all: cannot verify
    rig.sign_on(device)
    keys = device.keys
    assert keys is not None
    wrong = WorkingKeys(pin_key=keys.pin_key, mac_key=generate_working_keys().mac_key)
    answer = rig.terminal(sign(message, device.algorithm, wrong))
    assert isinstance(answer, Answer) and answer.code == "A0"
    assert snapshot(rig) == before
    answer_ok = rig.terminal(device.raw(message))  # signed right after all
    assert isinstance(answer_ok, Forward)


def test_a_mac_off_terminal_that_signed_on_gets_signed_answers(mac_off_rig: SwitchRig) -> None:
    rig = mac_off_rig
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=100)
    forward = rig.terminal(encode_message(message))  # sent without a MAC: accepted
    assert isinstance(forward, Forward)
    answer = rig.issuer(issuer_answer(forward.body, "00", f38="123456"))
    assert mac_ok(device, answer.body)


def test_a_second_sign_on_in_the_same_millisecond_through_a_shared_cache(
    rig: SwitchRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cardtally.switch._store import RegistryCache

    cache = RegistryCache()

    def run(fn):  # type: ignore[no-untyped-def]
        with transaction(rig.engine) as conn:
            return fn(SqlSwitchStore(conn, rig.data_keys, cache))

    monkeypatch.setattr(rig, "run", run)  # one cache across transactions, as the service has
    device = rig.devices[TERMINAL]
    rig.sign_on(device)
    assert isinstance(rig.terminal(_sale(device)), Forward)
    rig.sign_on(device)  # the same NOW_MS
    assert isinstance(rig.terminal(_sale(device)), Forward)
