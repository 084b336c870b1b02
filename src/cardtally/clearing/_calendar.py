"""Business days: which swipes a day end closes, in China Standard Time.

A business day ends at the configured cutoff (23:00 by default, as on the UnionPay network);
a swipe after it belongs to the next day. A cutoff before noon is read as the early morning
after the day (02:00 closes the day at 02:00 the next morning), so the day always ends within
twelve hours of its own midnight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from cardtally.wire import LOCAL_TIME, local_text

DAY_MS: Final = 86_400_000
_NOON_MINUTES: Final = 12 * 60
_DAY_TEXT: Final = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


class DayError(ValueError):
    """A business day that cannot be used (bad spelling, not closed yet, out of order)."""


def parse_day(text: str) -> date:
    """``2026-11-21`` or ``20261121``; anything else is refused with the text quoted."""
    match = _DAY_TEXT.fullmatch(text.strip())
    if match is None:
        raise DayError(f"business day must be YYYY-MM-DD, got {text!r}")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as exc:
        raise DayError(f"business day {text!r} is not a calendar date: {exc}") from None


@dataclass(frozen=True, slots=True)
class BusinessDay:
    """One business day and its window ``[start_ms, end_ms)`` of switch receive times."""

    day: date
    start_ms: int
    end_ms: int

    @property
    def text(self) -> str:
        return self.day.isoformat()

    @property
    def compact(self) -> str:
        """``YYYYMMDD``, as in clearing files and their directory names."""
        return self.day.strftime("%Y%m%d")

    def previous(self, cutoff_minutes: int) -> BusinessDay:
        return business_day(self.day - timedelta(days=1), cutoff_minutes)

    def next(self, cutoff_minutes: int) -> BusinessDay:
        return business_day(self.day + timedelta(days=1), cutoff_minutes)

    def window_text(self) -> str:
        minute = "%Y-%m-%d %H:%M"
        return f"{local_text(self.start_ms, minute)} to {local_text(self.end_ms, minute)} CST"


def business_day(day: date, cutoff_minutes: int) -> BusinessDay:
    end_date = day if cutoff_minutes >= _NOON_MINUTES else day + timedelta(days=1)
    midnight = datetime.combine(end_date, time(0, 0), LOCAL_TIME)
    end_ms = int(midnight.timestamp() * 1000) + cutoff_minutes * 60_000
    return BusinessDay(day, end_ms - DAY_MS, end_ms)


def day_of(at_ms: int, cutoff_minutes: int) -> BusinessDay:
    """The business day a swipe received at ``at_ms`` belongs to."""
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(LOCAL_TIME).date()
    for candidate in (local - timedelta(days=1), local, local + timedelta(days=1)):
        found = business_day(candidate, cutoff_minutes)
        if found.start_ms <= at_ms < found.end_ms:
            return found
    raise AssertionError(f"no business day holds {at_ms}")  # windows tile the time line
