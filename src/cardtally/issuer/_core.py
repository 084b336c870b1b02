"""The issuer core: one request in, one answer (and its postings and notices) out.

Sans-I/O: it reads no clock (``now_ms`` is given), opens no socket, and keeps
all state behind :class:`~cardtally.issuer._store.IssuerStore`. The runtime
calls it inside a database transaction and commits before the answer leaves;
the simulator calls the very same code.

Every financial request or advice is keyed by the acquirer (see
``request_key``). A repeat gets the stored answer, never a second posting; the
same key saying something else gets 94. Declines are recorded with their reason
and move no money.

With a zone MAC key (``IssuerKeys.zak``) the acquirer link is authenticated both
ways: every request but an echo test must carry an X9.19 MAC that verifies over
the bytes received, and every answer is signed (:meth:`IssuerCore.encode_answer`).
A request that fails is refused with *no* answer and no change: it may be a
corrupted copy of something the acquirer never sent, and any answer to it (even
A0) could be taken as final by the switch, as one to a reversal advice would be.
The switch's deadline or its advice queue takes it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardtally.issuer._checks import (
    Decline,
    check_amount,
    check_expiry,
    check_limits,
    check_pin,
    check_status,
)
from cardtally.issuer._follow_ups import REVERSED_FIRST, completion, refund, reversal, void
from cardtally.issuer._model import Card, StoredResponse, TxnKind, TxnRecord
from cardtally.issuer._posting import (
    Decision,
    IssuerRequest,
    amount_of,
    available_minor,
    declined,
    post,
    settlement_account_id,
    transfer_spec,
)
from cardtally.issuer._request import (
    KEY_FIELDS,
    LocalTime,
    classify,
    content_digest,
    expiry_of,
    merchant_name,
    request_key,
)
from cardtally.issuer._store import IssuerStore
from cardtally.ledger import (
    Ledger,
    LedgerErrorCode,
    Transfer,
    TransferKind,
)
from cardtally.money import Money
from cardtally.notices import Notice, NoticeKind
from cardtally.security import (
    DataKeys,
    IssuerKeys,
    MacAlgorithm,
    message_mac_ok,
    pan_fingerprint,
    sign_message,
)
from cardtally.wire import Message, Pan, PanError, encode_message
from cardtally.wire import _codes as rc
from cardtally.wire._mti import is_request

DAY_MS: Final = 86_400_000
NETWORK_MANAGEMENT: Final = frozenset({"0800"})
FINANCIAL: Final = frozenset({"0100", "0200", "0220", "0400", "0401", "0420", "0421"})
#: The MAC on the acquirer-issuer link, under the zone MAC key (docs/wire-profile.md).
LINK_MAC_ALGORITHM: Final = MacAlgorithm.X9_19
LINK_MAC_REFUSED: Final = "MAC missing or wrong on the acquirer link"
REVERSED_BEFORE_ARRIVAL: Final = "reversed before it arrived: the acquirer gave up on it"
#: Kinds whose approval counts against the daily limit (a completion was counted as its hold).
_DAILY_KINDS: Final = (TxnKind.SALE, TxnKind.PREAUTH)
_FUNDS_CODES: Final = frozenset({LedgerErrorCode.EXCEEDS_FLOOR})
_HOLD_GONE_CODES: Final = frozenset(
    {LedgerErrorCode.PENDING_EXPIRED, LedgerErrorCode.PENDING_ALREADY_RESOLVED}
)


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
    #: The request key the answer is kept under (None: the request got no further than
    #: its checks), for the runtime's log line without working it out again.
    key: str | None = None


class IssuerCore:
    """Authorises, posts to the ledger, and writes notices, through a store port."""

    def __init__(self, keys: IssuerKeys, data_keys: DataKeys, policy: IssuerPolicy) -> None:
        self._keys = keys
        self._data_keys = data_keys
        self._policy = policy

    # --- entry points -------------------------------------------------------------

    def handle(  # noqa: PLR0911 - one return per rule, in the order they apply
        self, message: Message, now_ms: int, store: IssuerStore, raw: bytes | None = None
    ) -> Outcome:
        """Answer ``message``; ``raw`` is the bytes it was decoded from (for the link MAC).

        With a zone MAC key, a request other than an echo test whose MAC is missing or does
        not verify over ``raw`` (``None`` counts as missing) changes nothing and gets no answer.
        """
        if message.mti in NETWORK_MANAGEMENT:
            return Outcome(message.response(rc.APPROVED, _link_fields(message)), "echo", "00", "")
        if not self._link_mac_ok(message, raw):
            return Outcome(None, "refused", rc.MAC_ERROR, LINK_MAC_REFUSED)
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
        request = IssuerRequest(message, key, kind, LocalTime.of(now_ms))
        decision = self._decide(request, store)
        return self._conclude(request, decision, digest, store)

    def encode_answer(self, response: Message) -> bytes:
        """An answer as sent: signed under the zone MAC key when there is one."""
        if self._keys.zak is None:
            return encode_message(response)
        return sign_message(response, LINK_MAC_ALGORITHM, self._keys.zak)

    def _link_mac_ok(self, message: Message, raw: bytes | None) -> bool:
        zak = self._keys.zak
        if zak is None:
            return True
        return raw is not None and message_mac_ok(raw, message, LINK_MAC_ALGORITHM, zak)

    def tick(self, now_ms: int, store: IssuerStore) -> list[Transfer]:
        """Release pre-authorisation holds whose time has passed."""
        return Ledger(store.ledger).expire_holds(now_ms)

    # --- deciding ---------------------------------------------------------------------

    def _decide(self, request: IssuerRequest, store: IssuerStore) -> Decision:
        if request.kind is TxnKind.REVERSAL:
            return reversal(request, store)
        try:
            pan = request.message.pan
        except PanError as exc:
            return Decision(rc.INVALID_CARD, f"card number rejected: {exc}")
        if pan is None:
            return Decision(rc.FORMAT_ERROR, "no card number (field 2 or 35)")
        card = store.card_by_fingerprint(pan_fingerprint(self._data_keys, pan))
        if card is None:
            return Decision(rc.INVALID_CARD, f"no card {pan.masked} at this issuer")
        handler = {
            TxnKind.SALE: self._sale,
            TxnKind.PREAUTH: self._preauth,
            TxnKind.BALANCE: self._balance,
            TxnKind.COMPLETION: completion,
            TxnKind.VOID: void,
            TxnKind.REFUND: refund,
        }[request.kind]
        decision = handler(request, card, pan, store)
        decision.card = decision.card or card
        return decision

    def _authorise(
        self,
        request: IssuerRequest,
        card: Card,
        pan: Pan,
        store: IssuerStore,
        *,
        pin_required: bool,
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
        self, request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore
    ) -> Decline | None:
        message = request.message
        decline = check_amount(card, message)
        if decline is not None:
            return decline
        amount = amount_of(message)
        decline = self._authorise(
            request, card, pan, store, pin_required=amount > card.no_pin_limit_minor
        )
        if decline is not None:
            return decline
        spent = store.spent_on(card.id, request.now.date, _DAILY_KINDS)
        return check_limits(card, amount, spent)

    def _sale(self, request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore) -> Decision:
        decline = self._debit_checks(request, card, pan, store)
        if decline is not None:
            return declined(decline)
        spec = transfer_spec(
            request,
            card.account_id,
            settlement_account_id(card.currency),
            amount_of(request.message),
            card.currency,
        )
        return post(request, card, spec, store, notice=(NoticeKind.DEBIT, "sale"))

    def _preauth(
        self, request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore
    ) -> Decision:
        decline = self._debit_checks(request, card, pan, store)
        if decline is not None:
            return declined(decline)
        spec = transfer_spec(
            request,
            card.account_id,
            settlement_account_id(card.currency),
            amount_of(request.message),
            card.currency,
            kind=TransferKind.PENDING,
            expires_at_ms=request.now.at_ms + self._policy.hold_ms,
        )
        # A hold moves no money yet, so the cardholder is told at completion, not now.
        return post(request, card, spec, store, notice=None)

    def _balance(
        self, request: IssuerRequest, card: Card, pan: Pan, store: IssuerStore
    ) -> Decision:
        decline = self._authorise(request, card, pan, store, pin_required=True)
        if decline is not None:
            return declined(decline)
        available = available_minor(store, card)
        sign = "C" if available >= 0 else "D"
        balance = f"1002{card.currency}{sign}{abs(available):012d}"
        return Decision(rc.APPROVED, "balance given", extra={54: balance})

    # --- concluding -------------------------------------------------------------------

    def _conclude(
        self, request: IssuerRequest, decision: Decision, digest: str, store: IssuerStore
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
        return Outcome(
            response, result, decision.code, decision.reason, request.kind, notices, request.key
        )

    def _record(self, request: IssuerRequest, decision: Decision) -> TxnRecord:
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
        self, request: IssuerRequest, decision: Decision, txn: TxnRecord, store: IssuerStore
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
            available=Money(available_minor(store, card), card.currency),
            reference=txn.rrn or (decision.original.rrn if decision.original else ""),
            reason=reason,
        )
        store.add_notice(notice)
        return (notice,)


# --- helpers ------------------------------------------------------------------------------


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
    return Outcome(response, "declined", rc.INVALID_TRANSACTION, reason, key=key)


def _repeat(message: Message, stored: StoredResponse, digest: str, kind: TxnKind | None) -> Outcome:
    if stored.content_sha256 == REVERSED_FIRST:
        response = message.response(rc.INVALID_TRANSACTION, _link_fields(message))
        return Outcome(
            response,
            "refused",
            rc.INVALID_TRANSACTION,
            REVERSED_BEFORE_ARRIVAL,
            kind,
            key=stored.key,
        )
    if stored.content_sha256 != digest:
        response = message.response(rc.DUPLICATE, _link_fields(message))
        return Outcome(
            response,
            "refused",
            rc.DUPLICATE,
            "same acquirer key, different content",
            kind,
            key=stored.key,
        )
    response = Message(stored.mti, stored.fields)
    return Outcome(
        response,
        "duplicate",
        response.response_code or "",
        "repeat answered from the log",
        key=stored.key,
    )
