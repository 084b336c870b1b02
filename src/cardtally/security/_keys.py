"""Terminal master key, working keys, and their sign-on transport (field 62).

Field 62 of the sign-on response (this project's wire profile, 40 bytes)::

    PIN key under TMK (16) | PIN key KCV (4) | MAC key under TMK (16) | MAC key KCV (4)

Keys are wrapped with TDES-ECB under the terminal master key (TMK); a check
value (KCV) is the first 4 bytes of the key's encryption of 8 zero bytes.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final

import psec

from cardtally.security import _tdes
from cardtally.security._errors import KeyCheckError, SecurityError

DOUBLE_KEY_BYTES: Final = 16
KCV_BYTES: Final = 4
SIGNON_KEYS_BYTES: Final = 2 * (DOUBLE_KEY_BYTES + KCV_BYTES)


def require_double_key(key: bytes, name: str) -> None:
    if len(key) != DOUBLE_KEY_BYTES:
        raise SecurityError(f"{name} must be {DOUBLE_KEY_BYTES} bytes, got {len(key)}")


def key_check_value(key: bytes) -> bytes:
    """The 4-byte check value: TDES-ECB of 8 zero bytes under ``key``, truncated."""
    return _tdes.key_check_value(key, KCV_BYTES)


def kcv_hex(key: bytes) -> str:
    return key_check_value(key).hex().upper()


def random_double_key() -> bytes:
    # Parity bits carry no key material; adjusting them keeps HSMs that check
    # parity (most do) from rejecting a key we generated.
    key: bytes = psec.des.adjust_key_parity(secrets.token_bytes(DOUBLE_KEY_BYTES))
    return key


def generate_master_key() -> bytes:
    """A fresh terminal master key: double-length TDES, odd parity, OS CSPRNG."""
    return random_double_key()


@dataclass(frozen=True, slots=True)
class WorkingKeys:
    """A terminal's session keys: PIN encryption and MAC. The repr shows check values only."""

    pin_key: bytes
    mac_key: bytes

    def __post_init__(self) -> None:
        require_double_key(self.pin_key, "PIN key")
        require_double_key(self.mac_key, "MAC key")

    def __repr__(self) -> str:
        return (
            f"WorkingKeys(pin_key_kcv={kcv_hex(self.pin_key)!r}, "
            f"mac_key_kcv={kcv_hex(self.mac_key)!r})"
        )


def generate_working_keys() -> WorkingKeys:
    """Fresh PIN and MAC keys for one terminal session."""
    return WorkingKeys(pin_key=random_double_key(), mac_key=random_double_key())


def encode_signon_keys(master_key: bytes, keys: WorkingKeys) -> bytes:
    """Field 62 of a sign-on response: both working keys wrapped under the TMK."""
    require_double_key(master_key, "terminal master key")
    encoded = b"".join(
        _tdes.encrypt_ecb(master_key, key) + key_check_value(key)
        for key in (keys.pin_key, keys.mac_key)
    )
    assert len(encoded) == SIGNON_KEYS_BYTES
    return encoded


def _unwrap_checked(master_key: bytes, part: bytes, key_name: str) -> bytes:
    wrapped, expected_kcv = part[:DOUBLE_KEY_BYTES], part[DOUBLE_KEY_BYTES:]
    key = _tdes.decrypt_ecb(master_key, wrapped)
    actual_kcv = key_check_value(key)
    if not hmac.compare_digest(actual_kcv, expected_kcv):
        raise KeyCheckError(key_name, expected_kcv.hex().upper(), actual_kcv.hex().upper())
    return key


def decode_signon_keys(master_key: bytes, data: bytes) -> WorkingKeys:
    """Unwrap field 62 under the TMK; a check value that disagrees raises ``KeyCheckError``."""
    require_double_key(master_key, "terminal master key")
    if len(data) != SIGNON_KEYS_BYTES:
        raise SecurityError(
            f"sign-on keys (field 62) must be {SIGNON_KEYS_BYTES} bytes, got {len(data)}"
        )
    half = SIGNON_KEYS_BYTES // 2
    return WorkingKeys(
        pin_key=_unwrap_checked(master_key, data[:half], "PIN key"),
        mac_key=_unwrap_checked(master_key, data[half:], "MAC key"),
    )
