"""Hypothesis strategies for keys, PINs and card numbers."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from cardtally.wire import Pan, luhn_check_digit

double_keys = st.binary(min_size=16, max_size=16)
pins = st.text(string.digits, min_size=4, max_size=12)


@st.composite
def pans(draw: st.DrawFn) -> Pan:
    """Any Luhn-valid card number from 12 to 19 digits."""
    body = draw(st.text(string.digits, min_size=11, max_size=18))
    return Pan(body + luhn_check_digit(body))
