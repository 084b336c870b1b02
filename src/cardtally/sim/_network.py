"""The simulated network: four hops, each message subject to the fault plan.

A message is its encoded bytes plus a tag naming the swipe it belongs to. The tag is the
simulator's own bookkeeping (for timelines); no party ever sees it. Latency is a few
milliseconds; a delayed message arrives after the receiver's timeout; a reordered one is
held back long enough for later ones to overtake it; a corrupted one has one bit flipped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from cardtally.sim._faults import Fault, Faults, Hop
from cardtally.sim._scheduler import Scheduler
from cardtally.sim._trace import Trace

LATENCY_MS_MIN: Final = 1
LATENCY_MS_MAX: Final = 25
REORDER_MS_MAX: Final = 3_000
DELAY_EXTRA_MS_MAX: Final = 60_000

Deliver = Callable[[bytes, str], None]


class Network:
    __slots__ = ("_faults", "_rng", "_scheduler", "_timeout_ms", "_trace")

    def __init__(
        self,
        scheduler: Scheduler,
        faults: Faults,
        rng: random.Random,
        trace: Trace,
        timeout_ms: dict[Hop, int],
    ) -> None:
        self._scheduler = scheduler
        self._faults = faults
        self._rng = rng
        self._trace = trace
        self._timeout_ms = timeout_ms

    def send(self, hop: Hop, body: bytes, tag: str, deliver: Deliver) -> None:
        faults, rng = self._faults, self._rng
        mti = body[:2].hex()
        if faults.roll(Fault.LOSS, hop, hop):
            self._trace.add(self._scheduler.now_ms, "network", f"{hop} {mti} lost", tag)
            return
        notes = []
        if faults.roll(Fault.CORRUPT, hop, hop):
            body = _flip_one_bit(body, rng)
            notes.append("corrupted")
        latency = rng.randint(LATENCY_MS_MIN, LATENCY_MS_MAX)
        if faults.roll(Fault.DELAY, hop, hop):
            latency += self._timeout_ms[hop] + rng.randint(1, DELAY_EXTRA_MS_MAX)
            notes.append("delayed past the timeout")
        if faults.roll(Fault.REORDER, hop, hop):
            latency += rng.randint(LATENCY_MS_MAX, REORDER_MS_MAX)
            notes.append("held back")
        self._scheduler.after(latency, deliver, body, tag)
        if faults.roll(Fault.DUPLICATE, hop, hop):
            self._scheduler.after(latency + rng.randint(0, REORDER_MS_MAX), deliver, body, tag)
            notes.append("duplicated")
        if notes:
            what = f"{hop} {mti} {', '.join(notes)}"
            self._trace.add(self._scheduler.now_ms, "network", what, tag)


def _flip_one_bit(body: bytes, rng: random.Random) -> bytes:
    position = rng.randrange(len(body) * 8)
    flipped = bytearray(body)
    flipped[position // 8] ^= 1 << (position % 8)
    return bytes(flipped)
