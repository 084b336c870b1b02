"""Follow-ups: requests that refer to an earlier transaction (completion, void, refund, reversal).

Each finds its original, checks what is still in effect (``_history``), and posts
the new transfer that completes, returns or undoes it. Nothing is updated in place.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from cardtally.issuer._checks import check_amount, check_status
from cardtally.issuer._history import Standing, original_by_rrn, reversal_target, standing
from cardtally.issuer._model import DEBIT_KINDS, Card, StoredResponse, TxnKind, TxnRecord
from cardtally.issuer._posting import (
    Decision,
    IssuerRequest,
    amount_of,
    declined,
    open_owed_account,
    post,
    settlement_account_id,
    transfer_spec,
)
from cardtally.issuer._request import original_key
from cardtally.issuer._store import IssuerStore
from cardtally.ledger import Transfer, TransferKind, TransferSpec
from cardtally.money import Money
from cardtally.notices import NoticeKind
from cardtally.wire import Pan, response_mti
from cardtally.wire import _codes as rc


def completion(request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore) -> Decision:
    message = request.message
    decline = check_status(card) or check_amount(card, message)
    if decline is not None:
        return declined(decline)
    holds = [
        t
        for t in store.txns_by_reference(card.id, auth_code=message.auth_code or "")
        if t.kind is TxnKind.PREAUTH and t.approved
    ]
    if not holds:
        return Decision(rc.ORIGINAL_NOT_FOUND, "no pre-authorisation with that auth code")
    hold = holds[0]
    held = standing(hold, store)
    if not held.in_effect or held.completed:
        return Decision(
            rc.INVALID_TRANSACTION,
            "pre-authorisation already completed or reversed",
            original=hold,
        )
    amount = amount_of(message)
    if amount > hold.amount_minor:
        return Decision(rc.INVALID_AMOUNT, "completion above the held amount", original=hold)
    assert hold.transfer_id is not None
    spec = transfer_spec(
        request,
        card.account_id,
        settlement_account_id(card.currency),
        amount,
        card.currency,
        kind=TransferKind.POST,
        pending_id=hold.transfer_id,
    )
    decision = post(
        request, card, spec, store, notice=(NoticeKind.DEBIT, "pre-authorisation completion")
    )
    decision.original = hold
    return decision


def void(request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore) -> Decision:
    message = request.message
    original = original_by_rrn(card, message, store)
    if original is None:
        return Decision(rc.ORIGINAL_NOT_FOUND, "no sale with that RRN on this card")
    if message.auth_code and message.auth_code != original.auth_code:
        return Decision(
            rc.ORIGINAL_NOT_FOUND, "auth code does not match the original", original=original
        )
    problem = standing(original, store).undo_blocker()
    if problem is None and original.local_date != request.now.date:
        problem = "void only on the day of the sale; send a refund instead"
    if problem is None and amount_of(message) != original.amount_minor:
        return Decision(
            rc.INVALID_AMOUNT, "void amount differs from the original", original=original
        )
    if problem is not None:
        return Decision(rc.INVALID_TRANSACTION, problem, original=original)
    spec = transfer_spec(
        request,
        settlement_account_id(card.currency),
        card.account_id,
        original.amount_minor,
        card.currency,
    )
    decision = post(request, card, spec, store, notice=(NoticeKind.REFUND, "void"))
    decision.original = original
    return decision


def refund(request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore) -> Decision:
    message = request.message
    decline = check_amount(card, message)
    if decline is not None:
        return declined(decline)
    original = original_by_rrn(card, message, store)
    if original is None:
        return Decision(rc.ORIGINAL_NOT_FOUND, "no sale with that RRN on this card")
    now = standing(original, store)
    if not now.in_effect or now.voided:
        return Decision(
            rc.INVALID_TRANSACTION, "original already voided or reversed", original=original
        )
    remaining = original.amount_minor - now.refunded_minor
    if amount_of(message) > remaining:
        reason = f"refund above what remains refundable ({Money(remaining, card.currency)})"
        return Decision(rc.INVALID_AMOUNT, reason, original=original)
    spec = transfer_spec(
        request,
        settlement_account_id(card.currency),
        card.account_id,
        amount_of(message),
        card.currency,
    )
    decision = post(request, card, spec, store, notice=(NoticeKind.REFUND, "refund"))
    decision.original = original
    return decision


#: The request log's mark for a request whose reversal arrived first (not a content digest).
REVERSED_FIRST: Final = "reversed-before-arrival"


def reversal(request: IssuerRequest, store: IssuerStore) -> Decision:
    original = reversal_target(request.message, store)
    if original is None:
        _close_the_door(request, store)
        return Decision(rc.ORIGINAL_NOT_FOUND, "no original with that terminal, merchant and STAN")
    card = store.card(original.card_id) if original.card_id else None
    now = standing(original, store)
    if card is None or not now.in_effect:
        return Decision(
            rc.APPROVED,
            "nothing to undo: the original moved no money",
            card=card,
            original=original,
        )
    if now.voided:
        return Decision(
            rc.APPROVED,
            "nothing to undo: the original was voided",
            card=card,
            original=original,
        )
    assert original.transfer_id is not None
    moved = store.ledger.transfer(original.transfer_id)
    assert moved is not None, f"transfer {original.transfer_id} of {original.id} is missing"
    decision = _undo(request, card, original, moved, store, now=now)
    decision.original = original
    decision.card = card
    return decision


def _undo(
    request: IssuerRequest,
    card: Card,
    original: TxnRecord,
    moved: Transfer,
    store: IssuerStore,
    *,
    now: Standing,
) -> Decision:
    if moved.kind is TransferKind.PENDING:
        if store.ledger.resolution_of(moved.id) is not None:
            return Decision(
                rc.INVALID_TRANSACTION,
                "hold already completed or expired; reverse the completion",
            )
        spec = transfer_spec(
            request,
            moved.debit_account_id,
            moved.credit_account_id,
            moved.amount_minor,
            moved.currency,
            kind=TransferKind.VOID,
            pending_id=moved.id,
        )
        return post(request, card, spec, store, notice=None)
    amount = moved.amount_minor - (now.refunded_minor if original.kind in DEBIT_KINDS else 0)
    if amount <= 0:
        return Decision(rc.APPROVED, "nothing to undo: already refunded in full")
    spec = transfer_spec(
        request, moved.credit_account_id, moved.debit_account_id, amount, moved.currency
    )
    if moved.debit_account_id == card.account_id:
        return post(request, card, spec, store, notice=(NoticeKind.REFUND, "reversal"))
    undone = f"reversal of {original.kind.value}"
    decision = post(request, card, spec, store, notice=(NoticeKind.DEBIT, undone))
    if decision.code != rc.INSUFFICIENT_FUNDS:
        return decision
    return _post_owed(request, card, spec, store, undone)


OWED_REASON: Final = "owed to the bank"


def _post_owed(
    request: IssuerRequest, card: Card, spec: TransferSpec, store: IssuerStore, undone: str
) -> Decision:
    """Undo a credit the cardholder has already spent: the debt goes on the owed account.

    A reversal is a forced post: the acquirer's side is already undone (no void or refund
    slip was printed), so refusing it would leave the issuer out of pocket with nothing on
    its books. The card's floor stays where it is; the debt is recorded against the
    cardholder instead, told in the notice, and collected by the issuer later.
    """
    owed = open_owed_account(store, card, request.now.at_ms)
    forced = replace(spec, debit_account_id=owed)
    return post(request, card, forced, store, notice=(NoticeKind.DEBIT, f"{undone}; {OWED_REASON}"))


def _close_the_door(request: IssuerRequest, store: IssuerStore) -> None:
    """Nothing to undo: the acquirer gave up on the original, which may still be on its way.

    Its request key goes into the request log marked :data:`REVERSED_FIRST`, so that if it
    arrives after all, the log's usual look-up refuses it (12) and no money moves: a debit or
    a hold placed then would be one that nobody undoes again. Writing here, on the rare 25,
    keeps every other request free of an extra look-up.
    """
    key = original_key(request.message)
    if key is None or store.response_for(key) is not None:
        return
    original_mti = response_mti((request.message.get(90) or "")[:4])
    fields = {39: rc.INVALID_TRANSACTION}
    store.save_response(
        StoredResponse(key, REVERSED_FIRST, original_mti, fields, request.now.at_ms)
    )
