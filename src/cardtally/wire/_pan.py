"""The primary account number, which never prints in clear."""

from __future__ import annotations

from typing import Final

PAN_DIGITS_MIN: Final = 12
PAN_DIGITS_MAX: Final = 19


class PanError(ValueError):
    """Not a card number: wrong length, not digits, or a failed Luhn check."""


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` passes the ISO/IEC 7812 (Luhn) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    for digit in "0123456789":
        if luhn_ok(partial + digit):
            return digit
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def mask_pan(digits: str) -> str:
    """First 6 and last 4 digits, the rest as ``*`` (PCI DSS 3.4 display rule)."""
    if len(digits) < 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def masked_field(number: int, value: str) -> str:
    """A field value as logs, screens and reprs may show it.

    The PAN shows first 6 and last 4; track data keeps the masked account number
    and hides the rest (expiry, service code, discretionary data); the PIN block
    is hidden whole. Other fields are returned unchanged.
    """
    if number == 2:
        return mask_pan(value)
    if number in (35, 36):
        account, separator, rest = value.partition("D")
        return mask_pan(account) + separator + "*" * len(rest)
    if number == 52:
        return "<PIN block>"
    return value


class Pan:
    """A card number. ``str``, ``repr`` and f-strings show only the mask.

    The clear digits are reachable only through :meth:`reveal`, so a PAN that
    ends up in a log line, an exception or a rich table is masked by default.
    """

    __slots__ = ("_digits",)

    def __init__(self, digits: str) -> None:
        if not (digits.isascii() and digits.isdigit()):
            raise PanError("card number must be digits only")
        if not PAN_DIGITS_MIN <= len(digits) <= PAN_DIGITS_MAX:
            raise PanError(
                f"card number must be {PAN_DIGITS_MIN} to {PAN_DIGITS_MAX} digits, "
                f"got {len(digits)}"
            )
        if not luhn_ok(digits):
            raise PanError(f"card number {mask_pan(digits)} fails the Luhn check")
        self._digits = digits

    def reveal(self) -> str:
        """The clear digits, for the wire and the issuer's protected store only."""
        return self._digits

    @property
    def bin(self) -> str:
        """The issuer identification number (first 6 digits), used for routing."""
        return self._digits[:6]

    @property
    def last4(self) -> str:
        return self._digits[-4:]

    @property
    def masked(self) -> str:
        return mask_pan(self._digits)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"Pan('{self.masked}')"

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pan) and other._digits == self._digits

    def __hash__(self) -> int:
        return hash(("Pan", self._digits))

    def __reduce__(self) -> tuple[type[Pan], tuple[str]]:
        return (Pan, (self._digits,))
