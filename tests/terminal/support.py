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

import sqlalchemy as sa

from cardtally.security import DataKeys, MacAlgorithm, sign_message
from cardtally.storage import open_engine, sqlite_url, transaction
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
from cardtally.wire import Message, decode_message, encode_message
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


@dataclass(frozen=True)
class Rewrite:
    """A fault's third way: the switch answered, and ``change`` rewrites the answer's bytes."""

    change: Callable[[bytes], bytes]


Fault = Callable[[int, bytes], str | Rewrite | None]


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
    data_keys: DataKeys | None = None
    journal_file: Path | None = None

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
        if isinstance(what, Rewrite):
            return Answer(what.change(answered))
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
    return Rig(
        switch,
        journal,
        TerminalCore(journal, timeout_ms=timeout_ms),
        Issuer(),
        data_keys=data_keys,
        journal_file=tmp_path / "terminal.journal.sqlite3",
    )


# -- helpers for the core tests (tests/terminal/test_core_*.py) --------------------------------


def faults_for(*mtis: str, what: str = UNREACHABLE) -> Fault:
    """A fault hitting every send whose MTI is one of ``mtis`` (e.g. every reversal)."""
    chosen = set(mtis)
    return lambda _n, body: what if mti_of(body) in chosen else None


def both(*faults: Fault) -> Fault:
    """The first of ``faults`` that says something about a send decides it."""

    def fault(n: int, body: bytes) -> str | Rewrite | None:
        for one in faults:
            what = one(n, body)
            if what is not None:
                return what
        return None

    return fault


def rewrite_on(*sends: int, change: Callable[[bytes], bytes]) -> Fault:
    """The answers to the given send numbers arrive rewritten by ``change``."""
    chosen = set(sends)
    return lambda n, _body: Rewrite(change) if n in chosen else None


def changed(
    changes: dict[int, str | None], *, mti: str | None = None, resign: Rig | None = None
) -> Callable[[bytes], bytes]:
    """An answer rewrite: decode, set or drop fields, encode again.

    The MAC stays as it was (so it no longer verifies) unless ``resign`` is a rig: then the
    answer is signed again with that terminal's current MAC key, so only the change is wrong.
    """

    def change(answer: bytes) -> bytes:
        message = decode_message(answer).with_fields(changes, mti=mti)
        if resign is None:
            return encode_message(message)
        return signed_by_terminal(resign, message)

    return change


def signed_by_terminal(rig: Rig, message: Message) -> bytes:
    """``message`` with a MAC that verifies under the terminal's current MAC key."""
    keys = rig.journal.profile().keys
    assert keys is not None, "the terminal has not signed on"
    return sign_message(message.with_fields({64: None}), MacAlgorithm.X9_19, keys.mac_key)


def mti_of(body: bytes) -> str:
    return decode_message(body).mti


def sent(rig: Rig, start: int = 0) -> list[Message]:
    """The requests the terminal sent, decoded, from index ``start`` (0 = the sign-on)."""
    return [decode_message(body) for body in rig.sends[start:]]


def sent_mtis(rig: Rig, start: int = 0) -> list[str]:
    return [message.mti for message in sent(rig, start)]


def reopen(rig: Rig) -> Journal:
    """A second journal over the same SQLite file (as after a restart of the terminal)."""
    assert rig.data_keys is not None and rig.journal_file is not None
    return Journal(open_engine(sqlite_url(rig.journal_file)), rig.data_keys, TERMINAL)


def journal_rows(rig: Rig, table: str) -> list[dict[str, object]]:
    """Every row of one of the terminal journal's tables, by rowid (raw, for comparisons)."""
    assert rig.journal_file is not None
    assert table.startswith("terminal_"), table
    engine = open_engine(sqlite_url(rig.journal_file))
    try:
        with transaction(engine) as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY rowid")).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def switch_rows(rig: Rig, sql: str, **params: object) -> list[dict[str, object]]:
    """Rows of a query on the switch's database."""
    with transaction(rig.switch.engine) as conn:
        return [dict(row) for row in conn.execute(sa.text(sql), params).mappings()]
