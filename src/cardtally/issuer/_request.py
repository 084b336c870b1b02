"""How the issuer reads a request: its key, expiry and merchant, and its approval codes.

Kind, content digest and the network's clocks are the wire's (``cardtally.wire``), shared with
the switch; they are re-exported here for the issuer's callers.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cardtally.wire import (
    LOCAL_TIME,
    LocalTime,
    Message,
    classify,
    content_digest,
    original_of,
)

#: Fields every financial request and advice must carry to be keyed at all.
KEY_FIELDS: Final = (11, 41, 42)


def request_key(message: Message) -> str:
    """The acquirer key: message type, acquirer, terminal, merchant, STAN, transmission time.

    Repeats (0401, 0421) share the key of their first send.
    """
    parts = (
        original_of(message.mti),
        message.get(32) or "",
        message.terminal_id or "",
        message.merchant_id or "",
        message.stan or "",
        message.get(7) or "",
    )
    return "|".join(parts)


#: Field 90 (original data elements): original MTI, STAN, transmission time, then the IDs.
_ORIGINAL_DATA_CHARS: Final = 20


def original_key(reversal: Message) -> str | None:
    """The request key of the request a reversal names in field 90 (None: it names none)."""
    data = reversal.get(90) or ""
    if len(data) < _ORIGINAL_DATA_CHARS or not data[:_ORIGINAL_DATA_CHARS].isdigit():
        return None
    parts = (
        original_of(data[0:4]),
        reversal.get(32) or "",
        reversal.terminal_id or "",
        reversal.merchant_id or "",
        data[4:10],
        data[10:20],
    )
    return "|".join(parts)


def expiry_of(message: Message) -> str | None:
    """The expiry date the request carries: field 14, else the YYMM after track 2's separator."""
    if 14 in message:
        return message.get(14)
    track = message.get(35)
    if track and "D" in track:
        return track.split("D", 1)[1][:4] or None
    return None


def merchant_name(message: Message) -> str:
    """Field 43's name and location, or the merchant ID when the acquirer sent no name."""
    name = (message.get(43) or "").strip()
    return name or f"merchant {message.merchant_id or '?'}"


def auth_code_candidates(key: str) -> list[str]:
    """Six-digit approval codes derived from the request key, first choice first.

    Derived, not random, so the same request always gets the same code (the
    simulator replays byte for byte); the caller skips codes the card already has.
    """
    codes = []
    for salt in range(8):
        digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
        codes.append(f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}")
    return codes


__all__ = [
    "KEY_FIELDS",
    "LOCAL_TIME",
    "LocalTime",
    "auth_code_candidates",
    "classify",
    "content_digest",
    "expiry_of",
    "merchant_name",
    "request_key",
]
