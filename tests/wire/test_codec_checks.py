"""The codec's fast content and bitmap checks against their plain definitions.

The checks in ``_codec`` are written for speed (precomputed per-field rules, string
methods, bitmap masks). The oracles below state each rule the obvious way, as the
codec used to: character sets and a bit-by-bit bitmap walk. Both must accept and
refuse exactly the same inputs, with the same field, offset and reason.
"""

from __future__ import annotations

import string

import iso8583
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cardtally.wire import (
    DEFINED_FIELDS,
    KNOWN_MTIS,
    SPEC,
    DecodeError,
    EncodeError,
    Message,
    _codec,
)
from cardtally.wire._codec import decode_message, encode_message

from .samples import SALE_0200, SALE_0210
from .strategies import messages

_PRINTABLE = frozenset(range(0x20, 0x7F))
_ALPHANUMERIC = frozenset((string.ascii_letters + string.digits + " ").encode())
_DIGITS = frozenset(string.digits)
_TRACK = frozenset(string.digits + "D")
_HEX = frozenset(string.digits + "ABCDEF")


def oracle_content_problem(kind: str, value: str) -> str | None:
    if kind == "n" and not set(value) <= _DIGITS:
        return f"numeric field holds a non-digit nibble: {value!r}"
    if kind == "z" and not set(value) <= _TRACK:
        return "track data holds a nibble other than 0-9 and the separator D"
    if kind == "an" and not set(value.encode("ascii", "replace")) <= _ALPHANUMERIC:
        return "alphanumeric field holds a byte other than a letter, digit or space"
    if kind == "ans" and not set(value.encode("ascii", "replace")) <= _PRINTABLE:
        return "text field holds a non-printable byte"
    return None


def oracle_check_bitmaps(data: bytes, base: int) -> None:
    start = 2
    for bitmap_key, first_field in (("p", 1), ("1", 65)):
        chunk = data[start : start + 8]
        if len(chunk) < 8:
            return
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
        start += 8


def oracle_checked_value(number: int, value: str) -> str:
    if number not in DEFINED_FIELDS or number == 1:
        raise EncodeError(str(number), "field is not in the profile")
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
    problem = oracle_content_problem(kind, value)
    if problem is not None:
        raise EncodeError(str(number), problem)
    return value


def oracle_decode(data: bytes) -> Message:
    """decode_message as it was, check by check, with offsets counted field by field."""
    if len(data) < 2:
        raise DecodeError("t", 0, f"message is {len(data)} bytes, the MTI needs 2")
    mti = data[:2].hex().upper()
    if mti not in KNOWN_MTIS:
        raise DecodeError("t", 0, f"message type {mti} is not in the profile")
    oracle_check_bitmaps(data, 0)
    try:
        decoded, encoded = iso8583.decode(data, SPEC)
    except iso8583.DecodeError as exc:
        raise DecodeError(exc.field, exc.pos, exc.msg) from None
    offset = 0
    fields: dict[int, str] = {}
    for key, parts in encoded.items():
        data_offset = offset + len(parts["len"])
        offset = data_offset + len(parts["data"])
        if not key.isdigit() or key == "1":
            continue
        reason = oracle_content_problem(SPEC[key]["kind"], decoded[key])
        if reason is not None:
            raise DecodeError(key, data_offset, reason)
        fields[int(key)] = decoded[key]
    return Message(decoded["t"], fields)


def outcome(call: object) -> object:
    """A call's result, or its error as (type, fields) so two errors compare by content."""
    assert callable(call)
    try:
        return call()
    except DecodeError as exc:
        return ("decode", exc.field, exc.offset, exc.reason)
    except EncodeError as exc:
        return ("encode", exc.field, exc.reason)


# Text that is mostly near the rules' edges: the kinds' alphabets, control
# characters, DEL, and non-ASCII (digits and letters included).
edgy_text = st.text(
    st.one_of(
        st.sampled_from(string.printable + "\x00\x1f\x7f\x80\xa0²٣ＡßDd=?"),
        st.characters(),
    ),
    max_size=40,
)
kinds = st.sampled_from(["n", "z", "an", "ans", "b"])


@settings(max_examples=2000, deadline=None)
@given(kinds, edgy_text)
@example("n", "")
@example("z", "DDD")
@example("an", "   ")
@example("ans", "é")
@example("an", "é")
@example("ans", "\x7f")
def test_content_check_matches_its_definition(kind: str, value: str) -> None:
    assert _codec._content_problem(kind, value) == oracle_content_problem(kind, value)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(sorted(DEFINED_FIELDS | {0, 5, 65, 129})), edgy_text)
def test_encode_field_check_matches_its_definition(number: int, value: str) -> None:
    assert outcome(lambda: _codec._checked_value(str(number), value)) == outcome(
        lambda: oracle_checked_value(number, value)
    )


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=20), st.integers(min_value=0, max_value=100))
def test_bitmap_check_matches_its_definition(data: bytes, base: int) -> None:
    assert outcome(lambda: _codec._check_bitmaps(data, base)) == outcome(
        lambda: oracle_check_bitmaps(data, base)
    )


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(DEFINED_FIELDS)), st.sampled_from(sorted(DEFINED_FIELDS)))
def test_bitmap_check_names_the_first_undefined_field(first: int, second: int) -> None:
    # Every defined field with every other undefined one set too, in both bitmaps.
    bitmap = bytearray(16)
    for number in (first, second, 1, 2 + (first % 60), 66 + (second % 60)):
        bitmap[(number - 1) // 8] |= 0x80 >> ((number - 1) % 8)
    data = b"\x02\x00" + bytes(bitmap)
    assert outcome(lambda: _codec._check_bitmaps(data, 7)) == outcome(
        lambda: oracle_check_bitmaps(data, 7)
    )


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """Encoded messages with a few bytes changed, dropped or added."""
    raw = bytearray(draw(st.sampled_from([encode_message(SALE_0200), encode_message(SALE_0210)])))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(raw)))
        action = draw(st.sampled_from(["set", "drop", "insert"]))
        if action == "set" and position < len(raw):
            raw[position] = draw(st.integers(min_value=0, max_value=255))
        elif action == "drop" and position < len(raw):
            del raw[position]
        else:
            raw.insert(position, draw(st.integers(min_value=0, max_value=255)))
    return bytes(raw)


@settings(max_examples=2000, deadline=None)
@given(mutated_messages())
def test_decode_matches_the_check_by_check_definition(data: bytes) -> None:
    assert outcome(lambda: decode_message(data)) == outcome(lambda: oracle_decode(data))


@settings(max_examples=300, deadline=None)
@given(messages())
def test_decode_of_any_profile_message_matches_the_definition(message: Message) -> None:
    data = encode_message(message)
    assert outcome(lambda: decode_message(data)) == outcome(lambda: oracle_decode(data))
