"""The run's event trace: a digest that proves a replay, and timelines for a violation.

Every event the simulator acts on is one line; the SHA-256 of all lines is the run's digest,
so two runs of one seed that differ in a single event differ in the digest. Lines carry a
tag naming the swipe they belong to (terminal and swipe number), so the timeline of one
transaction is a filter, not a search through message bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

TIMELINE_LINES_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class TraceLine:
    at_ms: int
    party: str
    what: str
    tag: str

    def text(self, start_ms: int) -> str:
        seconds = (self.at_ms - start_ms) / 1000
        return f"{seconds:10.3f}s  {self.party:<9} {self.what}"


class Trace:
    __slots__ = ("_hash", "count", "lines", "start_ms")

    def __init__(self, start_ms: int) -> None:
        self._hash = hashlib.sha256()
        self.lines: list[TraceLine] = []
        self.count = 0
        self.start_ms = start_ms

    def add(self, at_ms: int, party: str, what: str, tag: str = "") -> None:
        self.count += 1
        self._hash.update(f"{at_ms}|{party}|{what}|{tag}\n".encode())
        self.lines.append(TraceLine(at_ms, party, what, tag))

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def timeline(self, tags: set[str]) -> list[str]:
        """The lines of the swipes named by ``tags``, oldest first (the last ones if many)."""
        chosen = [line for line in self.lines if line.tag in tags]
        return [f"{line.text(self.start_ms)}  [{line.tag}]" for line in chosen][
            -TIMELINE_LINES_MAX:
        ]
