"""The authorisation checks, in the order a card issuer applies them.

Each check returns ``None`` to pass or a :class:`Decline` with the response code
and the reason that goes to the log. Only the PIN check changes state (the
try counter), and it says so through :class:`PinResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardtally.issuer._model import Card, CardStatus
from cardtally.security import (
    IssuerKeys,
    PinBlockError,
    PinVerification,
    decrypt_pin_block,
    verify_pin,
)
from cardtally.wire import Message, Pan
from cardtally.wire import _codes as rc


@dataclass(frozen=True, slots=True)
class Decline:
    code: str
    reason: str


def check_status(card: Card) -> Decline | None:
    if card.status is CardStatus.LOST:
        return Decline(rc.DO_NOT_HONOUR, "card reported lost")
    if card.status is CardStatus.BLOCKED:
        return Decline(rc.DO_NOT_HONOUR, "card blocked")
    return None


def check_expiry(card: Card, presented: str | None, now_yymm: str) -> Decline | None:
    if presented is not None and presented != card.expiry:
        return Decline(rc.EXPIRED_CARD, "expiry date presented does not match the card")
    if card.expiry < now_yymm:
        return Decline(rc.EXPIRED_CARD, f"card expired {card.expiry[2:]}/{card.expiry[:2]}")
    return None


def check_amount(card: Card, message: Message) -> Decline | None:
    if message.currency != card.currency:
        return Decline(rc.INVALID_AMOUNT, f"currency {message.currency} is not the card's")
    amount = message.amount
    if amount is None or amount.minor <= 0:
        return Decline(rc.INVALID_AMOUNT, "amount must be above zero")
    return None


def check_limits(card: Card, amount_minor: int, spent_today_minor: int) -> Decline | None:
    if amount_minor > card.per_txn_limit_minor:
        return Decline(rc.EXCEEDS_LIMIT, "above the card's per-transaction limit")
    if spent_today_minor + amount_minor > card.daily_limit_minor:
        return Decline(rc.EXCEEDS_LIMIT, "above the card's daily limit")
    return None


@dataclass(frozen=True, slots=True)
class PinResult:
    decline: Decline | None
    pin_tries: int  # the counter after this attempt


def check_pin(
    keys: IssuerKeys, card: Card, pan: Pan, message: Message, *, required: bool, tries_max: int
) -> PinResult:
    """Verify field 52 (under the zone PIN key) when present, or when ``required``."""
    if card.pin_tries >= tries_max:
        return PinResult(
            Decline(rc.PIN_TRIES_EXCEEDED, "PIN locked after wrong tries"), card.pin_tries
        )
    block = message.pin_block
    if block is None:
        if required:
            return PinResult(
                Decline(rc.INCORRECT_PIN, "PIN required and not entered"), card.pin_tries
            )
        return PinResult(None, card.pin_tries)
    if card.pin_offset is not None and _pin_matches(keys, card.pin_offset, pan, block):
        return PinResult(None, 0)
    tries = card.pin_tries + 1
    if tries >= tries_max:
        return PinResult(Decline(rc.PIN_TRIES_EXCEEDED, "wrong PIN; PIN now locked"), tries)
    return PinResult(Decline(rc.INCORRECT_PIN, f"wrong PIN ({tries} of {tries_max})"), tries)


def _pin_matches(keys: IssuerKeys, offset: str, pan: Pan, block: bytes) -> bool:
    try:
        pin = decrypt_pin_block(keys.zpk, block, pan)
    except PinBlockError:
        # A block that does not decrypt to a format 0 block under our zone key is,
        # to the cardholder, a wrong PIN: it counts as a try.
        return False
    return verify_pin(keys.pvk, pan, pin, PinVerification(offset))
