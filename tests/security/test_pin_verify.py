"""IBM 3624 offset PIN verification."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given

from cardtally.security import (
    DECIMALISATION_TABLE,
    PinVerification,
    SecurityError,
    _tdes,
    make_pin_verification,
    verify_pin,
)
from cardtally.wire import Pan, luhn_check_digit

from . import reference
from .strategies import double_keys, pans, pins

PVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = Pan("622588012345678901" + luhn_check_digit("622588012345678901"))


def test_reference_decimalisation_matches_ibm_example() -> None:
    # IBM 4758 CCA Basic Services, Release 2.54 (Feb 2005), Appendix E,
    # "IBM 3624 PIN-Calculation Method" example: encrypted validation data
    # E5C1BD67B66AE7C6 with table 8351296477461538 gives 3913656466643416.
    assert reference.decimalise("E5C1BD67B66AE7C6", "8351296477461538") == "3913656466643416"


def test_shim_matches_public_3624_example() -> None:
    # Public worked example (magnetic-stripe exercise by A. Padilla, UCM,
    # mirrored in several IBM 3624 tutorials): PAN 1234567890123445 as the
    # validation data, single-length PVK 0123456789ABCDEF, encrypted PAN
    # 9A466AD30DFE0381, table 0123456789012345, natural PIN 9046, customer
    # PIN 1234, offset 2298. Not an IBM document, but every step rechecks.
    pvk = bytes.fromhex("0123456789ABCDEF")
    assert reference.tdes_encrypt(pvk, bytes.fromhex("1234567890123445")).hex().upper() == (
        "9A466AD30DFE0381"
    )
    offset = _tdes.ibm3624_offset(pvk, DECIMALISATION_TABLE, "1234", "1234567890123445")
    assert offset == "2298"


@given(double_keys, pans(), pins)
def test_offset_matches_reference(pvk: bytes, pan: Pan, pin: str) -> None:
    # Validation data: 12 rightmost PAN digits excluding the check digit.
    validation_data = pan.reveal().rjust(13, "0")[-13:-1]
    expected = reference.ibm3624_offset(pvk, DECIMALISATION_TABLE, pin, validation_data)
    assert make_pin_verification(pvk, pan, pin).offset == expected


@given(double_keys, pans(), pins)
def test_right_pin_verifies(pvk: bytes, pan: Pan, pin: str) -> None:
    stored = make_pin_verification(pvk, pan, pin)
    assert len(stored.offset) == len(pin)
    assert verify_pin(pvk, pan, pin, stored)
    assert verify_pin(pvk, pan.reveal(), pin, stored)


@given(double_keys, pans(), pins, pins)
def test_other_pins_fail(pvk: bytes, pan: Pan, pin: str, other: str) -> None:
    assume(other != pin)
    stored = make_pin_verification(pvk, pan, pin)
    assert not verify_pin(pvk, pan, other, stored)


def test_wrong_pin_fails() -> None:
    stored = make_pin_verification(PVK, PAN, "123456")
    assert verify_pin(PVK, PAN, "123456", stored)
    assert not verify_pin(PVK, PAN, "123457", stored)
    assert not verify_pin(PVK, PAN, "1234", stored)
    assert not verify_pin(PVK, PAN, "12345a", stored)


def test_wrong_card_or_key_fails() -> None:
    stored = make_pin_verification(PVK, PAN, "123456")
    other_key = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
    other_pan = Pan("622588012345678902" + luhn_check_digit("622588012345678902"))
    # Both changes alter the natural PIN, so the offset no longer fits.
    assert not verify_pin(other_key, PAN, "123456", stored)
    assert not verify_pin(PVK, other_pan, "123456", stored)


def test_record_holds_only_the_offset() -> None:
    assert [f.name for f in dataclasses.fields(PinVerification)] == ["offset"]


@pytest.mark.parametrize("offset", ["", "123", "12ab", "1234567890123"])
def test_bad_offset_is_refused(offset: str) -> None:
    with pytest.raises(SecurityError, match="offset"):
        PinVerification(offset)


def test_bad_new_pin_is_refused() -> None:
    with pytest.raises(SecurityError, match="PIN must be 4 to 12 digits"):
        make_pin_verification(PVK, PAN, "12")
