"""Card numbers at rest: AES-256-GCM ciphertext plus a keyed fingerprint.

The ciphertext is ``nonce (12 random bytes) || GCM ciphertext || tag`` with the
associated data ``b"cardtally/pan/v1"``, so a blob from another purpose or a
future format fails authentication instead of decrypting to digits. The
fingerprint is HMAC-SHA256 of the digits under a separate key: equal PANs give
equal fingerprints, which is what look-ups by card number need, and without
the key it cannot be brute-forced over the small space of card numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardtally.security._data_keys import DataKeys
from cardtally.security._errors import SecurityError
from cardtally.wire import Pan, PanError

PAN_ASSOCIATED_DATA: Final = b"cardtally/pan/v1"
NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class ProtectedPan:
    """A PAN as stored: ciphertext for the issuer, fingerprint for look-ups."""

    ciphertext: bytes
    fingerprint: str


def pan_fingerprint(keys: DataKeys, pan: Pan) -> str:
    """Hex HMAC-SHA256 of the PAN digits under the fingerprint key."""
    digest = hmac.new(keys.fingerprint_key, pan.reveal().encode("ascii"), hashlib.sha256)
    return digest.hexdigest()


def protect_pan(keys: DataKeys, pan: Pan) -> ProtectedPan:
    """Encrypt ``pan`` under a fresh random nonce and fingerprint it."""
    # 96-bit random nonces are safe for up to 2**32 encryptions under one key
    # (NIST SP 800-38D 8.3), far beyond one issuer's card base.
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(keys.encryption_key).encrypt(
        nonce, pan.reveal().encode("ascii"), PAN_ASSOCIATED_DATA
    )
    return ProtectedPan(ciphertext=nonce + sealed, fingerprint=pan_fingerprint(keys, pan))


def _open(keys: DataKeys, ciphertext: bytes) -> bytes:
    if len(ciphertext) < NONCE_BYTES + _TAG_BYTES:
        raise SecurityError(f"protected card number is too short ({len(ciphertext)} bytes)")
    nonce, sealed = ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:]
    try:
        return AESGCM(keys.encryption_key).decrypt(nonce, sealed, PAN_ASSOCIATED_DATA)
    except InvalidTag:
        raise SecurityError(
            "protected card number failed authentication (tampered, or another key)"
        ) from None


def reveal_pan(keys: DataKeys, protected: ProtectedPan) -> Pan:
    """The PAN inside ``protected``; ``SecurityError`` if anything was altered."""
    plain = _open(keys, protected.ciphertext)
    try:
        pan = Pan(plain.decode("ascii"))
    except (UnicodeDecodeError, PanError):
        raise SecurityError("protected card number does not decrypt to a card number") from None
    # GCM does not cover the fingerprint; a mismatch means rows were mixed up.
    if not hmac.compare_digest(pan_fingerprint(keys, pan), protected.fingerprint):
        raise SecurityError("protected card number does not match its fingerprint")
    return pan
