"""Response codes (field 39) the network uses, with their meanings.

Meanings follow ISO 8583:1987 and the China UnionPay terminal practice the
domain brief describes; ``A0`` is CUP's "MAC error, sign on again".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final


class Action(Enum):
    """What a terminal does with the answer."""

    APPROVE = "approve"
    DECLINE = "decline"
    RETRY = "retry"  # a system condition: the cardholder may try again later
    SIGN_ON = "sign-on"  # keys are out of step: sign on again before anything else


@dataclass(frozen=True, slots=True)
class ResponseCode:
    code: str
    meaning: str
    action: Action

    @property
    def approved(self) -> bool:
        return self.action is Action.APPROVE


_TABLE: Final = (
    ResponseCode("00", "Approved", Action.APPROVE),
    ResponseCode("03", "Invalid merchant", Action.DECLINE),
    ResponseCode("05", "Do not honour", Action.DECLINE),
    ResponseCode("06", "Error", Action.RETRY),
    ResponseCode("12", "Invalid transaction", Action.DECLINE),
    ResponseCode("13", "Invalid amount", Action.DECLINE),
    ResponseCode("14", "Invalid card number", Action.DECLINE),
    ResponseCode("25", "Unable to locate original transaction", Action.DECLINE),
    ResponseCode("30", "Format error", Action.DECLINE),
    ResponseCode("51", "Insufficient funds", Action.DECLINE),
    ResponseCode("54", "Expired card", Action.DECLINE),
    ResponseCode("55", "Incorrect PIN", Action.DECLINE),
    ResponseCode("58", "Transaction not permitted to terminal", Action.DECLINE),
    ResponseCode("61", "Exceeds amount limit", Action.DECLINE),
    ResponseCode("75", "PIN tries exceeded", Action.DECLINE),
    ResponseCode("94", "Duplicate transmission", Action.DECLINE),
    ResponseCode("96", "System malfunction", Action.RETRY),
    ResponseCode("98", "Issuer timeout / no response", Action.RETRY),
    ResponseCode("A0", "MAC error, sign on again", Action.SIGN_ON),
)

RESPONSE_CODES: Final[dict[str, ResponseCode]] = {rc.code: rc for rc in _TABLE}

APPROVED: Final = "00"
INVALID_MERCHANT: Final = "03"
DO_NOT_HONOUR: Final = "05"
OTHER_ERROR: Final = "06"
INVALID_TRANSACTION: Final = "12"
INVALID_AMOUNT: Final = "13"
INVALID_CARD: Final = "14"
ORIGINAL_NOT_FOUND: Final = "25"
FORMAT_ERROR: Final = "30"
INSUFFICIENT_FUNDS: Final = "51"
EXPIRED_CARD: Final = "54"
INCORRECT_PIN: Final = "55"
NOT_PERMITTED_TO_TERMINAL: Final = "58"
EXCEEDS_LIMIT: Final = "61"
PIN_TRIES_EXCEEDED: Final = "75"
DUPLICATE: Final = "94"
SYSTEM_MALFUNCTION: Final = "96"
ISSUER_TIMEOUT: Final = "98"
MAC_ERROR: Final = "A0"


def describe(code: str) -> ResponseCode:
    """The table entry, or an explicit 'unknown' entry for a code we do not list."""
    known = RESPONSE_CODES.get(code)
    if known is not None:
        return known
    return ResponseCode(code, f"Unknown response code {code!r}", Action.DECLINE)
