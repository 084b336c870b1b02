"""Hypothesis strategies that build any message the profile can carry."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from cardtally.wire import DEFINED_FIELDS, KNOWN_MTIS, SPEC, Message, luhn_check_digit

_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
_ALPHABETS = {
    "n": string.digits,
    "z": string.digits + "D",
    "an": string.ascii_letters + string.digits + " ",
}


def field_value(number: int) -> st.SearchStrategy[str]:
    spec = SPEC[str(number)]
    fixed = spec["len_type"] == 0
    size = spec["max_len"]
    kind = spec["kind"]
    if kind == "b":
        if fixed:
            return st.binary(min_size=size, max_size=size).map(lambda b: b.hex().upper())
        return st.binary(min_size=0, max_size=size).map(lambda b: b.hex().upper())
    alphabet = {
        "n": string.digits,
        "z": string.digits + "D",
        "an": string.ascii_letters + string.digits + " ",
    }.get(kind, _PRINTABLE)
    if fixed:
        return st.text(alphabet, min_size=size, max_size=size)
    return st.text(alphabet, min_size=0, max_size=size)


FIELD_NUMBERS = sorted(n for n in DEFINED_FIELDS if n != 1)


@st.composite
def messages(draw: st.DrawFn, mti: str | None = None) -> Message:
    chosen = draw(st.sets(st.sampled_from(FIELD_NUMBERS), max_size=len(FIELD_NUMBERS)))
    fields = {n: draw(field_value(n)) for n in chosen}
    return Message(mti or draw(st.sampled_from(sorted(KNOWN_MTIS))), fields)


@st.composite
def pans(draw: st.DrawFn, bin_prefix: str = "622588") -> str:
    length = draw(st.integers(min_value=16, max_value=19))
    body = bin_prefix + draw(st.text(string.digits, min_size=length - 7, max_size=length - 7))
    return body + luhn_check_digit(body)
