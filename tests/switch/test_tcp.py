"""The acquirer switch over real TCP: ``cardtally switch serve`` in a child process.

Terminals talk to the switch as POS terminals do (sign-on, keys from field 62, MACed requests,
answers checked); behind it sits either the real issuer (``cardtally issuer serve``) or a
scripted fake that answers, declines, stays silent, answers late or twice, drops the link or
sends garbage. After every scenario the store-and-forward queue is drained and the issuer's
money is compared with the switch's log: every debit the issuer still holds is a sale the switch
holds as approved, and the other way round.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from cardtally.runtime import SyncFrameClient
from cardtally.security import load_issuer_keys
from cardtally.terminal import Card, TerminalIdentity, sale, sign_on
from cardtally.wire import LinkProfile, Pan, decode_message, encode_frame, encode_message
from tests.issuer.messages import DEBIT_PAN
from tests.issuer.tcp_support import HOST, TPDU, closed_by_peer
from tests.runtime.logs import count_events
from tests.switch.fake_issuer import Action, FakeIssuer, Received
from tests.switch.tcp_support import (
    DEBIT_CARD,
    DEBIT_OPENING,
    MERCHANT,
    REPLY_TIMEOUT_MS,
    TERMINAL_IDS,
    Network,
    assert_agrees_with_fake,
    assert_agrees_with_issuer,
    live_sales,
    run_cli_process,
    switch_database,
)

#: The card without a PIN, for sales below the no-PIN limit.
PINLESS: Final = Card(DEBIT_CARD.pan, DEBIT_CARD.expiry)
#: How long a terminal link must stay quiet to count as "no second answer".
QUIET_S: Final = 1.0
#: Bound on waiting for something the fake issuer should see.
SEEN_S: Final = 20.0


@pytest.fixture
def net(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Network]:
    """A home on ``db_url`` (issuer) and a second database of the same kind (switch)."""
    with (
        switch_database(db_url, request.config, tmp_path) as switch_url,
        Network(tmp_path, db_url, switch_url) as network,
    ):
        yield network


@pytest.fixture
def fake(net: Network) -> Iterator[FakeIssuer]:
    """A fake issuer that approves everything, linked; the switch started and connected."""
    with FakeIssuer(zak=load_issuer_keys(net.home).zak) as issuer:
        net.link_issuer(issuer.port)
        net.start_switch()
        issuer.wait_connected(1, SEEN_S)
        yield issuer


def _advices(fake: FakeIssuer, forwarded: Received) -> list[Received]:
    return [r for r in fake.received("advice") if r.key == forwarded.key]


def _only_sale(fake: FakeIssuer) -> Received:
    """The one sale the fake got (waiting for it, bounded)."""
    fake.wait_for(lambda seen: any(r.kind == "sale" for r in seen), SEEN_S, "the forwarded sale")
    [forwarded] = fake.received("sale")
    return forwarded


# --- the real issuer --------------------------------------------------------------------------


def test_money_paths_through_the_real_issuer(net: Network) -> None:
    issuer = net.start_issuer()
    net.link_issuer(issuer.port)
    net.start_switch()
    terminal = net.terminal()
    assert terminal.keys is not None

    # A PIN sale, end to end: the answer's MAC verifies and the issuer's money moved.
    first = terminal.sale(DEBIT_CARD, 12_345)
    first_answer = terminal.exchange(first)
    assert first_answer.code == "00", first_answer.message
    assert first_answer.mac_ok is True
    rrn = first_answer.message.rrn or ""
    assert len(rrn) == 12 and rrn.isdigit()
    auth = first_answer.message.auth_code or ""
    assert len(auth) == 6 and auth.isdigit()
    balance = DEBIT_OPENING - 12_345
    assert net.balance(DEBIT_PAN) == balance
    assert net.txn(rrn)["state"] == "approved"

    # A balance inquiry: no money moves, the answer carries the available balance.
    inquiry = terminal.exchange(terminal.balance_inquiry(DEBIT_CARD))
    assert inquiry.code == "00", inquiry.message
    assert (inquiry.message.get(54) or "").endswith(f"C{balance:012d}"), inquiry.message
    assert net.balance(DEBIT_PAN) == balance

    # A void of the sale: the money comes back.
    voided = terminal.exchange(terminal.void(DEBIT_CARD, first, first_answer.message))
    assert voided.code == "00", voided.message
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING

    # More than the card holds: 51, nothing moves.
    declined = terminal.exchange(terminal.sale(DEBIT_CARD, DEBIT_OPENING + 1))
    assert declined.code == "51", declined.message
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING

    # A terminal reversal of an approved sale: answered at once, delivered by the queue.
    second = terminal.sale(DEBIT_CARD, 2_000)
    second_answer = terminal.exchange(second)
    assert second_answer.code == "00", second_answer.message
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING - 2_000
    reversed_ = terminal.exchange(terminal.reversal(second))
    assert (reversed_.message.mti, reversed_.code) == ("0410", "00")
    txns = assert_agrees_with_issuer(net, {DEBIT_PAN: DEBIT_OPENING})
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING
    assert net.txn(second_answer.message.rrn or "")["state"] == "reversed"

    # A sale that stays, then settlement: the switch's totals are the terminal's.
    kept = terminal.exchange(terminal.sale(DEBIT_CARD, 3_000))
    assert kept.code == "00", kept.message
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING - 3_000
    # Debits: the approved sales (the voided one included); credits: the approved void.
    settled = terminal.exchange(terminal.settlement([12_345, 3_000], [12_345]))
    assert settled.code == "00", settled.message
    assert (settled.message.get(48) or "").endswith("1"), settled.message  # 1: balanced

    txns = assert_agrees_with_issuer(net, {DEBIT_PAN: DEBIT_OPENING})
    assert [t["rrn"] for t in live_sales(txns)] == [kept.message.rrn]
    # The operator's view through the real entry point agrees: nothing left to deliver.
    assert '"depth": 0' in run_cli_process(net.home, "switch", "queue", "--json")
    assert DEBIT_PAN not in (net.switch.log() if net.switch else "")


def test_pipelined_requests_are_all_answered(net: Network) -> None:
    issuer = net.start_issuer()
    net.link_issuer(issuer.port)
    net.start_switch()
    terminal = net.terminal()
    amounts = [101, 202, 303, 404, 505, 606]
    requests = [terminal.sale(PINLESS, amount) for amount in amounts]
    requests.insert(3, terminal.balance_inquiry(DEBIT_CARD))
    answers = terminal.pipelined(requests)
    assert sorted(answers) == sorted(r.stan or "" for r in requests)
    assert all(a.code == "00" and a.mac_ok for a in answers.values()), answers
    assert len({a.message.rrn for a in answers.values()}) == len(requests)
    assert_agrees_with_issuer(net, {DEBIT_PAN: DEBIT_OPENING})
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING - sum(amounts)


def test_pipelined_answers_come_as_they_complete(net: Network, fake: FakeIssuer) -> None:
    """Slow sales do not hold up a quick inquiry behind them on the same connection."""
    fake.on("sale", "slow")
    terminal = net.terminal()
    requests = [terminal.sale(PINLESS, 100), terminal.sale(PINLESS, 200)]
    requests.append(terminal.balance_inquiry(DEBIT_CARD))
    for request in requests:
        terminal.send(request)
    first = terminal.receive()
    assert (first.stan, first.code) == (requests[2].stan, "00"), first.message
    rest = {terminal.receive().stan for _ in range(2)}
    assert rest == {requests[0].stan, requests[1].stan}
    assert_agrees_with_fake(net, fake)


def test_queue_survives_a_restart_with_the_real_issuer(net: Network) -> None:
    """Issuer down: a sale is answered 98 and a reversal queued; both outlive a switch restart."""
    issuer = net.start_issuer()
    port = issuer.port
    net.link_issuer(port)
    net.start_switch()
    terminal = net.terminal()
    kept = terminal.exchange(terminal.sale(DEBIT_CARD, 1_000))
    undone_request = terminal.sale(DEBIT_CARD, 2_000)
    undone = terminal.exchange(undone_request)
    assert (kept.code, undone.code) == ("00", "00")
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING - 3_000

    issuer.stop_ok()
    assert net.switch is not None
    net.switch.wait_log("event=link.lost")
    lost = terminal.exchange(terminal.sale(DEBIT_CARD, 4_000))
    assert lost.code == "98", lost.message
    reversal = terminal.exchange(terminal.reversal(undone_request))
    assert reversal.code == "00", reversal.message
    net.switch.stop_ok()
    terminal.close()
    assert net.queue()["depth"] == 2

    net.start_issuer(port)
    net.start_switch()
    assert_agrees_with_issuer(net, {DEBIT_PAN: DEBIT_OPENING})
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING - 1_000
    assert net.txn(undone.message.rrn or "")["state"] == "reversed"
    assert net.txn(lost.message.rrn or "")["state"] == "reversed"


# --- the fake issuer, one misbehaviour per test ------------------------------------------------


def test_silent_issuer_98_then_advice_repeated_until_acknowledged(
    net: Network, fake: FakeIssuer
) -> None:
    fake.on("sale", "silent")
    fake.on("advice", "silent")
    terminal = net.terminal()
    answer = terminal.exchange(terminal.sale(DEBIT_CARD, 1_500))
    assert answer.code == "98", answer.message
    assert answer.mac_ok is True
    forwarded = _only_sale(fake)
    assert forwarded.message.get(37) == answer.message.rrn

    # 0420 first, then 0421 again and again while the issuer says nothing.
    fake.wait_for(lambda _: len(_advices(fake, forwarded)) >= 3, SEEN_S, "three advices")
    advices = _advices(fake, forwarded)
    assert [a.message.mti for a in advices[:3]] == ["0420", "0421", "0421"]
    first = advices[0].message
    assert first.get(39) == "98"
    assert first.get(4) == forwarded.message.get(4)
    assert first.get(37) == forwarded.message.get(37)
    assert (first.get(90) or "").startswith("0200" + "".join(forwarded.key))
    assert fake.held_rrns() == {answer.message.rrn}
    assert net.queue()["depth"] == 1

    fake.on("advice", "ack")
    assert_agrees_with_fake(net, fake)
    assert fake.ledger() == {}
    assert net.txn(answer.message.rrn or "")["state"] == "reversed"


def test_late_approval_is_not_relayed_and_gets_reversed(net: Network, fake: FakeIssuer) -> None:
    fake.on("sale", "late")
    terminal = net.terminal()
    request = terminal.sale(DEBIT_CARD, 1_700)
    answer = terminal.exchange(request)
    assert answer.code == "98", answer.message
    forwarded = _only_sale(fake)
    # The late 00 reaches the switch; the terminal must not see a second answer.
    fake.wait_for(lambda _: fake.answers_sent("sale") >= 1, SEEN_S, "the late answer")
    assert terminal.quiet_for(QUIET_S)
    fake.wait_for(lambda _: bool(_advices(fake, forwarded)), SEEN_S, "the advice")
    assert_agrees_with_fake(net, fake)
    assert fake.ledger() == {}
    assert net.txn(answer.message.rrn or "")["state"] == "reversed"
    # A repeat of the sale gets the stored 98, not the late approval.
    repeat = terminal.exchange(request)
    assert repeat.code == "98", repeat.message
    assert net.switch is not None
    net.switch.stop_ok()
    counters = net.switch.stop_counters()
    assert (counters["timeouts"], counters["late_responses"]) == (1, 1)


def test_decline_is_relayed_and_holds_nothing(net: Network, fake: FakeIssuer) -> None:
    fake.on("sale", "decline")
    terminal = net.terminal()
    answer = terminal.exchange(terminal.sale(DEBIT_CARD, 1_800))
    assert (answer.code, answer.mac_ok) == ("51", True), answer.message
    txns = assert_agrees_with_fake(net, fake)
    assert [t["state"] for t in txns] == ["declined"]
    assert fake.ledger() == {}
    assert fake.received("advice") == []


def test_double_answer_reaches_the_terminal_once(net: Network, fake: FakeIssuer) -> None:
    fake.on("sale", "twice")
    terminal = net.terminal()
    answer = terminal.exchange(terminal.sale(DEBIT_CARD, 1_900))
    assert answer.code == "00", answer.message
    fake.wait_for(lambda _: fake.answers_sent("sale") >= 2, SEEN_S, "both answers")
    assert terminal.quiet_for(QUIET_S)
    txns = assert_agrees_with_fake(net, fake)
    assert [t["rrn"] for t in live_sales(txns)] == [answer.message.rrn]
    assert fake.received("advice") == []
    assert net.switch is not None
    net.switch.stop_ok()
    assert net.switch.stop_counters()["issuer_ignored"] == 1


@pytest.mark.parametrize("action", ["drop", "noise"])
def test_link_lost_mid_request_98_and_reversal_after_reconnect(
    net: Network, fake: FakeIssuer, action: Action
) -> None:
    """``drop``: the issuer closes the link; ``noise``: it sends bytes that are not a frame."""
    fake.on("sale", action)
    terminal = net.terminal()
    answer = terminal.exchange(terminal.sale(DEBIT_CARD, 2_100))
    assert answer.code == "98", answer.message
    forwarded = _only_sale(fake)
    fake.wait_connected(2, SEEN_S)  # the switch came back
    fake.wait_for(lambda _: bool(_advices(fake, forwarded)), SEEN_S, "the advice")
    assert_agrees_with_fake(net, fake)
    assert fake.ledger() == {}
    # The link works again for the next sale.
    fake.on("sale", "approve")
    after = terminal.exchange(terminal.sale(DEBIT_CARD, 2_200))
    assert after.code == "00", after.message
    assert_agrees_with_fake(net, fake)


def test_undecodable_answer_counts_as_none(net: Network, fake: FakeIssuer) -> None:
    fake.on("sale", "garbage")
    terminal = net.terminal()
    answer = terminal.exchange(terminal.sale(DEBIT_CARD, 2_300))
    assert answer.code == "98", answer.message
    forwarded = _only_sale(fake)
    fake.wait_for(lambda _: bool(_advices(fake, forwarded)), SEEN_S, "the advice")
    assert_agrees_with_fake(net, fake)
    assert fake.ledger() == {}
    assert fake.connections == 1  # a frame with a bad message does not cost the link


def test_queue_survives_a_restart_with_the_fake_issuer(net: Network, fake: FakeIssuer) -> None:
    fake.on("sale", "silent")
    fake.on("advice", "silent")
    terminal = net.terminal()
    answer = terminal.exchange(terminal.sale(DEBIT_CARD, 2_500))
    assert answer.code == "98", answer.message
    forwarded = _only_sale(fake)
    fake.wait_for(lambda _: bool(_advices(fake, forwarded)), SEEN_S, "the first advice")
    assert net.switch is not None
    net.switch.stop_ok()
    terminal.close()
    pending = net.queue()
    assert pending["depth"] == 1, pending
    assert fake.held_rrns() == {answer.message.rrn}

    fake.on("advice", "ack")
    sent_before = len(_advices(fake, forwarded))
    net.start_switch()
    txns = assert_agrees_with_fake(net, fake)
    assert fake.ledger() == {}
    resent = _advices(fake, forwarded)[sent_before:]
    assert resent and all(a.message.mti == "0421" for a in resent), resent
    assert [t["state"] for t in txns if t["rrn"] == answer.message.rrn] == ["reversed"]


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_costs_only_its_own_connection(net: Network, fake: FakeIssuer) -> None:
    assert net.switch is not None
    port = net.switch.port
    terminal = net.terminal()
    assert terminal.exchange(terminal.sale(PINLESS, 100)).code == "00"

    # Bytes that are not a frame (an HTTP request): that connection is closed.
    with socket.create_connection((HOST, port), timeout=5) as garbage:
        garbage.sendall(b"GET / HTTP/1.1\r\nHost: switch\r\n\r\n")
        assert closed_by_peer(garbage, timeout_s=10)
    # A frame whose message has no MTI worth answering: closed too.
    with socket.create_connection((HOST, port), timeout=5) as hopeless:
        hopeless.sendall(encode_frame(TPDU, b"\x99\x99garbage"))
        assert closed_by_peer(hopeless, timeout_s=10)
    # A frame whose message cannot be decoded but whose MTI can: answered 30.
    with SyncFrameClient.connect(HOST, port, LinkProfile(), TPDU) as client:
        client.send(bytes.fromhex("0200") + b"\xff\x00\x01")
        malformed = decode_message(client.receive(REPLY_TIMEOUT_MS))
        assert (malformed.mti, malformed.response_code) == ("0210", "30")

    # An unknown terminal: 03, to its sign-on and to its sale.
    stranger = TerminalIdentity("10399999", MERCHANT)
    with SyncFrameClient.connect(HOST, port, LinkProfile(), TPDU) as client:
        refused = decode_message(
            client.request(encode_message(sign_on(stranger, 1, 1)), REPLY_TIMEOUT_MS)
        )
        assert (refused.mti, refused.response_code) == ("0810", "03")
        request = sale(stranger, 2, 1, card=Card(Pan(DEBIT_PAN)), amount_minor=100)
        refused = decode_message(client.request(encode_message(request), REPLY_TIMEOUT_MS))
        assert (refused.mti, refused.response_code) == ("0210", "03")

    # The first terminal's connection never noticed; nor does another terminal.
    assert terminal.exchange(terminal.sale(PINLESS, 200)).code == "00"
    other = net.terminal(TERMINAL_IDS[1])
    assert other.exchange(other.sale(PINLESS, 300)).code == "00"
    assert len(fake.received("sale")) == 3  # nothing refused was forwarded
    assert_agrees_with_fake(net, fake)
    net.switch.stop_ok()
    log = net.switch.log()
    assert count_events(log, "event=frame.rejected") == 1
    assert count_events(log, "event=connection.closed reason=handler_close") == 1
    assert count_events(log, 'event=switch.answer outcome="refused: unknown terminal"') == 2
    counters = net.switch.stop_counters()
    assert counters["connections_closed_bad_frame"] == 1
    assert counters["forwarded"] == 3
