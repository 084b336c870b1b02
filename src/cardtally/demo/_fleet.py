"""The terminals of the demo's business day: one thread per terminal, each with its cashier.

Each terminal is the real terminal core over its real journal (SQLite, in the home), driven
by :class:`~cardtally.runtime.terminal_device.TerminalDevice` over TCP, as ``cardtally
terminal`` drives it; the simulator's cashier (:class:`~cardtally.sim._cashier.Cashier`)
decides what happens next from what the terminal showed, so the demo's day and the
simulator's days are made of the same people.

A terminal switched off mid-sale is a real process killed: the sale runs as ``cardtally
terminal sale`` in a child process, the proxy swallows the switch's answer to it and tells
the fleet, and the child gets SIGKILL while it waits. The journal on disk keeps the sale in
flight; the next command on that terminal (in this process again) recovers it and sends the
reversal first, as a terminal does after its battery dies.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cardtally.demo._proxy import FaultProxy
from cardtally.runtime.terminal_device import SwitchAddress, TerminalDevice
from cardtally.security import DataKeys
from cardtally.sim._cashier import Budget, Cashier
from cardtally.sim._world import Cardholder, TerminalSpec
from cardtally.terminal import Command, Journal, Outcome, Sale, Settle, Status, TerminalCore

#: How long a terminal waits for each answer. The switch gives an issuer 1.5 s, so a slow
#: issuer is answered 98 well inside this.
TERMINAL_TIMEOUT_MS: Final = 4_000
#: Tries to settle a terminal's batch at the end of the day (each one is a full exchange).
SETTLE_TRIES_MAX: Final = 6
POWER_OFF_WAIT_S: Final = 30.0
_CHILD_STOP_S: Final = 30.0


class SharedBudget(Budget):
    """The day's swipes, taken by many terminal threads at once."""

    def __init__(self, remaining: int) -> None:
        super().__init__(remaining)
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            return super().take()


@dataclass(frozen=True, slots=True)
class FleetFaults:
    """The terminal-side faults: paper running out, and terminals switched off mid-sale."""

    paper_out: float
    power_offs: int  # terminals switched off mid-sale over the day
    seed: int


@dataclass
class FleetReport:
    """What the fleet did, for progress and for the record (the tally reads the databases)."""

    swipes: int = 0
    power_offs: int = 0
    paper_outs: int = 0
    unsettled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """Every terminal of the sample network, run against the switch through ``proxy``."""

    def __init__(
        self,
        home: Path,
        data_keys: DataKeys,
        terminals: tuple[TerminalSpec, ...],
        holders: tuple[Cardholder, ...],
        *,
        proxy: FaultProxy,
        swipes: int,
        faults: FleetFaults,
    ) -> None:
        self.home = home
        self.keys = data_keys
        self.proxy = proxy
        self.address = SwitchAddress("127.0.0.1", proxy.port)
        self._budget = SharedBudget(swipes)
        self._rng = random.Random(faults.seed)
        self._faults = faults
        self.report = FleetReport()
        self._power_off_left = faults.power_offs
        self._power_every = max(1, swipes // (faults.power_offs + 1)) if faults.power_offs else 0
        self._workers = [
            _Worker(self, spec, self._cashier(holders, n)) for n, spec in enumerate(terminals)
        ]

    def _cashier(self, holders: tuple[Cardholder, ...], n: int) -> Cashier:
        rng = random.Random(self._faults.seed * 1_000 + n)
        cashier = Cashier(rng, list(holders), self._budget)
        cashier.paper_out = lambda: rng.random() < self._faults.paper_out
        return cashier

    # -- the day -------------------------------------------------------------------------------

    def run_day(self, on_command: Callable[[], None] = lambda: None) -> None:
        """Every terminal signs on and sells until the day's swipes are used up."""
        self._all(lambda worker: worker.sell(on_command))

    def settle_all(self, on_settled: Callable[[], None] = lambda: None) -> None:
        """Every terminal settles its batch (a pending reversal goes first)."""
        self._all(lambda worker: worker.settle(on_settled))

    def _all(self, job: Callable[[_Worker], None]) -> None:
        threads = [
            threading.Thread(target=job, args=(w,), name=f"terminal-{w.spec.terminal_id}")
            for w in self._workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # -- shared decisions ----------------------------------------------------------------------

    def power_off_now(self) -> bool:
        """Whether the next sale is the one during which its terminal is switched off."""
        with self.report.lock:
            if not self._power_off_left or self.report.swipes < self._power_every * (
                self._faults.power_offs - self._power_off_left + 1
            ):
                return False
            self._power_off_left -= 1
            return True

    def ran(self, command: Command) -> None:
        if isinstance(command, Sale) and command.paper_out:
            with self.report.lock:
                self.report.paper_outs += 1

    def swiped(self) -> None:
        with self.report.lock:
            self.report.swipes += 1

    def failed(self, terminal_id: str, what: str) -> None:
        with self.report.lock:
            self.report.errors.append(f"terminal {terminal_id}: {what}")


class _Worker:
    """One terminal and its cashier, on its own thread."""

    def __init__(self, fleet: Fleet, spec: TerminalSpec, cashier: Cashier) -> None:
        self.fleet = fleet
        self.spec = spec
        self.cashier = cashier
        self._journal: Journal | None = None
        self._core: TerminalCore | None = None

    def sell(self, on_command: Callable[[], None]) -> None:
        try:
            self._sell(on_command)
        except Exception as exc:  # reported, and the demo fails: never a silent thread death
            self.fleet.failed(self.spec.terminal_id, f"{type(exc).__name__}: {exc}")
        finally:
            self._power_down()

    def _sell(self, on_command: Callable[[], None]) -> None:
        while True:
            swipes = self.cashier.swipes
            command = self.cashier.next_command()
            if command is None:
                return
            if self.cashier.swipes > swipes:
                self.fleet.swiped()
            if isinstance(command, Sale) and self.fleet.power_off_now():
                self._switched_off_during(command)
            else:
                self.cashier.done(command, self._run(command))
            on_command()

    def settle(self, on_settled: Callable[[], None]) -> None:
        try:
            settled = self._settle()
        except Exception as exc:
            self.fleet.failed(self.spec.terminal_id, f"{type(exc).__name__}: {exc}")
            settled = False
        finally:
            self._power_down()
        if not settled:
            with self.fleet.report.lock:
                self.fleet.report.unsettled.append(self.spec.terminal_id)
        on_settled()

    def _settle(self) -> bool:
        self.cashier.settle_wanted = True
        for _ in range(SETTLE_TRIES_MAX):
            command = self.cashier.next_command()
            if command is None:
                return True
            outcome = self._run(command)
            self.cashier.done(command, outcome)
            if isinstance(command, Settle) and outcome.status in (Status.APPROVED, Status.DONE):
                return True
        return False

    def _run(self, command: Command) -> Outcome:
        if self._core is None:
            self._journal = Journal.open(self.fleet.home, self.spec.terminal_id, self.fleet.keys)
            self._core = TerminalCore(self._journal, timeout_ms=TERMINAL_TIMEOUT_MS)
        outcome = TerminalDevice(self._core, self.fleet.address).run(command)
        self.fleet.ran(command)
        return outcome

    def _power_down(self) -> None:
        """Let go of the journal: the terminal is off (or another process takes it)."""
        if self._journal is not None:
            self._journal.close()
        self._journal, self._core = None, None

    def _switched_off_during(self, sale: Sale) -> None:
        """The sale runs in a child process that is killed while it waits for the answer."""
        self._power_down()
        arrived = self.fleet.proxy.power_off_at_answer(self.spec.terminal_id)
        child = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
            self._sale_command(sale),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            arrived.wait(POWER_OFF_WAIT_S)
        finally:
            child.kill()
            child.wait(_CHILD_STOP_S)
            self.fleet.proxy.cancel_power_off(self.spec.terminal_id)
        with self.fleet.report.lock:
            self.fleet.report.power_offs += 1
        self.cashier.interrupted(sale)

    def _sale_command(self, sale: Sale) -> list[str]:
        card = sale.card
        amount = f"{sale.amount_minor // 100}.{sale.amount_minor % 100:02d}"
        command = [
            *(sys.executable, "-m", "cardtally", "--home", str(self.fleet.home)),
            *("terminal", "sale", "--terminal", self.spec.terminal_id, "--amount", amount),
            *("--pan", card.pan.reveal(), "--switch", str(self.fleet.address)),
            *("--timeout-s", str(POWER_OFF_WAIT_S), "--json"),
        ]
        if card.expiry:
            command += ["--expiry", card.expiry]
        if card.pin:
            command += ["--pin", card.pin]
        return command
