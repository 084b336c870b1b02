"""The zone MAC on the switch -> issuer link, seen from the switch core.

With a zone MAC key (ZAK) every message the switch sends the issuer is signed (X9.19), and an
issuer message whose MAC is missing or wrong changes nothing: it is never relayed to a terminal
and never acknowledges an advice. A forward then meets its deadline (98, reversal advice); an
advice is simply sent again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardtally.security import (
    MAC_BYTES,
    MacAlgorithm,
    generate_master_key,
    load_issuer_keys,
    message_mac_ok,
    sign_message,
)
from cardtally.storage import sqlite_url
from cardtally.switch import (
    AdviceAcked,
    AdviceSend,
    Forward,
    Ignored,
    IssuerOutcome,
    TerminalAnswer,
    TxnState,
)
from cardtally.terminal import sale
from cardtally.wire import DecodeError, Message, decode_message, encode_message
from tests.switch.fake_issuer import Action, FakeIssuer
from tests.switch.support import (
    CARD,
    LINK,
    NOW_MS,
    TERMINAL,
    TIMEOUT_MS,
    Device,
    SwitchRig,
    build_rig,
    decoded,
    issuer_answer,
    snapshot,
)
from tests.switch.tcp_support import (
    DEBIT_CARD,
    Network,
    assert_agrees_with_fake,
    switch_database,
)

UP: Final = frozenset({LINK})
LATER: Final = NOW_MS + TIMEOUT_MS
BACKOFF_MIN_MS: Final = 1000  # what build_rig configures
ZAK: Final = generate_master_key()
#: A key the issuer does not share with this switch.
OTHER_KEY: Final = generate_master_key()
#: Why the switch may ignore a corrupted issuer message: it does not decode, or its MAC fails.
REFUSED: Final = frozenset(
    {"undecodable", "MAC wrong on the issuer link", "MAC missing on the issuer link"}
)


@pytest.fixture
def rig(db_url: str) -> Iterator[SwitchRig]:
    opened = build_rig(db_url, zak=ZAK)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def device(rig: SwitchRig) -> Device:
    signed = rig.devices[TERMINAL]
    rig.sign_on(signed)
    return signed


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SwitchRig, Device]]:
    """One SQLite rig for the many corruptions of one answer (nothing they do is kept)."""
    path: Path = tmp_path_factory.mktemp("link_mac") / "switch.sqlite3"
    opened = build_rig(sqlite_url(path), zak=ZAK)
    signed = opened.devices[TERMINAL]
    opened.sign_on(signed)
    yield opened, signed
    opened.engine.dispose()


def _zak_ok(body: bytes, key: bytes = ZAK) -> bool:
    return message_mac_ok(body, decode_message(body), MacAlgorithm.X9_19, key)


def _forwarded(rig: SwitchRig, device: Device, amount: int = 8_800) -> Forward:
    message = sale(device.who, device.next_stan(), 1, card=CARD, amount_minor=amount)
    forward = rig.terminal(device.raw(message))
    assert isinstance(forward, Forward), forward
    return forward


def _state(rig: SwitchRig, txn_id: int) -> TxnState:
    txn = rig.run(lambda s: s.txn(txn_id))
    assert txn is not None
    return txn.state


def _due(rig: SwitchRig, now_ms: int) -> list[AdviceSend]:
    return rig.run(lambda s: rig.core.advices_due(now_ms, s, UP))


def _flip(raw: bytes, bit: int) -> bytes:
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(flipped)


def _ignored_all(rig: SwitchRig, bodies: list[bytes], now_ms: int) -> list[IssuerOutcome]:
    """Every body through the core, in one transaction; what it made of each."""
    return rig.run(lambda s: [rig.core.issuer_message(b, now_ms, s) for b in bodies])


# -- what the switch sends ---------------------------------------------------------------------


def test_the_forwarded_request_is_signed_under_the_zak(rig: SwitchRig, device: Device) -> None:
    forward = _forwarded(rig, device)
    sent = decoded(forward.body)
    assert sent.mac is not None and 64 in sent.fields
    assert _zak_ok(forward.body)
    assert not _zak_ok(forward.body, OTHER_KEY)
    # Not the terminal's MAC passed on: the terminal's field 64 never leaves the switch.
    assert device.keys is not None
    assert not message_mac_ok(forward.body, sent, device.algorithm, device.keys.mac_key)


def test_every_advice_and_resend_is_signed_under_the_zak(rig: SwitchRig, device: Device) -> None:
    forward = _forwarded(rig, device)
    rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    [first] = _due(rig, LATER)
    [again] = _due(rig, LATER + BACKOFF_MIN_MS)
    for send, mti in ((first, "0420"), (again, "0421")):
        sent = decoded(send.body)
        assert sent.mti == mti
        # Field 90 brings the secondary bitmap, so the MAC travels in 128.
        assert 128 in sent.fields and 64 not in sent.fields
        assert _zak_ok(send.body)
    assert first.body[:-MAC_BYTES] != again.body[:-MAC_BYTES]  # the MTI differs, and is MACed


def test_without_a_zak_nothing_is_signed(tmp_path: Path) -> None:
    plain = build_rig(sqlite_url(tmp_path / "switch.sqlite3"))
    try:
        device = plain.devices[TERMINAL]
        plain.sign_on(device)
        forward = _forwarded(plain, device)
        assert decoded(forward.body).mac is None
        # ...and an unsigned answer is relayed, as before the link MAC.
        relayed = plain.issuer(issuer_answer(forward.body, "00", f38="123456"))
        assert isinstance(relayed, TerminalAnswer) and relayed.code == "00"
    finally:
        plain.engine.dispose()


# -- what the switch takes from the issuer -----------------------------------------------------


def test_a_signed_approval_is_relayed(rig: SwitchRig, device: Device) -> None:
    forward = _forwarded(rig, device)
    answer = rig.issuer(issuer_answer(forward.body, "00", zak=ZAK, f38="123456"))
    assert isinstance(answer, TerminalAnswer)
    assert answer.code == "00"
    assert decoded(answer.body).auth_code == "123456"
    assert _state(rig, forward.txn_id) is TxnState.APPROVED


@pytest.mark.parametrize(
    ("key", "reason"),
    [(None, "MAC missing on the issuer link"), (OTHER_KEY, "MAC wrong on the issuer link")],
)
def test_an_unsigned_or_wrongly_signed_answer_is_ignored_and_the_deadline_decides(
    rig: SwitchRig, device: Device, key: bytes | None, reason: str
) -> None:
    forward = _forwarded(rig, device)
    before = snapshot(rig)
    ignored = rig.issuer(issuer_answer(forward.body, "00", zak=key, f38="123456"))
    assert ignored == Ignored(reason)
    assert snapshot(rig) == before
    assert _state(rig, forward.txn_id) is TxnState.FORWARDED
    # Nothing was relayed: the deadline answers 98 and queues the reversal of whatever the
    # issuer may have done.
    timed_out = rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    assert isinstance(timed_out, TerminalAnswer) and timed_out.code == "98"
    assert _state(rig, forward.txn_id) is TxnState.TIMED_OUT
    [advice] = _due(rig, LATER)
    assert decoded(advice.body).mti == "0420"


@pytest.mark.parametrize("key", [None, OTHER_KEY])
def test_an_advice_answer_that_fails_the_mac_acknowledges_nothing(
    rig: SwitchRig, device: Device, key: bytes | None
) -> None:
    forward = _forwarded(rig, device)
    rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    [send] = _due(rig, LATER)
    ignored = rig.issuer(issuer_answer(send.body, "00", zak=key), LATER)
    assert isinstance(ignored, Ignored) and ignored.reason in REFUSED
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None and advice.acked_at_ms is None
    # ...so it is sent again at its next try, and a signed acknowledgement settles it.
    [again] = _due(rig, LATER + BACKOFF_MIN_MS)
    acked = rig.issuer(issuer_answer(again.body, "00", zak=ZAK), LATER + BACKOFF_MIN_MS)
    assert isinstance(acked, AdviceAcked) and acked.code == "00"
    assert _state(rig, forward.txn_id) is TxnState.REVERSED


def test_every_single_bit_flip_of_a_signed_approval_is_never_relayed(
    lite: tuple[SwitchRig, Device],
) -> None:
    rig, device = lite
    forward = _forwarded(rig, device)
    good = issuer_answer(forward.body, "00", zak=ZAK, f38="123456")
    flips = [_flip(good, bit) for bit in range(len(good) * 8)]
    outcomes = _ignored_all(rig, flips, NOW_MS)
    reasons = {o.reason for o in outcomes if isinstance(o, Ignored)}
    assert all(isinstance(o, Ignored) for o in outcomes), [
        o for o in outcomes if not isinstance(o, Ignored)
    ]
    assert reasons <= REFUSED, reasons
    # Both defences are at work: the decoder for some flips, the MAC for the rest.
    assert {"undecodable", "MAC wrong on the issuer link"} <= reasons
    assert _state(rig, forward.txn_id) is TxnState.FORWARDED
    relayed = rig.issuer(good)  # the genuine answer still goes through
    assert isinstance(relayed, TerminalAnswer) and relayed.code == "00"


def test_every_single_bit_flip_of_a_signed_advice_answer_acknowledges_nothing(
    lite: tuple[SwitchRig, Device],
) -> None:
    rig, device = lite
    forward = _forwarded(rig, device)
    rig.run(lambda s: rig.core.timed_out(forward.txn_id, forward.deadline_ms, s))
    [send] = _due(rig, LATER)
    good = issuer_answer(send.body, "00", zak=ZAK)
    flips = [_flip(good, bit) for bit in range(len(good) * 8)]
    outcomes = _ignored_all(rig, flips, LATER)
    assert all(isinstance(o, Ignored) and o.reason in REFUSED for o in outcomes)
    advice = rig.run(lambda s: s.advice_for_txn(forward.txn_id))
    assert advice is not None and advice.acked_at_ms is None
    assert isinstance(rig.issuer(good, LATER), AdviceAcked)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_corruption_of_a_signed_approval_is_never_relayed(
    lite: tuple[SwitchRig, Device], data: st.DataObject
) -> None:
    """Burst errors, not just single bits: any run of bytes overwritten with anything else."""
    rig, device = lite
    forward = _forwarded(rig, device)
    good = issuer_answer(forward.body, "00", zak=ZAK, f38="123456")
    start = data.draw(st.integers(0, len(good) - 1), label="start")
    length = data.draw(st.integers(1, min(8, len(good) - start)), label="length")
    burst = data.draw(st.binary(min_size=length, max_size=length), label="burst")
    bad = good[:start] + burst + good[start + length :]
    if bad == good:
        return
    [outcome] = _ignored_all(rig, [bad], NOW_MS)
    assert isinstance(outcome, Ignored), outcome
    # An echo answer changes nothing either, whatever it carries.
    assert outcome.reason in REFUSED | {"echo answer"}
    assert _state(rig, forward.txn_id) is TxnState.FORWARDED


def test_a_bitmap_flip_that_drops_the_mac_leaves_bytes_the_decoder_refuses(
    rig: SwitchRig, device: Device
) -> None:
    """Why the MAC cannot silently vanish in transit: clearing bit 64 of the primary bitmap
    leaves the 8 MAC bytes behind the last field, and the codec refuses extra data."""
    forward = _forwarded(rig, device)
    good = issuer_answer(forward.body, "00", zak=ZAK, f38="123456")
    assert decode_message(good).mac is not None
    bit_64 = 2 * 8 + 63  # after the 2-byte MTI, the primary bitmap's last bit
    with pytest.raises(DecodeError, match="Extra data"):
        decode_message(_flip(good, bit_64))
    assert rig.issuer(_flip(good, bit_64)) == Ignored("undecodable")


def test_an_echo_answer_changes_nothing_signed_or_not(rig: SwitchRig) -> None:
    echo = Message("0810", {7: "1121103600", 11: "000015", 39: "00"})
    before = snapshot(rig)
    for body in (encode_message(echo), sign_message(echo, MacAlgorithm.X9_19, ZAK)):
        assert rig.issuer(body) == Ignored("echo answer")
    assert snapshot(rig) == before


# -- over TCP: switch serve on a home made by init, a fake issuer holding the home's ZAK -------


@pytest.fixture
def net(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Network]:
    with (
        switch_database(db_url, request.config, tmp_path) as switch_url,
        Network(tmp_path, db_url, switch_url) as network,
    ):
        yield network


@pytest.mark.parametrize("action", ["unsigned", "forged"])
def test_over_tcp_an_approval_failing_the_link_mac_is_not_relayed_and_gets_reversed(
    net: Network, action: Action
) -> None:
    zak = load_issuer_keys(net.home).zak
    assert zak is not None, "init writes a zone MAC key"
    with FakeIssuer({"sale": action}, zak=zak) as fake:
        net.link_issuer(fake.port)
        net.start_switch()
        fake.wait_connected(1, 20.0)
        terminal = net.terminal()
        answer = terminal.exchange(terminal.sale(DEBIT_CARD, 1_234))
        # The fake debited and answered 00, but not under the ZAK: the deadline answers.
        assert answer.code == "98", answer.message
        [forwarded] = fake.received("sale")
        assert forwarded.mac_ok is True
        fake.wait_for(
            lambda seen: any(r.kind == "advice" and r.key == forwarded.key for r in seen),
            20.0,
            "the reversal advice",
        )
        assert_agrees_with_fake(net, fake)
        assert fake.ledger() == {}  # the advice (signed, acknowledged signed) undid the debit
        assert all(r.mac_ok for r in fake.received("advice"))
        assert net.txn(answer.message.rrn or "")["state"] == "reversed"
        assert net.switch is not None
        net.switch.wait_log("event=switch.issuer_ignored")
        assert "MAC wrong on the issuer link" in net.switch.log() or (
            "MAC missing on the issuer link" in net.switch.log()
        )
        net.switch.stop_ok()
        assert net.switch.stop_counters()["issuer_ignored"] >= 1
