"""Property tests: the codec and the framing agree with themselves for any input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtally.wire import (
    KNOWN_MTIS,
    FrameDecoder,
    Message,
    Tpdu,
    decode_framed,
    decode_message,
    encode_frame,
    encode_message,
)
from tests.wire.strategies import messages


@pytest.mark.parametrize("mti", sorted(KNOWN_MTIS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip_for_every_message_type(mti: str, data: st.DataObject) -> None:
    message: Message = data.draw(messages(mti))
    raw = encode_message(message)
    assert decode_message(raw) == message
    assert encode_message(decode_message(raw)) == raw


@settings(max_examples=200, deadline=None)
@given(
    message=messages(),
    destination=st.integers(0, 0xFFFF),
    source=st.integers(0, 0xFFFF),
)
def test_framed_round_trip(message: Message, destination: int, source: int) -> None:
    frame = encode_frame(Tpdu(destination, source), encode_message(message), profile=None)
    decoded = decode_framed(frame)
    assert decoded.message == message
    assert decoded.tpdu == Tpdu(destination, source)


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=0, max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
)
def test_frame_decoder_is_independent_of_read_boundaries(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(len(b).to_bytes(2, "big") + b for b in bodies)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    decoder = FrameDecoder()
    received: list[bytes] = []
    for start, end in itertools.pairwise(points):
        received.extend(decoder.feed(stream[start:end]))
    assert received == bodies
    assert decoder.buffered_bytes == 0
