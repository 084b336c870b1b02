"""Card numbers at rest: AES-256-GCM ciphertext and keyed fingerprints."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from cardtally.security import (
    DataKeys,
    ProtectedPan,
    SecurityError,
    pan_fingerprint,
    protect_pan,
    reveal_pan,
)
from cardtally.wire import Pan

from .strategies import pans

KEYS = DataKeys(encryption_key=bytes(range(32)), fingerprint_key=bytes(range(32, 64)))
PAN = Pan("4111111111111111")


def test_fingerprint_is_hmac_sha256_of_the_digits() -> None:
    assert pan_fingerprint(KEYS, PAN) == (
        hmac.new(KEYS.fingerprint_key, b"4111111111111111", hashlib.sha256).hexdigest()
    )


def test_layout_is_nonce_then_gcm_with_associated_data() -> None:
    protected = protect_pan(KEYS, PAN)
    nonce, sealed = protected.ciphertext[:12], protected.ciphertext[12:]
    assert len(sealed) == 16 + 16  # 16 digits + 16-byte tag
    plain = AESGCM(KEYS.encryption_key).decrypt(nonce, sealed, b"cardtally/pan/v1")
    assert plain == b"4111111111111111"


@given(pans())
def test_round_trip(pan: Pan) -> None:
    protected = protect_pan(KEYS, pan)
    assert reveal_pan(KEYS, protected) == pan
    assert pan.reveal().encode() not in protected.ciphertext
    assert protected.fingerprint == pan_fingerprint(KEYS, pan)


def test_nonces_are_fresh_and_fingerprints_stable() -> None:
    first, second = protect_pan(KEYS, PAN), protect_pan(KEYS, PAN)
    assert first.ciphertext != second.ciphertext
    assert first.fingerprint == second.fingerprint


def test_fingerprint_depends_on_the_key() -> None:
    other = DataKeys(encryption_key=KEYS.encryption_key, fingerprint_key=secrets.token_bytes(32))
    assert pan_fingerprint(other, PAN) != pan_fingerprint(KEYS, PAN)


@given(st.data())
def test_any_flipped_bit_is_detected(data: st.DataObject) -> None:
    protected = protect_pan(KEYS, PAN)
    bit = data.draw(st.integers(0, 8 * len(protected.ciphertext) - 1))
    tampered = bytearray(protected.ciphertext)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SecurityError) as raised:
        reveal_pan(KEYS, dataclasses.replace(protected, ciphertext=bytes(tampered)))
    _assert_no_digits(str(raised.value))


def test_wrong_key_is_detected() -> None:
    protected = protect_pan(KEYS, PAN)
    other = DataKeys(encryption_key=secrets.token_bytes(32), fingerprint_key=KEYS.fingerprint_key)
    with pytest.raises(SecurityError, match="failed authentication"):
        reveal_pan(other, protected)


def test_other_associated_data_is_refused() -> None:
    nonce = bytes(12)
    sealed = AESGCM(KEYS.encryption_key).encrypt(nonce, b"4111111111111111", b"other/v1")
    protected = ProtectedPan(ciphertext=nonce + sealed, fingerprint=pan_fingerprint(KEYS, PAN))
    with pytest.raises(SecurityError, match="failed authentication"):
        reveal_pan(KEYS, protected)


def test_mismatched_fingerprint_is_refused() -> None:
    protected = protect_pan(KEYS, PAN)
    swapped = dataclasses.replace(
        protected, fingerprint=pan_fingerprint(KEYS, Pan("5555555555554444"))
    )
    with pytest.raises(SecurityError, match="fingerprint") as raised:
        reveal_pan(KEYS, swapped)
    _assert_no_digits(str(raised.value))


def test_authentic_non_pan_plaintext_is_refused_without_digits() -> None:
    nonce = bytes(12)
    sealed = AESGCM(KEYS.encryption_key).encrypt(nonce, b"4111111111111112", b"cardtally/pan/v1")
    with pytest.raises(SecurityError) as raised:
        reveal_pan(KEYS, ProtectedPan(ciphertext=nonce + sealed, fingerprint=""))
    assert raised.value.__cause__ is None
    _assert_no_digits(str(raised.value))


@pytest.mark.parametrize("length", [0, 12, 27])
def test_truncated_ciphertext(length: int) -> None:
    with pytest.raises(SecurityError, match="too short"):
        reveal_pan(KEYS, ProtectedPan(ciphertext=bytes(length), fingerprint=""))


def test_data_keys_repr_hides_bytes() -> None:
    text = repr(KEYS)
    assert KEYS.encryption_key.hex() not in text
    assert repr(KEYS.fingerprint_key) not in text


def _assert_no_digits(message: str) -> None:
    assert "4111" not in message
    assert "1111" not in message
