"""The network's clocks: local time (fields 12, 13, business days) and transmission time (7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

#: The network's local time (China Standard Time): business days, limits and fields 12/13
#: follow it. A fixed offset, so no time-zone database is needed.
LOCAL_TIME: Final = timezone(timedelta(hours=8), "CST")
_STAMP_CHARS: Final = len("YYYYMMDDhhmmss")


@dataclass(frozen=True, slots=True)
class LocalTime:
    """``at_ms`` on the network's local clock, in the forms the messages and records use."""

    at_ms: int
    date: str  # YYYYMMDD, the business day
    mmdd: str  # field 13
    hhmmss: str  # field 12
    yymm: str  # compared with card expiry dates

    @classmethod
    def of(cls, at_ms: int) -> LocalTime:
        moment = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(LOCAL_TIME)
        # One strftime sliced four ways: every party builds this several times per
        # message. %Y pads no further than the platform does, so a year that does not
        # print as 4 digits falls back to formatting each field on its own.
        stamp = moment.strftime("%Y%m%d%H%M%S")
        if len(stamp) == _STAMP_CHARS:
            return cls(
                at_ms=at_ms, date=stamp[:8], mmdd=stamp[4:8], hhmmss=stamp[8:], yymm=stamp[2:6]
            )
        return cls(
            at_ms=at_ms,
            date=moment.strftime("%Y%m%d"),
            mmdd=moment.strftime("%m%d"),
            hhmmss=moment.strftime("%H%M%S"),
            yymm=moment.strftime("%y%m"),
        )


def transmission_time(at_ms: int) -> str:
    """Field 7: MMDDhhmmss in UTC (ISO 8583 transmission date and time is GMT)."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%m%d%H%M%S")


def local_text(at_ms: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``at_ms`` on the network's local clock as operators and receipts read it."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(LOCAL_TIME).strftime(fmt)
