"""One simulated run: build the network from a seed, play the day with faults, check.

A cycle is a business day: the cashiers work through their swipes while faults strike,
every terminal settles, and the day end runs at the cutoff whatever state the network is
in. Then the faults stop: parties come back, terminals settle what is left (their pending
reversals go first), the switch's queue drains, and the next day end runs for what was
carried. Only then are the end-of-cycle invariants checked; the others are checked after
every step all along. The first violation stops the run.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cardtally.clearing._calendar import BusinessDay
from cardtally.clearing._resolution import interruptions
from cardtally.sim._cashier import Budget, Cashier
from cardtally.sim._dayend import DayEndRefusedError, SimDayEnd
from cardtally.sim._faults import Fault, FaultPlan, Faults, Hop
from cardtally.sim._hosts import IssuerShell, SwitchShell
from cardtally.sim._invariants import Checker, Violation, ViolationFound
from cardtally.sim._issuer_store import MemoryIssuerStore
from cardtally.sim._journal import MemoryJournal
from cardtally.sim._network import Network
from cardtally.sim._party import SimContext, Unexpected
from cardtally.sim._scheduler import Scheduler
from cardtally.sim._switch_store import MemorySwitchStore
from cardtally.sim._terminal import THINK_MS_MAX, TerminalShell
from cardtally.sim._trace import Trace
from cardtally.sim._undo import CommitFailedError, CrashError
from cardtally.sim._world import (
    CURRENCY,
    CUTOFF_MINUTES,
    ISSUER_TIMEOUT_MS,
    LINK_ID,
    TERMINAL_TIMEOUT_MS,
    Sizes,
    first_day,
    issuer_route,
    make_cardholders,
    make_issuer_core,
    make_keys,
    make_merchants,
    make_switch_core,
    make_terminals,
    new_card,
    opening_ms,
    password_hashes,
    seeded_key,
    switch_terminal,
)
from cardtally.terminal import Command, Outcome, Status
from cardtally.terminal._model import BatchState

#: Work must be done this long before the cutoff, or it waits for the next day.
_CLOSING_MS: Final = 10 * 60_000
_AFTER_CUTOFF_MS: Final = 3 * 60_000
_QUIET_LIMIT_MS: Final = 2 * 3_600_000
_DAYEND_TRIES_MAX: Final = 20
_DAYEND_RETRY_MS: Final = 30_000
#: A mutation a test injects: called with the run's parts before the first step.
Mutation = Callable[["Run"], None]


@dataclass
class RunResult:
    seed: int
    swipes: int
    digest: str
    events: int
    plan: str
    faults: Counter[str]
    crashes: dict[str, int]
    statuses: Counter[str]
    declines: Counter[str]
    resolutions: Counter[str]
    dayend: Counter[str]
    violation: Violation | None
    timeline: list[str]
    injections: list[int]
    sim_ms: int
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.violation is None


@dataclass
class Run:
    """The parts of one run, wired (tests reach in to inject a mutation)."""

    seed: int
    ctx: SimContext
    issuer: IssuerShell
    switch: SwitchShell
    terminals: list[TerminalShell]
    checker: Checker
    dayend: SimDayEnd
    budget: Budget
    statuses: Counter[str] = field(default_factory=Counter)
    declines: Counter[str] = field(default_factory=Counter)
    dayend_counts: Counter[str] = field(default_factory=Counter)
    matched: set[int] = field(default_factory=set)  # switch txns a day end matched


def simulate(
    seed: int,
    swipes: int,
    plan: FaultPlan | None = None,
    *,
    swarm: bool = False,
    days: int = 1,
    allowed: frozenset[int] | None = None,
    mutation: Mutation | None = None,
    keep_trace: list[str] | None = None,
) -> RunResult:
    """Run ``seed`` with ``swipes`` cardholder transactions over ``days`` business days."""
    assert swipes > 0 and days > 0
    started = time.process_time()
    root = random.Random(seed)
    streams = [random.Random(root.getrandbits(64)) for _ in range(6)]
    if swarm:
        plan = FaultPlan.swarm(streams[-1])
    plan = plan or FaultPlan.default()
    day = first_day()
    run = _build(seed, swipes=swipes, plan=plan, day=day, allowed=allowed, streams=streams)
    if mutation is not None:
        mutation(run)
    violation = None
    try:
        _play(run, day, days, swipes)
    except ViolationFound as found:
        violation = found.violation
    if keep_trace is not None:
        trace = run.ctx.trace
        keep_trace.extend(f"{line.text(trace.start_ms)}  [{line.tag}]" for line in trace.lines)
    return _result(run, plan, violation, time.process_time() - started)


def _build(
    seed: int,
    *,
    swipes: int,
    plan: FaultPlan,
    day: BusinessDay,
    allowed: frozenset[int] | None,
    streams: list[random.Random],
) -> Run:
    workload_rng, fault_rng, net_rng, party_rng, key_rng, _ = streams
    start_ms = opening_ms(day)
    scheduler = Scheduler(start_ms)
    faults = Faults(plan, fault_rng, allowed=allowed)
    trace = Trace(start_ms)
    timeouts = {
        Hop.TERMINAL_SWITCH: TERMINAL_TIMEOUT_MS,
        Hop.SWITCH_TERMINAL: TERMINAL_TIMEOUT_MS,
        Hop.SWITCH_ISSUER: ISSUER_TIMEOUT_MS,
        Hop.ISSUER_SWITCH: ISSUER_TIMEOUT_MS,
    }
    network = Network(scheduler, faults, net_rng, trace, timeouts)
    ctx = SimContext(scheduler, faults, trace, network, party_rng)
    sizes = Sizes.for_swipes(swipes)
    issuer_keys, data_keys = make_keys(key_rng)
    issuer_store = MemoryIssuerStore()
    holders = make_cardholders(workload_rng, sizes.cardholders)
    for holder in holders:
        issuer_store.issue_card(new_card(holder, workload_rng), data_keys, issuer_keys, start_ms)
    issuer = IssuerShell(
        ctx, make_issuer_core(issuer_keys, data_keys), issuer_store, faults.skew_ms()
    )
    switch_store = MemorySwitchStore()
    merchants = make_merchants(workload_rng, sizes.merchants, start_ms)
    for merchant in merchants:
        switch_store.add_merchant(merchant)
    switch_store.add_route(issuer_route())
    switch = SwitchShell(
        ctx,
        make_switch_core(issuer_keys, key_rng),
        switch_store,
        faults.skew_ms(),
        link_ids=frozenset({LINK_ID}),
    )
    switch.issuer, issuer.switch = issuer, switch
    budget = Budget(swipes)
    admin_hash, unlock_hash = password_hashes(seeded_key(key_rng))
    terminals = []
    journals = {}

    def paper_out() -> bool:
        return faults.roll(Fault.PAPER_OUT, "printer")

    for spec in make_terminals(key_rng, merchants, sizes.terminals):
        switch_store.add_terminal(switch_terminal(spec, start_ms), spec.master_key)
        journal = MemoryJournal.install(
            terminal_id=spec.terminal_id,
            merchant_id=spec.merchant_id,
            merchant_name=spec.merchant_name,
            master_key=spec.master_key,
            mac_algorithm=switch_terminal(spec, start_ms).mac_algorithm,
            admin_hash=admin_hash,
            unlock_hash=unlock_hash,
            now_ms=start_ms,
        )
        journals[spec.terminal_id] = journal
        cashier = Cashier(random.Random(workload_rng.getrandbits(64)), holders, budget, paper_out)
        shell = TerminalShell(
            ctx, journal, cashier, timeout_ms=TERMINAL_TIMEOUT_MS, skew_ms=faults.skew_ms()
        )
        shell.to_switch = switch.inbox_for(shell)
        terminals.append(shell)
    checker = Checker(issuer_store, switch_store, journals, ctx.txn_tags)
    dayend = SimDayEnd(switch_store, issuer_store, currency=CURRENCY)
    run = Run(seed, ctx, issuer, switch, terminals, checker, dayend, budget)
    _wire_checks(run)
    return run


def _wire_checks(run: Run) -> None:
    checker = run.checker
    run.issuer.after_step = checker.after_issuer_step
    run.switch.after_step = checker.after_switch_step

    def terminal_done(shell: TerminalShell, command: Command, outcome: Outcome) -> None:
        del command
        run.statuses[outcome.status.value] += 1
        if outcome.status is Status.DECLINED and outcome.code:
            run.declines[outcome.code] += 1
        checker.after_terminal_step(shell.name, shell.tag)

    def unexpected(found: Unexpected) -> None:
        checker.unexpected(found.party, found.what, found.error, found.tag)

    for shell in run.terminals:
        shell.after_step = terminal_done
    run.ctx.on_unexpected = unexpected


# -- the cycle ---------------------------------------------------------------------------------


def _play(run: Run, day: BusinessDay, days: int, swipes: int) -> None:
    scheduler = run.ctx.scheduler
    run.switch.start()
    per_day = -(-swipes // days)
    run.budget.remaining = 0
    for n in range(days):
        if n:
            day = day.next(CUTOFF_MINUTES)
            _jump_to(run, opening_ms(day))
        run.budget.remaining = min(per_day, swipes - n * per_day)
        for shell in run.terminals:
            scheduler.after(run.ctx.rng.randint(0, THINK_MS_MAX), shell.wake, shell.incarnation)
        _run_until_idle(run, day.end_ms - _CLOSING_MS)
        _settle_all(run, day.end_ms - _CLOSING_MS // 2)
        scheduler.advance_to(day.end_ms + _AFTER_CUTOFF_MS)
        _day_end(run, day)
    _quiet(run)
    following = day.next(CUTOFF_MINUTES)
    _jump_to(run, following.end_ms + _AFTER_CUTOFF_MS)
    _day_end(run, following)
    run.checker.end_of_cycle(run.matched)


def _jump_to(run: Run, at_ms: int) -> None:
    run.ctx.scheduler.advance_to(at_ms)


def _all_idle(run: Run) -> bool:
    return all(t.up and t.command is None and t.idle for t in run.terminals)


def _run_until_idle(run: Run, limit_ms: int) -> None:
    run.ctx.scheduler.run_until(lambda: _all_idle(run), limit_ms=limit_ms)


def _settle_all(run: Run, limit_ms: int) -> None:
    for shell in run.terminals:
        shell.cashier.settle_wanted = True
        if shell.command is None:
            shell.wake()
    _run_until_idle(run, limit_ms)


def _day_end(run: Run, day: BusinessDay) -> None:
    """The day end at the cutoff; as the real one, it waits for swipes still in flight."""
    why = ""
    for _ in range(_DAYEND_TRIES_MAX):
        try:
            result = run.dayend.run(day, run.switch.now_ms())
            break
        except DayEndRefusedError as refused:
            why = str(refused)
            run.ctx.trace.add(run.ctx.scheduler.now_ms, "dayend", f"refused: {why}")
        except CommitFailedError:
            # A refund's commit at the issuer failed: the day end resumes where it stopped.
            run.ctx.trace.add(run.ctx.scheduler.now_ms, "dayend", "a refund's commit failed")
        except CrashError:
            run.issuer.crash("just after committing a day-end refund")
        run.ctx.scheduler.advance_to(run.ctx.scheduler.now_ms + _DAYEND_RETRY_MS)
    else:
        raise ViolationFound(
            Violation("queues_drain", f"the day end of {day.text} could not run: {why}")
        )
    run.ctx.trace.add(
        run.ctx.scheduler.now_ms,
        "dayend",
        f"{day.text}: " + ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())),
    )
    run.dayend_counts.update(result.counts)
    run.matched.update(
        item.switch_txn_id
        for item in result.items
        if item.klass == "matched" and item.switch_txn_id is not None
    )
    for refund in result.refunds:
        run.ctx.trace.add(run.ctx.scheduler.now_ms, "dayend", f"refund {refund.record_id}")


def _quiet(run: Run) -> None:
    """The faults stop: everyone comes back, every terminal settles, the queue drains."""
    run.ctx.faults.quiet = True
    for party in (run.issuer, run.switch, *run.terminals):
        if not party.up:
            party.restart()
    limit_ms = run.ctx.scheduler.now_ms + _QUIET_LIMIT_MS
    for shell in run.terminals:
        if _needs_settling(shell):
            shell.cashier.settle_wanted = True
            if shell.command is None:
                shell.wake()
    run.ctx.scheduler.run_until(lambda: _drained(run), limit_ms=limit_ms)


def _needs_settling(shell: TerminalShell) -> bool:
    journal = shell.journal
    if journal.pending_reversal() is not None:
        return True
    batch = journal.batch(journal.profile().batch_no)
    return batch.state is not BatchState.OPEN or bool(journal.txns(batch.batch_no))


def _drained(run: Run) -> bool:
    if not _all_idle(run):
        return False
    if any(a.acked_at_ms is None for a in run.switch.store.all_advices()):
        return False
    return all(t.journal.pending_reversal() is None for t in run.terminals)


# -- the result ------------------------------------------------------------------------------


def _result(run: Run, plan: FaultPlan, violation: Violation | None, cpu_s: float) -> RunResult:
    ctx = run.ctx
    tags = set(violation.tags) if violation else set()
    if violation:
        tags.update(ctx.txn_tags[r] for r in violation.rrns if r in ctx.txn_tags)
    return RunResult(
        seed=run.seed,
        swipes=sum(t.cashier.swipes for t in run.terminals),
        digest=ctx.trace.digest,
        events=ctx.trace.count,
        plan=plan.describe(),
        faults=Counter(ctx.faults.injected),
        crashes=dict(ctx.crashes),
        statuses=run.statuses,
        declines=run.declines,
        resolutions=interruptions(run.checker.issuer, run.checker.switch, run.checker.journals)
        if violation is None
        else Counter(),
        dayend=run.dayend_counts,
        violation=violation,
        timeline=ctx.trace.timeline(tags) if violation else [],
        injections=list(ctx.faults.numbers),
        sim_ms=ctx.scheduler.now_ms - ctx.trace.start_ms,
        wall_s=cpu_s,
    )
