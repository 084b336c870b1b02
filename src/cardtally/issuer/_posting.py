"""Turning a decision into a ledger posting: the accounts, the transfer, the approval.

Shared by the authorisations (sale, pre-authorisation) and the follow-ups
(completion, void, refund, reversal) so every posting maps ledger refusals to
response codes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cardtally.issuer._checks import Decline
from cardtally.issuer._model import Card, TxnKind, TxnRecord
from cardtally.issuer._request import LocalTime, auth_code_candidates
from cardtally.issuer._store import IssuerStore
from cardtally.ledger import (
    AccountSpec,
    Ledger,
    LedgerError,
    LedgerErrorCode,
    Transfer,
    TransferKind,
    TransferSpec,
)
from cardtally.notices import NoticeKind
from cardtally.wire import Message
from cardtally.wire import _codes as rc

_FUNDS_CODES: Final = frozenset({LedgerErrorCode.EXCEEDS_FLOOR})
_HOLD_GONE_CODES: Final = frozenset(
    {LedgerErrorCode.PENDING_EXPIRED, LedgerErrorCode.PENDING_ALREADY_RESOLVED}
)


def settlement_account_id(currency: str) -> str:
    """What the issuer owes the network for its cardholders' purchases, per currency."""
    return f"issuer:settlement:{currency}"


def funding_account_id(currency: str) -> str:
    """Where opening balances come from (the bank's side of each cardholder deposit)."""
    return f"issuer:funding:{currency}"


# The card's account id plus this names the account of what its cardholder owes the issuer.
OWED_SUFFIX: Final = ":owed"


def owed_account_id(card: Card) -> str:
    """What the cardholder owes the issuer: reversed credits the card could not cover."""
    return card.account_id + OWED_SUFFIX


def open_owed_account(store: IssuerStore, card: Card, now_ms: int) -> str:
    """The card's owed account, opened on first use; no floor, since it records a debt."""
    spec = AccountSpec(owed_account_id(card), card.currency, None, f"owed by {card.pan_masked}")
    return Ledger(store.ledger).open_account(spec, now_ms).id


@dataclass(slots=True)
class Decision:
    """What a handler decided; turned into a record, an answer and notices."""

    code: str
    reason: str
    card: Card | None = None
    amount_minor: int = 0
    original: TxnRecord | None = None
    transfer: Transfer | None = None
    auth_code: str = ""
    extra: dict[int, str] = field(default_factory=dict)
    notice: tuple[NoticeKind, str] | None = None  # kind and reason of the notice to write


def declined(decline: Decline, card: Card | None = None) -> Decision:
    return Decision(decline.code, decline.reason, card=card)


@dataclass(frozen=True, slots=True)
class IssuerRequest:
    message: Message
    key: str
    kind: TxnKind
    now: LocalTime


def amount_of(message: Message) -> int:
    amount = message.amount
    return 0 if amount is None else amount.minor


def transfer_spec(
    request: IssuerRequest,
    debit: str,
    credit: str,
    amount_minor: int,
    currency: str,
    *,
    kind: TransferKind = TransferKind.SINGLE,
    pending_id: str | None = None,
    expires_at_ms: int | None = None,
) -> TransferSpec:
    return TransferSpec(
        id=request.key,
        debit_account_id=debit,
        credit_account_id=credit,
        amount_minor=amount_minor,
        currency=currency,
        kind=kind,
        pending_id=pending_id,
        expires_at_ms=expires_at_ms,
        reference=f"{request.kind.value} {request.message.rrn or ''}".strip(),
    )


def available_minor(store: IssuerStore, card: Card) -> int:
    """What the cardholder may still spend: balance less holds, plus any credit line."""
    account = Ledger(store.ledger).account(card.account_id)
    return account.available_minor - (account.floor_minor or 0)


def post(
    request: IssuerRequest,
    card: Card,
    spec: TransferSpec,
    store: IssuerStore,
    *,
    notice: tuple[NoticeKind, str] | None,
) -> Decision:
    try:
        posted = Ledger(store.ledger).transfer(spec, request.now.at_ms)
    except LedgerError as exc:
        if exc.code in _FUNDS_CODES:
            # Not the ledger's text: it names the account and its balance, and reasons are
            # logged and stored with the record.
            return Decision(rc.INSUFFICIENT_FUNDS, "insufficient funds")
        if exc.code in _HOLD_GONE_CODES:
            return Decision(rc.INVALID_TRANSACTION, "pre-authorisation hold expired or released")
        raise
    return Decision(
        rc.APPROVED,
        "approved",
        card=card,
        amount_minor=spec.amount_minor,
        transfer=posted.transfer,
        auth_code=_auth_code(request, card, store),
        notice=notice,
    )


def _auth_code(request: IssuerRequest, card: Card, store: IssuerStore) -> str:
    if request.kind is TxnKind.REVERSAL:
        return ""
    for code in auth_code_candidates(request.key):
        if not store.txns_by_reference(card.id, auth_code=code):
            return code
    raise RuntimeError("no free auth code for this card after 8 candidates")
