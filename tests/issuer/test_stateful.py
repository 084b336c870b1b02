"""Random streams of sales, voids, refunds, holds, reversals and repeats keep every promise.

After every step: the ledger verifies clean; each card's posted balance equals
its opening balance less every debit notice plus every refund notice (so money
never moves without exactly one notice); a debit card never goes below zero;
and a repeated request always gets its first answer, byte for byte.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cardtally.notices import NoticeKind
from cardtally.storage import sqlite_url
from cardtally.wire import Message, encode_message
from tests.issuer.bank import NOON, Bank, open_bank
from tests.issuer.messages import (
    CREDIT_PAN,
    DEBIT_PAN,
    PIN,
    completion,
    preauth,
    refund,
    reversal,
    sale,
    void,
)

OPENING = {DEBIT_PAN: 100_000, CREDIT_PAN: 0}
CARDS = st.sampled_from([DEBIT_PAN, CREDIT_PAN])
AMOUNTS = st.integers(min_value=1, max_value=60_000)
HOUR_MS = 3_600_000


class IssuerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.bank: Bank | None = None
        self.now_ms = NOON
        self.stan = 0
        # Keyed by the encoded request: messages themselves are not hashable.
        self.first_answers: dict[bytes, tuple[Message, Message | None]] = {}
        self.sales: list[tuple[str, Message, str]] = []  # card, request, auth code
        self.holds: list[tuple[str, str, int]] = []  # card, auth code, amount
        self.money_requests: list[Message] = []

    @initialize()
    def open(self) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self.bank = open_bank(sqlite_url(Path(self._dir.name) / "issuer.sqlite3"))

    def teardown(self) -> None:
        if self.bank is not None:
            self.bank.engine.dispose()
            self._dir.cleanup()

    def _send(self, message: Message) -> Message | None:
        assert self.bank is not None
        outcome = self.bank.run(message, self.now_ms)
        self.first_answers.setdefault(encode_message(message), (message, outcome.response))
        return outcome.response

    def _next_stan(self) -> int:
        self.stan += 1
        return self.stan

    @rule(card=CARDS, amount=AMOUNTS, with_pin=st.booleans())
    def a_sale(self, card: str, amount: int, with_pin: bool) -> None:
        assert self.bank is not None
        pin = {"pin": PIN, "zpk": self.bank.keys.zpk} if with_pin and card == DEBIT_PAN else {}
        message = sale(card, amount, self._next_stan(), **pin)  # type: ignore[arg-type]
        response = self._send(message)
        self.money_requests.append(message)
        if response is not None and response.response_code == "00":
            self.sales.append((card, message, response.fields[38]))

    @precondition(lambda self: self.sales)
    @rule(data=st.data())
    def a_void(self, data: st.DataObject) -> None:
        card, original, auth = data.draw(st.sampled_from(self.sales))
        message = void(card, original, auth, self._next_stan())
        self._send(message)
        self.money_requests.append(message)

    @precondition(lambda self: self.sales)
    @rule(data=st.data(), amount=AMOUNTS)
    def a_refund(self, data: st.DataObject, amount: int) -> None:
        card, original, _ = data.draw(st.sampled_from(self.sales))
        self._send(refund(card, original, min(amount, int(original.fields[4])), self._next_stan()))

    @rule(card=CARDS, amount=AMOUNTS)
    def a_hold(self, card: str, amount: int) -> None:
        message = preauth(card, amount, self._next_stan())
        response = self._send(message)
        self.money_requests.append(message)
        if response is not None and response.response_code == "00":
            self.holds.append((card, response.fields[38], amount))

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), part=st.integers(min_value=1, max_value=100))
    def a_completion(self, data: st.DataObject, part: int) -> None:
        card, auth, amount = data.draw(st.sampled_from(self.holds))
        message = completion(card, max(1, amount * part // 100), auth, self._next_stan())
        self._send(message)
        self.money_requests.append(message)

    @precondition(lambda self: self.money_requests)
    @rule(data=st.data(), repeat=st.booleans())
    def a_reversal(self, data: st.DataObject, repeat: bool) -> None:
        original = data.draw(st.sampled_from(self.money_requests))
        self._send(reversal(original, mti="0401" if repeat else "0400"))

    @precondition(lambda self: self.first_answers)
    @rule(data=st.data())
    def a_repeat(self, data: st.DataObject) -> None:
        message, first = data.draw(st.sampled_from(sorted(self.first_answers.values(), key=repr)))
        assert self.bank is not None
        outcome = self.bank.run(message, self.now_ms)
        assert outcome.response == first

    @rule(hours=st.integers(min_value=1, max_value=24 * 40))
    def time_passes(self, hours: int) -> None:
        assert self.bank is not None
        self.now_ms += hours * HOUR_MS
        self.bank.tick(self.now_ms)

    @invariant()
    def ledger_verifies(self) -> None:
        if self.bank is not None:
            assert self.bank.violations() == []

    @invariant()
    def every_movement_has_exactly_one_notice(self) -> None:
        if self.bank is None:
            return
        notices = self.bank.notices()
        assert len({n.id for n in notices}) == len(notices)
        for card, opening in OPENING.items():
            signed = sum(
                (n.amount.minor if n.kind is NoticeKind.REFUND else -n.amount.minor)
                for n in notices
                if n.card_tail == card[-4:]
            )
            balance, available = self.bank.money(card)
            assert balance == opening + signed
            if card == DEBIT_PAN:
                assert available >= 0


TestIssuerStateful = IssuerMachine.TestCase
TestIssuerStateful.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
