"""Keys at rest: a terminal's master and working keys sealed under the data keys.

Same construction as card numbers (AES-256-GCM, ``nonce || ciphertext || tag``), but the
associated data names what the secret is *for* (``cardtally/key/v1/<purpose>``): a sealed
master key copied onto another terminal's row fails authentication instead of decrypting.
"""

from __future__ import annotations

import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardtally.security._data_keys import DataKeys
from cardtally.security._errors import SecurityError

_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16


def _associated_data(purpose: str) -> bytes:
    return f"cardtally/key/v1/{purpose}".encode()


def seal_secret(keys: DataKeys, purpose: str, secret: bytes) -> bytes:
    """Encrypt ``secret`` for ``purpose`` (e.g. ``"tmk:10300001"``) under a fresh nonce."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(keys.encryption_key).encrypt(nonce, secret, _associated_data(purpose))


def open_secret(keys: DataKeys, purpose: str, sealed: bytes) -> bytes:
    """The secret sealed for ``purpose``; ``SecurityError`` if altered or sealed for another."""
    if len(sealed) < _NONCE_BYTES + _TAG_BYTES:
        raise SecurityError(f"sealed key for {purpose} is too short ({len(sealed)} bytes)")
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(keys.encryption_key).decrypt(nonce, body, _associated_data(purpose))
    except InvalidTag:
        raise SecurityError(
            f"sealed key for {purpose} failed authentication (tampered, moved, or another key)"
        ) from None
