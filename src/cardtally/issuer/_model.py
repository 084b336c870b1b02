"""What the issuer keeps: cards and the record of every request it answered."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cardtally.wire import DEBIT_KINDS, TxnKind


class CardKind(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Card:
    """A card and its state. The PAN itself is only stored encrypted (see the store)."""

    id: str
    pan_fingerprint: str
    pan_masked: str
    expiry: str  # YYMM, as on the card and in field 14
    kind: CardKind
    status: CardStatus
    currency: str
    account_id: str
    credit_limit_minor: int
    pin_offset: str | None  # IBM 3624 offset; None: the card has no PIN
    pin_tries: int  # wrong PINs in a row
    no_pin_limit_minor: int
    per_txn_limit_minor: int
    daily_limit_minor: int
    created_at_ms: int

    @property
    def tail(self) -> str:
        return self.pan_masked[-4:]


@dataclass(frozen=True, slots=True)
class TxnRecord:
    """One answered request: approved or declined, with why, and what it moved.

    Append-only. A later reversal, void or refund is a new record that points
    at this one through ``original_id``; nothing here is ever changed.
    """

    id: str  # the request key (see _keys.request_key)
    kind: TxnKind
    card_id: str | None
    pan_masked: str
    amount_minor: int
    currency: str
    response_code: str
    reason: str
    rrn: str
    auth_code: str
    acquirer_id: str
    terminal_id: str
    merchant_id: str
    merchant_name: str
    stan: str
    transmitted: str  # field 7, MMDDhhmmss
    local_date: str  # YYYYMMDD at the issuer
    original_id: str | None
    transfer_id: str | None
    at_ms: int

    @property
    def approved(self) -> bool:
        return self.response_code == "00"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer given to a request key, kept so a repeat gets exactly the same one."""

    key: str
    content_sha256: str
    mti: str
    fields: dict[int, str]
    at_ms: int


__all__ = [
    "DEBIT_KINDS",
    "Card",
    "CardKind",
    "CardStatus",
    "StoredResponse",
    "TxnKind",
    "TxnRecord",
]
