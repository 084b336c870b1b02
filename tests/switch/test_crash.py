"""SIGKILL the switch between forwarding a sale and answering the terminal, then restart it.

The issuer may have debited the card; the terminal got no answer. On restart the switch must
treat every transaction it forwarded and never finished as timed out and reverse it at the
issuer, so that once its queue drains the issuer holds exactly the sales the switch's log holds
as approved. Then the terminal does what a terminal does after a lost answer, sending its
pending reversals, and every debit is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from cardtally.runtime import LinkClosedError
from cardtally.security import load_issuer_keys
from cardtally.terminal import Card
from tests.issuer.messages import DEBIT_PAN
from tests.switch.fake_issuer import FakeIssuer
from tests.switch.tcp_support import (
    DEBIT_CARD,
    DEBIT_OPENING,
    Network,
    assert_agrees_with_fake,
    assert_agrees_with_issuer,
    live_sales,
    switch_database,
)

SEEN_S: Final = 20.0
#: Long enough that neither the link timeout nor the fake's answer can beat the kill.
LONG_TIMEOUT_MS: Final = 10_000
SLOW_ANSWER_S: Final = 5.0
#: Sales pipelined at the real issuer before the kill.
SALES: Final = 40
PINLESS: Final = Card(DEBIT_CARD.pan, DEBIT_CARD.expiry)


@pytest.fixture
def net(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Network]:
    with (
        switch_database(db_url, request.config, tmp_path) as switch_url,
        Network(tmp_path, db_url, switch_url) as network,
    ):
        yield network


def test_kill_after_the_issuer_approved_reverses_on_restart(net: Network) -> None:
    """The fake approves at once but answers late; the switch dies in between."""
    zak = load_issuer_keys(net.home).zak
    with FakeIssuer({"sale": "slow"}, slow_s=SLOW_ANSWER_S, zak=zak) as fake:
        net.link_issuer(fake.port, timeout_ms=LONG_TIMEOUT_MS)
        switch = net.start_switch()
        fake.wait_connected(1, SEEN_S)
        terminal = net.terminal()
        request = terminal.sale(DEBIT_CARD, 4_200)
        terminal.send(request)
        fake.wait_for(lambda seen: any(r.kind == "sale" for r in seen), SEEN_S, "the sale")
        switch.kill()
        with pytest.raises(LinkClosedError):
            terminal.receive()  # no answer: the connection died with the switch
        terminal.close()
        [forwarded] = fake.received("sale")
        rrn = forwarded.message.get(37) or ""
        assert fake.held_rrns() == {rrn}  # the issuer took the money
        assert net.txn(rrn)["state"] == "forwarded"  # and the switch never learned of it

        restarted = net.start_switch()
        restarted.wait_log("event=switch.recovered reversals_queued=1")
        fake.wait_for(
            lambda seen: any(r.kind == "advice" and r.key == forwarded.key for r in seen),
            SEEN_S,
            "the reversal advice",
        )
        txns = assert_agrees_with_fake(net, fake)
        assert fake.ledger() == {}
        assert net.txn(rrn)["state"] == "reversed"
        assert live_sales(txns) == []
        restarted.wait_log("event=switch.advice_acked")

        # The terminal reconnects and sends its pending reversal first: answered 00, and
        # nothing more reaches the issuer (the switch already undid the sale).
        again = net.terminal()
        reversal = again.exchange(again.reversal(request))
        assert (reversal.message.mti, reversal.code) == ("0410", "00")
        shown = assert_agrees_with_fake(net, fake)
        assert net.queue()["acked_total"] == 1
        assert {r.key for r in fake.received("advice")} == {forwarded.key}
        assert [t["state"] for t in shown if t["kind"] == "reversal"] == ["approved"]


def test_kill_with_sales_in_flight_at_the_real_issuer(net: Network) -> None:
    """Whatever the kill caught, after restart the issuer agrees with the switch's log."""
    issuer = net.start_issuer()
    net.link_issuer(issuer.port)
    switch = net.start_switch()
    terminal = net.terminal()
    requests = [terminal.sale(PINLESS, 100 + n) for n in range(SALES)]
    for request in requests:
        terminal.send(request)
    # Kill as soon as the issuer has taken money for the first of them, without reading a
    # single answer: some sales are then answered, some forwarded and unanswered, some unread.
    deadline = time.monotonic() + SEEN_S
    while net.balance(DEBIT_PAN) == DEBIT_OPENING:
        assert time.monotonic() < deadline, "the issuer approved nothing"
        time.sleep(0.002)
    switch.kill()
    terminal.close()

    net.start_switch()
    # Sales the switch answered before the kill stay approved (the terminal never read those
    # answers: its own reversals below take care of them); sales it had forwarded and not
    # answered are reversed by the switch itself; sales it never read never happened.
    txns = assert_agrees_with_issuer(net, {DEBIT_PAN: DEBIT_OPENING})
    assert {t["state"] for t in txns} <= {"approved", "reversed"}, txns

    # The terminal got no answer to any of them: it reverses each, as terminals do.
    again = net.terminal()
    for request in requests:
        reversal = again.exchange(again.reversal(request))
        assert (reversal.message.mti, reversal.code) == ("0410", "00")
    txns = assert_agrees_with_issuer(net, {DEBIT_PAN: DEBIT_OPENING})
    assert net.balance(DEBIT_PAN) == DEBIT_OPENING
    assert live_sales(txns) == []
    assert {t["state"] for t in txns if t["kind"] == "sale"} <= {"reversed"}
