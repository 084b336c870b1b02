"""A POS terminal as a simulated device: the real terminal core, its journal, a cashier.

It does what the TCP device loop does (send what the core says, wait until the deadline it
names, hand back what came or "no answer"), on simulated time. Power can fail at any step,
including just after a journal commit; the terminal then restarts with its journal and the
next command recovers whatever was left in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cardtally.sim._cashier import Cashier
from cardtally.sim._faults import Fault, Hop
from cardtally.sim._journal import MemoryJournal
from cardtally.sim._party import Party, SimContext
from cardtally.sim._scheduler import Timer
from cardtally.sim._undo import CommitFailedError, CrashError
from cardtally.terminal import (
    Answer,
    Command,
    Done,
    NoAnswer,
    Outcome,
    Send,
    Step,
    TerminalCore,
    Wait,
)

THINK_MS_MIN: Final = 2_000
THINK_MS_MAX: Final = 30_000


class TerminalShell(Party):
    kind = "terminal"
    crash_fault = Fault.POWER_LOSS

    def __init__(
        self,
        ctx: SimContext,
        journal: MemoryJournal,
        cashier: Cashier,
        *,
        timeout_ms: int,
        skew_ms: int,
    ) -> None:
        super().__init__(ctx, journal.log, skew_ms)
        self.name = journal.terminal_id
        self.journal = journal
        self.cashier = cashier
        self.timeout_ms = timeout_ms
        self.core = TerminalCore(journal, timeout_ms=timeout_ms)
        self.to_switch: Callable[[bytes, str], None] = lambda body, tag: None
        self.command: Command | None = None
        self.deadline: Timer | None = None
        self.tag = ""
        self.commands = 0
        self.idle = False
        self.after_step: Callable[[TerminalShell, Command, Outcome], None] = lambda *a: None

    # -- the cashier's commands --------------------------------------------------------------

    def wake(self, incarnation: int | None = None) -> None:
        if not self.up or self.command is not None:
            return
        if incarnation is not None and incarnation != self.incarnation:
            return
        command = self.cashier.next_command()
        if command is None:
            self.idle = True
            return
        self.idle = False
        self.commands += 1
        self.command = command
        self.tag = f"{self.name}#{self.commands}"
        self.note(f"start {_describe(command)}", self.tag)
        self._drive(lambda: self.core.start(command, self.now_ms()))

    def _drive(self, advance: Callable[[], Step]) -> None:
        try:
            step = advance()
        except (CrashError, CommitFailedError) as exc:
            self.crash(f"(power or flash failure: {exc})", self.tag)
            return
        except Exception as exc:
            self.ctx.failed(self.name, "command", exc, self.tag)
            self._finish_abandoned()
            return
        if isinstance(step, Send):
            self._cancel_deadline()
            self.note(f"send {step.what}", self.tag)
            self.ctx.network.send(Hop.TERMINAL_SWITCH, step.body, self.tag, self.to_switch)
            self.deadline = self.ctx.scheduler.after(
                step.timeout_ms, self._timed_out, self.incarnation
            )
        elif isinstance(step, Done):
            self._done(step.outcome)
        else:
            assert isinstance(step, Wait)

    def _done(self, outcome: Outcome) -> None:
        self._cancel_deadline()
        command, self.command = self.command, None
        assert command is not None
        txn = outcome.txn
        where = f" STAN {txn.stan:06d} batch {txn.batch_no:06d}" if txn else ""
        auto = f" auto reversal {outcome.auto_reversal}" if outcome.auto_reversal else ""
        self.note(f"done {outcome.status.value} {outcome.code or ''}{where}{auto}", self.tag)
        self.cashier.done(command, outcome)
        self.after_step(self, command, outcome)
        self._next_later()

    def _finish_abandoned(self) -> None:
        self._cancel_deadline()
        self.command = None
        self._next_later()

    def _next_later(self) -> None:
        think = self.ctx.rng.randint(THINK_MS_MIN, THINK_MS_MAX)
        self.ctx.scheduler.after(think, self.wake, self.incarnation)

    # -- what the switch sends back ----------------------------------------------------------

    def receive(self, body: bytes, tag: str) -> None:
        if not self.up or self.deadline is None:
            self.note("answer arrived with nobody waiting: dropped", tag)
            return
        if self.crash_now("on an answer"):
            self.crash("as an answer arrived", self.tag)
            return
        self._drive(lambda: self.core.on_event(Answer(body), self.now_ms()))

    def _timed_out(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return
        self.deadline = None
        self.note("no answer in time", self.tag)
        self._drive(lambda: self.core.on_event(NoAnswer("timeout"), self.now_ms()))

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    # -- power -------------------------------------------------------------------------------

    def on_crash(self) -> None:
        self._cancel_deadline()
        command, self.command = self.command, None
        if command is not None:
            self.cashier.interrupted(command)

    def on_restart(self) -> None:
        self.core = TerminalCore(self.journal, timeout_ms=self.timeout_ms)
        self._next_later()


def _describe(command: Command) -> str:
    name = type(command).__name__.lower()
    amount = getattr(command, "amount_minor", None)
    return f"{name} {amount / 100:.2f}" if isinstance(amount, int) else name
