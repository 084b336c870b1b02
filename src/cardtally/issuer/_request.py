"""How the issuer reads a request: its key, its content digest, its kind and its times."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from cardtally.issuer._model import TxnKind
from cardtally.wire import Message, original_of

#: The network's local time (China Standard Time): business days, limits and
#: fields 12/13 follow it. A fixed offset, so no time-zone database is needed.
LOCAL_TIME: Final = timezone(timedelta(hours=8), "CST")

#: Fields every financial request and advice must carry to be keyed at all.
KEY_FIELDS: Final = (11, 41, 42)
#: MACs are link security, not content: a repeat re-signed under new keys is the same request.
_NOT_CONTENT: Final = frozenset({64, 128})
_TRANSACTION_TYPE_COMPLETION: Final = "20"


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


def content_digest(message: Message) -> str:
    """SHA-256 of what the request says, so a same-key request saying else is caught (94)."""
    content = {str(n): v for n, v in message.fields.items() if n not in _NOT_CONTENT}
    canonical = json.dumps([original_of(message.mti), content], sort_keys=True)
    return hashlib.sha256(canonical.encode("ascii", "backslashreplace")).hexdigest()


#: (MTI, first two digits of the processing code) -> kind; field 60.1 refines a 0200/00.
_KINDS: Final = {
    ("0100", "03"): TxnKind.PREAUTH,
    ("0200", "00"): TxnKind.SALE,
    ("0200", "31"): TxnKind.BALANCE,
    ("0200", "20"): TxnKind.VOID,
    ("0220", "20"): TxnKind.REFUND,
}


def classify(message: Message) -> TxnKind | None:
    """What the request asks for, from its MTI, processing code and field 60.1."""
    mti = original_of(message.mti)
    if mti in ("0400", "0420"):
        return TxnKind.REVERSAL
    kind = _KINDS.get((mti, (message.processing_code or "")[:2]))
    if kind is TxnKind.SALE and (message.get(60) or "")[:2] == _TRANSACTION_TYPE_COMPLETION:
        return TxnKind.COMPLETION
    return kind


@dataclass(frozen=True, slots=True)
class LocalTime:
    """``now`` at the issuer, in the forms the messages and records use."""

    at_ms: int
    date: str  # YYYYMMDD, the issuer's business day
    mmdd: str  # field 13
    hhmmss: str  # field 12
    yymm: str  # compared with card expiry dates

    @classmethod
    def of(cls, at_ms: int) -> LocalTime:
        moment = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(LOCAL_TIME)
        return cls(
            at_ms=at_ms,
            date=moment.strftime("%Y%m%d"),
            mmdd=moment.strftime("%m%d"),
            hhmmss=moment.strftime("%H%M%S"),
            yymm=moment.strftime("%y%m"),
        )


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
