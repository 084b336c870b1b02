"""Encode and decode messages of the profile (no framing here; see ``_framing``).

pyiso8583 does the field-by-field work from the spec data in ``_spec``. Around
it we add what a network boundary needs: the MTI must be one the profile
knows, every bitmap bit must name a field the profile defines (pyiso8583 would
otherwise stop with a ``KeyError``), numeric fields must really hold digits,
and every failure becomes a :class:`DecodeError` with the field and the byte
offset in the caller's buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import iso8583

from cardtally.wire._errors import DecodeError, EncodeError
from cardtally.wire._message import Message
from cardtally.wire._spec import DEFINED_FIELDS, KNOWN_MTIS, SPEC

MTI_BYTES: Final = 2
BITMAP_BYTES: Final = 8
MAC_BYTES: Final = 8
_PRINTABLE: Final = frozenset(range(0x20, 0x7F))
# ISO "an": letters and digits; space allowed because auth codes arrive space-padded.
_ALPHANUMERIC: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ")
_DIGITS: Final = frozenset("0123456789")
_TRACK: Final = frozenset("0123456789D")
_HEX: Final = frozenset("0123456789ABCDEF")


def decode_message(data: bytes, *, base_offset: int = 0) -> Message:
    """Decode one message (MTI onward). Raises only :class:`DecodeError`.

    ``base_offset`` is where ``data`` starts in the caller's buffer, so offsets in
    errors point at the byte the caller sees (for example inside a whole frame).
    """
    _check_mti(data, base_offset)
    _check_bitmaps(data, base_offset)
    try:
        decoded, encoded = iso8583.decode(data, SPEC)
    except iso8583.DecodeError as exc:
        raise DecodeError(exc.field, base_offset + exc.pos, exc.msg) from None
    fields = _checked_fields(decoded, encoded, base_offset)
    return Message(decoded["t"], fields)


def encode_message(message: Message) -> bytes:
    """Encode a message of the profile. Raises :class:`EncodeError` on bad content."""
    if message.mti not in KNOWN_MTIS:
        raise EncodeError("t", f"message type {message.mti!r} is not in the profile")
    doc: dict[str, str] = {"t": message.mti}
    for number, value in message.fields.items():
        doc[str(number)] = _checked_value(number, value)
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        raise EncodeError(exc.field, exc.msg) from None
    return bytes(raw)


def mac_field_of(message: Message) -> int:
    """Field 128 carries the MAC when the secondary bitmap is in use, else field 64."""
    return 128 if any(n > 64 for n in message.fields if n not in (64, 128)) else 64


def encode_signed(message: Message, compute_mac: Callable[[bytes], bytes]) -> bytes:
    """Encode with the MAC computed over everything before the MAC field.

    The MAC field is the last one on the wire, so the MAC block is the encoded
    message minus its last 8 bytes, with the MAC bit already set in the bitmap.
    """
    mac_field = mac_field_of(message)
    zero_mac = message.with_fields({64: None, 128: None, mac_field: "00" * MAC_BYTES})
    raw = encode_message(zero_mac)
    mac = compute_mac(raw[:-MAC_BYTES])
    if len(mac) != MAC_BYTES:
        raise EncodeError(str(mac_field), f"MAC is {len(mac)} bytes, expected {MAC_BYTES}")
    return raw[:-MAC_BYTES] + mac


def split_mac(raw: bytes, message: Message) -> tuple[bytes, bytes] | None:
    """(MAC block, MAC) of a decoded message, or ``None`` when it carries no MAC."""
    if message.mac is None:
        return None
    return raw[:-MAC_BYTES], raw[-MAC_BYTES:]


# --- decoding checks ------------------------------------------------------


def _check_mti(data: bytes, base: int) -> None:
    if len(data) < MTI_BYTES:
        raise DecodeError("t", base, f"message is {len(data)} bytes, the MTI needs {MTI_BYTES}")
    mti = data[:MTI_BYTES].hex().upper()
    if mti not in KNOWN_MTIS:
        raise DecodeError("t", base, f"message type {mti} is not in the profile")


def _check_bitmaps(data: bytes, base: int) -> None:
    """Refuse bits for fields the profile does not define, before pyiso8583 sees them."""
    start = MTI_BYTES
    for bitmap_key, first_field in (("p", 1), ("1", 65)):
        chunk = data[start : start + BITMAP_BYTES]
        if len(chunk) < BITMAP_BYTES:
            return  # pyiso8583 reports the short bitmap with its position
        for byte_index, byte in enumerate(chunk):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    number = first_field + byte_index * 8 + bit
                    if number not in DEFINED_FIELDS and number != 1:
                        raise DecodeError(
                            bitmap_key,
                            base + start + byte_index,
                            f"bitmap sets field {number}, which the profile does not define",
                        )
        if not chunk[0] & 0x80:
            return
        start += BITMAP_BYTES


def _checked_fields(
    decoded: dict[str, str], encoded: dict[str, dict[str, bytes]], base: int
) -> dict[int, str]:
    """Validate decoded content by kind, tracking each field's offset for errors."""
    offset = base
    fields: dict[int, str] = {}
    for key, parts in encoded.items():
        data_offset = offset + len(parts["len"])
        offset = data_offset + len(parts["data"])
        if not key.isdigit() or key == "1":
            continue
        value = decoded[key]
        reason = _content_problem(SPEC[key]["kind"], value)
        if reason is not None:
            raise DecodeError(key, data_offset, reason)
        fields[int(key)] = value
    return fields


def _content_problem(kind: str, value: str) -> str | None:
    if kind == "n" and not set(value) <= _DIGITS:
        return f"numeric field holds a non-digit nibble: {value!r}"
    if kind == "z" and not set(value) <= _TRACK:
        return "track data holds a nibble other than 0-9 and the separator D"
    if kind == "an" and not set(value.encode("ascii", "replace")) <= _ALPHANUMERIC:
        return "alphanumeric field holds a byte other than a letter, digit or space"
    if kind == "ans" and not set(value.encode("ascii", "replace")) <= _PRINTABLE:
        return "text field holds a non-printable byte"
    return None


# --- encoding checks ------------------------------------------------------


def _checked_value(number: int, value: str) -> str:
    if number not in DEFINED_FIELDS or number == 1:
        raise EncodeError(str(number), "field is not in the profile")
    if not isinstance(value, str):
        raise EncodeError(str(number), f"value must be a string, not {type(value).__name__}")
    kind = SPEC[str(number)]["kind"]
    if kind == "b":
        value = value.upper()
        if not set(value) <= _HEX or len(value) % 2:
            raise EncodeError(
                str(number), "binary field must be given as an even count of hex digits"
            )
        return value
    if kind == "z":
        value = value.upper().replace("=", "D")
    problem = _content_problem(kind, value)
    if problem is not None:
        raise EncodeError(str(number), problem)
    return value
