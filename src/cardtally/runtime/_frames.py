"""Split a frame body into TPDU, application header and message, leaving the message raw.

The runtime checks framing only. Decoding the message here would cost a second decode (the
party decodes it anyway, and checks the MAC over the raw bytes) and would take away the
party's choice of answer for a malformed message.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardtally.wire import TPDU_BYTES, DecodeError, LinkProfile, Tpdu


@dataclass(frozen=True, slots=True)
class SplitFrame:
    tpdu: Tpdu
    header: bytes
    message: bytes


def split_frame(body: bytes, link: LinkProfile) -> SplitFrame:
    """Raises :class:`~cardtally.wire.DecodeError` (field ``tpdu``) for a frame of another link."""
    envelope_bytes = TPDU_BYTES + link.header_bytes
    if len(body) < envelope_bytes:
        raise DecodeError(
            "tpdu", 0, f"frame body is {len(body)} bytes, TPDU and header need {envelope_bytes}"
        )
    try:
        tpdu = Tpdu(
            destination=int.from_bytes(body[1:3], "big"),
            source=int.from_bytes(body[3:5], "big"),
            tpdu_id=body[0],
        )
    except ValueError as exc:
        raise DecodeError("tpdu", 0, str(exc)) from None
    return SplitFrame(tpdu, bytes(body[TPDU_BYTES:envelope_bytes]), bytes(body[envelope_bytes:]))
