"""Money as an integer count of minor units with its ISO 4217 numeric currency.

Floats never come near money: amounts are parsed from and formatted to text
with integer arithmetic only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: ISO 4217 numeric code -> (alphabetic code, minor-unit exponent). Only what
#: the sample networks use; unknown codes are refused rather than guessed.
CURRENCIES: Final[dict[str, tuple[str, int]]] = {
    "156": ("CNY", 2),
    "344": ("HKD", 2),
    "392": ("JPY", 0),
    "410": ("KRW", 0),
    "840": ("USD", 2),
    "978": ("EUR", 2),
}

_DECIMAL = re.compile(r"^(?P<int>\d{1,15})(?:\.(?P<frac>\d{1,3}))?$")


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCIES[currency][1]
    except KeyError:
        raise MoneyError(f"unknown ISO 4217 numeric currency code {currency!r}") from None


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in minor units (fen for CNY) of one currency."""

    minor: int
    currency: str = "156"

    def __post_init__(self) -> None:
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise MoneyError(f"minor units must be an int, not {type(self.minor).__name__}")
        currency_exponent(self.currency)

    @classmethod
    def parse(cls, text: str, currency: str = "156") -> Money:
        """Parse a decimal amount such as ``"100.00"`` without touching floats."""
        exponent = currency_exponent(currency)
        match = _DECIMAL.match(text.strip())
        if match is None:
            raise MoneyError(f"not an amount: {text!r} (expected digits, e.g. 100.00)")
        frac = match["frac"] or ""
        if len(frac) > exponent:
            raise MoneyError(
                f"{text!r} has {len(frac)} decimals; {cls.code_of(currency)} has {exponent}"
            )
        minor = int(match["int"]) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
        return cls(minor, currency)

    @staticmethod
    def code_of(currency: str) -> str:
        return CURRENCIES.get(currency, (currency, 0))[0]

    @property
    def code(self) -> str:
        return self.code_of(self.currency)

    def decimal_text(self) -> str:
        """The amount as a plain decimal string, e.g. ``"1234.50"``."""
        exponent = currency_exponent(self.currency)
        sign = "-" if self.minor < 0 else ""
        units, frac = divmod(abs(self.minor), 10**exponent)
        if exponent == 0:
            return f"{sign}{units}"
        return f"{sign}{units}.{frac:0{exponent}d}"

    def __str__(self) -> str:
        return f"{self.code} {self.decimal_text()}"

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor - other.minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot mix {self.code} and {other.code}")
