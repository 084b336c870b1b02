"""TCP framing of the profile, sans I/O.

A frame on the wire::

    +--------+------------------+-----------------------+-----------------+
    | length | TPDU (5 bytes)   | app header (0 or 6)   | ISO 8583 message|
    | 2 B BE | 60 DDDD SSSS     | per link, off default | MTI onward      |
    +--------+------------------+-----------------------+-----------------+

The length counts everything after itself. :class:`FrameDecoder` turns a byte
stream (any read boundaries) into frame bodies; :func:`decode_frame` turns a
body into a :class:`Frame`. Neither touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardtally.wire._codec import decode_message
from cardtally.wire._errors import DecodeError, EncodeError, FrameTooLargeError
from cardtally.wire._message import Message

LENGTH_PREFIX_BYTES: Final = 2
TPDU_BYTES: Final = 5
APP_HEADER_BYTES: Final = 6
TPDU_ID: Final = 0x60
FRAME_BYTES_MAX_DEFAULT: Final = 4096
# 2 bytes of length cannot say more than this.
FRAME_BYTES_LIMIT: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """Per-link framing choices."""

    app_header: bool = False
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT

    def __post_init__(self) -> None:
        floor = TPDU_BYTES + APP_HEADER_BYTES + 10
        if not floor <= self.frame_bytes_max <= FRAME_BYTES_LIMIT:
            raise ValueError(f"frame_bytes_max must be {floor}..{FRAME_BYTES_LIMIT}")

    @property
    def header_bytes(self) -> int:
        return APP_HEADER_BYTES if self.app_header else 0


#: Frozen, so one shared instance serves every call that names no profile.
_DEFAULT_PROFILE: Final = LinkProfile()


@dataclass(frozen=True, slots=True)
class Tpdu:
    """Transport protocol data unit: ID 0x60, destination and source NII."""

    destination: int = 0
    source: int = 0
    tpdu_id: int = TPDU_ID

    def __post_init__(self) -> None:
        if self.tpdu_id != TPDU_ID:
            raise ValueError(f"TPDU ID must be {TPDU_ID:#04x}, got {self.tpdu_id:#04x}")
        for name in ("destination", "source"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"TPDU {name} must fit in 2 bytes, got {value}")

    def encode(self) -> bytes:
        return (
            bytes([self.tpdu_id])
            + self.destination.to_bytes(2, "big")
            + self.source.to_bytes(2, "big")
        )

    def reply(self) -> Tpdu:
        """The TPDU of the answer: the addresses swap."""
        return Tpdu(self.source, self.destination, self.tpdu_id)


@dataclass(frozen=True, slots=True)
class Frame:
    tpdu: Tpdu
    header: bytes
    message: Message
    #: The message bytes as received: the MAC is checked over these, not a re-encoding.
    raw_message: bytes


def encode_frame(
    tpdu: Tpdu, raw_message: bytes, header: bytes = b"", profile: LinkProfile | None = None
) -> bytes:
    """Length prefix + TPDU + optional application header + message bytes."""
    profile = profile or _DEFAULT_PROFILE
    if len(header) != profile.header_bytes:
        raise EncodeError("header", f"link expects a {profile.header_bytes}-byte header")
    body = tpdu.encode() + header + raw_message
    if len(body) > profile.frame_bytes_max:
        raise EncodeError("frame", f"{len(body)} bytes exceeds {profile.frame_bytes_max}")
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


def decode_frame(body: bytes, profile: LinkProfile | None = None, *, base_offset: int = 0) -> Frame:
    """Decode one frame body (what follows the length). Raises only :class:`DecodeError`."""
    profile = profile or _DEFAULT_PROFILE
    if len(body) < TPDU_BYTES + profile.header_bytes:
        raise DecodeError(
            "tpdu",
            base_offset,
            f"frame body is {len(body)} bytes, TPDU and header need "
            f"{TPDU_BYTES + profile.header_bytes}",
        )
    if body[0] != TPDU_ID:
        raise DecodeError("tpdu", base_offset, f"TPDU ID is {body[0]:#04x}, expected 0x60")
    tpdu = Tpdu(
        destination=int.from_bytes(body[1:3], "big"),
        source=int.from_bytes(body[3:5], "big"),
        tpdu_id=body[0],
    )
    message_start = TPDU_BYTES + profile.header_bytes
    raw = bytes(body[message_start:])
    message = decode_message(raw, base_offset=base_offset + message_start)
    return Frame(tpdu, bytes(body[TPDU_BYTES:message_start]), message, raw)


def decode_framed(data: bytes, profile: LinkProfile | None = None) -> Frame:
    """Decode exactly one whole frame, length prefix included (e.g. a pasted capture)."""
    profile = profile or _DEFAULT_PROFILE
    decoder = FrameDecoder(profile.frame_bytes_max)
    bodies = decoder.feed(data)
    if not bodies:
        raise DecodeError(
            "frame",
            0,
            f"incomplete frame: {len(data)} bytes given, length prefix asks for more",
        )
    if decoder.buffered_bytes or len(bodies) > 1:
        consumed = LENGTH_PREFIX_BYTES + len(bodies[0])
        raise DecodeError("frame", consumed, "extra bytes after the frame")
    return decode_frame(bodies[0], profile, base_offset=LENGTH_PREFIX_BYTES)


class FrameDecoder:
    """Feed bytes as they arrive; get back whole frame bodies.

    Bounded: the buffer never holds more than one frame of ``frame_bytes_max``
    plus its prefix. A length above the bound raises :class:`FrameTooLargeError`,
    after which the stream is out of step and the connection must be closed;
    the decoder refuses further input.
    """

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        self._frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._stream_offset = 0  # bytes consumed before the start of _buffer
        self._failed: FrameTooLargeError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        bodies: list[bytes] = []
        while len(self._buffer) >= LENGTH_PREFIX_BYTES:
            length = int.from_bytes(self._buffer[:LENGTH_PREFIX_BYTES], "big")
            if length > self._frame_bytes_max:
                self._failed = FrameTooLargeError(
                    "frame",
                    self._stream_offset,
                    f"length prefix says {length} bytes, the link allows {self._frame_bytes_max}",
                )
                self._buffer.clear()
                raise self._failed
            end = LENGTH_PREFIX_BYTES + length
            if len(self._buffer) < end:
                break
            bodies.append(bytes(self._buffer[LENGTH_PREFIX_BYTES:end]))
            del self._buffer[:end]
            self._stream_offset += end
        return bodies
