"""Requests an acquirer switch sends the issuer, built the way the wire profile lays them out."""

from __future__ import annotations

from typing import Final

from cardtally.security import encrypt_pin_block
from cardtally.wire import Message, Pan, luhn_check_digit

ACQUIRER: Final = "48020000"
TERMINAL: Final = "T0000001"
MERCHANT: Final = "M00000000000001"
MERCHANT_NAME: Final = "COFFEE SHOP SHANGHAI".ljust(40)


def pan(prefix: str) -> str:
    """A Luhn-valid 16-digit PAN starting with ``prefix``."""
    body = prefix.ljust(15, "0")
    return body + luhn_check_digit(body)


DEBIT_PAN: Final = pan("622588000000001")
CREDIT_PAN: Final = pan("625807000000002")
UNKNOWN_PAN: Final = pan("622588999999999")
EXPIRY: Final = "2812"
PIN: Final = "123456"


def sale(
    card: str,
    amount_minor: int,
    stan: int,
    *,
    pin: str | None = None,
    zpk: bytes | None = None,
    expiry: str = EXPIRY,
    rrn: str | None = None,
    transmitted: str = "1121103015",
    processing_code: str = "000000",
    mti: str = "0200",
    txn_type: str = "22",
    extra: dict[int, str] | None = None,
) -> Message:
    """A sale (or, with other codes, any card-present request) from terminal T0000001."""
    fields = {
        2: card,
        3: processing_code,
        4: f"{amount_minor:012d}",
        7: transmitted,
        11: f"{stan:06d}",
        14: expiry,
        22: "021" if pin is None else "022",
        25: "00",
        32: ACQUIRER,
        37: rrn or f"{stan:012d}",
        41: TERMINAL,
        42: MERCHANT,
        43: MERCHANT_NAME,
        49: "156",
        60: f"{txn_type}000001000",
    }
    if pin is not None:
        assert zpk is not None, "a PIN needs the zone PIN key to travel"
        fields[52] = encrypt_pin_block(zpk, pin, Pan(card)).hex().upper()
        fields[53] = "2600000000000000"
    fields.update(extra or {})
    return Message(mti, fields)


def balance_inquiry(card: str, stan: int, *, pin: str, zpk: bytes) -> Message:
    return sale(
        card, 0, stan, pin=pin, zpk=zpk, processing_code="310000", txn_type="01"
    ).with_fields({4: None})


def void(card: str, original: Message, original_auth_code: str, stan: int) -> Message:
    """Void of ``original``: its amount, its RRN in 37 and its auth code in 38."""
    return sale(
        card,
        int(original.fields[4]),
        stan,
        processing_code="200000",
        txn_type="23",
        rrn=original.fields[37],
        extra={38: original_auth_code, 61: f"000001{original.fields[11]}1121"},
    )


def refund(card: str, original: Message, amount_minor: int, stan: int) -> Message:
    """Refund advice (0220) against ``original``'s RRN."""
    return sale(
        card,
        amount_minor,
        stan,
        mti="0220",
        processing_code="200000",
        txn_type="25",
        rrn=original.fields[37],
        extra={61: f"000001{original.fields[11]}1121"},
    )


def preauth(card: str, amount_minor: int, stan: int, **kwargs: object) -> Message:
    return sale(
        card,
        amount_minor,
        stan,
        mti="0100",
        processing_code="030000",
        txn_type="10",
        **kwargs,  # type: ignore[arg-type]
    )


def completion(card: str, amount_minor: int, auth_code: str, stan: int) -> Message:
    return sale(card, amount_minor, stan, txn_type="20", extra={38: auth_code, 25: "06"})


def reversal(original: Message, *, mti: str = "0400", transmitted: str = "1121103500") -> Message:
    """A reversal of ``original``: its fields, reason 98, field 90 naming it."""
    fields = {n: v for n, v in original.fields.items() if n not in (52, 53, 43)}
    fields[7] = transmitted
    fields[39] = "98"
    fields[90] = (
        original.mti + original.fields[11] + original.fields[7] + ACQUIRER.rjust(11, "0") + "0" * 11
    )
    return Message(mti, fields)
