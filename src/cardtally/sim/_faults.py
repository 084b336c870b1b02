"""The fault model: what can go wrong, how often, and a record of every fault injected.

Each kind has its own probability (``FaultPlan``), drawn from the run's fault stream, which
is separate from the workload's: the same seed with fewer faults still plays the same
cashiers. Network faults apply on each of the four hops; party faults (crashes, a failed
commit, a power loss) at each step or commit; clock skew is drawn once per party per run,
and a slow issuer comes in spells. Every injection is numbered, so a shrinking step can
replay the run with only some of them (``allowed``).
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Final


class Hop(enum.StrEnum):
    TERMINAL_SWITCH = "terminal>switch"
    SWITCH_ISSUER = "switch>issuer"
    ISSUER_SWITCH = "issuer>switch"
    SWITCH_TERMINAL = "switch>terminal"

    @property
    def short(self) -> str:
        """``ts``, ``si``, ``is``, ``st``: how ``--faults`` names a hop (``loss@si=0.1``)."""
        return "".join(part[0] for part in self.value.split(">"))


class Fault(enum.StrEnum):
    LOSS = "loss"  # the message never arrives
    DELAY = "delay"  # it arrives after the receiver's timeout
    DUPLICATE = "duplicate"  # it arrives twice
    REORDER = "reorder"  # it is held back so that later messages overtake it
    CORRUPT = "corrupt"  # one bit flipped: the MAC or the decoder must catch it
    CRASH = "crash"  # switch or issuer process dies at a step (before or after its commit)
    POWER_LOSS = "power_loss"  # a terminal loses power at a step
    COMMIT_FAIL = "commit_fail"  # a party's commit fails: nothing it wrote is kept
    SLOW_ISSUER = "slow_issuer"  # a spell in which the issuer answers slowly
    CLOCK_SKEW = "clock_skew"  # each party's clock is off by up to a minute and a half
    PAPER_OUT = "paper_out"  # the printer runs out of paper during a sale


NETWORK_FAULTS: Final = (Fault.LOSS, Fault.DELAY, Fault.DUPLICATE, Fault.REORDER, Fault.CORRUPT)

#: Default rates: per message on a hop, per step of a party, per commit, per sale.
DEFAULT_RATES: Final = {
    Fault.LOSS: 0.02,
    Fault.DELAY: 0.01,
    Fault.DUPLICATE: 0.01,
    Fault.REORDER: 0.01,
    Fault.CORRUPT: 0.01,
    Fault.CRASH: 0.002,
    Fault.POWER_LOSS: 0.002,
    Fault.COMMIT_FAIL: 0.002,
    Fault.SLOW_ISSUER: 0.002,
    Fault.CLOCK_SKEW: 1.0,
    Fault.PAPER_OUT: 0.02,
}
RATE_MAX: Final = 0.5
SKEW_MS_MAX: Final = 90_000


class FaultSpecError(ValueError):
    """A ``--faults`` text that does not name known faults with rates in range."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    rates: dict[Fault, float]
    #: Network faults at another rate on one hop (``loss@si=0.2``); 0 turns one hop off.
    hop_rates: dict[tuple[Fault, Hop], float] = field(default_factory=dict)

    def rate(self, fault: Fault, hop: Hop | None) -> float | None:
        if hop is not None and (fault, hop) in self.hop_rates:
            return self.hop_rates[(fault, hop)]
        return self.rates.get(fault)

    @classmethod
    def default(cls) -> FaultPlan:
        return cls(dict(DEFAULT_RATES))

    @classmethod
    def none(cls) -> FaultPlan:
        return cls({})

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """``loss,crash=0.01,corrupt=0.05``: the named faults only, at default or given rates."""
        rates: dict[Fault, float] = {}
        hop_rates: dict[tuple[Fault, Hop], float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, _, value = (x.strip() for x in part.partition("="))
            fault_name, _, hop_name = name.partition("@")
            fault = _fault_named(fault_name)
            rate = _rate(name, value) if value else DEFAULT_RATES[fault]
            if hop_name:
                hop_rates[(fault, _hop_named(fault, hop_name))] = rate
                rates.setdefault(fault, 0.0)
            else:
                rates[fault] = rate
        if not rates:
            raise FaultSpecError("no fault named: give e.g. loss,crash=0.01")
        return cls(rates, hop_rates)

    @classmethod
    def swarm(cls, rng: random.Random) -> FaultPlan:
        """A different mix per seed: each kind on or off, its rate scaled up to four times."""
        rates = {
            fault: min(RATE_MAX, rate * rng.choice((0.5, 1.0, 2.0, 4.0)))
            for fault, rate in DEFAULT_RATES.items()
            if rng.random() < 0.6
        }
        return cls(rates)

    def describe(self) -> str:
        parts = [f"{f.value}={r:g}" for f, r in self.rates.items()]
        parts += [f"{f.value}@{h.short}={r:g}" for (f, h), r in self.hop_rates.items()]
        return ",".join(parts) or "none"


def _fault_named(name: str) -> Fault:
    try:
        return Fault(name)
    except ValueError:
        known = ", ".join(f.value for f in Fault)
        raise FaultSpecError(f"unknown fault {name!r}; known: {known}") from None


def _hop_named(fault: Fault, name: str) -> Hop:
    if fault not in NETWORK_FAULTS:
        raise FaultSpecError(f"{fault.value} is not a network fault: it takes no @hop")
    for hop in Hop:
        if name in (hop.short, hop.value):
            return hop
    known = ", ".join(f"{h.short} ({h.value})" for h in Hop)
    raise FaultSpecError(f"unknown hop {name!r}; known: {known}")


def _rate(name: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise FaultSpecError(f"rate of {name!r} is not a number: {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultSpecError(f"rate of {name!r} must be between 0 and 1, got {value}")
    return rate


@dataclass
class Faults:
    """Draws faults for one run and counts them; ``quiet`` once the cycle's faults stop."""

    plan: FaultPlan
    rng: random.Random
    allowed: frozenset[int] | None = None  # shrinking: only these injections happen
    quiet: bool = False
    injected: Counter[str] = field(default_factory=Counter)
    numbers: list[int] = field(default_factory=list)  # injections that happened, by number
    _next_number: int = 0

    def roll(self, fault: Fault, where: str = "", hop: Hop | None = None) -> bool:
        """Whether ``fault`` strikes now (at ``where``, for the count by kind)."""
        rate = self.plan.rate(fault, hop)
        if not rate or self.quiet:
            return False
        if self.rng.random() >= rate:
            return False
        self._next_number += 1
        if self.allowed is not None and self._next_number not in self.allowed:
            return False
        self.numbers.append(self._next_number)
        self.injected[f"{fault.value} {where}".strip()] += 1
        return True

    def skew_ms(self) -> int:
        """A party's clock offset for the run (0 unless clock skew is in the plan)."""
        if Fault.CLOCK_SKEW not in self.plan.rates:
            return 0
        skew = self.rng.randint(-SKEW_MS_MAX, SKEW_MS_MAX)
        if skew:
            self.injected[Fault.CLOCK_SKEW.value] += 1
        return skew
