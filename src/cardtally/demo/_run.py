"""``cardtally demo``: a business day over real TCP with the seeds' interruptions, then the tally.

The order of the day:

1. a sample network in a fresh home (:mod:`cardtally.demo._sample`);
2. the issuer and the switch as separate processes on loopback ports, the switch reaching
   the issuer through a fault proxy, the terminals reaching the switch through another;
3. every terminal signs on and its cashier sells until the day's swipes are used up, many
   terminals at once, while the proxies lose answers and cut links at random, the issuer goes
   slow for a few seconds now and then, terminals are switched off mid-sale and printers run
   out of paper (:class:`Director` decides when);
4. late in the day the issuer link stops carrying reversal advices (an outage of the switch's
   store-and-forward path), so some debits whose answer was lost are still un-reversed when
   the day ends: the day end finds them one-sided and refunds them, as the seeds' banks do
   days later; after the day end the advices get through and find nothing left to undo;
5. faults stop; every terminal settles; the day end runs (closing the day now);
6. the switch's queue drains and the notices go out; the HTML day report is written;
7. the tally is read from the databases and the promise checked (:mod:`cardtally.demo._tally`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final, Protocol

from sqlalchemy.engine import Engine

from cardtally.clearing._calendar import day_of
from cardtally.clearing._clearing_out import day_directory
from cardtally.clearing._database import close_dayend, open_dayend
from cardtally.clearing._day_report import day_report
from cardtally.clearing._dayend import run_day
from cardtally.clearing._report import render_html
from cardtally.config import load_config
from cardtally.demo._fleet import Fleet, FleetFaults, FleetReport
from cardtally.demo._hosts import HostProcess
from cardtally.demo._proxy import Chances, FaultProxy
from cardtally.demo._sample import Ports, SampleNetwork, SampleSize, create_sample_home, free_port
from cardtally.demo._tally import Tally, notice_counts, read_tally
from cardtally.runtime import wall_clock_ms
from cardtally.security import load_data_keys
from cardtally.storage import transaction
from cardtally.switch._registry import queue_status

SWIPES_DEFAULT: Final = 2_000
#: Slow-issuer spells, as fractions of the day's swipes, and how long each lasts.
SLOW_SPELLS: Final = (0.25, 0.55, 0.92)
SLOW_SPELL_MS: Final = 1_500
#: The issuer answers this late during a spell: past the switch's 1.5 s timeout.
SLOW_DELAY_MS: Final = 2_500
#: From here on, and until the day end has run, reversal advices do not reach the issuer.
ADVICE_OUTAGE_AT: Final = 0.88
DRAIN_TIMEOUT_S: Final = 90.0
_POLL_S: Final = 0.2


class DemoUi(Protocol):
    """How the run shows its progress (the CLI draws bars; tests may ignore it)."""

    def stage(self, title: str, total: int | None = None) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class DemoOptions:
    swipes: int = SWIPES_DEFAULT
    seed: int = 1


@dataclass(frozen=True, slots=True)
class DemoResult:
    home: Path
    network: SampleNetwork
    tally: Tally
    report_path: Path
    injected: Counter[str]
    fleet: FleetReport
    elapsed_s: float
    hosts: tuple[HostProcess, ...]
    hosts_ok: bool  # both hosts were still running when the tally was read

    @property
    def ok(self) -> bool:
        return (
            self.tally.ok and self.hosts_ok and not self.fleet.errors and not self.fleet.unsettled
        )


class Director:
    """Turns the issuer slow, and cuts the advice path, as the day's swipes go by."""

    def __init__(self, link: FaultProxy, swipes: int, report: FleetReport) -> None:
        self._link = link
        self._report = report
        self._spells = [int(swipes * at) for at in SLOW_SPELLS]
        self._outage_at = int(swipes * ADVICE_OUTAGE_AT)
        self._lock = threading.Lock()  # every terminal thread ticks
        self.outage = False

    def tick(self) -> None:
        done = self._report.swipes
        with self._lock:
            while self._spells and done >= self._spells[0]:
                self._spells.pop(0)
                self._link.slow_answers(delay_ms=SLOW_DELAY_MS, for_ms=SLOW_SPELL_MS)
            if not self.outage and done >= self._outage_at:
                self.outage = True
                self._link.block_requests("042")  # 0420 and its repeats 0421


def run_demo(home: Path, options: DemoOptions, ui: DemoUi, stack: ExitStack) -> DemoResult:
    """Run the whole day in ``home`` (a new directory). The hosts and proxies stay up until
    ``stack`` closes, so a caller may leave the network running for exploration."""
    started = time.monotonic()
    return _run(home, options, ui, stack, started)


def _run(
    home: Path, options: DemoOptions, ui: DemoUi, stack: ExitStack, started: float
) -> DemoResult:
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    seed = options.seed
    link = stack.enter_context(
        FaultProxy(ports.issuer, chances=Chances(lose_answer=0.01, cut_link=0.002, seed=seed))
    )
    ui.stage("Building the sample network")
    network = create_sample_home(
        home,
        size=SampleSize.for_swipes(options.swipes),
        seed=seed,
        ports=ports,
        link_port=link.port,
        now_ms=wall_clock_ms(),
        progress=ui.note,
    )
    ui.stage("Starting the issuer and the switch")
    issuer, switch = _start_hosts(home, stack, ui)
    front = stack.enter_context(
        FaultProxy(ports.switch, chances=Chances(lose_answer=0.015, cut_link=0.005, seed=seed + 1))
    )
    data_keys = load_data_keys(home)
    fleet = Fleet(
        home,
        data_keys,
        network.terminals,
        network.cardholders,
        proxy=front,
        swipes=options.swipes,
        faults=FleetFaults(paper_out=0.02, power_offs=max(2, options.swipes // 700), seed=seed),
    )
    director = Director(link, options.swipes, fleet.report)
    start_ms = wall_clock_ms()
    last = [0]

    def on_command() -> None:
        director.tick()
        swiped = fleet.report.swipes
        if swiped > last[0]:
            ui.advance(swiped - last[0])
            last[0] = swiped

    ui.stage(f"Swipes ({len(network.terminals)} terminals at once)", options.swipes)
    fleet.run_day(on_command)
    for proxy in (front, link):
        proxy.set_chances(Chances())
    ui.stage("Settling every terminal's batch", len(network.terminals))
    fleet.settle_all(ui.advance)
    report_path, tally = _close_day(home, start_ms, link, ui)
    injected = link.injected + front.injected
    injected["terminal switched off mid-sale"] = fleet.report.power_offs
    injected["printer out of paper"] = fleet.report.paper_outs
    return DemoResult(
        home,
        network,
        tally,
        report_path,
        injected,
        fleet.report,
        time.monotonic() - started,
        (issuer, switch),
        hosts_ok=issuer.exited() is None and switch.exited() is None,
    )


def _start_hosts(home: Path, stack: ExitStack, ui: DemoUi) -> tuple[HostProcess, HostProcess]:
    issuer = HostProcess("issuer", home)
    issuer.start()
    stack.callback(issuer.stop)
    ui.note(f"issuer listening on port {issuer.wait_ready()} (pid {issuer.pid})")
    switch = HostProcess("switch", home)
    switch.start()
    # Stopped before the issuer (callbacks run last-in first-out): nothing left to forward.
    stack.callback(switch.stop)
    ui.note(f"switch listening on port {switch.wait_ready()} (pid {switch.pid})")
    return issuer, switch


def _close_day(home: Path, start_ms: int, link: FaultProxy, ui: DemoUi) -> tuple[Path, Tally]:
    config = load_config(home)
    day = day_of(start_ms, config.dayend.cutoff_minutes)
    ui.stage(f"Day end of {day.text} (closing the day now)")
    dayend = open_dayend(config, wall_clock_ms())
    try:
        run_day(dayend, day.day, wall_clock_ms(), ui.note, close_now=True)
        ui.stage("Advices through again: draining the store-and-forward queue")
        link.block_requests()
        _wait_for(lambda: _queue_depth(dayend.switch) == 0, ui, "advice queue")
        _wait_for(lambda: _undelivered(dayend.issuer) == 0, ui, "notice delivery")
        ui.stage("Writing the day report and reading the tally")
        report = day_report(dayend, day)
        path = day_directory(config.dayend.clearing_dir, day) / "dayend-report.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(report), encoding="utf-8")
        tally = read_tally(dayend, load_data_keys(home), report, wall_clock_ms())
    finally:
        close_dayend(dayend)
    return path, tally


def tally_of(home: Path, day: date) -> Tally:
    """The tally of a business day whose day end has run, read afresh from the databases."""
    dayend = open_dayend(load_config(home), wall_clock_ms())
    try:
        report = day_report(dayend, dayend.day(day))
        return read_tally(dayend, load_data_keys(home), report, wall_clock_ms())
    finally:
        close_dayend(dayend)


def _wait_for(done: Callable[[], bool], ui: DemoUi, what: str) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            ui.note(f"gave up waiting for the {what} after {DRAIN_TIMEOUT_S:.0f} s")
            return
        time.sleep(_POLL_S)


def _queue_depth(engine: Engine) -> int:
    with transaction(engine) as conn:
        return queue_status(conn, wall_clock_ms()).depth


def _undelivered(engine: Engine) -> int:
    with transaction(engine) as conn:
        written, delivered = notice_counts(conn)
    return written - delivered
