"""What every simulated party shares: its clock, its transactions, and how it crashes.

A step of a switch or issuer core runs in one transaction of its memory store, as it runs
in one database transaction at runtime; the terminal's journal opens its own, one per
method, as the SQLite journal does. A crash drops everything the process held in memory
(timers, waiting requests, a flow in progress) and keeps only the store; after a downtime
the party restarts and recovers from what was committed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from cardtally.sim._faults import Fault, Faults
from cardtally.sim._network import Network
from cardtally.sim._scheduler import Scheduler
from cardtally.sim._trace import Trace
from cardtally.sim._undo import CommitFailedError, CommitFault, CrashError, UndoLog

T = TypeVar("T")
DOWNTIME_MS_MIN: Final = 1_000
DOWNTIME_MS_MAX: Final = 20_000


@dataclass(frozen=True, slots=True)
class Unexpected:
    """An exception a core raised that no fault explains: always a finding."""

    party: str
    what: str
    error: str
    tag: str
    at_ms: int


@dataclass
class SimContext:
    """The run's shared machinery, handed to every party."""

    scheduler: Scheduler
    faults: Faults
    trace: Trace
    network: Network
    rng: random.Random  # service times and downtimes
    txn_tags: dict[int, str] = field(default_factory=dict)  # switch txn id -> swipe tag
    unexpected: list[Unexpected] = field(default_factory=list)
    crashes: dict[str, int] = field(default_factory=dict)
    on_unexpected: Callable[[Unexpected], None] | None = None

    def failed(self, party: str, what: str, exc: BaseException, tag: str) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.unexpected.append(Unexpected(party, what, error, tag, self.scheduler.now_ms))
        self.trace.add(self.scheduler.now_ms, party, f"UNEXPECTED {what}: {error}", tag)
        if self.on_unexpected is not None:
            self.on_unexpected(self.unexpected[-1])


class Party:
    """A process: up or down, with a clock that may be skewed and a store with a log."""

    name: str = "party"
    kind: str = "party"  # for counting crashes by kind
    crash_fault: Fault = Fault.CRASH

    def __init__(self, ctx: SimContext, log: UndoLog, skew_ms: int) -> None:
        self.ctx = ctx
        self.log = log
        self.skew_ms = skew_ms
        self.up = True
        self.incarnation = 0
        log.commit_fault = self._commit_fault

    def now_ms(self) -> int:
        return self.ctx.scheduler.now_ms + self.skew_ms

    def true_ms(self, local_ms: int) -> int:
        """The simulator's time at which this party's clock reads ``local_ms``."""
        return local_ms - self.skew_ms

    def note(self, what: str, tag: str = "") -> None:
        self.ctx.trace.add(self.ctx.scheduler.now_ms, self.name, what, tag)

    def _commit_fault(self) -> CommitFault:
        faults = self.ctx.faults
        if faults.roll(Fault.COMMIT_FAIL, self.kind):
            return CommitFault.FAIL
        if faults.roll(self.crash_fault, f"{self.kind} after commit"):
            return CommitFault.CRASH_AFTER
        return CommitFault.NONE

    def crash_now(self, where: str) -> bool:
        return self.ctx.faults.roll(self.crash_fault, f"{self.kind} {where}")

    def step(self, what: str, tag: str, work: Callable[[int], T]) -> T | None:
        """``work`` in one transaction; ``None`` when nothing of it was kept or acted on."""
        self.log.begin()
        try:
            result = work(self.now_ms())
        except Exception as exc:
            self.log.rollback()
            self.ctx.failed(self.name, what, exc, tag)
            return None
        try:
            self.log.commit()
        except CommitFailedError:
            self.note(f"{what}: commit failed, nothing kept", tag)
            return None
        except CrashError:
            self.crash("just after its commit", tag)
            return None
        return result

    def crash(self, why: str, tag: str = "") -> None:
        if self.log.in_transaction:
            self.log.rollback()
        self.up = False
        self.incarnation += 1
        self.ctx.crashes[self.kind] = self.ctx.crashes.get(self.kind, 0) + 1
        self.note(f"CRASH {why}", tag)
        self.on_crash()
        downtime = self.ctx.rng.randint(DOWNTIME_MS_MIN, DOWNTIME_MS_MAX)
        self.ctx.scheduler.after(downtime, self._restart, self.incarnation)

    def _restart(self, incarnation: int) -> None:
        if incarnation != self.incarnation or self.up:
            return
        self.restart()

    def restart(self) -> None:
        self.up = True
        self.note("restarted")
        self.on_restart()

    def on_crash(self) -> None:
        """Drop what the process held in memory."""

    def on_restart(self) -> None:
        """Recover from the store."""
