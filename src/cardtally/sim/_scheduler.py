"""Simulated time: a heap of timers, fired in (time, creation order); nothing sleeps.

Two timers due at the same millisecond fire in the order they were set, so a run is a pure
function of its seed. Cancelling marks a timer dead instead of searching the heap for it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Timer:
    __slots__ = ("args", "at_ms", "callback", "cancelled")

    def __init__(self, at_ms: int, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.at_ms = at_ms
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """The simulator's clock and its agenda."""

    __slots__ = ("_heap", "_seq", "fired", "now_ms")

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = 0
        self.fired = 0

    def at(self, at_ms: int, callback: Callable[..., None], *args: Any) -> Timer:
        timer = Timer(max(at_ms, self.now_ms), callback, args)
        self._seq += 1
        heapq.heappush(self._heap, (timer.at_ms, self._seq, timer))
        return timer

    def after(self, delay_ms: int, callback: Callable[..., None], *args: Any) -> Timer:
        return self.at(self.now_ms + delay_ms, callback, *args)

    def step(self) -> bool:
        """Fire the next live timer; ``False`` when the agenda is empty."""
        while self._heap:
            at_ms, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.now_ms = at_ms
            self.fired += 1
            timer.callback(*timer.args)
            return True
        return False

    def run_until(self, done: Callable[[], bool], *, limit_ms: int) -> bool:
        """Fire timers until ``done()`` or the clock passes ``limit_ms``; ``done()`` at the end."""
        while not done():
            if not self._heap or self._heap[0][0] > limit_ms:
                return done()
            self.step()
        return True

    def advance_to(self, at_ms: int) -> None:
        """Fire every timer due by ``at_ms``, then stand the clock at ``at_ms``."""
        self.run_until(lambda: False, limit_ms=at_ms)
        self.now_ms = max(self.now_ms, at_ms)
