"""Message type identifier rules (ISO 8583:1987)."""

from __future__ import annotations

from typing import Final

from cardtally.wire._spec import KNOWN_MTIS

CLASS_NAMES: Final = {
    "1": "authorisation",
    "2": "financial",
    "3": "file action",
    "4": "reversal",
    "5": "reconciliation",
    "8": "network management",
}
FUNCTION_NAMES: Final = {"0": "request", "1": "response", "2": "advice", "3": "advice response"}


def is_known(mti: str) -> bool:
    return mti in KNOWN_MTIS


def is_repeat(mti: str) -> bool:
    """A last digit of 1 marks a repeat of an earlier send (e.g. 0421)."""
    return mti[3] == "1"


def original_of(mti: str) -> str:
    """The first-send form of a (possibly repeated) MTI: 0421 -> 0420."""
    return mti[:3] + "0"


def is_request(mti: str) -> bool:
    """Requests and advices expect an answer; responses do not."""
    return mti[2] in "02"


def response_mti(mti: str) -> str:
    """The MTI answering ``mti``: request + 10, repeats answered as the original."""
    if not is_request(mti):
        raise ValueError(f"{mti} is itself a response")
    return f"{mti[:2]}{int(mti[2]) + 1}0"


def describe_mti(mti: str) -> str:
    cls = CLASS_NAMES.get(mti[1], "unknown class")
    fn = FUNCTION_NAMES.get(mti[2], "unknown function")
    repeat = " (repeat)" if len(mti) == 4 and is_repeat(mti) else ""
    return f"{cls} {fn}{repeat}"
