"""The wire's error types.

Decoding untrusted bytes raises :class:`DecodeError` and nothing else; it names
the field (``"t"`` for the MTI, ``"p"``/``"1"`` for bitmaps, a field number,
``"frame"`` or ``"tpdu"`` for framing) and the byte offset in the input that
was handed to the decoder, so support staff can find the bad byte in a capture.
Encoding a message we built ourselves raises :class:`EncodeError`.
"""

from __future__ import annotations


class WireError(ValueError):
    """Base of the wire's errors."""


class DecodeError(WireError):
    """Bytes from the network that do not form a message of the profile."""

    def __init__(self, field: str, offset: int, reason: str) -> None:
        super().__init__(f"field {field} at byte {offset}: {reason}")
        self.field = field
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, int, str]]:
        return (type(self), (self.field, self.offset, self.reason))


class FrameTooLargeError(DecodeError):
    """A length prefix above the link's bound: the stream cannot be trusted any more."""


class EncodeError(WireError):
    """A message that cannot be put on the wire as given."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[EncodeError], tuple[str, str]]:
        return (type(self), (self.field, self.reason))
