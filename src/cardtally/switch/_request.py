"""How the switch reads a terminal request: kind, key, digest, batch, and what it must carry."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from cardtally.switch._model import TxnKind
from cardtally.wire import Message, original_of

#: The network's local time (China Standard Time), as at the issuer.
LOCAL_TIME: Final = timezone(timedelta(hours=8), "CST")

#: MACs are link security, not content: a repeat re-signed under new keys is the same request.
_NOT_CONTENT: Final = frozenset({64, 128})

#: Fields a request must carry for the switch to act on it, by MTI. Everything else in the
#: wire profile's table (12, 13, 22, 25, 60 and the conditional fields) is optional on input,
#: so that a test tool speaking the profile can transact with a MAC-off terminal.
MANDATORY: Final[dict[str, tuple[int, ...]]] = {
    "0100": (3, 4, 11, 41, 42, 49),
    "0200": (3, 11, 41, 42),
    "0220": (3, 4, 11, 37, 41, 42, 49),
    "0400": (3, 11, 41, 42),
    "0500": (11, 41, 42, 48),
    "0320": (11, 41, 42, 60),
    "0800": (11, 41, 42, 60),
}
#: A 0200 that moves money also needs its amount and currency (a balance inquiry has neither).
MONEY_FIELDS: Final = (4, 49)

_KINDS: Final = {
    ("0100", "03"): TxnKind.PREAUTH,
    ("0200", "00"): TxnKind.SALE,
    ("0200", "31"): TxnKind.BALANCE,
    ("0200", "20"): TxnKind.VOID,
    ("0220", "20"): TxnKind.REFUND,
}
_COMPLETION: Final = "20"


def classify(message: Message) -> TxnKind | None:
    """The kind of a financial request, or None for one the switch does not serve (12)."""
    mti = original_of(message.mti)
    if mti == "0400":
        return TxnKind.REVERSAL
    kind = _KINDS.get((mti, (message.processing_code or "")[:2]))
    if kind is TxnKind.SALE and (message.get(60) or "")[:2] == _COMPLETION:
        return TxnKind.COMPLETION
    return kind


def missing_fields(message: Message) -> list[int]:
    """Mandatory fields the request lacks (empty: it may be acted on)."""
    mti = original_of(message.mti)
    needed = list(MANDATORY.get(mti, ()))
    if mti == "0200" and classify(message) is not TxnKind.BALANCE:
        needed += MONEY_FIELDS
    return [n for n in needed if not message.get(n)]


def batch_of(message: Message, current_batch: int) -> int:
    """60.2 when the terminal sent field 60, else the batch the switch has for it."""
    field60 = message.get(60) or ""
    if len(field60) >= 8 and field60[2:8].isdigit():
        return int(field60[2:8])
    return current_batch


def network_code(message: Message) -> str:
    """60.3, the network management information code ("" when absent)."""
    return (message.get(60) or "")[8:11]


def request_key(message: Message, batch_no: int, local_date: str) -> str:
    """Terminal, STAN, batch and date, under the message class: a 0400 shares its 0200's STAN."""
    parts = (
        original_of(message.mti),
        message.terminal_id or "",
        message.stan or "",
        f"{batch_no:06d}",
        local_date,
    )
    return "|".join(parts)


def content_digest(message: Message) -> str:
    """SHA-256 of what the request says, so a same-key request saying else is caught (94)."""
    content = {str(n): v for n, v in message.fields.items() if n not in _NOT_CONTENT}
    canonical = json.dumps([original_of(message.mti), content], sort_keys=True)
    return hashlib.sha256(canonical.encode("ascii", "backslashreplace")).hexdigest()


def local_date(at_ms: int) -> str:
    return _local(at_ms).strftime("%Y%m%d")


def host_time_fields(at_ms: int) -> dict[int, str]:
    """Fields 12 and 13 of an answer: the host's local time and date."""
    moment = _local(at_ms)
    return {12: moment.strftime("%H%M%S"), 13: moment.strftime("%m%d")}


def transmission_time(at_ms: int) -> str:
    """Field 7: MMDDhhmmss in UTC (ISO 8583 transmission date and time is GMT)."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%m%d%H%M%S")


def _local(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(LOCAL_TIME)
