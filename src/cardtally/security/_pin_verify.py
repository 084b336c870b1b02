"""Issuer PIN verification by the IBM 3624 offset method.

Chosen over Visa PVV because PVV encodes exactly 4 digits, while cards in
China commonly carry 6-digit PINs; the 3624 offset is as long as the PIN.

Parameters (fixed here so every issuer store agrees):

* decimalisation table ``0123456789012345`` (hex digit A-F map to 0-5), the
  table most published 3624 descriptions use;
* validation data: the 12 rightmost PAN digits excluding the check digit
  (the same digits a format 0 PIN block uses), right-padded with ``F`` to 16.

Only the offset is stored. Without the PIN verification key it says nothing
about the PIN; the clear PIN is never stored or logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from cardtally.security import _tdes
from cardtally.security._errors import SecurityError
from cardtally.security._inputs import account_number_digits, is_valid_pin, require_pin
from cardtally.security._keys import require_double_key
from cardtally.wire import Pan

DECIMALISATION_TABLE: Final = "0123456789012345"


@dataclass(frozen=True, slots=True)
class PinVerification:
    """What the issuer keeps to check a PIN: the 3624 offset (same length as the PIN)."""

    offset: str

    def __post_init__(self) -> None:
        if not is_valid_pin(self.offset):
            raise SecurityError("a PIN offset must be 4 to 12 digits")


def _offset_for(pvk: bytes, pan: Pan | str, pin: str) -> str:
    return _tdes.ibm3624_offset(pvk, DECIMALISATION_TABLE, pin, account_number_digits(pan))


def make_pin_verification(pvk: bytes, pan: Pan | str, pin: str) -> PinVerification:
    """The verification record for a newly chosen ``pin`` on card ``pan``."""
    require_double_key(pvk, "PIN verification key")
    require_pin(pin)
    return PinVerification(offset=_offset_for(pvk, pan, pin))


def verify_pin(pvk: bytes, pan: Pan | str, pin: str, stored: PinVerification) -> bool:
    """True when ``pin`` is the PIN ``stored`` was made from; constant-time compare."""
    require_double_key(pvk, "PIN verification key")
    # A malformed entry is simply a wrong PIN: the caller answers 55 either way.
    if not is_valid_pin(pin) or len(pin) != len(stored.offset):
        return False
    candidate = _offset_for(pvk, pan, pin)
    return hmac.compare_digest(candidate.encode("ascii"), stored.offset.encode("ascii"))
