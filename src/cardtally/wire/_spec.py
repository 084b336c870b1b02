"""The cardtally ISO 8583:1987 wire profile, as pyiso8583 spec data.

The layout is the one China UnionPay POS terminals use: MTI as 2 bytes of
packed BCD, a binary bitmap, numeric fields in packed BCD (odd digit counts
right-aligned behind a leading 0 nibble), BCD length prefixes (1 byte for
LLVAR, 2 bytes for LLLVAR) that count digits for numeric fields and bytes for
everything else, ASCII for alphanumeric fields and raw bytes for binary ones.

Each entry carries one extra key, ``kind``, which pyiso8583 ignores and we use
to validate decoded content (pyiso8583 turns any nibble into a hex digit, so a
BCD field holding 0xA would otherwise slip through as the letter "A"):

- ``n``: digits only
- ``z``: track data, digits plus the field separator nibble ``D``
- ``an``/``ans``: printable ASCII
- ``b``: raw bytes, shown as upper-case hex

``docs/wire-profile.md`` is the human-readable version of this table; keep both
in step.
"""

from __future__ import annotations

from typing import Any, Final

FieldSpec = dict[str, Any]


def _n(max_digits: int, desc: str) -> FieldSpec:
    """Fixed-length numeric, packed BCD."""
    return {
        "data_enc": "b",
        "len_enc": "b",
        "len_type": 0,
        "max_len": max_digits,
        "len_count": "nibbles",
        "left_pad": "0",
        "kind": "n",
        "desc": desc,
    }


def _llvar_n(max_digits: int, desc: str, *, lll: bool = False, kind: str = "n") -> FieldSpec:
    """Variable numeric (or track) field: BCD length counting digits, BCD data."""
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 2 if lll else 1,
        "max_len": max_digits,
        "len_count": "nibbles",
        "left_pad": "0",
        "kind": kind,
        "desc": desc,
    }


def _an(length: int, desc: str, kind: str = "ans") -> FieldSpec:
    """Fixed-length alphanumeric, ASCII."""
    return {
        "data_enc": "ascii",
        "len_enc": "b",
        "len_type": 0,
        "max_len": length,
        "kind": kind,
        "desc": desc,
    }


def _llvar_an(max_bytes: int, desc: str, *, lll: bool = False) -> FieldSpec:
    """Variable alphanumeric: BCD length counting bytes, ASCII data."""
    return {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": 2 if lll else 1,
        "max_len": max_bytes,
        "kind": "ans",
        "desc": desc,
    }


def _b(length: int, desc: str) -> FieldSpec:
    """Fixed-length binary, raw bytes."""
    return {
        "data_enc": "b",
        "len_enc": "b",
        "len_type": 0,
        "max_len": length,
        "kind": "b",
        "desc": desc,
    }


def _lllvar_b(max_bytes: int, desc: str) -> FieldSpec:
    """Variable binary: 2-byte BCD length counting bytes, raw data."""
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 2,
        "max_len": max_bytes,
        "kind": "b",
        "desc": desc,
    }


# fmt: off
# One line per field. Field numbers are strings because pyiso8583 keys its specs so.
SPEC: Final[dict[str, FieldSpec]] = {
    "h": {
        "data_enc": "b",
        "len_enc": "b",
        "len_type": 0,
        "max_len": 0,
        "kind": "b",
        "desc": "Header (carried by the frame, not here)",
    },
    "t": {
        "data_enc": "b",
        "len_enc": "b",
        "len_type": 0,
        "max_len": 2,
        "kind": "n",
        "desc": "Message Type Identifier",
    },
    "p": {
        "data_enc": "b",
        "len_enc": "b",
        "len_type": 0,
        "max_len": 8,
        "kind": "b",
        "desc": "Bitmap, Primary",
    },
    "1": {
        "data_enc": "b",
        "len_enc": "b",
        "len_type": 0,
        "max_len": 8,
        "kind": "b",
        "desc": "Bitmap, Secondary",
    },
    "2": _llvar_n(19, "Primary Account Number"),
    "3": _n(6, "Processing Code"),
    "4": _n(12, "Amount, Transaction"),
    "7": _n(10, "Transmission Date and Time (MMDDhhmmss)"),
    "11": _n(6, "System Trace Audit Number (voucher number)"),
    "12": _n(6, "Time, Local Transaction (hhmmss)"),
    "13": _n(4, "Date, Local Transaction (MMDD)"),
    "14": _n(4, "Date, Expiration (YYMM)"),
    "15": _n(4, "Date, Settlement (MMDD)"),
    "22": _n(3, "POS Entry Mode"),
    "23": _n(3, "Card Sequence Number"),
    "25": _n(2, "POS Condition Code"),
    "26": _n(2, "POS PIN Capture Code"),
    "32": _llvar_n(11, "Acquiring Institution ID"),
    "33": _llvar_n(11, "Forwarding Institution ID"),
    "35": _llvar_n(37, "Track 2 Data", kind="z"),
    "36": _llvar_n(104, "Track 3 Data", lll=True, kind="z"),
    "37": _an(12, "Retrieval Reference Number", "an"),
    "38": _an(6, "Authorization ID Response", "an"),
    "39": _an(2, "Response Code", "an"),
    "41": _an(8, "Card Acceptor Terminal ID"),
    "42": _an(15, "Card Acceptor ID (merchant)"),
    "43": _an(40, "Card Acceptor Name/Location"),
    "44": _llvar_an(25, "Additional Response Data"),
    "48": _llvar_n(322, "Additional Data, Private (settlement totals)", lll=True),
    "49": _an(3, "Currency Code, Transaction", "an"),
    "52": _b(8, "PIN Data (ISO 9564 format 0, encrypted)"),
    "53": _n(16, "Security Related Control Information"),
    "54": _llvar_an(120, "Additional Amounts (balances)", lll=True),
    "55": _lllvar_b(255, "ICC System Related Data"),
    "60": _llvar_n(17, "Reserved Private (message type code, batch, network code)", lll=True),
    "61": _llvar_n(29, "Original Message Data (batch, voucher, date)", lll=True),
    "62": _lllvar_b(512, "Reserved Private (working keys on sign-on)"),
    "63": _llvar_an(163, "Reserved Private (operator, notes)", lll=True),
    "64": _b(8, "Message Authentication Code"),
    "70": _n(3, "Network Management Information Code"),
    "90": _n(42, "Original Data Elements"),
    "128": _b(8, "Message Authentication Code (secondary)"),
}
# fmt: on

#: Field numbers the profile defines, for quick membership tests.
DEFINED_FIELDS: Final = frozenset(int(k) for k in SPEC if k.isdigit())

#: ISO 8583:1987 message types the profile accepts: the domain's request and
#: response pairs, and the repeat (last digit 1) of every request and advice.
_BASE_TYPES: Final = (
    "0100",
    "0110",
    "0200",
    "0210",
    "0220",
    "0230",
    "0320",
    "0330",
    "0400",
    "0410",
    "0420",
    "0430",
    "0500",
    "0510",
    "0800",
    "0810",
)
KNOWN_MTIS: Final = frozenset(_BASE_TYPES + tuple(m[:3] + "1" for m in _BASE_TYPES if m[2] in "02"))
