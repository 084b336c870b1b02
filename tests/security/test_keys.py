"""Working keys: generation, sign-on transport (field 62), check values."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given

from cardtally.security import (
    SIGNON_KEYS_BYTES,
    KeyCheckError,
    SecurityError,
    WorkingKeys,
    decode_signon_keys,
    encode_signon_keys,
    generate_master_key,
    generate_working_keys,
    key_check_value,
)

from . import reference
from .strategies import double_keys

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def _odd_parity(key: bytes) -> bool:
    return all(bin(byte).count("1") % 2 == 1 for byte in key)


def test_generated_keys_are_double_length_with_odd_parity() -> None:
    tmk = generate_master_key()
    keys = generate_working_keys()
    for key in (tmk, keys.pin_key, keys.mac_key):
        assert len(key) == 16
        assert _odd_parity(key)
    assert keys.pin_key != keys.mac_key


def test_kcv_known_answer() -> None:
    # NIST SP 800-20 Table A.2 (variable key KAT): key 8001010101010101,
    # plaintext 0 -> 95A8D72813DAA94D; the KCV is its first 4 bytes.
    assert key_check_value(bytes.fromhex("8001010101010101" * 2)) == bytes.fromhex("95A8D728")


@given(double_keys)
def test_kcv_matches_reference(key: bytes) -> None:
    assert key_check_value(key) == reference.tdes_encrypt(key, bytes(8))[:4]


def test_repr_shows_check_values_not_keys() -> None:
    keys = WorkingKeys(pin_key=bytes.fromhex("8001010101010101" * 2), mac_key=TMK)
    text = repr(keys)
    assert "95A8D728" in text
    for key in (keys.pin_key, keys.mac_key):
        assert key.hex() not in text.lower()
        assert repr(key) not in text


@given(double_keys, double_keys, double_keys)
def test_signon_round_trip(tmk: bytes, pin_key: bytes, mac_key: bytes) -> None:
    keys = WorkingKeys(pin_key=pin_key, mac_key=mac_key)
    field62 = encode_signon_keys(tmk, keys)
    assert len(field62) == SIGNON_KEYS_BYTES == 40
    assert decode_signon_keys(tmk, field62) == keys


@given(double_keys, double_keys, double_keys)
def test_signon_layout_matches_reference(tmk: bytes, pin_key: bytes, mac_key: bytes) -> None:
    field62 = encode_signon_keys(tmk, WorkingKeys(pin_key=pin_key, mac_key=mac_key))
    expected = b"".join(
        reference.tdes_encrypt(tmk, key) + reference.tdes_encrypt(key, bytes(8))[:4]
        for key in (pin_key, mac_key)
    )
    assert field62 == expected


@pytest.mark.parametrize(("offset", "key_name"), [(16, "PIN key"), (36, "MAC key")])
def test_wrong_kcv_names_the_key(offset: int, key_name: str) -> None:
    field62 = bytearray(encode_signon_keys(TMK, generate_working_keys()))
    field62[offset] ^= 0x01
    with pytest.raises(KeyCheckError, match=key_name) as raised:
        decode_signon_keys(TMK, bytes(field62))
    assert raised.value.key_name == key_name
    assert isinstance(raised.value, SecurityError)
    assert isinstance(raised.value, ValueError)


def test_wrong_master_key_fails_the_pin_key_check() -> None:
    field62 = encode_signon_keys(TMK, generate_working_keys())
    with pytest.raises(KeyCheckError, match="PIN key"):
        decode_signon_keys(generate_master_key(), field62)


def test_key_check_error_pickles() -> None:
    error = KeyCheckError("MAC key", "00112233", "44556677")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.key_name, copy.expected_kcv, copy.actual_kcv) == (
        "MAC key",
        "00112233",
        "44556677",
    )


@pytest.mark.parametrize("length", [0, 39, 41, 80])
def test_wrong_field_length_is_a_clear_error(length: int) -> None:
    with pytest.raises(SecurityError, match=f"must be 40 bytes, got {length}"):
        decode_signon_keys(TMK, bytes(length))


@pytest.mark.parametrize("length", [8, 24])
def test_master_key_must_be_double_length(length: int) -> None:
    keys = generate_working_keys()
    with pytest.raises(SecurityError, match="terminal master key must be 16 bytes"):
        encode_signon_keys(bytes(length), keys)
    with pytest.raises(SecurityError, match="terminal master key must be 16 bytes"):
        decode_signon_keys(bytes(length), bytes(40))


def test_working_keys_must_be_double_length() -> None:
    with pytest.raises(SecurityError, match="MAC key must be 16 bytes, got 8"):
        WorkingKeys(pin_key=TMK, mac_key=bytes(8))
