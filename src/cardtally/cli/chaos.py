"""``cardtally chaos``: the deterministic fault simulator, seed after seed.

Each seed builds a network (issuer, switch, terminals, cardholders) and plays a business
day through the real cores with faults on every hop and in every party, checking the
promise all along. Exit 0 only if no seed broke an invariant; a broken one prints its seed,
the invariant, the transaction's timeline and the command that replays it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, err, fail, out

if TYPE_CHECKING:
    # The simulator is imported when chaos runs, not whenever the CLI starts.
    from cardtally.sim import FaultPlan, RunResult
    from cardtally.sim._summary import Failure, Summary

SEEDS_MAX: Final = 1_000_000
SWIPES_MAX: Final = 1_000_000
DAYS_MAX: Final = 7
JOBS_MAX: Final = 64
_TIMELINE_SHOWN: Final = 60

SeedsOpt = Annotated[
    int, typer.Option("--seeds", min=1, max=SEEDS_MAX, help="How many seeds to run.")
]
FirstSeedOpt = Annotated[
    int, typer.Option("--first-seed", min=0, help="The first seed; the others follow it.")
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, help="Run this one seed only (to reproduce a violation)."),
]
SwipesOpt = Annotated[
    int,
    typer.Option(
        "--swipes",
        min=1,
        max=SWIPES_MAX,
        help="Cardholder transactions per seed (sales, balances, voids, refunds, holds).",
    ),
]
DaysOpt = Annotated[
    int, typer.Option("--days", min=1, max=DAYS_MAX, help="Business days per seed.")
]
FaultsOpt = Annotated[
    str | None,
    typer.Option(
        "--faults",
        help=(
            "Faults to inject, comma-separated, each with an optional rate: "
            "loss,delay,duplicate,reorder,corrupt (per message; add @ts/@si/@is/@st for one "
            "hop), crash, power_loss, commit_fail (per step), slow_issuer, clock_skew, "
            "paper_out. Example: 'loss=0.05,crash,corrupt@st=0.1'. Default: all of them."
        ),
    ),
]
SwarmOpt = Annotated[
    bool,
    typer.Option("--swarm", help="A different mix of faults and rates for every seed."),
]
ReplayOpt = Annotated[
    bool,
    typer.Option("--replay", help="With --seed: print every event of the run, then its digest."),
]
OnlyFaultsOpt = Annotated[
    str | None,
    typer.Option(
        "--only-faults",
        help="With --seed: inject only these fault numbers (as printed by --shrink).",
    ),
]
ShrinkOpt = Annotated[
    bool,
    typer.Option(
        "--shrink", help="On a violation, look for a shorter fault schedule that still fails."
    ),
]
JobsOpt = Annotated[
    int,
    typer.Option("--jobs", min=1, max=JOBS_MAX, help="Processes running seeds side by side."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def chaos_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    seeds: SeedsOpt = 100,
    first_seed: FirstSeedOpt = 1,
    seed: SeedOpt = None,
    swipes: SwipesOpt = 500,
    days: DaysOpt = 1,
    faults: FaultsOpt = None,
    swarm: SwarmOpt = False,
    replay: ReplayOpt = False,
    only_faults: OnlyFaultsOpt = None,
    shrink_on_failure: ShrinkOpt = False,
    jobs: JobsOpt = 1,
    as_json: JsonOpt = False,
) -> None:
    """Run the deterministic fault simulator over many seeds and check the promise.

    Every seed plays a business day through the real terminal, switch and issuer cores on
    simulated time: cashiers at many terminals sell, check balances, void, refund and take
    pre-authorisations while messages are lost, delayed, duplicated, reordered and
    corrupted, parties crash before and after their commits, commits fail, the issuer slows
    down and clocks drift. Then every terminal settles, the day end reconciles and refunds,
    the faults stop and the queues drain. The invariants (ledger balanced, no balance below
    its floor, no swipe debited twice, no reversal dropped, every debit receipted or
    refunded with a notice, every receipt paid to its merchant, notices one to one with
    money movements) are checked throughout. Exit 0 only if no seed broke one.
    """
    plan = _plan(faults)
    allowed = _allowed(only_faults, seed)
    if replay and seed is None:
        fail("--replay needs --seed N: it replays one seed")
    if seed is not None:
        _one_seed(
            seed,
            swipes,
            days,
            plan,
            swarm=swarm,
            replay=replay,
            allowed=allowed,
            shrink_on_failure=shrink_on_failure,
            as_json=as_json,
        )
        return
    summary = _many(
        range(first_seed, first_seed + seeds),
        swipes=swipes,
        days=days,
        plan=plan,
        swarm=swarm,
        jobs=jobs,
        quiet=as_json,
    )
    _report(summary, as_json=as_json)
    if summary.failures and shrink_on_failure:
        _shrink(summary.failures[0].seed, swipes, days, plan, swarm=swarm)
    if not summary.ok:
        _replay_hint(summary.failures[0].seed, swipes, days, faults, swarm)
        raise typer.Exit(EXIT_PROBLEM)


# -- options ------------------------------------------------------------------------------------


def _plan(faults: str | None) -> FaultPlan | None:
    if faults is None:
        return None
    from cardtally.sim import FaultPlan, FaultSpecError  # noqa: PLC0415 - heavy, chaos only

    try:
        return FaultPlan.parse(faults)
    except FaultSpecError as exc:
        fail(f"--faults: {exc}")


def _allowed(text: str | None, seed: int | None) -> frozenset[int] | None:
    if text is None:
        return None
    if seed is None:
        fail("--only-faults needs --seed N: fault numbers belong to one seed's run")
    try:
        numbers = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"--only-faults takes fault numbers separated by commas, not {text!r}")
    if any(n <= 0 for n in numbers):
        fail("--only-faults: fault numbers start at 1")
    return numbers


# -- running ----------------------------------------------------------------------------------


def _run_seed(args: tuple[int, int, int, FaultPlan | None, bool]) -> RunResult:
    from cardtally.sim import simulate  # noqa: PLC0415 - heavy, chaos only

    seed, swipes, days, plan, swarm = args
    return simulate(seed, swipes, plan, swarm=swarm, days=days)


def _results(
    seeds: range, *, swipes: int, days: int, plan: FaultPlan | None, swarm: bool, jobs: int
) -> Iterator[RunResult]:
    work = [(seed, swipes, days, plan, swarm) for seed in seeds]
    if jobs == 1:
        yield from map(_run_seed, work)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        yield from pool.map(_run_seed, work, chunksize=max(1, len(work) // (jobs * 8)))


def _many(
    seeds: range,
    *,
    swipes: int,
    days: int,
    plan: FaultPlan | None,
    swarm: bool,
    jobs: int,
    quiet: bool,
) -> Summary:
    from cardtally.sim._summary import Summary  # noqa: PLC0415 - heavy, chaos only

    summary = Summary()
    columns = (
        TextColumn("[bold]chaos[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("seeds  {task.fields[swipes]:,} swipes  {task.fields[bad]} violations"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=quiet, transient=False) as progress:
        task = progress.add_task("seeds", total=len(seeds), swipes=0, bad=0)
        for result in _results(seeds, swipes=swipes, days=days, plan=plan, swarm=swarm, jobs=jobs):
            summary.add(result)
            progress.update(task, advance=1, swipes=summary.swipes, bad=len(summary.failures))
    return summary


def _one_seed(
    seed: int,
    swipes: int,
    days: int,
    plan: FaultPlan | None,
    *,
    swarm: bool,
    replay: bool,
    allowed: frozenset[int] | None,
    shrink_on_failure: bool,
    as_json: bool,
) -> None:
    from cardtally.sim import simulate  # noqa: PLC0415 - heavy, chaos only
    from cardtally.sim._summary import Summary  # noqa: PLC0415 - heavy, chaos only

    trace: list[str] = []
    result = simulate(
        seed,
        swipes,
        plan,
        swarm=swarm,
        days=days,
        allowed=allowed,
        keep_trace=trace if replay else None,
    )
    if replay and not as_json:
        for line in trace:
            out.print(escape(line))
    summary = Summary()
    summary.add(result)
    _report(summary, as_json=as_json)
    if not as_json:
        out.print(f"seed {seed}: {result.events:,} events, digest {result.digest}")
    if result.violation is not None:
        if shrink_on_failure:
            _shrink(seed, swipes, days, plan, swarm=swarm)
        raise typer.Exit(EXIT_PROBLEM)


def _shrink(seed: int, swipes: int, days: int, plan: FaultPlan | None, *, swarm: bool) -> None:
    if swarm:
        err.print("shrinking works on a fixed fault plan: rerun the seed without --swarm")
        return
    from cardtally.sim import FaultPlan, shrink, simulate  # noqa: PLC0415 - heavy, chaos only

    failing = simulate(seed, swipes, plan, days=days)
    if failing.violation is None:
        return
    err.print(f"shrinking seed {seed}: {len(failing.injections)} faults injected ...")
    shrunk = shrink(failing, plan or FaultPlan.default(), swipes=swipes, days=days)
    numbers = ",".join(str(n) for n in sorted(shrunk.allowed))
    still = shrunk.result.violation.invariant if shrunk.result.violation else "?"
    out.print(
        f"shrunk to {len(shrunk.allowed)} of {len(failing.injections)} faults in "
        f"{shrunk.replays} replays; still {still}"
    )
    out.print(
        f"replay: cardtally chaos --seed {seed} --swipes {swipes} --only-faults {numbers} --replay"
    )


def _replay_hint(seed: int, swipes: int, days: int, faults: str | None, swarm: bool) -> None:
    parts = [f"cardtally chaos --seed {seed} --swipes {swipes}"]
    if days != 1:
        parts.append(f"--days {days}")
    if faults is not None:
        parts.append(f"--faults '{faults}'")
    if swarm:
        parts.append("--swarm")
    out.print("replay: " + " ".join(parts) + " --replay")


# -- the report ---------------------------------------------------------------------------------


def _report(summary: Summary, *, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(_as_dict(summary)))
        return
    out.print(_run_table(summary))
    out.print(_faults_table(summary))
    out.print(_outcomes_table(summary))
    for failure in summary.failures[:3]:
        _print_failure(failure)


def _run_table(summary: Summary) -> Table:
    table = Table(title="Simulated", show_header=False)
    rate = summary.swipes / summary.cpu_s if summary.cpu_s else 0.0
    rows = [
        ("seeds", f"{summary.seeds:,}"),
        ("swipes", f"{summary.swipes:,}"),
        ("events", f"{summary.events:,}"),
        ("simulated time", f"{summary.sim_ms / 3_600_000:,.1f} h"),
        ("swipes per second per core", f"{rate:,.0f}"),
        ("violations", f"{len(summary.failures)}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _faults_table(summary: Summary) -> Table:
    table = Table(title="Faults injected")
    table.add_column("fault")
    table.add_column("where")
    table.add_column("count", justify="right")
    for where, count in sorted(summary.faults.items()):
        kind, _, place = where.partition(" ")
        table.add_row(kind, place or "-", f"{count:,}")
    for kind, count in sorted(summary.crashes.items()):
        table.add_row("restarts", kind, f"{count:,}")
    return table


def _outcomes_table(summary: Summary) -> Table:
    from cardtally.clearing._resolution import RESOLUTIONS  # noqa: PLC0415 - heavy, chaos only

    table = Table(title="What happened")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for status, count in summary.statuses.most_common():
        table.add_row(f"terminal: {status}", f"{count:,}")
    for code, count in summary.declines.most_common(6):
        table.add_row(f"  declined {code}", f"{count:,}")
    table.add_row("interrupted money transactions", f"{summary.interrupted:,}")
    for name in RESOLUTIONS:
        table.add_row(f"  {name}", f"{summary.resolutions.get(name, 0):,}")
    for klass, count in sorted(summary.dayend.items()):
        if count:
            table.add_row(f"day end: {klass}", f"{count:,}")
    return table


def _print_failure(failure: Failure) -> None:
    violation = failure.violation
    out.print(
        f"\n[bold red]VIOLATION[/] seed {failure.seed}: [bold]{violation.invariant}[/]: "
        f"{escape(violation.detail)}",
        markup=True,
    )
    if failure.timeline:
        out.print("timeline of the transaction:")
        for line in failure.timeline[-_TIMELINE_SHOWN:]:
            out.print("  " + escape(line))


def _as_dict(summary: Summary) -> dict[str, Any]:
    from cardtally.clearing._resolution import RESOLUTIONS  # noqa: PLC0415 - heavy, chaos only
    from cardtally.sim import INVARIANTS  # noqa: PLC0415 - heavy, chaos only

    return {
        "seeds": summary.seeds,
        "swipes": summary.swipes,
        "events": summary.events,
        "ok": summary.ok,
        "faults": dict(summary.faults),
        "faults_by_kind": dict(summary.faults_by_kind()),
        "restarts": dict(summary.crashes),
        "statuses": dict(summary.statuses),
        "declines": dict(summary.declines),
        "interrupted": summary.interrupted,
        "resolutions": {name: summary.resolutions.get(name, 0) for name in RESOLUTIONS},
        "dayend": dict(summary.dayend),
        "invariants": list(INVARIANTS),
        "violations": [
            {
                "seed": f.seed,
                "invariant": f.violation.invariant,
                "detail": f.violation.detail,
                "timeline": list(f.timeline),
                "digest": f.digest,
            }
            for f in summary.failures
        ],
        "cpu_seconds": round(summary.cpu_s, 3),
        "jobs_cpu_count": os.cpu_count(),
    }
