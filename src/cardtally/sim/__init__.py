"""The deterministic fault simulator: the real cores on simulated time, with faults.

``simulate(seed, swipes)`` builds a network from the seed (issuer, switch, terminals,
cardholders), runs a business day through the very same terminal, switch and issuer cores
the TCP runtime runs, with messages lost, delayed, duplicated, reordered and corrupted on
every hop, parties crashing before and after their commits, commits failing, a slow issuer
and skewed clocks, and checks the promise all along (``_invariants``). Same seed, same code:
same run, event for event (``RunResult.digest``).
"""

from cardtally.sim._faults import DEFAULT_RATES, Fault, FaultPlan, FaultSpecError, Hop
from cardtally.sim._invariants import INVARIANTS, Violation
from cardtally.sim._run import Run, RunResult, simulate
from cardtally.sim._shrink import shrink

__all__ = [
    "DEFAULT_RATES",
    "INVARIANTS",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "Hop",
    "Run",
    "RunResult",
    "Violation",
    "shrink",
    "simulate",
]
