"""Shrinking a failing run: the fewest injected faults that still break the same invariant.

Faults are numbered as they are injected; a replay may allow only some numbers. Delta
debugging (Zeller's ddmin) drops halves, then quarters, and so on, keeping any subset whose
replay still fails the same way. The numbering shifts a little when a fault is dropped (the
run takes another path), so the result is a short schedule that fails, not the shortest
possible; it replays exactly with ``--only-faults``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cardtally.sim._faults import FaultPlan
from cardtally.sim._run import Mutation, RunResult, simulate

REPLAYS_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class Shrunk:
    result: RunResult
    allowed: frozenset[int]
    replays: int


def shrink(
    failing: RunResult,
    plan: FaultPlan,
    *,
    swipes: int,
    days: int = 1,
    mutation: Mutation | None = None,
    progress: Callable[[int, int], None] = lambda replays, faults: None,
) -> Shrunk:
    assert failing.violation is not None, "only a failing run can be shrunk"
    invariant = failing.violation.invariant
    best, kept = failing, list(failing.injections)
    replays, chunks = 0, 2

    def fails(candidate: list[int]) -> RunResult | None:
        nonlocal replays
        replays += 1
        result = simulate(
            failing.seed,
            swipes,
            plan,
            days=days,
            allowed=frozenset(candidate),
            mutation=mutation,
        )
        progress(replays, len(candidate))
        ok = result.violation is not None and result.violation.invariant == invariant
        return result if ok else None

    while len(kept) >= 2 and replays < REPLAYS_MAX:
        size = max(1, len(kept) // chunks)
        for start in range(0, len(kept), size):
            candidate = kept[:start] + kept[start + size :]
            result = fails(candidate)
            if result is not None:
                best, kept = result, candidate
                chunks = max(chunks - 1, 2)
                break
            if replays >= REPLAYS_MAX:
                break
        else:
            if size == 1:
                break
            chunks = min(len(kept), chunks * 2)
    return Shrunk(best, frozenset(kept), replays)
