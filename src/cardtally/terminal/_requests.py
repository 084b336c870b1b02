"""Terminal requests laid out as the wire profile says (docs/wire-profile.md, section 6).

Pure functions: a terminal identity and the transaction's data in, an unsigned
:class:`Message` out. :func:`sign` adds the MAC with the working MAC key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardtally.security import MacAlgorithm, WorkingKeys, encrypt_pin_block, sign_message
from cardtally.wire import Message, Pan, encode_message, pad_merchant_id, pad_terminal_id

OPERATOR_DEFAULT: Final = "001"
_PIN_CONTROL: Final = "2600000000000000"


@dataclass(frozen=True, slots=True)
class TerminalIdentity:
    terminal_id: str
    merchant_id: str
    currency: str = "156"
    operator: str = OPERATOR_DEFAULT


def _base(who: TerminalIdentity, stan: int, field60: str) -> dict[int, str]:
    return {
        11: f"{stan:06d}",
        41: pad_terminal_id(who.terminal_id),
        42: pad_merchant_id(who.merchant_id),
        60: field60,
        63: who.operator,
    }


def sign_on(who: TerminalIdentity, stan: int, batch_no: int) -> Message:
    return Message("0800", _base(who, stan, f"00{batch_no:06d}003"))


def echo_test(who: TerminalIdentity, stan: int, batch_no: int) -> Message:
    return Message("0800", _base(who, stan, f"00{batch_no:06d}301"))


@dataclass(frozen=True, slots=True)
class Card:
    """What the terminal read from the card, and the PIN the cardholder typed (if any)."""

    pan: Pan
    expiry: str | None = None
    pin: str | None = None


def _no_pin(card: Card) -> Card:
    return Card(card.pan, card.expiry)


def _card_fields(card: Card, pin_key: bytes | None, *, preauth: bool = False) -> dict[int, str]:
    fields = {2: card.pan.reveal(), 22: "021" if card.pin else "022", 25: "06" if preauth else "00"}
    if card.expiry:
        fields[14] = card.expiry
    if card.pin:
        assert pin_key is not None, "a PIN needs the PIN key from the sign-on"
        fields[26] = "06"
        fields[52] = encrypt_pin_block(pin_key, card.pin, card.pan).hex().upper()
        fields[53] = _PIN_CONTROL
    return fields


def sale(
    who: TerminalIdentity,
    stan: int,
    batch_no: int,
    *,
    card: Card,
    amount_minor: int,
    pin_key: bytes | None = None,
) -> Message:
    fields = _base(who, stan, f"22{batch_no:06d}000") | _card_fields(card, pin_key)
    fields |= {3: "000000", 4: f"{amount_minor:012d}", 49: who.currency}
    return Message("0200", fields)


def balance_inquiry(
    who: TerminalIdentity, stan: int, batch_no: int, *, card: Card, pin_key: bytes | None = None
) -> Message:
    fields = _base(who, stan, f"01{batch_no:06d}000") | _card_fields(card, pin_key)
    fields |= {3: "310000", 49: who.currency}
    return Message("0200", fields)


def void(
    who: TerminalIdentity,
    stan: int,
    batch_no: int,
    *,
    card: Card,
    original: Message,
    original_answer: Message,
) -> Message:
    """Void of a sale of this batch: its amount, RRN (37) and auth code (38), and 61.
    No PIN: the administrator password authorises a void, not the cardholder."""
    fields = _base(who, stan, f"23{batch_no:06d}000") | _card_fields(_no_pin(card), None)
    fields |= {
        3: "200000",
        4: original.fields[4],
        37: original_answer.fields[37],
        38: original_answer.fields.get(38, ""),
        49: who.currency,
        61: f"{batch_no:06d}{original.fields[11]}{original_answer.fields.get(13, '0000')}",
    }
    return Message("0200", fields)


def refund(
    who: TerminalIdentity,
    stan: int,
    batch_no: int,
    *,
    card: Card,
    original_rrn: str,
    amount_minor: int,
) -> Message:
    fields = _base(who, stan, f"25{batch_no:06d}000") | _card_fields(_no_pin(card), None)
    fields |= {
        3: "200000",
        4: f"{amount_minor:012d}",
        37: original_rrn,
        49: who.currency,
        61: f"{batch_no:06d}0000000000",
    }
    return Message("0220", fields)


def preauth(
    who: TerminalIdentity,
    stan: int,
    batch_no: int,
    *,
    card: Card,
    amount_minor: int,
    pin_key: bytes | None = None,
) -> Message:
    fields = _base(who, stan, f"10{batch_no:06d}000") | _card_fields(card, pin_key, preauth=True)
    fields |= {3: "030000", 4: f"{amount_minor:012d}", 49: who.currency}
    return Message("0100", fields)


def completion(
    who: TerminalIdentity,
    stan: int,
    batch_no: int,
    *,
    card: Card,
    amount_minor: int,
    auth_code: str,
    original_61: str,
    pin_key: bytes | None = None,
) -> Message:
    """Completion of a pre-authorisation: its auth code in 38, its batch/STAN/date in 61."""
    fields = _base(who, stan, f"20{batch_no:06d}000") | _card_fields(card, pin_key, preauth=True)
    fields |= {
        3: "000000",
        4: f"{amount_minor:012d}",
        38: auth_code,
        49: who.currency,
        61: original_61,
    }
    return Message("0200", fields)


def original_data(batch_no: int, stan: int, mmdd: str) -> str:
    """Field 61: the original's batch, voucher (STAN) and local date (wire profile 5.2)."""
    return f"{batch_no:06d}{stan:06d}{mmdd}"


def upload_record(
    who: TerminalIdentity,
    batch_no: int,
    *,
    pan: Pan,
    request: dict[int, str],
    rrn: str,
    auth_code: str | None,
    host_mmdd: str,
    host_hhmmss: str,
) -> Message:
    """One transaction of the batch for the batch upload (0320, 60.3 = 202, its own STAN)."""
    fields = {
        2: pan.reveal(),
        3: request[3],
        4: request[4],
        11: request[11],
        12: host_hhmmss,
        13: host_mmdd,
        37: rrn,
        41: pad_terminal_id(who.terminal_id),
        42: pad_merchant_id(who.merchant_id),
        49: request.get(49, who.currency),
        60: f"00{batch_no:06d}202",
    }
    if auth_code:
        fields[38] = auth_code
    return Message("0320", fields)


def upload_closing(who: TerminalIdentity, stan: int, batch_no: int, count: int) -> Message:
    """The closing message of a batch upload: how many records went (0320, 60.3 = 207)."""
    fields = _base(who, stan, f"00{batch_no:06d}207") | {48: f"{count:04d}"}
    del fields[63]
    return Message("0320", fields)


_REVERSAL_COPIES: Final = (2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 60, 61)


def reversal_of(original: Message, reason: str, *, repeat: bool = False) -> Message:
    """The reversal of ``original``: a copy of its key fields with the reason in 39."""
    fields = {n: v for n, v in original.fields.items() if n in _REVERSAL_COPIES}
    fields[39] = reason
    return Message("0401" if repeat else "0400", fields)


def settlement(who: TerminalIdentity, stan: int, batch_no: int, totals_field48: str) -> Message:
    fields = _base(who, stan, f"00{batch_no:06d}201") | {48: totals_field48, 49: who.currency}
    return Message("0500", fields)


def sign(message: Message, algorithm: MacAlgorithm, keys: WorkingKeys | None) -> bytes:
    """The bytes to send: with the MAC when the terminal has keys, plain otherwise."""
    if keys is None:
        return encode_message(message)
    return sign_message(message, algorithm, keys.mac_key)
