"""Unit tests of the message codec and the message view."""

from __future__ import annotations

import pytest

from cardtally.money import Money
from cardtally.wire import (
    DecodeError,
    EncodeError,
    Message,
    Pan,
    PanError,
    decode_message,
    encode_message,
    encode_signed,
    split_mac,
)
from tests.wire.samples import PAN, REVERSAL_ADVICE_0420, SALE_0200, SALE_0210, TRACK2


def test_sale_round_trips_and_views_are_typed() -> None:
    decoded = decode_message(encode_message(SALE_0200))
    assert decoded == SALE_0200
    assert decoded.amount == Money(12345, "156")
    assert decoded.stan == "000123"
    assert decoded.pan == Pan(PAN)
    assert decoded.pin_block == bytes.fromhex("1A2B3C4D5E6F7081")
    assert decoded.mac == bytes.fromhex("1122334455667788")


def test_mti_is_two_bytes_of_bcd_and_bitmap_is_binary() -> None:
    raw = encode_message(Message("0800", {11: "000001"}))
    assert raw[:2] == b"\x08\x00"
    assert raw[2:10] == bytes.fromhex("0020000000000000")  # only field 11
    assert raw[10:] == b"\x00\x00\x01"


def test_odd_numeric_is_right_aligned_behind_a_zero_nibble() -> None:
    raw = encode_message(Message("0200", {22: "021"}))
    assert raw[-2:] == b"\x00\x21"


def test_llvar_numeric_length_counts_digits_in_bcd() -> None:
    raw = encode_message(Message("0200", {2: PAN}))
    assert raw[10] == 0x16  # 16 digits, as BCD
    assert raw[11:] == bytes.fromhex(PAN)


def test_track2_separator_is_nibble_d_and_odd_length_gets_leading_zero() -> None:
    track = PAN + "D28121011"  # 25 characters
    raw = encode_message(Message("0200", {35: track}))
    assert raw[10] == 0x25
    assert raw[11:].hex().upper() == "0" + track


def test_lllvar_binary_length_counts_bytes() -> None:
    raw = encode_message(Message("0810", {62: "AB" * 40}))
    assert raw[10:12] == b"\x00\x40"
    assert raw[12:] == b"\xab" * 40


def test_ids_compare_without_padding() -> None:
    message = Message("0200", {41: "T1      ", 42: "M1".ljust(15)})
    assert message.terminal_id == "T1"
    assert message.merchant_id == "M1"


def test_secondary_bitmap_and_mac_in_128() -> None:
    raw = encode_message(REVERSAL_ADVICE_0420)
    assert raw[2] & 0x80, "bit 1 announces the secondary bitmap"
    assert decode_message(raw) == REVERSAL_ADVICE_0420
    assert decode_message(raw).mac == bytes.fromhex("0102030405060708")


def test_response_echoes_request_and_drops_card_secrets() -> None:
    assert SALE_0210.mti == "0210"
    assert SALE_0210.response_code == "00"
    assert SALE_0210.stan == SALE_0200.stan
    assert 35 not in SALE_0210 and 52 not in SALE_0210


def test_repr_masks_card_data() -> None:
    text = repr(SALE_0200)
    assert PAN not in text
    assert "622588******" in text
    assert TRACK2 not in text and TRACK2.split("D")[1] not in text
    assert f"{PAN[:6]}******{PAN[-4:]}D{'*' * len(TRACK2.split('D')[1])}" in text
    assert "<PIN block>" in text


def test_pan_prints_masked_and_checks_luhn() -> None:
    pan = Pan(PAN)
    assert str(pan) == f"{PAN[:6]}******{PAN[-4:]}"
    assert PAN not in f"{pan} {pan!r} {pan:>20}"
    assert pan.reveal() == PAN
    with pytest.raises(PanError, match="Luhn"):
        Pan(PAN[:-1] + str((int(PAN[-1]) + 1) % 10))
    with pytest.raises(PanError):
        Pan("12345")


def test_signed_encoding_macs_everything_before_the_mac() -> None:
    seen: list[bytes] = []

    def fake_mac(block: bytes) -> bytes:
        seen.append(block)
        return b"\x99" * 8

    raw = encode_signed(SALE_0200.with_fields({64: None}), fake_mac)
    decoded = decode_message(raw)
    assert decoded.mac == b"\x99" * 8
    assert split_mac(raw, decoded) == (seen[0], b"\x99" * 8)
    assert seen[0] == raw[:-8]


@pytest.mark.parametrize(
    ("raw_hex", "field", "offset", "reason"),
    [
        ("", "t", 0, "MTI needs 2"),
        ("0900" + "00" * 8, "t", 0, "not in the profile"),
        ("02A0" + "00" * 8, "t", 0, "not in the profile"),
        ("0200" + "0800000000000000", "p", 2, "field 5"),
        ("0200" + "20000000", "p", 2, "8"),
        ("0200" + "2000000000000000" + "0012A4", "3", 10, "non-digit"),
        ("0200" + "2000000000000000" + "0000", "3", 10, "expecting 6"),
        ("0200" + "4000000000000000" + "99" + "00", "2", 10, "larger than maximum"),
        ("0200" + "0020000000000000" + "000001FF", "11", 13, "Extra data"),
        ("0200" + "0000000000400000" + "5431", "42", 10, "expecting 15"),
        ("0200" + "8000000000000000" + "8000000000000000", "1", 10, "field 65"),
    ],
)
def test_bad_bytes_name_field_and_offset(
    raw_hex: str, field: str, offset: int, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(bytes.fromhex(raw_hex))
    assert (info.value.field, info.value.offset) == (field, offset)
    assert reason in str(info.value)


def test_non_printable_text_is_refused() -> None:
    raw = encode_message(Message("0210", {39: "00"}))
    with pytest.raises(DecodeError) as info:
        decode_message(raw[:-2] + b"0\x07")
    assert info.value.field == "39"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (Message("0200", {3: "00000A"}), "3"),
        (Message("0200", {5: "000000000001"}), "5"),
        (Message("0200", {52: "XYZ"}), "52"),
        (Message("0200", {4: "1"}), "4"),
        (Message("0999", {}), "t"),
        (Message("0200", {41: "T\u00e9"}), "41"),
    ],
)
def test_encode_refuses_bad_content(message: Message, field: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode_message(message)
    assert info.value.field == field
