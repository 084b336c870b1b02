"""The issuer core: one request in, one answer (and its postings and notices) out.

Sans-I/O: it reads no clock (``now_ms`` is given), opens no socket, and keeps
all state behind :class:`~cardtally.issuer._store.IssuerStore`. The runtime
calls it inside a database transaction and commits before the answer leaves;
the simulator calls the very same code.

Every financial request or advice is keyed by the acquirer (see
``request_key``). A repeat gets the stored answer, never a second posting; the
same key saying something else gets 94. Declines are recorded with their reason
and move no money.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cardtally.issuer._checks import (
    Decline,
    check_amount,
    check_expiry,
    check_limits,
    check_pin,
    check_status,
)
from cardtally.issuer._model import DEBIT_KINDS, Card, StoredResponse, TxnKind, TxnRecord
from cardtally.issuer._request import (
    KEY_FIELDS,
    LocalTime,
    auth_code_candidates,
    classify,
    content_digest,
    expiry_of,
    merchant_name,
    request_key,
)
from cardtally.issuer._store import IssuerStore
from cardtally.ledger import (
    Ledger,
    LedgerError,
    LedgerErrorCode,
    Transfer,
    TransferKind,
    TransferSpec,
)
from cardtally.money import Money
from cardtally.notices import Notice, NoticeKind
from cardtally.security import DataKeys, IssuerKeys, pan_fingerprint
from cardtally.wire import Message, Pan, PanError
from cardtally.wire import _codes as rc
from cardtally.wire._mti import is_request

DAY_MS: Final = 86_400_000
NETWORK_MANAGEMENT: Final = frozenset({"0800"})
FINANCIAL: Final = frozenset({"0100", "0200", "0220", "0400", "0401", "0420", "0421"})
#: Kinds whose approval counts against the daily limit (a completion was counted as its hold).
_DAILY_KINDS: Final = (TxnKind.SALE, TxnKind.PREAUTH)
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


@dataclass(frozen=True, slots=True)
class IssuerPolicy:
    pin_tries_max: int = 3
    hold_ms: int = 30 * DAY_MS


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the runtime must do: send ``response`` (if any), count ``result``."""

    response: Message | None
    result: str  # approved | declined | duplicate | refused | echo
    response_code: str
    reason: str
    kind: TxnKind | None = None
    notices: tuple[Notice, ...] = ()


@dataclass(slots=True)
class _Decision:
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


def _declined(decline: Decline, card: Card | None = None) -> _Decision:
    return _Decision(decline.code, decline.reason, card=card)


@dataclass(frozen=True, slots=True)
class _Request:
    message: Message
    key: str
    kind: TxnKind
    now: LocalTime


class IssuerCore:
    """Authorises, posts to the ledger, and writes notices, through a store port."""

    def __init__(self, keys: IssuerKeys, data_keys: DataKeys, policy: IssuerPolicy) -> None:
        self._keys = keys
        self._data_keys = data_keys
        self._policy = policy

    # --- entry points -------------------------------------------------------------

    def handle(self, message: Message, now_ms: int, store: IssuerStore) -> Outcome:
        if message.mti in NETWORK_MANAGEMENT:
            return Outcome(message.response(rc.APPROVED, _link_fields(message)), "echo", "00", "")
        if message.mti not in FINANCIAL:
            return _unanswered(message, rc.INVALID_TRANSACTION, "not a request the issuer serves")
        missing = [n for n in KEY_FIELDS if n not in message]
        if missing:
            return _unanswered(message, rc.FORMAT_ERROR, f"missing field(s) {missing}")
        key, digest = request_key(message), content_digest(message)
        stored = store.response_for(key)
        if stored is not None:
            return _repeat(message, stored, digest, classify(message))
        kind = classify(message)
        if kind is None:
            return _unsupported(message, key, digest, now_ms, store)
        request = _Request(message, key, kind, LocalTime.of(now_ms))
        decision = self._decide(request, store)
        return self._conclude(request, decision, digest, store)

    def tick(self, now_ms: int, store: IssuerStore) -> list[Transfer]:
        """Release pre-authorisation holds whose time has passed."""
        return Ledger(store.ledger).expire_holds(now_ms)

    # --- deciding ---------------------------------------------------------------------

    def _decide(self, request: _Request, store: IssuerStore) -> _Decision:
        if request.kind is TxnKind.REVERSAL:
            return self._reversal(request, store)
        try:
            pan = request.message.pan
        except PanError as exc:
            return _Decision(rc.INVALID_CARD, f"card number rejected: {exc}")
        if pan is None:
            return _Decision(rc.FORMAT_ERROR, "no card number (field 2 or 35)")
        card = store.card_by_fingerprint(pan_fingerprint(self._data_keys, pan))
        if card is None:
            return _Decision(rc.INVALID_CARD, f"no card {pan.masked} at this issuer")
        handler = {
            TxnKind.SALE: self._sale,
            TxnKind.PREAUTH: self._preauth,
            TxnKind.BALANCE: self._balance,
            TxnKind.COMPLETION: self._completion,
            TxnKind.VOID: self._void,
            TxnKind.REFUND: self._refund,
        }[request.kind]
        decision = handler(request, card, pan, store)
        decision.card = decision.card or card
        return decision

    def _authorise(
        self, request: _Request, card: Card, pan: Pan, store: IssuerStore, *, pin_required: bool
    ) -> Decline | None:
        """Status, expiry, PIN: the checks every cardholder-present authorisation passes."""
        message = request.message
        decline = check_status(card) or check_expiry(card, expiry_of(message), request.now.yymm)
        if decline is not None:
            return decline
        result = check_pin(
            self._keys,
            card,
            pan,
            message,
            required=pin_required,
            tries_max=self._policy.pin_tries_max,
        )
        if result.pin_tries != card.pin_tries:
            store.set_card_state(card.id, card.status, result.pin_tries)
            store.log_event(
                request.now.at_ms,
                "issuer.pin_tries",
                request.key,
                {"card": card.id, "tries": result.pin_tries},
            )
        return result.decline

    def _debit_checks(
        self, request: _Request, card: Card, pan: Pan, store: IssuerStore
    ) -> Decline | None:
        message = request.message
        decline = check_amount(card, message)
        if decline is not None:
            return decline
        amount = _amount(message)
        decline = self._authorise(
            request, card, pan, store, pin_required=amount > card.no_pin_limit_minor
        )
        if decline is not None:
            return decline
        spent = sum(
            t.amount_minor
            for t in store.txns_on(card.id, request.now.date, _DAILY_KINDS)
            if _effective(t, store)
        )
        return check_limits(card, amount, spent)

    def _sale(self, request: _Request, card: Card, pan: Pan, store: IssuerStore) -> _Decision:
        decline = self._debit_checks(request, card, pan, store)
        if decline is not None:
            return _declined(decline)
        spec = _spec(
            request,
            card.account_id,
            settlement_account_id(card.currency),
            _amount(request.message),
            card.currency,
        )
        return self._post(request, card, spec, store, notice=(NoticeKind.DEBIT, "sale"))

    def _preauth(self, request: _Request, card: Card, pan: Pan, store: IssuerStore) -> _Decision:
        decline = self._debit_checks(request, card, pan, store)
        if decline is not None:
            return _declined(decline)
        spec = _spec(
            request,
            card.account_id,
            settlement_account_id(card.currency),
            _amount(request.message),
            card.currency,
            kind=TransferKind.PENDING,
            expires_at_ms=request.now.at_ms + self._policy.hold_ms,
        )
        # A hold moves no money yet, so the cardholder is told at completion, not now.
        return self._post(request, card, spec, store, notice=None)

    def _balance(self, request: _Request, card: Card, pan: Pan, store: IssuerStore) -> _Decision:
        decline = self._authorise(request, card, pan, store, pin_required=True)
        if decline is not None:
            return _declined(decline)
        available = _available(store, card)
        sign = "C" if available >= 0 else "D"
        balance = f"1002{card.currency}{sign}{abs(available):012d}"
        return _Decision(rc.APPROVED, "balance given", extra={54: balance})

    def _completion(self, request: _Request, card: Card, pan: Pan, store: IssuerStore) -> _Decision:
        message = request.message
        decline = check_status(card) or check_amount(card, message)
        if decline is not None:
            return _declined(decline)
        holds = [
            t
            for t in store.txns_by_reference(card.id, auth_code=message.auth_code or "")
            if t.kind is TxnKind.PREAUTH and t.approved
        ]
        if not holds:
            return _Decision(rc.ORIGINAL_NOT_FOUND, "no pre-authorisation with that auth code")
        hold = holds[0]
        if not _effective(hold, store) or _has_effective(hold, store, TxnKind.COMPLETION):
            return _Decision(
                rc.INVALID_TRANSACTION,
                "pre-authorisation already completed or reversed",
                original=hold,
            )
        amount = _amount(message)
        if amount > hold.amount_minor:
            return _Decision(rc.INVALID_AMOUNT, "completion above the held amount", original=hold)
        assert hold.transfer_id is not None
        spec = _spec(
            request,
            card.account_id,
            settlement_account_id(card.currency),
            amount,
            card.currency,
            kind=TransferKind.POST,
            pending_id=hold.transfer_id,
        )
        decision = self._post(
            request, card, spec, store, notice=(NoticeKind.DEBIT, "pre-authorisation completion")
        )
        decision.original = hold
        return decision

    def _void(self, request: _Request, card: Card, pan: Pan, store: IssuerStore) -> _Decision:
        message = request.message
        original = self._original_by_rrn(card, message, store)
        if original is None:
            return _Decision(rc.ORIGINAL_NOT_FOUND, "no sale with that RRN on this card")
        if message.auth_code and message.auth_code != original.auth_code:
            return _Decision(
                rc.ORIGINAL_NOT_FOUND, "auth code does not match the original", original=original
            )
        problem = _undo_blocker(original, store)
        if problem is None and original.local_date != request.now.date:
            problem = "void only on the day of the sale; send a refund instead"
        if problem is None and _amount(message) != original.amount_minor:
            return _Decision(
                rc.INVALID_AMOUNT, "void amount differs from the original", original=original
            )
        if problem is not None:
            return _Decision(rc.INVALID_TRANSACTION, problem, original=original)
        spec = _spec(
            request,
            settlement_account_id(card.currency),
            card.account_id,
            original.amount_minor,
            card.currency,
        )
        decision = self._post(request, card, spec, store, notice=(NoticeKind.REFUND, "void"))
        decision.original = original
        return decision

    def _refund(self, request: _Request, card: Card, pan: Pan, store: IssuerStore) -> _Decision:
        message = request.message
        decline = check_amount(card, message)
        if decline is not None:
            return _declined(decline)
        original = self._original_by_rrn(card, message, store)
        if original is None:
            return _Decision(rc.ORIGINAL_NOT_FOUND, "no sale with that RRN on this card")
        if not _effective(original, store) or _has_effective(original, store, TxnKind.VOID):
            return _Decision(
                rc.INVALID_TRANSACTION, "original already voided or reversed", original=original
            )
        remaining = original.amount_minor - _refunded(original, store)
        if _amount(message) > remaining:
            reason = f"refund above what remains refundable ({Money(remaining, card.currency)})"
            return _Decision(rc.INVALID_AMOUNT, reason, original=original)
        spec = _spec(
            request,
            settlement_account_id(card.currency),
            card.account_id,
            _amount(message),
            card.currency,
        )
        decision = self._post(request, card, spec, store, notice=(NoticeKind.REFUND, "refund"))
        decision.original = original
        return decision

    def _reversal(self, request: _Request, store: IssuerStore) -> _Decision:
        original = _reversal_target(request.message, store)
        if original is None:
            return _Decision(
                rc.ORIGINAL_NOT_FOUND, "no original with that terminal, merchant and STAN"
            )
        card = store.card(original.card_id) if original.card_id else None
        if card is None or not _effective(original, store):
            return _Decision(
                rc.APPROVED,
                "nothing to undo: the original moved no money",
                card=card,
                original=original,
            )
        if _has_effective(original, store, TxnKind.VOID):
            return _Decision(
                rc.APPROVED,
                "nothing to undo: the original was voided",
                card=card,
                original=original,
            )
        assert original.transfer_id is not None
        moved = store.ledger.transfer(original.transfer_id)
        assert moved is not None, f"transfer {original.transfer_id} of {original.id} is missing"
        decision = self._undo(request, card, original, moved, store)
        decision.original = original
        decision.card = card
        return decision

    def _undo(
        self,
        request: _Request,
        card: Card,
        original: TxnRecord,
        moved: Transfer,
        store: IssuerStore,
    ) -> _Decision:
        if moved.kind is TransferKind.PENDING:
            if store.ledger.resolution_of(moved.id) is not None:
                return _Decision(
                    rc.INVALID_TRANSACTION,
                    "hold already completed or expired; reverse the completion",
                )
            spec = _spec(
                request,
                moved.debit_account_id,
                moved.credit_account_id,
                moved.amount_minor,
                moved.currency,
                kind=TransferKind.VOID,
                pending_id=moved.id,
            )
            return self._post(request, card, spec, store, notice=None)
        amount = moved.amount_minor - (
            _refunded(original, store) if original.kind in DEBIT_KINDS else 0
        )
        if amount <= 0:
            return _Decision(rc.APPROVED, "nothing to undo: already refunded in full")
        spec = _spec(
            request, moved.credit_account_id, moved.debit_account_id, amount, moved.currency
        )
        credits_card = moved.debit_account_id == card.account_id
        notice = (
            (NoticeKind.REFUND, "reversal")
            if credits_card
            else (NoticeKind.DEBIT, f"reversal of {original.kind.value}")
        )
        return self._post(request, card, spec, store, notice=notice)

    def _original_by_rrn(
        self, card: Card, message: Message, store: IssuerStore
    ) -> TxnRecord | None:
        if not message.rrn:
            return None
        for txn in store.txns_by_reference(card.id, rrn=message.rrn):
            if txn.kind in DEBIT_KINDS and txn.approved:
                return txn
        return None

    def _post(
        self,
        request: _Request,
        card: Card,
        spec: TransferSpec,
        store: IssuerStore,
        *,
        notice: tuple[NoticeKind, str] | None,
    ) -> _Decision:
        try:
            posted = Ledger(store.ledger).transfer(spec, request.now.at_ms)
        except LedgerError as exc:
            if exc.code in _FUNDS_CODES:
                return _Decision(rc.INSUFFICIENT_FUNDS, str(exc))
            if exc.code in _HOLD_GONE_CODES:
                return _Decision(
                    rc.INVALID_TRANSACTION, "pre-authorisation hold expired or released"
                )
            raise
        return _Decision(
            rc.APPROVED,
            "approved",
            card=card,
            amount_minor=spec.amount_minor,
            transfer=posted.transfer,
            auth_code=self._auth_code(request, card, store),
            notice=notice,
        )

    def _auth_code(self, request: _Request, card: Card, store: IssuerStore) -> str:
        if request.kind is TxnKind.REVERSAL:
            return ""
        for code in auth_code_candidates(request.key):
            if not store.txns_by_reference(card.id, auth_code=code):
                return code
        raise RuntimeError("no free auth code for this card after 8 candidates")

    # --- concluding -------------------------------------------------------------------

    def _conclude(
        self, request: _Request, decision: _Decision, digest: str, store: IssuerStore
    ) -> Outcome:
        message, now = request.message, request.now
        changes: dict[int, str | None] = {**_link_fields(message), 12: now.hhmmss, 13: now.mmdd}
        if decision.auth_code and decision.code == rc.APPROVED:
            changes[38] = decision.auth_code
        changes.update(decision.extra)
        response = message.response(decision.code, changes)
        store.save_response(
            StoredResponse(request.key, digest, response.mti, dict(response.fields), now.at_ms)
        )
        txn = self._record(request, decision)
        store.record_txn(txn)
        notices = self._notices(request, decision, txn, store)
        store.log_event(
            now.at_ms,
            f"issuer.{request.kind.value}",
            request.key,
            {"rc": decision.code, "reason": decision.reason},
        )
        result = "approved" if decision.code == rc.APPROVED else "declined"
        return Outcome(response, result, decision.code, decision.reason, request.kind, notices)

    def _record(self, request: _Request, decision: _Decision) -> TxnRecord:
        message, card = request.message, decision.card
        own_rrn = request.kind not in (TxnKind.VOID, TxnKind.REFUND)  # their 37 names the original
        amount = decision.amount_minor or (message.amount.minor if message.amount else 0)
        return TxnRecord(
            id=request.key,
            kind=request.kind,
            card_id=card.id if card else None,
            pan_masked=card.pan_masked if card else _masked_or_blank(message),
            amount_minor=amount,
            currency=message.currency,
            response_code=decision.code,
            reason=decision.reason,
            rrn=(message.rrn or "") if own_rrn else "",
            auth_code=decision.auth_code if decision.code == rc.APPROVED else "",
            acquirer_id=message.get(32) or "",
            terminal_id=message.terminal_id or "",
            merchant_id=message.merchant_id or "",
            merchant_name=merchant_name(message),
            stan=message.stan or "",
            transmitted=message.get(7) or "",
            local_date=request.now.date,
            original_id=decision.original.id if decision.original else None,
            transfer_id=decision.transfer.id if decision.transfer else None,
            at_ms=request.now.at_ms,
        )

    def _notices(
        self, request: _Request, decision: _Decision, txn: TxnRecord, store: IssuerStore
    ) -> tuple[Notice, ...]:
        card = decision.card
        if decision.notice is None or decision.transfer is None or card is None:
            return ()
        kind, reason = decision.notice
        name = decision.original.merchant_name if decision.original else txn.merchant_name
        notice = Notice(
            id=f"notice:{decision.transfer.id}",
            at_ms=request.now.at_ms,
            kind=kind,
            card_tail=card.tail,
            merchant_name=name,
            amount=Money(decision.transfer.amount_minor, card.currency),
            available=Money(_available(store, card), card.currency),
            reference=txn.rrn or (decision.original.rrn if decision.original else ""),
            reason=reason,
        )
        store.add_notice(notice)
        return (notice,)


# --- helpers ------------------------------------------------------------------------------


def _amount(message: Message) -> int:
    amount = message.amount
    return 0 if amount is None else amount.minor


def _spec(
    request: _Request,
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


def _available(store: IssuerStore, card: Card) -> int:
    """What the cardholder may still spend: balance less holds, plus any credit line."""
    account = Ledger(store.ledger).account(card.account_id)
    return account.available_minor - (account.floor_minor or 0)


def _undone(txn: TxnRecord, store: IssuerStore) -> bool:
    return any(
        f.kind is TxnKind.REVERSAL and f.approved and f.transfer_id for f in store.followers(txn.id)
    )


def _effective(txn: TxnRecord, store: IssuerStore) -> bool:
    """Approved, moved (or held) money, and not reversed since."""
    return txn.approved and txn.transfer_id is not None and not _undone(txn, store)


def _has_effective(txn: TxnRecord, store: IssuerStore, kind: TxnKind) -> bool:
    return any(f.kind is kind and _effective(f, store) for f in store.followers(txn.id))


def _refunded(txn: TxnRecord, store: IssuerStore) -> int:
    return sum(
        f.amount_minor
        for f in store.followers(txn.id)
        if f.kind is TxnKind.REFUND and _effective(f, store)
    )


def _undo_blocker(original: TxnRecord, store: IssuerStore) -> str | None:
    if not _effective(original, store):
        return "original already reversed"
    if _has_effective(original, store, TxnKind.VOID):
        return "original already voided"
    if _refunded(original, store):
        return "original partly refunded; refund the rest instead"
    return None


def _reversal_target(message: Message, store: IssuerStore) -> TxnRecord | None:
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


def _link_fields(message: Message) -> dict[int, str | None]:
    """Fields the switch matches answers on besides the echoed ones."""
    return {n: message.get(n) for n in (7, 32, 37) if n in message}


def _masked_or_blank(message: Message) -> str:
    try:
        pan = message.pan
    except PanError:
        return ""
    return pan.masked if pan else ""


def _unanswered(message: Message, code: str, reason: str) -> Outcome:
    response = message.response(code) if is_request(message.mti) else None
    return Outcome(response, "refused", code, reason)


def _unsupported(
    message: Message, key: str, digest: str, now_ms: int, store: IssuerStore
) -> Outcome:
    """12 for a message type and processing code the issuer does not serve; kept for repeats."""
    reason = f"processing code {message.processing_code} not served with {message.mti}"
    response = message.response(rc.INVALID_TRANSACTION, _link_fields(message))
    store.save_response(StoredResponse(key, digest, response.mti, dict(response.fields), now_ms))
    store.log_event(
        now_ms, "issuer.unsupported", key, {"rc": rc.INVALID_TRANSACTION, "reason": reason}
    )
    return Outcome(response, "declined", rc.INVALID_TRANSACTION, reason)


def _repeat(message: Message, stored: StoredResponse, digest: str, kind: TxnKind | None) -> Outcome:
    if stored.content_sha256 != digest:
        response = message.response(rc.DUPLICATE, _link_fields(message))
        return Outcome(
            response, "refused", rc.DUPLICATE, "same acquirer key, different content", kind
        )
    response = Message(stored.mti, stored.fields)
    return Outcome(
        response, "duplicate", response.response_code or "", "repeat answered from the log"
    )
