"""Framing: length prefix, TPDU, optional application header, the stream decoder."""

from __future__ import annotations

import pytest

from cardtally.wire import (
    DecodeError,
    EncodeError,
    FrameDecoder,
    FrameTooLargeError,
    LinkProfile,
    Tpdu,
    decode_frame,
    decode_framed,
    encode_frame,
    encode_message,
)
from tests.wire.samples import SALE_0200, SIGN_ON_0800


def test_frame_layout() -> None:
    raw = encode_message(SIGN_ON_0800)
    frame = encode_frame(Tpdu(0x0001, 0x0002), raw)
    assert frame[:2] == (5 + len(raw)).to_bytes(2, "big")
    assert frame[2:7] == bytes.fromhex("6000010002")
    assert frame[7:] == raw
    decoded = decode_framed(frame)
    assert decoded.tpdu == Tpdu(1, 2)
    assert decoded.message == SIGN_ON_0800
    assert decoded.raw_message == raw


def test_response_tpdu_swaps_addresses() -> None:
    assert Tpdu(0x0001, 0x0002).reply() == Tpdu(0x0002, 0x0001)


def test_app_header_is_per_link() -> None:
    link = LinkProfile(app_header=True)
    header = bytes.fromhex("603100310000")
    frame = encode_frame(Tpdu(1, 2), encode_message(SIGN_ON_0800), header, link)
    decoded = decode_framed(frame, link)
    assert decoded.header == header
    assert decoded.message == SIGN_ON_0800
    with pytest.raises(EncodeError):
        encode_frame(Tpdu(1, 2), b"", b"", link)


def test_decode_offsets_count_from_the_length_prefix() -> None:
    frame = bytearray(encode_frame(Tpdu(1, 2), encode_message(SALE_0200)))
    frame[7 + 10 + 9] = 0x0A  # a nibble A inside field 3 (after MTI, bitmap, field 2)
    with pytest.raises(DecodeError) as info:
        decode_framed(bytes(frame))
    assert info.value.field == "3"
    assert info.value.offset == 7 + 10 + 9


def test_bad_tpdu_id_and_short_body() -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(bytes.fromhex("6100010002") + encode_message(SIGN_ON_0800))
    assert (info.value.field, info.value.offset) == ("tpdu", 0)
    with pytest.raises(DecodeError) as info:
        decode_frame(b"\x60\x00")
    assert info.value.field == "tpdu"


def test_decode_framed_refuses_incomplete_and_trailing_bytes() -> None:
    frame = encode_frame(Tpdu(1, 2), encode_message(SIGN_ON_0800))
    with pytest.raises(DecodeError, match="incomplete"):
        decode_framed(frame[:-1])
    with pytest.raises(DecodeError, match="extra bytes") as info:
        decode_framed(frame + b"\x00")
    assert info.value.offset == len(frame)


def test_stream_decoder_handles_partial_and_coalesced_reads() -> None:
    frames = [encode_frame(Tpdu(1, n), encode_message(SIGN_ON_0800)) for n in range(3)]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    bodies = decoder.feed(stream[:3]) + decoder.feed(stream[3:60]) + decoder.feed(stream[60:])
    assert bodies == [f[2:] for f in frames]
    assert decoder.buffered_bytes == 0


def test_oversized_frame_poisons_the_stream() -> None:
    decoder = FrameDecoder(frame_bytes_max=100)
    good = encode_frame(Tpdu(1, 2), encode_message(SIGN_ON_0800))
    with pytest.raises(FrameTooLargeError) as info:
        decoder.feed(good + b"\x01\x00" + b"\x00" * 10)
    assert info.value.offset == len(good)
    assert decoder.buffered_bytes == 0
    with pytest.raises(FrameTooLargeError):
        decoder.feed(good)


def test_link_profile_bounds() -> None:
    with pytest.raises(ValueError, match="frame_bytes_max"):
        LinkProfile(frame_bytes_max=70_000)
