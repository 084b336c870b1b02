"""How the switch reads a terminal request: its key, its batch, and what it must carry.

Kind and content digest are the wire's (``cardtally.wire``), the same as at the issuer.
"""

from __future__ import annotations

from typing import Final

from cardtally.wire import LocalTime, Message, TxnKind, classify, original_of

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


def local_date(at_ms: int) -> str:
    return LocalTime.of(at_ms).date


def host_time_fields(at_ms: int) -> dict[int, str]:
    """Fields 12 and 13 of an answer: the host's local time and date."""
    now = LocalTime.of(at_ms)
    return {12: now.hhmmss, 13: now.mmdd}
