"""Checks shared by the PIN modules, worded so no PIN digit reaches a message."""

from __future__ import annotations

from typing import Final

from cardtally.security._errors import SecurityError
from cardtally.wire import Pan

PIN_DIGITS_MIN: Final = 4
PIN_DIGITS_MAX: Final = 12
_PAN_DIGITS_MIN: Final = 12
_PAN_DIGITS_MAX: Final = 19
# ISO 9564-1 takes the 12 rightmost PAN digits excluding the check digit and
# left-pads a shorter account number with zeros; padding the whole PAN to 13
# digits first gives the same field for every PAN length we accept.
_PAN_FIELD_SOURCE_DIGITS: Final = 13


def is_valid_pin(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX


def require_pin(pin: str) -> None:
    if not is_valid_pin(pin):
        raise SecurityError(f"a PIN must be {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits")


def pan_digits(pan: Pan | str) -> str:
    """The clear digits of a ``Pan``, or of a string that looks like one.

    A string is not Luhn-checked: the wire layer owns that rule, and PIN
    processing must work for any account number the issuer has on file.
    """
    if isinstance(pan, Pan):
        return pan.reveal()
    if not (pan.isascii() and pan.isdigit()):
        raise SecurityError("a card number must be digits only")
    if not _PAN_DIGITS_MIN <= len(pan) <= _PAN_DIGITS_MAX:
        raise SecurityError(
            f"a card number must be {_PAN_DIGITS_MIN} to {_PAN_DIGITS_MAX} digits, got {len(pan)}"
        )
    return pan


def zero_padded_pan(pan: Pan | str) -> str:
    """A PAN that psec's 13-digit minimum accepts and that yields the same field."""
    return pan_digits(pan).rjust(_PAN_FIELD_SOURCE_DIGITS, "0")


def account_number_digits(pan: Pan | str) -> str:
    """The 12 rightmost PAN digits excluding the check digit (ISO 9564-1)."""
    return zero_padded_pan(pan)[-_PAN_FIELD_SOURCE_DIGITS:-1]
