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
# The character sets of the field kinds, as strings for ``str.strip``: a value
# holds only characters of a set exactly when stripping them all leaves nothing.
# ISO "an": letters and digits; space allowed because auth codes arrive space-padded.
_ALPHANUMERIC: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "
_TRACK: Final = "0123456789D"
_HEX: Final = "0123456789ABCDEF"


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
        key = str(number)
        doc[key] = _checked_value(key, value)
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
    if bytes(data[:MTI_BYTES]) not in _KNOWN_MTI_BYTES:
        mti = data[:MTI_BYTES].hex().upper()
        raise DecodeError("t", base, f"message type {mti} is not in the profile")


def _bitmap_mask(first_field: int, allowed: frozenset[int]) -> int:
    """The 64-bit bitmap (as an integer) with a bit set for each allowed field."""
    return sum(
        1 << (first_field + 63 - number) for number in allowed if 0 <= number - first_field < 64
    )


_KNOWN_MTI_BYTES: Final = frozenset(bytes.fromhex(mti) for mti in KNOWN_MTIS)
# Bit 1 of the primary bitmap announces the secondary bitmap rather than a field.
_PRIMARY_ALLOWED: Final = _bitmap_mask(1, DEFINED_FIELDS | {1})
_SECONDARY_ALLOWED: Final = _bitmap_mask(65, DEFINED_FIELDS)
_SECONDARY_PRESENT: Final = 1 << 63


def _check_bitmaps(data: bytes, base: int) -> None:
    """Refuse bits for fields the profile does not define, before pyiso8583 sees them."""
    start = MTI_BYTES
    for bitmap_key, first_field, allowed in (
        ("p", 1, _PRIMARY_ALLOWED),
        ("1", 65, _SECONDARY_ALLOWED),
    ):
        chunk = data[start : start + BITMAP_BYTES]
        if len(chunk) < BITMAP_BYTES:
            return  # pyiso8583 reports the short bitmap with its position
        bits = int.from_bytes(chunk)
        undefined = bits & ~allowed
        if undefined:
            # The highest undefined bit is the lowest field number: the first one on the wire.
            index = BITMAP_BYTES * 8 - undefined.bit_length()
            raise DecodeError(
                bitmap_key,
                base + start + index // 8,
                f"bitmap sets field {first_field + index}, which the profile does not define",
            )
        if not bits & _SECONDARY_PRESENT:
            return
        start += BITMAP_BYTES


def _checked_fields(
    decoded: dict[str, str], encoded: dict[str, dict[str, bytes]], base: int
) -> dict[int, str]:
    """Validate decoded content by kind; a refused field's error carries its offset."""
    fields: dict[int, str] = {}
    for key in encoded:
        rule = _DECODED_FIELD_RULES.get(key)
        if rule is None:
            continue  # MTI and bitmaps: pyiso8583 has checked their form
        number, kind, content_ok = rule
        value = decoded[key]
        if content_ok is not None and not content_ok(value):
            reason = _content_problem(kind, value) or ""
            raise DecodeError(key, _data_offset(encoded, key, base), reason)
        fields[number] = value
    return fields


def _data_offset(encoded: dict[str, dict[str, bytes]], field_key: str, base: int) -> int:
    """Where ``field_key``'s data starts: only worked out for a field being refused."""
    offset = base
    for key, parts in encoded.items():
        offset += len(parts["len"])
        if key == field_key:
            break
        offset += len(parts["data"])
    return offset


def _digits_only(value: str) -> bool:
    # isdigit alone would also accept non-ASCII digits such as "²".
    return not value or (value.isascii() and value.isdigit())


def _track_only(value: str) -> bool:
    return not value.strip(_TRACK)


def _alphanumeric_only(value: str) -> bool:
    return not value.strip(_ALPHANUMERIC)


def _printable_only(value: str) -> bool:
    if value.isascii():
        # For ASCII, isprintable is exactly 0x20..0x7E.
        return value.isprintable()
    # A non-ASCII character is not refused here (it reaches pyiso8583, which cannot
    # encode it as ASCII); only ASCII control characters are.
    return not any(ch < " " or ch == "\x7f" for ch in value)


#: Kind -> whether a value has the kind's content; kinds without one (binary) are absent.
_CONTENT_OK: Final[dict[str, Callable[[str], bool]]] = {
    "n": _digits_only,
    "z": _track_only,
    "an": _alphanumeric_only,
    "ans": _printable_only,
}


def _content_problem(kind: str, value: str) -> str | None:
    """Why ``value`` does not have the content of ``kind``, or None when it does."""
    content_ok = _CONTENT_OK.get(kind)
    if content_ok is None or content_ok(value):
        return None
    if kind == "n":
        return f"numeric field holds a non-digit nibble: {value!r}"
    if kind == "z":
        return "track data holds a nibble other than 0-9 and the separator D"
    if kind == "an":
        return "alphanumeric field holds a byte other than a letter, digit or space"
    return "text field holds a non-printable byte"


#: pyiso8583's field key -> (field number, kind, content check), worked out once
#: rather than per field per message. The secondary bitmap ("1") is not a field.
_DECODED_FIELD_RULES: Final[dict[str, tuple[int, str, Callable[[str], bool] | None]]] = {
    key: (int(key), spec["kind"], _CONTENT_OK.get(spec["kind"]))
    for key, spec in SPEC.items()
    if key.isdigit() and key != "1"
}


# --- encoding checks ------------------------------------------------------


#: pyiso8583's field key -> (kind, content check), for the fields a message may
#: carry. Keyed by the field number's text, as pyiso8583 and the spec are.
_ENCODED_FIELD_RULES: Final[dict[str, tuple[str, Callable[[str], bool] | None]]] = {
    key: (spec["kind"], _CONTENT_OK.get(spec["kind"]))
    for key, spec in SPEC.items()
    if key.isdigit() and key != "1"
}


def _checked_value(key: str, value: str) -> str:
    rule = _ENCODED_FIELD_RULES.get(key)
    if rule is None:
        raise EncodeError(key, "field is not in the profile")
    if not isinstance(value, str):
        raise EncodeError(key, f"value must be a string, not {type(value).__name__}")
    kind, content_ok = rule
    if kind == "b":
        value = value.upper()
        if value.strip(_HEX) or len(value) % 2:
            raise EncodeError(key, "binary field must be given as an even count of hex digits")
        return value
    if kind == "z":
        value = value.upper().replace("=", "D")
    if content_ok is not None and not content_ok(value):
        raise EncodeError(key, _content_problem(kind, value) or "")
    return value
