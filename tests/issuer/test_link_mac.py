"""The zone MAC on the acquirer -> issuer link, seen from the issuer.

With a zone MAC key (ZAK) the issuer acts only on requests whose X9.19 MAC verifies over the
bytes received; any other request (MAC missing, wrong, or a bit flipped in transit) changes
nothing and gets no answer at all. Its answers are signed, so the switch can tell them from
corrupted ones. The last tests run both cores together and ``cardtally issuer serve`` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from cardtally.issuer import IssuerService, Outcome, SqlIssuerStore
from cardtally.runtime import Counters, Request
from cardtally.security import MacAlgorithm, generate_master_key, message_mac_ok, sign_message
from cardtally.storage import sqlite_url, transaction
from cardtally.switch import AdviceAcked, Forward, Ignored, TerminalAnswer, TxnState
from cardtally.terminal import sale as terminal_sale
from cardtally.wire import DecodeError, Message, decode_message, encode_message
from tests.issuer.bank import NOON, Bank, open_bank
from tests.issuer.messages import DEBIT_PAN, PIN, TERMINAL, reversal, sale
from tests.issuer.tcp_support import (
    DEBIT,
    REPLY_TIMEOUT_MS,
    balances,
    link_mac_ok,
    make_home,
    running_issuer,
    signed,
    zak_of,
)
from tests.runtime.logs import count_events
from tests.switch.support import CARD, build_rig
from tests.switch.support import TERMINAL as SWITCH_TERMINAL

ZAK: Final = generate_master_key()
#: A key the switch does not share with this issuer.
OTHER_KEY: Final = generate_master_key()
REFUSED: Final = Outcome(None, "refused", "A0", "MAC missing or wrong on the acquirer link")
DEBIT_OPENING: Final = 100_000  # what open_bank gives the debit card


@pytest.fixture
def bank(db_url: str) -> Iterator[Bank]:
    opened = open_bank(db_url, zak=ZAK)
    yield opened
    opened.engine.dispose()


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    """One SQLite bank for the many corruptions of one request (none of them may change it)."""
    opened = open_bank(sqlite_url(tmp_path_factory.mktemp("link_mac") / "issuer.sqlite3"), zak=ZAK)
    yield opened
    opened.engine.dispose()


def _signed(message: Message, key: bytes = ZAK) -> bytes:
    return sign_message(message, MacAlgorithm.X9_19, key)


def _run(bank: Bank, raw: bytes) -> Outcome:
    return bank.run(decode_message(raw), raw=raw)


def _answer_ok(bank: Bank, outcome: Outcome) -> bytes:
    """The outcome's answer as sent, checked to carry a MAC that verifies under the ZAK."""
    assert outcome.response is not None, outcome
    body = bank.core.encode_answer(outcome.response)
    assert message_mac_ok(body, decode_message(body), MacAlgorithm.X9_19, ZAK)
    return body


def _flip(raw: bytes, bit: int) -> bytes:
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(flipped)


def _every_flip(bank: Bank, good: bytes) -> tuple[list[Outcome], int]:
    """Each single-bit flip of ``good`` through the core, in one transaction: the outcomes of
    those that decode, and how many did not (the service answers those 30, never the core)."""
    outcomes, undecodable = [], 0
    with transaction(bank.engine) as conn:
        store = SqlIssuerStore(conn)
        for bit in range(len(good) * 8):
            raw = _flip(good, bit)
            try:
                message = decode_message(raw)
            except DecodeError:
                undecodable += 1
                continue
            outcomes.append(bank.core.handle(message, NOON, store, raw))
    return outcomes, undecodable


# -- the core -------------------------------------------------------------------------------


def test_a_signed_sale_is_approved_and_answered_signed(bank: Bank) -> None:
    outcome = _run(bank, _signed(sale(DEBIT_PAN, 1_000, 1, pin=PIN, zpk=bank.keys.zpk)))
    assert (outcome.result, outcome.response_code) == ("approved", "00")
    body = _answer_ok(bank, outcome)
    assert not message_mac_ok(body, decode_message(body), MacAlgorithm.X9_19, OTHER_KEY)
    assert bank.money(DEBIT_PAN)[0] == DEBIT_OPENING - 1_000


@pytest.mark.parametrize("how", ["unsigned", "other key", "no raw bytes"])
def test_a_request_without_a_good_mac_is_refused_unanswered_and_changes_nothing(
    bank: Bank, how: str
) -> None:
    message = sale(DEBIT_PAN, 1_000, 1, pin="654321", zpk=bank.keys.zpk)  # even a wrong PIN
    before = bank.snapshot()
    if how == "unsigned":
        outcome = _run(bank, encode_message(message))
    elif how == "other key":
        outcome = _run(bank, _signed(message, OTHER_KEY))
    else:
        outcome = bank.run(decode_message(_signed(message)))  # the caller forgot the bytes
    assert outcome == REFUSED
    assert bank.snapshot() == before
    assert bank.pin_tries(DEBIT_PAN) == 0  # not even a PIN try counted
    # Nothing was kept under its key either: the genuine request is served afterwards.
    approved = _run(bank, _signed(sale(DEBIT_PAN, 1_000, 1)))
    assert approved.result == "approved"


def test_a_repeat_is_answered_from_the_log_signed_byte_for_byte(bank: Bank) -> None:
    request = _signed(sale(DEBIT_PAN, 1_000, 1))
    first = _answer_ok(bank, _run(bank, request))
    repeat = _run(bank, request)
    assert repeat.result == "duplicate"
    assert _answer_ok(bank, repeat) == first
    assert bank.money(DEBIT_PAN)[0] == DEBIT_OPENING - 1_000


def test_an_echo_test_needs_no_mac_and_its_answer_is_signed(bank: Bank) -> None:
    echo = Message("0800", {7: "1121103600", 11: "000015", 41: TERMINAL, 60: "00000001003"})
    outcome = _run(bank, encode_message(echo))
    assert outcome.result == "echo"
    assert decode_message(_answer_ok(bank, outcome)).mti == "0810"


def test_without_a_zak_nothing_is_checked_or_signed(db_url: str) -> None:
    plain = open_bank(db_url)
    try:
        outcome = _run(plain, encode_message(sale(DEBIT_PAN, 1_000, 1)))
        assert outcome.result == "approved"
        assert outcome.response is not None
        assert plain.core.encode_answer(outcome.response) == encode_message(outcome.response)
        # A MAC it cannot check is no reason to refuse: the link has none.
        assert _run(plain, _signed(sale(DEBIT_PAN, 1_000, 2), OTHER_KEY)).result == "approved"
    finally:
        plain.engine.dispose()


def test_every_single_bit_flip_of_a_signed_sale_is_refused_unanswered(lite: Bank) -> None:
    good = _signed(sale(DEBIT_PAN, 12_345, 7, pin=PIN, zpk=lite.keys.zpk))
    before = lite.snapshot()
    outcomes, undecodable = _every_flip(lite, good)
    assert undecodable > 0 and outcomes  # both defences at work
    # An echo answer moves nothing, whatever it echoes; everything else is refused unanswered.
    acted = [o for o in outcomes if o != REFUSED and o.result != "echo"]
    assert acted == []
    assert lite.snapshot() == before
    assert lite.pin_tries(DEBIT_PAN) == 0
    approved = _run(lite, good)  # the genuine request still goes through
    assert approved.result == "approved"
    _answer_ok(lite, approved)


def test_every_single_bit_flip_of_a_signed_reversal_advice_gets_no_answer(lite: Bank) -> None:
    """No answer at all, not A0: the switch takes any answer to an advice but 96/98 as final."""
    original = sale(DEBIT_PAN, 2_000, 8, transmitted="1121110000")
    assert _run(lite, _signed(original)).result == "approved"
    advice = _signed(reversal(original, mti="0420"))
    before = lite.snapshot()
    outcomes, _ = _every_flip(lite, advice)
    assert [o for o in outcomes if o.response is not None and o.result != "echo"] == []
    assert lite.snapshot() == before
    undone = _run(lite, advice)
    assert (undone.result, undone.response_code) == ("approved", "00")
    _answer_ok(lite, undone)


# -- the runtime service ----------------------------------------------------------------------


def test_the_service_passes_the_bytes_and_signs_every_answer(bank: Bank) -> None:
    counters = Counters()
    service = IssuerService(
        bank.engine,
        bank.core,
        counters=counters,
        logger=logging.getLogger("test.issuer"),
        clock_ms=lambda: NOON,
    )
    bodies = [
        encode_message(sale(DEBIT_PAN, 1_000, 1)),  # unsigned
        _signed(sale(DEBIT_PAN, 1_000, 2)),
        _signed(sale(DEBIT_PAN, 1_000, 2)),  # its repeat, from the log
        _signed(sale(DEBIT_PAN, 1_000, 3), OTHER_KEY),
        bytes.fromhex("0200") + b"\xff\x00\x01",  # undecodable: 30, unsigned
    ]
    replies = service.handle_batch(
        [Request(connection_id=1, peer="127.0.0.1:1", body=b, received_at_ms=NOON) for b in bodies]
    )
    assert [r.body is None for r in replies] == [True, False, False, True, False]
    assert not any(r.close for r in replies)
    for reply in replies[1:3]:
        assert reply.body is not None and link_mac_ok(reply.body, ZAK)
    assert replies[1].body == replies[2].body
    assert replies[4].body is not None and decode_message(replies[4].body).fields == {39: "30"}
    assert counters.get("refused", "A0") == 2
    assert bank.money(DEBIT_PAN)[0] == DEBIT_OPENING - 1_000


# -- both cores: what a bit flipped on the link now does ------------------------------------------


def test_a_flipped_amount_digit_on_the_link_is_refused_and_reversed_cleanly(
    tmp_path: Path,
) -> None:
    """The finding this MAC answers: a bit flipped in field 4 between switch and issuer was
    debited as sent. Now the issuer refuses it unanswered, the switch answers the terminal 98
    at its deadline, and the reversal advice finds nothing to undo."""
    switch = build_rig(sqlite_url(tmp_path / "switch.sqlite3"), zak=ZAK)
    issuer = open_bank(sqlite_url(tmp_path / "issuer.sqlite3"), zak=ZAK)
    try:
        device = switch.devices[SWITCH_TERMINAL]
        switch.sign_on(device)
        assert CARD.pan.reveal() == DEBIT_PAN

        def forward(amount: int) -> Forward:
            request = terminal_sale(
                device.who, device.next_stan(), 1, card=CARD, amount_minor=amount
            )
            sent = switch.terminal(device.raw(request))
            assert isinstance(sent, Forward), sent
            return sent

        # A clean exchange: the issuer accepts the switch's MAC, the switch the issuer's.
        clean = forward(8_800)
        answered = _run(issuer, clean.body)
        assert answered.result == "approved"
        relayed = switch.issuer(_answer_ok(issuer, answered))
        assert isinstance(relayed, TerminalAnswer) and relayed.code == "00"
        balance = DEBIT_OPENING - 8_800
        assert issuer.money(DEBIT_PAN)[0] == balance

        # 88.00 becomes 89.00 on the wire: 0x88 -> 0x89 in field 4's BCD.
        tampered = forward(8_800)
        at = tampered.body.index(bytes.fromhex("000000008800")) + 4
        corrupted = _flip(tampered.body, at * 8 + 7)
        assert decode_message(corrupted).fields[4] == "000000008900"
        assert _run(issuer, corrupted) == REFUSED
        assert issuer.money(DEBIT_PAN)[0] == balance
        late = switch.run(lambda s: switch.core.timed_out(tampered.txn_id, tampered.deadline_ms, s))
        assert isinstance(late, TerminalAnswer) and late.code == "98"
        [advice] = switch.run(
            lambda s: switch.core.advices_due(tampered.deadline_ms, s, frozenset({"issuer_a"}))
        )
        undone = _run(issuer, advice.body)
        assert undone.response_code == "25"  # nothing to undo: the sale never happened
        acked = switch.issuer(_answer_ok(issuer, undone), tampered.deadline_ms)
        assert isinstance(acked, AdviceAcked) and acked.code == "25"
        state = switch.run(lambda s: s.txn(tampered.txn_id))
        assert state is not None and state.state is TxnState.REVERSED
        assert issuer.money(DEBIT_PAN)[0] == balance

        # And a corrupted answer coming back is not relayed either.
        third = forward(1_000)
        answer = _answer_ok(issuer, _run(issuer, third.body))
        assert switch.issuer(_flip(answer, len(answer) * 8 - 1)) == Ignored(
            "MAC wrong on the issuer link"
        )
        assert isinstance(switch.issuer(answer), TerminalAnswer)
    finally:
        switch.engine.dispose()
        issuer.engine.dispose()


# -- cardtally issuer serve ---------------------------------------------------------------------


def test_issuer_serve_answers_only_requests_signed_under_the_homes_zak(
    db_url: str, tmp_path: Path
) -> None:
    home = make_home(tmp_path, db_url, (DEBIT,))
    zak = zak_of(home)
    opening = balances(home, DEBIT_PAN)[0]
    with running_issuer(home) as host, host.connect() as client:
        client.send(encode_message(sale(DEBIT_PAN, 100, 1)))
        client.send(signed(sale(DEBIT_PAN, 200, 2), OTHER_KEY))
        tampered = signed(sale(DEBIT_PAN, 300, 3), zak)
        at = tampered.index(bytes.fromhex("000000000300")) + 5  # 3.00 becomes 3.01
        client.send(_flip(tampered, at * 8 + 7))
        client.send(signed(sale(DEBIT_PAN, 400, 4), zak))
        # One connection answers in order: the first answer is the signed sale's.
        raw = client.receive(REPLY_TIMEOUT_MS)
        reply = decode_message(raw)
        assert (reply.mti, reply.stan, reply.response_code) == ("0210", "000004", "00")
        assert link_mac_ok(raw, zak)
    assert balances(home, DEBIT_PAN)[0] == opening - 400
    log = host.log()
    refused = 'event=issuer.answer reason="MAC missing or wrong on the acquirer link"'
    assert count_events(log, refused) >= 2
