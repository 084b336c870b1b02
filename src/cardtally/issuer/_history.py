"""What has happened to a transaction since: reversed, voided, refunded, still in effect.

Read from the append-only transaction record: a follow-up points at its
original, so nothing about the original is ever updated.
"""

from __future__ import annotations

from cardtally.issuer._model import DEBIT_KINDS, Card, TxnKind, TxnRecord
from cardtally.issuer._store import IssuerStore
from cardtally.wire import Message


def undone(txn: TxnRecord, store: IssuerStore) -> bool:
    return any(
        f.kind is TxnKind.REVERSAL and f.approved and f.transfer_id for f in store.followers(txn.id)
    )


def effective(txn: TxnRecord, store: IssuerStore) -> bool:
    """Approved, moved (or held) money, and not reversed since."""
    return txn.approved and txn.transfer_id is not None and not undone(txn, store)


def has_effective(txn: TxnRecord, store: IssuerStore, kind: TxnKind) -> bool:
    return any(f.kind is kind and effective(f, store) for f in store.followers(txn.id))


def refunded(txn: TxnRecord, store: IssuerStore) -> int:
    return sum(
        f.amount_minor
        for f in store.followers(txn.id)
        if f.kind is TxnKind.REFUND and effective(f, store)
    )


def undo_blocker(original: TxnRecord, store: IssuerStore) -> str | None:
    if not effective(original, store):
        return "original already reversed"
    if has_effective(original, store, TxnKind.VOID):
        return "original already voided"
    if refunded(original, store):
        return "original partly refunded; refund the rest instead"
    return None


def reversal_target(message: Message, store: IssuerStore) -> TxnRecord | None:
    """The request a reversal undoes: same acquirer, terminal, merchant and STAN (and field 90)."""
    candidates = store.txns_by_acquirer_key(
        message.get(32) or "",
        message.terminal_id or "",
        message.merchant_id or "",
        message.stan or "",
    )
    original_data = message.get(90) or ""
    for txn in candidates:
        if txn.kind is TxnKind.REVERSAL:
            continue
        # Field 90 names the original's transmission time; without it the latest wins.
        if original_data[10:20] and txn.transmitted and txn.transmitted != original_data[10:20]:
            continue
        return txn
    return None


def original_by_rrn(card: Card, message: Message, store: IssuerStore) -> TxnRecord | None:
    if not message.rrn:
        return None
    for txn in store.txns_by_reference(card.id, rrn=message.rrn):
        if txn.kind in DEBIT_KINDS and txn.approved:
            return txn
    return None
