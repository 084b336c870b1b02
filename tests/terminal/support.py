"""A terminal core wired to the real switch core in one process, with faults on demand.

The terminal's journal is a real SQLite file; the host is :class:`SwitchRig` (the
switch core and its store), and the issuer's answers are scripted per test. A
*fault* decides, send by send, whether the answer is lost, the switch unreachable,
or the answer tampered with.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cardtally.security import DataKeys, MacAlgorithm
from cardtally.storage import sqlite_url
from cardtally.switch._effects import Answer as SwitchAnswer
from cardtally.switch._effects import Forward, TerminalAnswer
from cardtally.terminal import (
    Answer,
    Card,
    Command,
    Done,
    Journal,
    NoAnswer,
    Outcome,
    Send,
    TerminalCore,
    Wait,
)
from cardtally.wire import decode_message
from tests.switch.support import (
    CARD,
    MERCHANT,
    NOW_MS,
    TERMINAL,
    SwitchRig,
    build_rig,
    issuer_answer,
)

ADMIN: Final = "314159"
UNLOCK: Final = "27182818"
PIN_CARD: Final = Card(CARD.pan, CARD.expiry, pin="123456")

#: What a fault may do to one send: None (deliver), or one of these.
LOSE_ANSWER: Final = "lose answer"  # the switch processed it; the answer never arrived
UNREACHABLE: Final = "unreachable"  # nothing reached the switch
BAD_MAC: Final = "bad mac"  # the answer arrived with a MAC that does not verify
Fault = Callable[[int, bytes], str | None]


@dataclass
class Issuer:
    """The issuer's scripted answer: a code, and what an approval carries."""

    code: str = "00"
    auth_code: str = "123456"
    balance: str = "1002156C000000098765"
    forwards: list[bytes] = field(default_factory=list)

    def answer(self, forwarded: bytes) -> bytes:
        self.forwards.append(forwarded)
        request = decode_message(forwarded)
        extra = {}
        if self.code == "00":
            extra["f38"] = self.auth_code
            if (
                request.get(
                    3,
                )
                == "310000"
            ):
                extra["f54"] = self.balance
        return issuer_answer(forwarded, self.code, **extra)


@dataclass
class Rig:
    switch: SwitchRig
    journal: Journal
    core: TerminalCore
    issuer: Issuer
    now_ms: int = NOW_MS
    sends: list[bytes] = field(default_factory=list)

    def run(self, command: Command, fault: Fault | None = None) -> Outcome:
        self.now_ms += 1000
        step = self.core.start(command, self.now_ms)
        while not isinstance(step, Done):
            assert isinstance(step, Send), step
            self.sends.append(step.body)
            step = self.core.on_event(self._deliver(step.body, fault), self.now_ms)
            assert not isinstance(step, Wait), "the in-process host answers only its own"
        return step.outcome

    def _deliver(self, body: bytes, fault: Fault | None) -> Answer | NoAnswer:
        what = fault(len(self.sends), body) if fault else None
        if what == UNREACHABLE:
            return NoAnswer("unreachable")
        answered = self.host(body)
        if what == LOSE_ANSWER:
            return NoAnswer("timeout")
        if what == BAD_MAC:
            return Answer(answered[:-1] + bytes([answered[-1] ^ 1]))
        return Answer(answered)

    def host(self, body: bytes) -> bytes:
        outcome = self.switch.terminal(body, self.now_ms)
        if isinstance(outcome, SwitchAnswer):
            assert outcome.body is not None
            return outcome.body
        assert isinstance(outcome, Forward), outcome
        answered = self.switch.issuer(self.issuer.answer(outcome.body), self.now_ms)
        assert isinstance(answered, TerminalAnswer), answered
        return answered.body


def faults_on(*sends: int, what: str = LOSE_ANSWER) -> Fault:
    """A fault hitting the given send numbers (1 = the first send of the rig)."""
    chosen = set(sends)
    return lambda n, _body: what if n in chosen else None


def build(tmp_path: Path, *, timeout_ms: int = 1000) -> Rig:
    switch = build_rig(sqlite_url(tmp_path / "switch.sqlite3"))
    device = switch.devices[TERMINAL]
    data_keys = DataKeys(secrets.token_bytes(32), secrets.token_bytes(32))
    journal = Journal.install(
        tmp_path / "terminal.journal.sqlite3",
        data_keys,
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        merchant_name="COFFEE SHOP",
        master_key=device.master_key,
        mac_algorithm=MacAlgorithm.X9_19,
        admin_password=ADMIN,
        unlock_password=UNLOCK,
        now_ms=NOW_MS,
    )
    return Rig(switch, journal, TerminalCore(journal, timeout_ms=timeout_ms), Issuer())
