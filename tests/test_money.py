"""Money: integer minor units, parsed and printed without floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardtally.money import Money, MoneyError


@given(st.integers(min_value=0, max_value=10**14), st.sampled_from(["156", "840", "392"]))
def test_text_round_trip(minor: int, currency: str) -> None:
    money = Money(minor, currency)
    assert Money.parse(money.decimal_text(), currency) == money


def test_parse_and_print() -> None:
    assert Money.parse("100.00").minor == 10000
    assert Money.parse("0.5").minor == 50
    assert str(Money(123456)) == "CNY 1234.56"
    assert str(Money(-5)) == "CNY -0.05"
    assert Money.parse("1000", "392").minor == 1000


@pytest.mark.parametrize("text", ["1.234", "abc", "-1.00", "1e3", "", "1,000.00"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(MoneyError):
        Money.parse(text)


def test_no_floats_and_no_mixing() -> None:
    with pytest.raises(MoneyError):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(1, "156") + Money(1, "840")
    with pytest.raises(MoneyError):
        Money(1, "000")
    assert Money(1) + Money(2) == Money(3)
