"""Simulated swipes per second per core: ``cardtally.sim.simulate`` on a fixed set of seeds.

Usage: python benchmarks/simulator.py [--seeds 10] [--swipes 1000] [--runs 3] [--faults TEXT]
                                      [--jobs 2] [--profile] [--json]

Each run plays the same seeds (1..N) one after another in one process and divides the swipes
simulated by the process's CPU time, so the figure is per core and does not depend on what
else the machine is doing (the machine is shared; CPU time is what a core gives us). A swipe
is one cardholder transaction (sale, balance, void, refund, pre-authorisation, completion);
everything around it is included: the real terminal, switch and issuer cores, their memory
stores, faults, retries, reversals, settlements, both day ends and every invariant check.
Every run must keep the promise (no violation) or the benchmark stops: a fast wrong run is
not a figure. ``--jobs J`` then runs J processes side by side on the same seeds to show what
the whole machine gives (wall clock), and ``--profile`` prints where one run's time goes.
``--json`` prints the figures as one JSON object on stdout (the per-run lines go to stderr),
for ``cardtally bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Final

from cardtally.sim import FaultPlan, simulate

_PROFILE_LINES: Final = 25


def _one_run(seeds: int, swipes: int, faults: str | None) -> tuple[int, float]:
    plan = FaultPlan.parse(faults) if faults else None
    started = time.process_time()
    done = 0
    for seed in range(1, seeds + 1):
        result = simulate(seed, swipes, plan)
        if result.violation is not None:
            sys.exit(f"seed {seed} broke {result.violation.invariant}: {result.violation.detail}")
        done += result.swipes
    return done, time.process_time() - started


def _side_by_side(seeds: int, swipes: int, faults: str | None, jobs: int) -> tuple[int, float]:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_one_run, seeds, swipes, faults) for _ in range(jobs)]
        done = sum(f.result()[0] for f in futures)
    return done, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--swipes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", default=None, help="as cardtally chaos --faults")
    parser.add_argument("--jobs", type=int, default=0, help="also run J processes at once")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    # With --json, stdout carries the JSON alone and the human lines go to stderr.
    human = sys.stderr if args.json else sys.stdout
    print(
        f"python {platform.python_version()}, {platform.machine()}, seeds 1..{args.seeds}, "
        f"{args.swipes} swipes each, faults: {args.faults or 'default plan'}",
        file=human,
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(_one_run, 1, args.swipes, args.faults)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(_PROFILE_LINES)
        print(text.getvalue())
        return
    rates = []
    for n in range(args.runs):
        swipes, cpu_s = _one_run(args.seeds, args.swipes, args.faults)
        rates.append(swipes / cpu_s)
        print(
            f"run {n + 1}: {swipes:,} swipes in {cpu_s:.2f} CPU s = {rates[-1]:,.0f} swipes/s",
            file=human,
            flush=True,
        )
    print(
        f"median: {statistics.median(rates):,.0f} simulated swipes per second per core",
        file=human,
    )
    machine_rate = None
    if args.jobs:
        swipes, wall_s = _side_by_side(args.seeds, args.swipes, args.faults, args.jobs)
        machine_rate = swipes / wall_s
        print(
            f"{args.jobs} processes side by side: {swipes:,} swipes in {wall_s:.2f} s wall = "
            f"{machine_rate:,.0f} swipes/s for the machine",
            file=human,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "seeds": args.seeds,
                    "swipes": args.swipes,
                    "faults": args.faults,
                    "runs": rates,
                    "median_swipes_per_s": statistics.median(rates),
                    "jobs": args.jobs,
                    "machine_swipes_per_s": machine_rate,
                }
            )
        )


if __name__ == "__main__":
    main()
