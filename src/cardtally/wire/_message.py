"""A typed, immutable view of one ISO 8583 message.

Field values are kept as the strings pyiso8583 uses: digits for numeric fields,
text for alphanumeric ones and upper-case hex for binary ones. The properties
turn the fields a payment engineer asks about into types: money as integer
minor units, IDs without their padding, and the card number as a masked
:class:`~cardtally.wire.Pan`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from cardtally.money import Money
from cardtally.wire._mti import response_mti
from cardtally.wire._pan import Pan, masked_field

CNY = "156"
TERMINAL_ID_BYTES = 8
MERCHANT_ID_BYTES = 15


def pad_terminal_id(tid: str) -> str:
    """Field 41 is ans8, left-aligned and space-padded."""
    return tid.ljust(TERMINAL_ID_BYTES)


def pad_merchant_id(mid: str) -> str:
    """Field 42 is ans15, left-aligned and space-padded; IDs compare without it."""
    return mid.ljust(MERCHANT_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Message:
    """An MTI and its data elements, keyed by field number."""

    mti: str
    fields: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze a private copy so a caller's dict can change without changing us.
        object.__setattr__(self, "fields", MappingProxyType(dict(sorted(self.fields.items()))))

    # --- generic access -------------------------------------------------

    def get(self, number: int) -> str | None:
        return self.fields.get(number)

    def __contains__(self, number: object) -> bool:
        return number in self.fields

    def __iter__(self) -> Iterator[int]:
        return iter(self.fields)

    def with_fields(self, changes: Mapping[int, str | None], mti: str | None = None) -> Message:
        """A copy with fields set (a value) or removed (``None``)."""
        merged = dict(self.fields)
        for number, value in changes.items():
            if value is None:
                merged.pop(number, None)
            else:
                merged[number] = value
        return Message(mti or self.mti, merged)

    def response(self, response_code: str, changes: Mapping[int, str | None] = {}) -> Message:
        """The answer to this request: MTI + 10, the matching fields echoed, field 39 set.

        Only what the requester matches on is echoed (processing code, amount,
        STAN, terminal, merchant, currency, field 60): card data, PIN blocks and
        the MAC never travel back. The responder adds RRN, auth code and its own
        MAC as the message needs.
        """
        echoed = {n: v for n, v in self.fields.items() if n in ECHOED_FIELDS}
        echoed[39] = response_code
        return Message(response_mti(self.mti), echoed).with_fields(changes)

    # --- typed views ----------------------------------------------------

    @property
    def processing_code(self) -> str | None:
        return self.fields.get(3)

    @property
    def currency(self) -> str:
        return self.fields.get(49, CNY)

    @property
    def amount(self) -> Money | None:
        raw = self.fields.get(4)
        return None if raw is None else Money(int(raw), self.currency)

    @property
    def stan(self) -> str | None:
        return self.fields.get(11)

    @property
    def rrn(self) -> str | None:
        return self.fields.get(37)

    @property
    def auth_code(self) -> str | None:
        return self.fields.get(38)

    @property
    def response_code(self) -> str | None:
        return self.fields.get(39)

    @property
    def terminal_id(self) -> str | None:
        raw = self.fields.get(41)
        return None if raw is None else raw.rstrip(" ")

    @property
    def merchant_id(self) -> str | None:
        raw = self.fields.get(42)
        return None if raw is None else raw.rstrip(" ")

    @property
    def pan(self) -> Pan | None:
        """Field 2, else the account number in track 2. Raises ``PanError`` if invalid."""
        raw = self.fields.get(2)
        if raw is None and 35 in self.fields:
            raw = self.fields[35].split("D", 1)[0]
        return None if raw is None else Pan(raw)

    @property
    def pin_block(self) -> bytes | None:
        return _hex_field(self, 52)

    @property
    def mac(self) -> bytes | None:
        return _hex_field(self, 128) if 128 in self.fields else _hex_field(self, 64)

    def __repr__(self) -> str:
        shown = {n: masked_field(n, v) for n, v in self.fields.items()}
        return f"Message(mti={self.mti!r}, fields={shown!r})"


#: What an answer echoes of its request (wire profile section 6): the fields the requester
#: matches on, never card data, PIN blocks or the MAC.
ECHOED_FIELDS: Final = frozenset({3, 4, 11, 41, 42, 49, 60})


def _hex_field(message: Message, number: int) -> bytes | None:
    raw = message.fields.get(number)
    return None if raw is None else bytes.fromhex(raw)
