"""SwitchCore, property: whatever happens on the way, no debit without an approved sale.

Random runs of sales on a few STANs, issuer approvals, declines, silence (timeouts), late
approvals, terminal reversals, repeats and advice deliveries. At the end every deadline has
passed and every due advice is answered 00, and then:

- every transaction is in a final state;
- the sales the simulated issuer still holds money for (it approved them, and did not take
  back with a reversal it acknowledged) are exactly the sales the switch has APPROVED;
- a sale the terminal did not reverse is APPROVED exactly when its stored answer is 00
  (a receipt and money go together);
- a sale the terminal reversed after sending it is never APPROVED;
- no request key was forwarded twice.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardtally.storage import sqlite_url
from cardtally.switch import (
    AdviceAcked,
    Answer,
    Forward,
    Ignored,
    Join,
    TerminalAnswer,
    TxnKind,
    TxnState,
)
from cardtally.terminal import reversal_of, sale
from cardtally.wire import Message, decode_message
from tests.switch.support import (
    CARD,
    LINK,
    NOW_MS,
    TERMINAL,
    Device,
    SwitchRig,
    build_rig,
    issuer_answer,
    txn_ids,
)

STANS = 3
FINAL = frozenset({TxnState.APPROVED, TxnState.DECLINED, TxnState.REFUSED, TxnState.REVERSED})
UP = frozenset({LINK})

Step = tuple[str, int, int]

step: st.SearchStrategy[Step] = st.one_of(
    st.tuples(st.just("sale"), st.integers(1, STANS), st.integers(0, 1)),
    st.tuples(
        st.sampled_from(["approve", "decline", "timeout", "late"]),
        st.integers(0, 7),
        st.just(0),
    ),
    st.tuples(st.sampled_from(["reverse", "duplicate"]), st.integers(1, STANS), st.just(0)),
    st.tuples(st.just("pump"), st.integers(0, 2), st.just(0)),
)


@dataclass
class World:
    """The switch under test, a terminal, and an issuer that keeps books."""

    rig: SwitchRig
    device: Device
    now: int = NOW_MS
    sent: dict[int, tuple[Message, bytes]] = field(default_factory=dict)  # STAN -> first sale
    txn_of: dict[int, int] = field(default_factory=dict)  # STAN -> the sale's txn
    forwards: dict[int, bytes] = field(default_factory=dict)  # txn -> what the issuer got
    unprocessed: list[int] = field(default_factory=list)  # forwarded, issuer not yet decided
    holds: set[int] = field(default_factory=set)  # txns the issuer holds money for
    undone_at_issuer: set[int] = field(default_factory=set)  # reversals it acknowledged
    reversed_after_sale: set[int] = field(default_factory=set)  # STANs
    reversed_any: set[int] = field(default_factory=set)  # STANs

    def tick(self) -> int:
        self.now += 10
        return self.now

    # -- the terminal ---------------------------------------------------------------------

    def sale(self, stan: int, variant: int) -> None:
        message = sale(self.device.who, stan, 1, card=CARD, amount_minor=1_000 + variant)
        raw = self.device.raw(message)
        outcome = self.rig.terminal(raw, self.tick())
        first = self.sent.get(stan)
        if first is None and stan in self.reversed_any:
            # Its reversal overtook it: refused (12), logged, never forwarded.
            assert isinstance(outcome, Answer) and outcome.code == "12", outcome
            self.sent[stan] = (message, raw)
            return
        if first is None:
            assert isinstance(outcome, Forward), outcome
            self.sent[stan] = (message, raw)
            self._forwarded(stan, outcome)
        elif first[0] != message:
            assert isinstance(outcome, Answer) and outcome.code == "94", outcome
        else:
            self._repeat(stan, outcome)

    def duplicate(self, stan: int) -> None:
        if stan not in self.sent:
            return
        outcome = self.rig.terminal(self.sent[stan][1], self.tick())
        self._repeat(stan, outcome)

    def _repeat(self, stan: int, outcome: object) -> None:
        assert not isinstance(outcome, Forward), "a repeat was forwarded again"
        if stan not in self.txn_of:  # refused after its reversal: the stored 12
            assert isinstance(outcome, Answer) and outcome.code == "12", outcome
            return
        txn = self.rig.run(lambda s: s.txn(self.txn_of[stan]))
        assert txn is not None
        stored = self.rig.run(lambda s: s.response(txn.request_key))
        if isinstance(outcome, Join):
            # Not answered yet (in flight, or reversed by the terminal while in flight).
            assert outcome.txn_id == txn.id and stored is None
            return
        assert isinstance(outcome, Answer) and stored is not None
        assert outcome.code == stored[1][39]

    def reverse(self, stan: int) -> None:
        if stan in self.sent:
            message = self.sent[stan][0]
        else:  # the sale never reached the switch (or has not yet: see test_core_reversals)
            message = sale(self.device.who, stan, 1, card=CARD, amount_minor=1_000)
        repeat = stan in self.reversed_any
        outcome = self.rig.terminal(
            self.device.raw(reversal_of(message, "98", repeat=repeat)), self.tick()
        )
        assert isinstance(outcome, Answer)
        if outcome.code != "00":  # the same STAN reversed with other content (another amount)
            assert outcome.code == "94", outcome
            return
        if stan in self.sent and stan not in self.reversed_any:
            self.reversed_after_sale.add(stan)
        self.reversed_any.add(stan)

    def _forwarded(self, stan: int, forward: Forward) -> None:
        assert forward.txn_id not in self.forwards, "forwarded twice"
        self.txn_of[stan] = forward.txn_id
        self.forwards[forward.txn_id] = forward.body
        self.unprocessed.append(forward.txn_id)

    # -- the issuer and the timers --------------------------------------------------------

    def issuer_decides(self, pick: int, approve: bool) -> None:
        if not self.unprocessed:
            return
        txn_id = self.unprocessed.pop(pick % len(self.unprocessed))
        before = self.rig.run(lambda s: s.txn(txn_id))
        assert before is not None
        if txn_id in self.undone_at_issuer:
            approve = False  # it saw the reversal first: the original is refused
        code = "00" if approve else "51"
        if approve:
            self.holds.add(txn_id)
        answered = self.rig.run(lambda s: s.response(before.request_key)) is not None
        result = self.rig.issuer(issuer_answer(self.forwards[txn_id], code), self.tick())
        after = self.rig.run(lambda s: s.txn(txn_id))
        assert after is not None
        if before.state is TxnState.FORWARDED:
            assert isinstance(result, TerminalAnswer) and result.code == code
            assert after.state is (TxnState.APPROVED if approve else TxnState.DECLINED)
            return
        assert after.state is before.state
        if answered:  # late: the terminal heard 98 already, the reversal is queued
            assert isinstance(result, Ignored) and result.reason.startswith("late"), result
        else:  # the terminal reversed it while it was in flight: its waiters hear 98
            assert before.state in (TxnState.REVERSAL_PENDING, TxnState.REVERSED)
            assert isinstance(result, TerminalAnswer) and result.code == "98", result

    def timeout(self, pick: int) -> None:
        if not self.forwards:
            return
        txn_id = sorted(self.forwards)[pick % len(self.forwards)]
        before = self.rig.run(lambda s: s.txn(txn_id))
        assert before is not None
        result = self.rig.run(lambda s: self.rig.core.timed_out(txn_id, self.tick(), s))
        after = self.rig.run(lambda s: s.txn(txn_id))
        assert after is not None
        if before.state is TxnState.FORWARDED:
            assert isinstance(result, TerminalAnswer) and result.code == "98"
            assert after.state is TxnState.TIMED_OUT
        else:
            # Its waiters (if any) get its answer: the stored one, or 98.
            assert isinstance(result, TerminalAnswer)
            assert after.state is before.state

    def late(self, pick: int) -> None:
        """The issuer approves, but only after the switch gave up waiting."""
        if not self.unprocessed:
            return
        txn_id = self.unprocessed[pick % len(self.unprocessed)]
        self.rig.run(lambda s: self.rig.core.timed_out(txn_id, self.tick(), s))
        self.issuer_decides(self.unprocessed.index(txn_id), approve=True)

    def pump(self, rounds: int) -> None:
        """Deliver what the queue has due now; the issuer acknowledges each with 00."""
        for _ in range(rounds + 1):
            now = self.tick()
            sends = self.rig.run(lambda s, now=now: self.rig.core.advices_due(now, s, UP))
            for send in sends:
                advice = decode_message(send.body)
                assert advice.mti in ("0420", "0421")
                txn_id = next(
                    t for t, body in self.forwards.items() if _same_original(body, advice)
                )
                self.holds.discard(txn_id)
                self.undone_at_issuer.add(txn_id)
                result = self.rig.issuer(issuer_answer(send.body, "00"), self.tick())
                assert isinstance(result, (AdviceAcked, Ignored)), result
            self.now += 60_000  # past any backoff

    def finish(self) -> None:
        """Every deadline passes, then the queue drains."""
        for txn_id in sorted(self.forwards):
            self.rig.run(lambda s, t=txn_id: self.rig.core.timed_out(t, self.tick(), s))
        for _ in range(10):
            if not self.rig.run(lambda s: s.due_advices(2**62, 1_000, [LINK])):
                break
            self.pump(0)
        assert not self.rig.run(lambda s: s.due_advices(2**62, 1_000, [LINK]))


def _same_original(forwarded: bytes, advice: Message) -> bool:
    original = decode_message(forwarded)
    return original.fields[11] == advice.fields[11] and original.fields[7] == advice.fields[7]


def _run(world: World, steps: list[Step]) -> None:
    for name, arg, variant in steps:
        match name:
            case "sale":
                world.sale(arg, variant)
            case "duplicate":
                world.duplicate(arg)
            case "reverse":
                world.reverse(arg)
            case "approve" | "decline":
                world.issuer_decides(arg, approve=name == "approve")
            case "timeout":
                world.timeout(arg)
            case "late":
                world.late(arg)
            case "pump":
                world.pump(arg)
            case _:
                raise AssertionError(name)
    world.finish()


def _check(world: World) -> None:
    rig = world.rig
    txns = [rig.run(lambda s, t=t: s.txn(t)) for t in txn_ids(rig)]
    assert all(t is not None and t.state in FINAL for t in txns), [
        (t.id, t.kind.value, t.state.value) for t in txns if t is not None
    ]
    sales = {t.id: t for t in txns if t is not None and t.kind is TxnKind.SALE}
    approved = {t_id for t_id, t in sales.items() if t.state is TxnState.APPROVED}
    assert world.holds == approved, (world.holds, approved)
    for stan, txn_id in world.txn_of.items():
        txn = sales[txn_id]
        if stan in world.reversed_after_sale:
            assert txn.state is not TxnState.APPROVED
        if stan not in world.reversed_any:
            stored = rig.run(lambda s, key=txn.request_key: s.response(key))
            assert stored is not None, "a sale the terminal never heard about"
            assert (stored[1][39] == "00") == (txn.state is TxnState.APPROVED)
    assert len(set(world.forwards)) == len(world.forwards)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(step, max_size=14))
def test_no_debit_without_an_approved_switch_txn(steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rig = build_rig(sqlite_url(Path(tmp) / "switch.sqlite3"))
        try:
            device = rig.devices[TERMINAL]
            rig.sign_on(device)
            world = World(rig, device)
            _run(world, steps)
            _check(world)
        finally:
            rig.engine.dispose()
