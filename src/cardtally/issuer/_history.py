"""What has happened to a transaction since: reversed, voided, refunded, still in effect.

Read from the append-only transaction record: a follow-up points at its
original, so nothing about the original is ever updated.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardtally.issuer._model import DEBIT_KINDS, Card, TxnKind, TxnRecord
from cardtally.issuer._store import IssuerStore
from cardtally.wire import Message


def _moved(txn: TxnRecord) -> bool:
    """Approved and posted (or held) money; declines and balance inquiries move none."""
    return txn.approved and txn.transfer_id is not None


def _undoes(txn: TxnRecord) -> bool:
    return txn.kind is TxnKind.REVERSAL and _moved(txn)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a transaction stands now, from the requests that followed it."""

    in_effect: bool  # moved money and has not been reversed since
    voided: bool
    completed: bool
    refunded_minor: int

    def undo_blocker(self) -> str | None:
        """Why a void may not undo it, or ``None`` when it may."""
        if not self.in_effect:
            return "original already reversed"
        if self.voided:
            return "original already voided"
        if self.refunded_minor:
            return "original partly refunded; refund the rest instead"
        return None


def standing(txn: TxnRecord, store: IssuerStore) -> Standing:
    """Read the follow-ups once: a void, refund or completion counts unless itself reversed.

    ``SqlIssuerStore.spent_on`` applies the same "in effect" rule in SQL, for speed.
    """
    followers = store.followers(txn.id)
    live = [
        f
        for f in followers
        if f.kind is not TxnKind.REVERSAL
        and _moved(f)
        and not any(_undoes(g) for g in store.followers(f.id))
    ]
    return Standing(
        in_effect=_moved(txn) and not any(_undoes(f) for f in followers),
        voided=any(f.kind is TxnKind.VOID for f in live),
        completed=any(f.kind is TxnKind.COMPLETION for f in live),
        refunded_minor=sum(f.amount_minor for f in live if f.kind is TxnKind.REFUND),
    )


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
