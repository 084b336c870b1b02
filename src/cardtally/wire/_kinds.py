"""What a financial request asks for, and what it says: the same reading at every party.

The switch and the issuer both key requests, classify them and compare repeats; they must
agree byte for byte, so the rules live here once.
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Final

from cardtally.wire._message import Message
from cardtally.wire._mti import original_of


class TxnKind(enum.StrEnum):
    """What a request asks for, from its MTI, processing code and field 60.1."""

    SALE = "sale"
    BALANCE = "balance"
    VOID = "void"
    REFUND = "refund"
    PREAUTH = "preauth"
    COMPLETION = "completion"
    REVERSAL = "reversal"


#: Kinds whose approval takes money from the cardholder.
DEBIT_KINDS: Final = frozenset({TxnKind.SALE, TxnKind.COMPLETION})
#: Kinds whose approval gives money back: the credit side of a batch's settlement totals.
CREDIT_KINDS: Final = frozenset({TxnKind.VOID, TxnKind.REFUND})

#: (MTI, first two digits of the processing code) -> kind; field 60.1 refines a 0200/00.
_KINDS: Final = {
    ("0100", "03"): TxnKind.PREAUTH,
    ("0200", "00"): TxnKind.SALE,
    ("0200", "31"): TxnKind.BALANCE,
    ("0200", "20"): TxnKind.VOID,
    ("0220", "20"): TxnKind.REFUND,
}
_TRANSACTION_TYPE_COMPLETION: Final = "20"
#: MACs are link security, not content: a repeat re-signed under new keys is the same request.
_NOT_CONTENT: Final = frozenset({64, 128})
#: What ``json.dumps(..., sort_keys=True)`` builds on every call, built once: the
#: digest is taken for every request at the switch and at the issuer.
_CANONICAL_JSON: Final = json.JSONEncoder(sort_keys=True)


def classify(message: Message) -> TxnKind | None:
    """The kind of a request (repeats as their first send), or None for one not served."""
    mti = original_of(message.mti)
    if mti in ("0400", "0420"):
        return TxnKind.REVERSAL
    kind = _KINDS.get((mti, (message.processing_code or "")[:2]))
    if kind is TxnKind.SALE and (message.get(60) or "")[:2] == _TRANSACTION_TYPE_COMPLETION:
        return TxnKind.COMPLETION
    return kind


def content_digest(message: Message) -> str:
    """SHA-256 of what the request says, so a same-key request saying else is caught (94)."""
    content = {str(n): v for n, v in message.fields.items() if n not in _NOT_CONTENT}
    canonical = _CANONICAL_JSON.encode([original_of(message.mti), content])
    return hashlib.sha256(canonical.encode("ascii", "backslashreplace")).hexdigest()
