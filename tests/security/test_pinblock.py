"""ISO 9564 format 0 PIN blocks."""

from __future__ import annotations

import pytest
from hypothesis import given

from cardtally.security import (
    PinBlockError,
    SecurityError,
    decrypt_pin_block,
    encrypt_pin_block,
)
from cardtally.wire import Pan

from . import reference
from .strategies import double_keys, pans, pins

PIN_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")

# ISO 9564-1 format 0 worked example, PIN 1234 and PAN 43219876543210987:
# PIN field 041234FFFFFFFFFF XOR account field 0000987654321098 gives the clear
# block 0412AC89ABCDEF67 (Wikipedia "ISO 9564", format 0; EFTlab knowledge base
# "Complete list of PIN blocks", ISO-0).
PUBLISHED_PAN = "43219876543210987"
PUBLISHED_CLEAR_BLOCK = bytes.fromhex("0412AC89ABCDEF67")


def test_published_format0_example_encrypts() -> None:
    block = encrypt_pin_block(PIN_KEY, "1234", PUBLISHED_PAN)
    assert reference.tdes_decrypt(PIN_KEY, block) == PUBLISHED_CLEAR_BLOCK


def test_published_format0_example_decrypts() -> None:
    block = reference.tdes_encrypt(PIN_KEY, PUBLISHED_CLEAR_BLOCK)
    assert decrypt_pin_block(PIN_KEY, block, PUBLISHED_PAN) == "1234"


def test_short_pan_is_zero_padded_on_the_left() -> None:
    # ISO 9564-1: fewer than 12 account digits (check digit excluded) are
    # right-justified and padded with zeros. A 12-digit PAN has 11 of them.
    pan = Pan("123456789015")
    assert pan.reveal()[-1] == "5"
    clear = bytes.fromhex("041234FFFFFFFFFF")
    account = bytes.fromhex("0000012345678901")
    block = encrypt_pin_block(PIN_KEY, "1234", pan)
    assert reference.tdes_decrypt(PIN_KEY, block) == reference.xor(clear, account)


@given(double_keys, pins, pans())
def test_round_trip(key: bytes, pin: str, pan: Pan) -> None:
    block = encrypt_pin_block(key, pin, pan)
    assert len(block) == 8
    assert decrypt_pin_block(key, block, pan) == pin
    assert decrypt_pin_block(key, block, pan.reveal()) == pin


@pytest.mark.parametrize("pin", ["", "123", "1234567890123", "12a4", "１２３４"])
def test_bad_pin_is_refused_without_echoing_it(pin: str) -> None:
    with pytest.raises(SecurityError) as raised:
        encrypt_pin_block(PIN_KEY, pin, PUBLISHED_PAN)
    if pin:
        assert pin not in str(raised.value)


def test_wrong_key_gives_pin_block_error_without_digits() -> None:
    block = encrypt_pin_block(PIN_KEY, "987654", PUBLISHED_PAN)
    other_key = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
    with pytest.raises(PinBlockError) as raised:
        decrypt_pin_block(other_key, block, PUBLISHED_PAN)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_non_numeric_pin_digits_do_not_leak() -> None:
    # A block whose PIN field holds hex letters: psec's own message would quote it.
    clear = reference.xor(bytes.fromhex("04ABCDFFFFFFFFFF"), bytes.fromhex("0000987654321098"))
    block = reference.tdes_encrypt(PIN_KEY, clear)
    with pytest.raises(PinBlockError) as raised:
        decrypt_pin_block(PIN_KEY, block, PUBLISHED_PAN)
    assert "ABCD" not in str(raised.value).upper()


@pytest.mark.parametrize("length", [0, 7, 9, 16])
def test_wrong_block_length(length: int) -> None:
    with pytest.raises(PinBlockError, match=f"must be 8 bytes, got {length}"):
        decrypt_pin_block(PIN_KEY, bytes(length), PUBLISHED_PAN)


@pytest.mark.parametrize("pan", ["12345678901", "12345678901234567890", "4321-9876-5432"])
def test_bad_pan_string(pan: str) -> None:
    with pytest.raises(SecurityError, match="card number"):
        encrypt_pin_block(PIN_KEY, "1234", pan)
