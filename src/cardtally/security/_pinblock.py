"""ISO 9564-1 format 0 PIN blocks, encrypted under the terminal's PIN key."""

from __future__ import annotations

from typing import Final

import psec

from cardtally.security import _tdes
from cardtally.security._errors import PinBlockError
from cardtally.security._inputs import require_pin, zero_padded_pan
from cardtally.security._keys import require_double_key
from cardtally.wire import Pan

PIN_BLOCK_BYTES: Final = 8


def encrypt_pin_block(pin_key: bytes, pin: str, pan: Pan | str) -> bytes:
    """The format 0 PIN block for ``pin`` and ``pan``, TDES-ECB under ``pin_key``."""
    require_double_key(pin_key, "PIN key")
    require_pin(pin)
    clear: bytes = psec.pinblock.encode_pinblock_iso_0(pin, zero_padded_pan(pan))
    return _tdes.encrypt_ecb(pin_key, clear)


def decrypt_pin_block(pin_key: bytes, block: bytes, pan: Pan | str) -> str:
    """The PIN inside an encrypted format 0 block; ``PinBlockError`` if malformed."""
    require_double_key(pin_key, "PIN key")
    if len(block) != PIN_BLOCK_BYTES:
        raise PinBlockError(f"a PIN block must be {PIN_BLOCK_BYTES} bytes, got {len(block)}")
    clear = _tdes.decrypt_ecb(pin_key, block)
    try:
        pin: str = psec.pinblock.decode_pinblock_iso_0(clear, zero_padded_pan(pan))
    except ValueError:
        # psec's message can quote the decoded digits; drop it and its chain.
        raise PinBlockError(
            "PIN block is not ISO 9564 format 0 under this key and card number"
        ) from None
    return pin
