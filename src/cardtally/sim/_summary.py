"""Many runs folded into one summary: what was injected, what happened, what broke."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cardtally.sim._invariants import Violation
from cardtally.sim._run import RunResult


@dataclass(frozen=True, slots=True)
class Failure:
    seed: int
    violation: Violation
    timeline: tuple[str, ...]
    digest: str


@dataclass
class Summary:
    seeds: int = 0
    swipes: int = 0
    events: int = 0
    sim_ms: int = 0
    cpu_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    declines: Counter[str] = field(default_factory=Counter)
    resolutions: Counter[str] = field(default_factory=Counter)
    dayend: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    def add(self, result: RunResult) -> None:
        self.seeds += 1
        self.swipes += result.swipes
        self.events += result.events
        self.sim_ms += result.sim_ms
        self.cpu_s += result.wall_s
        self.faults.update(result.faults)
        self.crashes.update(result.crashes)
        self.statuses.update(result.statuses)
        self.declines.update(result.declines)
        self.resolutions.update(result.resolutions)
        self.dayend.update(result.dayend)
        if result.violation is not None:
            self.failures.append(
                Failure(result.seed, result.violation, tuple(result.timeline), result.digest)
            )

    @property
    def ok(self) -> bool:
        return not self.failures

    def faults_by_kind(self) -> Counter[str]:
        """Injections per fault kind, whatever the hop or party."""
        kinds: Counter[str] = Counter()
        for where, count in self.faults.items():
            kinds[where.split(" ", 1)[0]] += count
        return kinds

    @property
    def interrupted(self) -> int:
        return sum(self.resolutions.values())
