"""The issuer and the switch as simulated processes, driving the real cores.

They do what the TCP runtime's shells do with a core's effects (answer, forward and wait
with a deadline, join a wait, pump the advice queue, recover on start), on simulated time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

from cardtally.issuer import IssuerCore
from cardtally.issuer._service import malformed_answer
from cardtally.sim._faults import Fault, Hop
from cardtally.sim._issuer_store import MemoryIssuerStore
from cardtally.sim._party import Party, SimContext
from cardtally.sim._scheduler import Timer
from cardtally.sim._switch_store import MemorySwitchStore
from cardtally.sim._world import ISSUER_TIMEOUT_MS
from cardtally.switch import SwitchCore
from cardtally.switch._effects import (
    AdviceAcked,
    Answer,
    Forward,
    Ignored,
    Join,
    TerminalAnswer,
)
from cardtally.wire import DecodeError, decode_message

if TYPE_CHECKING:
    from cardtally.sim._terminal import TerminalShell

SERVICE_MS_MIN: Final = 1
SERVICE_MS_MAX: Final = 3
SLOW_SPELL_MS_MIN: Final = 20_000
SLOW_SPELL_MS_MAX: Final = 120_000
#: The runtime pumps every 250 ms; a second is as good for correctness and four times cheaper.
ADVICE_PUMP_MS: Final = 1_000
#: The runtime retries a deadline whose settling failed after this long.
DEADLINE_RETRY_MS: Final = 1_000
_FAR_FUTURE_MS: Final = 2**62


class IssuerShell(Party):
    name = "issuer"
    kind = "issuer"

    def __init__(
        self, ctx: SimContext, core: IssuerCore, store: MemoryIssuerStore, skew_ms: int
    ) -> None:
        super().__init__(ctx, store.log, skew_ms)
        self.core = core
        self.store = store
        self.switch: SwitchShell | None = None
        self.slow_until_ms = 0
        self.after_step: Callable[[str], None] = lambda tag: None

    def receive(self, body: bytes, tag: str) -> None:
        if not self.up:
            self.note("down: message lost", tag)
            return
        self.ctx.scheduler.after(self._service_ms(tag), self._handle, body, tag, self.incarnation)

    def _service_ms(self, tag: str) -> int:
        now, rng = self.ctx.scheduler.now_ms, self.ctx.rng
        if now >= self.slow_until_ms and self.ctx.faults.roll(Fault.SLOW_ISSUER):
            self.slow_until_ms = now + rng.randint(SLOW_SPELL_MS_MIN, SLOW_SPELL_MS_MAX)
            self.note("a slow spell begins", tag)
        if now < self.slow_until_ms:
            # Slow against the switch's deadline for an answer: some in time, most not.
            return rng.randint(ISSUER_TIMEOUT_MS // 3, ISSUER_TIMEOUT_MS * 2)
        return rng.randint(SERVICE_MS_MIN, SERVICE_MS_MAX)

    def _handle(self, body: bytes, tag: str, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return  # queued in a process that has since died
        if self.crash_now("before its commit"):
            self.crash("while handling a request", tag)
            return
        try:
            message = decode_message(body)
        except DecodeError:
            answer = malformed_answer(body)
            self.note("undecodable request: " + ("30" if answer else "link closed"), tag)
            if answer is not None:
                self._send(answer, tag)
            return
        outcome = self.step(
            f"{message.mti}", tag, lambda now: self.core.handle(message, now, self.store, body)
        )
        if outcome is None:
            return
        self.note(f"{message.mti} {outcome.result} {outcome.response_code} {outcome.reason}", tag)
        self.after_step(tag)
        if outcome.response is not None:
            self._send(self.core.encode_answer(outcome.response), tag)

    def _send(self, body: bytes, tag: str) -> None:
        assert self.switch is not None
        self.ctx.network.send(Hop.ISSUER_SWITCH, body, tag, self.switch.from_issuer)


class SwitchShell(Party):
    name = "switch"
    kind = "switch"

    def __init__(
        self,
        ctx: SimContext,
        core: SwitchCore,
        store: MemorySwitchStore,
        skew_ms: int,
        *,
        link_ids: frozenset[str],
    ) -> None:
        super().__init__(ctx, store.log, skew_ms)
        self.core = core
        self.store = store
        self.link_ids = link_ids
        self.issuer: IssuerShell | None = None
        self.waits: dict[int, list[TerminalShell]] = {}
        self.deadlines: dict[int, Timer] = {}
        self.after_step: Callable[[str], None] = lambda tag: None
        self._pump_timer: Timer | None = None

    def start(self) -> None:
        self._pump_timer = None
        self.arm_pump()

    def arm_pump(self) -> None:
        """Pump while advices wait. The runtime pumps on a fixed beat; on simulated time an
        idle beat is pure cost (a day's wait would be 86,400 of them), and the queue can only
        fill through a step of this switch, after which this is called."""
        if self._pump_timer is not None or not self.up:
            return
        if self.store.due_advices(_FAR_FUTURE_MS, 1, self.link_ids):
            self._pump_timer = self.ctx.scheduler.after(
                ADVICE_PUMP_MS, self._pump, self.incarnation
            )

    # -- terminals ---------------------------------------------------------------------------

    def inbox_for(self, terminal: TerminalShell) -> Callable[[bytes, str], None]:
        return partial(self.from_terminal, terminal)

    def from_terminal(self, terminal: TerminalShell, body: bytes, tag: str) -> None:
        if not self.up:
            self.note("down: request lost", tag)
            return
        if self.crash_now("before its commit"):
            self.crash("while handling a terminal request", tag)
            return
        outcome = self.step(
            "terminal request", tag, lambda now: self.core.terminal_request(body, now, self.store)
        )
        if outcome is None:
            return
        self.after_step(tag)
        self.arm_pump()
        if isinstance(outcome, Answer):
            self.note(f"answered {outcome.code or '-'} ({outcome.outcome})", tag)
            if outcome.body is not None:
                self._to_terminal(terminal, outcome.body, tag)
        elif isinstance(outcome, Forward):
            self._forward(terminal, outcome, tag)
        else:
            assert isinstance(outcome, Join)
            self.note(f"repeat joins the wait for RRN {outcome.txn_id:012d}", tag)
            self.waits.setdefault(outcome.txn_id, []).append(terminal)

    def _forward(self, terminal: TerminalShell, forward: Forward, tag: str) -> None:
        self.ctx.txn_tags[forward.txn_id] = tag
        self.waits.setdefault(forward.txn_id, []).append(terminal)
        self.note(f"forwarded RRN {forward.txn_id:012d}", tag)
        assert self.issuer is not None
        self.ctx.network.send(Hop.SWITCH_ISSUER, forward.body, tag, self.issuer.receive)
        self.deadlines[forward.txn_id] = self.ctx.scheduler.at(
            self.true_ms(forward.deadline_ms), self._deadline, forward.txn_id, self.incarnation
        )

    def _to_terminal(self, terminal: TerminalShell, body: bytes, tag: str) -> None:
        self.ctx.network.send(Hop.SWITCH_TERMINAL, body, tag, terminal.receive)

    def _answer_waiters(self, answer: TerminalAnswer, tag: str) -> None:
        timer = self.deadlines.pop(answer.txn_id, None)
        if timer is not None:
            timer.cancel()
        for terminal in self.waits.pop(answer.txn_id, []):
            self._to_terminal(terminal, answer.body, tag)

    # -- the issuer side -----------------------------------------------------------------------

    def from_issuer(self, body: bytes, tag: str) -> None:
        if not self.up:
            self.note("down: issuer message lost", tag)
            return
        if self.crash_now("before its commit"):
            self.crash("while handling an issuer message", tag)
            return
        result = self.step(
            "issuer message", tag, lambda now: self.core.issuer_message(body, now, self.store)
        )
        if result is None:
            return
        self.after_step(tag)
        self.arm_pump()
        if isinstance(result, TerminalAnswer):
            self.note(f"relayed {result.code} for RRN {result.txn_id:012d}", tag)
            self._answer_waiters(result, tag)
        elif isinstance(result, AdviceAcked):
            self.note(f"advice {result.advice_id} acknowledged {result.code}", tag)
        else:
            assert isinstance(result, Ignored)
            self.note(f"ignored: {result.reason}", tag)

    def _deadline(self, txn_id: int, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return
        self.deadlines.pop(txn_id, None)
        tag = self.ctx.txn_tags.get(txn_id, "")
        result = self.step(
            "deadline", tag, lambda now: self.core.timed_out(txn_id, now, self.store)
        )
        if result is None:
            if self.up and incarnation == self.incarnation:
                self.deadlines[txn_id] = self.ctx.scheduler.after(
                    DEADLINE_RETRY_MS, self._deadline, txn_id, incarnation
                )
            return
        self.after_step(tag)
        self.arm_pump()
        if isinstance(result, TerminalAnswer):
            self.note(f"timed out: answered {result.code} for RRN {txn_id:012d}", tag)
            self._answer_waiters(result, tag)

    # -- the store-and-forward queue ---------------------------------------------------------

    def _pump(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return
        self._pump_timer = None
        sends = self.step(
            "advice pump",
            "",
            lambda now: self.core.advices_due(now, self.store, self.link_ids),
        )
        assert self.issuer is not None
        for send in sends or ():
            advice = self.store.advice(send.advice_id)
            tag = "" if advice is None else self.ctx.txn_tags.get(advice.txn_id, "")
            self.note(f"advice {send.advice_id} sent (attempt {send.attempt + 1})", tag)
            self.ctx.network.send(Hop.SWITCH_ISSUER, send.body, tag, self.issuer.receive)
        self.arm_pump()

    # -- crash and recovery --------------------------------------------------------------------

    def on_crash(self) -> None:
        self._pump_timer = None
        for timer in self.deadlines.values():
            timer.cancel()
        self.deadlines.clear()
        self.waits.clear()

    def on_restart(self) -> None:
        recovered = self.step("recover", "", lambda now: self.core.recover(now, self.store))
        for txn_id in recovered or ():
            self.note(
                f"recovered RRN {txn_id:012d}: reversal queued", self.ctx.txn_tags.get(txn_id, "")
            )
        if self.up:
            self.start()
