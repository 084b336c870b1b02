"""The acquirer switch core: terminal requests in, issuer messages in, timers; effects out.

Sans-I/O: every method takes the time and a store inside a transaction its caller owns, and
returns what the shell must do (:mod:`cardtally.switch._effects`). The shell commits before
it acts on anything returned, so every answer and every forward is durable before it leaves.

The rules that keep the promise, all here:

- a request is forwarded at most once: it is logged under its terminal key (terminal, STAN,
  batch, date) before it is forwarded, and a repeat gets the stored answer or joins the wait;
- a transaction forwarded and not answered in time is answered 98 and gets a reversal advice
  in the persistent queue, in the same transaction; an answer that comes later is not relayed;
- a terminal reversal of anything that may have moved money becomes a queued advice, and the
  terminal is answered once the advice is durable: from then on it is the switch's to deliver;
- with a zone MAC key (ZAK), everything sent to the issuer is signed (X9.19) and an issuer
  message whose MAC is missing or wrong is ignored: never relayed, never an acknowledgement.
  A forward then meets its deadline (98 and a reversal advice), an advice is simply sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cardtally.security import (
    MacAlgorithm,
    PinBlockError,
    WorkingKeys,
    generate_working_keys,
    message_mac_ok,
    sign_message,
)
from cardtally.switch import _batch
from cardtally.switch._answers import answer_fields, encode_answer
from cardtally.switch._context import RequestContext, answer_logged, open_txn, refuse
from cardtally.switch._effects import (
    AdviceAcked,
    AdviceSend,
    Answer,
    Forward,
    Ignored,
    IssuerOutcome,
    Join,
    TerminalAnswer,
    TerminalOutcome,
)
from cardtally.switch._forward import (
    SwitchIdentity,
    advice_fields,
    advice_message,
    forward_message,
    issuer_stan,
    translate_pin_block,
)
from cardtally.switch._model import (
    MAYBE_IN_EFFECT,
    REVERSIBLE,
    TerminalStatus,
    Txn,
    TxnKind,
    TxnState,
    rrn_of,
    txn_id_of,
)
from cardtally.switch._request import (
    MANDATORY,
    batch_of,
    local_date,
    missing_fields,
    request_key,
)
from cardtally.switch._store import Forwarding, StoredRequest, SwitchStore
from cardtally.wire import (
    DecodeError,
    Message,
    Pan,
    PanError,
    classify,
    content_digest,
    decode_message,
    encode_message,
    is_request,
    original_of,
    response_mti,
)
from cardtally.wire import _codes as rc

_MTI_BYTES: Final = 2
#: Answers from an issuer that acknowledge an advice: anything but "try again later".
_RETRY_CODES: Final = frozenset({rc.SYSTEM_MALFUNCTION, rc.ISSUER_TIMEOUT})
#: An acknowledged reversal that leaves nothing in effect at the issuer.
_UNDONE_CODES: Final = frozenset({rc.APPROVED, rc.ORIGINAL_NOT_FOUND})
#: The MAC on the acquirer-issuer link, under the zone MAC key (docs/wire-profile.md).
LINK_MAC_ALGORITHM: Final = MacAlgorithm.X9_19


@dataclass(frozen=True, slots=True)
class SwitchPolicy:
    identity: SwitchIdentity
    advice_backoff_min_ms: int = 500
    advice_backoff_max_ms: int = 30_000
    advice_batch_max: int = 64
    #: Where sign-on keys come from: the OS CSPRNG; the simulator passes a seeded source so
    #: a run replays byte for byte.
    new_working_keys: Callable[[], WorkingKeys] = generate_working_keys

    def backoff_ms(self, attempts: int) -> int:
        return int(min(self.advice_backoff_max_ms, self.advice_backoff_min_ms << min(attempts, 20)))


class SwitchCore:
    """The switch's rules; ``zone_mac_key`` (the ZAK) turns the issuer link's MAC on.

    Without a ZAK (a home whose key file predates it) messages to the issuer go unsigned and
    issuer messages are taken as they come, as before. With one, there is no such leniency:
    an issuer answer without a MAC is ignored like one with a wrong MAC, since the issuer
    that shares the key signs every answer.
    """

    def __init__(
        self, zone_pin_key: bytes, policy: SwitchPolicy, zone_mac_key: bytes | None = None
    ) -> None:
        self._zone_pin_key = zone_pin_key
        self._policy = policy
        self._zone_mac_key = zone_mac_key

    # -- terminal side -----------------------------------------------------------------------

    def terminal_request(  # noqa: PLR0911 - one return per rule, in the order they apply
        self, raw: bytes, now_ms: int, store: SwitchStore
    ) -> TerminalOutcome:
        try:
            message = decode_message(raw)
        except DecodeError:
            return _malformed(raw)
        mti = original_of(message.mti)
        if not is_request(message.mti) or mti not in MANDATORY:
            if is_request(message.mti):
                return refuse(message, rc.INVALID_TRANSACTION, "message type not served")
            return Answer(None, close=True, outcome="not_a_request")
        missing = missing_fields(message)
        if missing:
            return refuse(message, rc.FORMAT_ERROR, f"missing fields {missing}")
        checked = self._check_terminal(raw, message, now_ms, store)
        if isinstance(checked, Answer):
            return checked
        if mti == "0800":
            return _batch.network_management(checked, store, self._policy.new_working_keys)
        stored = store.request(checked.key)
        if stored is not None:
            return self._repeat(checked, stored, store)
        return self._new_request(checked, store)

    def _check_terminal(
        self, raw: bytes, message: Message, now_ms: int, store: SwitchStore
    ) -> RequestContext | Answer:
        terminal = store.terminal(message.terminal_id or "")
        if terminal is None:
            return refuse(message, rc.INVALID_MERCHANT, "unknown terminal")
        if terminal.status is not TerminalStatus.ACTIVE:
            return refuse(message, rc.NOT_PERMITTED_TO_TERMINAL, "terminal disabled")
        if message.merchant_id != terminal.merchant_id:
            return refuse(message, rc.INVALID_MERCHANT, "merchant is not the terminal's")
        keys = store.terminal_keys(terminal)
        if message.mti != "0800" and (terminal.mac_required or message.mac is not None):
            mac_key = None if keys.working is None else keys.working.mac_key
            if mac_key is None or not message_mac_ok(raw, message, terminal.mac_algorithm, mac_key):
                return refuse(message, rc.MAC_ERROR, "MAC missing or wrong")
        batch_no = batch_of(message, terminal.batch_no)
        day = local_date(now_ms)
        key = request_key(message, batch_no, day)
        return RequestContext(raw, message, terminal, keys, batch_no, day, key, now_ms)

    def _repeat(
        self, ctx: RequestContext, stored: StoredRequest, store: SwitchStore
    ) -> TerminalOutcome:
        if stored.content_sha256 != content_digest(ctx.message):
            return refuse(ctx.message, rc.DUPLICATE, "same key, different content")
        response = store.response(ctx.key)
        if response is not None:
            mti, fields = response
            answer, body = encode_answer(mti, fields, ctx.terminal, ctx.keys)
            return Answer(body, outcome="duplicate", code=fields.get(39, ""), message=answer)
        if stored.txn_id is not None:
            txn = store.txn(stored.txn_id)
            # Forwarded and not answered yet (the terminal may have reversed it meanwhile):
            # the repeat gets the same answer as the original, from the answer or the deadline.
            if txn is not None and txn.forwarded_mti is not None:
                return Join(txn.id)
        # Every request is answered in the transaction that settles it; reaching here means
        # a log written by something else. Say so rather than guess.
        return refuse(ctx.message, rc.SYSTEM_MALFUNCTION, "logged request without an answer")

    def _new_request(  # noqa: PLR0911 - one return per kind of request
        self, ctx: RequestContext, store: SwitchStore
    ) -> TerminalOutcome:
        mti = original_of(ctx.message.mti)
        if mti == "0500":
            return _batch.settlement(ctx, store)
        if mti == "0320":
            return _batch.upload(ctx, store)
        kind = classify(ctx.message)
        if kind is None:
            return refuse(ctx.message, rc.INVALID_TRANSACTION, "processing code not served")
        try:
            pan = ctx.message.pan
        except PanError:
            return refuse(ctx.message, rc.INVALID_CARD, "card number not valid")
        if kind is TxnKind.REVERSAL:
            return self._terminal_reversal(ctx, pan, store)
        if pan is None:
            return refuse(ctx.message, rc.FORMAT_ERROR, "no card number (2 or 35)")
        return self._financial(ctx, kind, pan, store)

    def _financial(
        self, ctx: RequestContext, kind: TxnKind, pan: Pan, store: SwitchStore
    ) -> TerminalOutcome:
        original, problem = _original_for(ctx, kind, store)
        if problem is None and store.reversed_before(
            ctx.terminal.terminal_id, ctx.batch_no, ctx.message.stan or ""
        ):
            # Its reversal overtook it: the terminal already counts it undone.
            problem = (rc.INVALID_TRANSACTION, "the terminal already reversed this STAN")
        txn = open_txn(ctx, kind, pan, original, store)
        route = store.route(pan)
        merchant = store.merchant(ctx.terminal.merchant_id)
        if problem is None and (route is None or merchant is None):
            problem = (rc.INVALID_CARD, "no issuer for this card's BIN")
        pin_block = None
        if problem is None and ctx.message.pin_block is not None:
            pin_block, problem = self._translate_pin(ctx, pan)
        if problem is not None:
            return _settle_refused(ctx, txn, problem, store)
        assert route is not None and merchant is not None
        forwarded = forward_message(
            ctx.message,
            txn=txn,
            merchant=merchant,
            identity=self._policy.identity,
            at_ms=ctx.now_ms,
            pin_block=pin_block,
        )
        store.forwarded(
            txn.id,
            Forwarding(
                link_id=route.link_id,
                issuer_stan=issuer_stan(txn.id),
                transmitted=forwarded.fields[7],
                mti=forwarded.mti,
                rrn=forwarded.fields[37],
            ),
            ctx.now_ms,
        )
        return Forward(
            txn.id, route.link_id, self._to_issuer(forwarded), ctx.now_ms + route.timeout_ms
        )

    def _translate_pin(
        self, ctx: RequestContext, pan: Pan
    ) -> tuple[bytes | None, tuple[str, str] | None]:
        block = ctx.message.pin_block
        if ctx.keys.working is None or block is None:
            return None, (rc.MAC_ERROR, "PIN block without a sign-on")
        try:
            return (
                translate_pin_block(block, pan, ctx.keys.working.pin_key, self._zone_pin_key),
                None,
            )
        except PinBlockError:
            return None, (rc.INCORRECT_PIN, "PIN block does not decrypt under the PIN key")

    def _terminal_reversal(
        self, ctx: RequestContext, pan: Pan | None, store: SwitchStore
    ) -> Answer:
        original = store.txn_by_terminal_key(
            ctx.terminal.terminal_id, ctx.batch_no, ctx.message.stan or ""
        )
        reversal = open_txn(ctx, TxnKind.REVERSAL, pan, original, store)
        if original is None:
            why = "no original: nothing happened"
        elif original.kind in REVERSIBLE and original.state in MAYBE_IN_EFFECT:
            self._queue_reversal(original, TxnState.REVERSAL_PENDING, ctx.now_ms, store)
            why = "reversal queued for the issuer"
        else:
            why = f"original {original.state.value}: nothing in effect"
        store.set_state(reversal.id, TxnState.APPROVED, ctx.now_ms, response_code=rc.APPROVED)
        store.log_event(ctx.now_ms, "switch.reversal", reversal.id, {"why": why})
        extra = {37: rrn_of(original.id if original else reversal.id)}
        return answer_logged(ctx, rc.APPROVED, extra, store, "reversal")

    def _queue_reversal(self, txn: Txn, state: TxnState, now_ms: int, store: SwitchStore) -> None:
        """Make undoing ``txn`` the queue's job (only a forwarded one can need undoing)."""
        store.set_state(txn.id, state, now_ms)
        if txn.link_id is None or txn.issuer_stan is None:
            return
        store.add_advice(txn.id, txn.link_id, advice_fields(txn, self._policy.identity), now_ms)
        store.log_event(now_ms, "switch.reversal_queued", txn.id, {"link": txn.link_id})

    # -- issuer side ---------------------------------------------------------------------------

    def issuer_message(  # noqa: PLR0911 - one return per rule, in the order they apply
        self, raw: bytes, now_ms: int, store: SwitchStore
    ) -> IssuerOutcome:
        try:
            message = decode_message(raw)
        except DecodeError:
            return Ignored("undecodable")
        if message.mti == "0810":
            return Ignored("echo answer")
        problem = self._link_mac_problem(raw, message)
        if problem is not None:
            return Ignored(problem)
        txn = store.txn_by_issuer_key(message.stan or "", message.get(7) or "")
        if txn is None:
            return Ignored("matches nothing forwarded")
        if message.mti == "0430":
            return self._advice_answer(txn, message, now_ms, store)
        if txn.forwarded_mti is None or message.mti != response_mti(txn.forwarded_mti):
            return Ignored("answer of another message type", txn.id)
        if message.terminal_id != txn.terminal_id or message.processing_code != (
            txn.processing_code
        ):
            return Ignored("answer does not match the request", txn.id)
        if message.response_code is None:
            # Not an answer we can relay; the issuer may have debited: the deadline decides.
            return Ignored("answer without a response code", txn.id)
        if txn.state is TxnState.FORWARDED:
            return self._relay(txn, message, now_ms, store)
        store.log_event(now_ms, "switch.late_response", txn.id, {"rc": message.response_code})
        if store.response(txn.request_key) is None:
            # Reversed while in flight (by the terminal): its waiters get 98 now.
            return self._answer_waiters(txn, now_ms, store)
        return Ignored("late: the stored reversal undoes it", txn.id)

    def _link_mac_problem(self, raw: bytes, message: Message) -> str | None:
        """Why an issuer message fails the link MAC, or None (it verifies, or the link has none)."""
        if self._zone_mac_key is None:
            return None
        if message.mac is None:
            return "MAC missing on the issuer link"
        if not message_mac_ok(raw, message, LINK_MAC_ALGORITHM, self._zone_mac_key):
            return "MAC wrong on the issuer link"
        return None

    def _to_issuer(self, message: Message) -> bytes:
        """``message`` as sent to the issuer: signed under the ZAK when the link has one."""
        if self._zone_mac_key is None:
            return encode_message(message)
        return sign_message(message, LINK_MAC_ALGORITHM, self._zone_mac_key)

    def _relay(self, txn: Txn, message: Message, now_ms: int, store: SwitchStore) -> TerminalAnswer:
        code = message.response_code or rc.ISSUER_TIMEOUT
        approved = code == rc.APPROVED
        auth_code = message.auth_code if approved else None
        store.set_state(
            txn.id,
            TxnState.APPROVED if approved else TxnState.DECLINED,
            now_ms,
            response_code=code,
            auth_code=auth_code,
        )
        extra = {37: rrn_of(txn.id)}
        if auth_code:
            extra[38] = auth_code
        if approved and message.get(54):
            extra[54] = message.fields[54]
        return self._terminal_answer(txn, code, extra, now_ms, store)

    def _answer_waiters(self, txn: Txn, now_ms: int, store: SwitchStore) -> TerminalAnswer:
        """The answer for requests still waiting on ``txn``: the stored one, else 98 (stored).

        98 because its reversal is queued: whatever the issuer did is being undone.
        """
        stored = store.response(txn.request_key)
        if stored is None:
            return self._terminal_answer(
                txn, rc.ISSUER_TIMEOUT, {37: rrn_of(txn.id)}, now_ms, store
            )
        mti, fields = stored
        terminal = store.terminal(txn.terminal_id)
        keys = None if terminal is None else store.terminal_keys(terminal)
        answer, body = encode_answer(mti, fields, terminal, keys)
        return TerminalAnswer(txn.id, body, fields.get(39, ""), answer)

    def _terminal_answer(
        self, txn: Txn, code: str, extra: dict[int, str], now_ms: int, store: SwitchStore
    ) -> TerminalAnswer:
        assert txn.forwarded_mti is not None
        fields = answer_fields(txn.echo_fields, code, now_ms, extra)
        store.save_response(txn.request_key, txn.forwarded_mti, fields, now_ms)
        terminal = store.terminal(txn.terminal_id)
        keys = None if terminal is None else store.terminal_keys(terminal)
        answer, body = encode_answer(txn.forwarded_mti, fields, terminal, keys)
        return TerminalAnswer(txn.id, body, code, answer)

    def _advice_answer(
        self, txn: Txn, message: Message, now_ms: int, store: SwitchStore
    ) -> IssuerOutcome:
        advice = store.advice_for_txn(txn.id)
        if advice is None or advice.acked_at_ms is not None:
            return Ignored("advice already acknowledged", txn.id)
        code = message.response_code or rc.SYSTEM_MALFUNCTION
        if code in _RETRY_CODES:
            return Ignored(f"issuer asks to resend ({code})", txn.id)
        store.ack_advice(advice.id, code, now_ms)
        undone = code in _UNDONE_CODES
        # A refusal (say 51 to reversing a void whose refund was spent) is final at the issuer:
        # the state says so, for the day end's exceptions.
        store.set_state(txn.id, TxnState.REVERSED if undone else TxnState.REVERSAL_REFUSED, now_ms)
        store.log_event(now_ms, "switch.advice_acked", txn.id, {"rc": code})
        return AdviceAcked(advice.id, advice.link_id, code)

    # -- timers and the queue ------------------------------------------------------------------

    def timed_out(self, txn_id: int, now_ms: int, store: SwitchStore) -> TerminalAnswer | Ignored:
        """The issuer did not answer ``txn_id`` in time (or its link went down)."""
        txn = store.txn(txn_id)
        if txn is None:
            return Ignored("no such transaction", txn_id)
        if txn.state is TxnState.FORWARDED:
            store.set_state(txn.id, txn.state, now_ms, response_code=rc.ISSUER_TIMEOUT)
            self._queue_reversal(txn, TxnState.TIMED_OUT, now_ms, store)
            store.log_event(now_ms, "switch.timed_out", txn.id, {})
        # Whatever the state now (the terminal or the queue may have reversed it meanwhile),
        # requests still waiting on it get its answer: the stored one, or 98.
        return self._answer_waiters(txn, now_ms, store)

    def recover(self, now_ms: int, store: SwitchStore) -> list[int]:
        """On start: finish every transaction a stopped switch left waiting on an issuer.

        Forwarded ones get their reversal queued (as on a timeout); ones the terminal reversed
        while in flight get the 98 their repeats will be answered with.
        """
        unfinished = store.unanswered_forwards()
        for txn in unfinished:
            self.timed_out(txn.id, now_ms, store)
        return [txn.id for txn in unfinished]

    def advices_due(
        self, now_ms: int, store: SwitchStore, links_up: frozenset[str]
    ) -> list[AdviceSend]:
        """Advices to send now on links that are up; each send pushes its next try back."""
        sends = []
        for advice in store.due_advices(now_ms, self._policy.advice_batch_max, links_up):
            message = advice_message(advice.fields, store.pan_of(advice.txn_id), advice.attempts)
            store.advice_sent(
                advice.id,
                advice.attempts + 1,
                now_ms + self._policy.backoff_ms(advice.attempts),
            )
            sends.append(
                AdviceSend(advice.id, advice.link_id, self._to_issuer(message), advice.attempts)
            )
        return sends


# -- helpers shared by the request paths ---------------------------------------------------------


def _malformed(raw: bytes) -> Answer:
    mti = raw[:_MTI_BYTES].hex()
    if len(raw) < _MTI_BYTES or not is_request(mti) or original_of(mti) not in MANDATORY:
        return Answer(None, close=True, outcome="malformed")
    body = encode_message(Message(response_mti(mti), {39: rc.FORMAT_ERROR}))
    return Answer(body, outcome="malformed", code=rc.FORMAT_ERROR)


def _settle_refused(
    ctx: RequestContext, txn: Txn, problem: tuple[str, str], store: SwitchStore
) -> Answer:
    code, reason = problem
    store.set_state(txn.id, TxnState.REFUSED, ctx.now_ms, response_code=code)
    store.log_event(ctx.now_ms, "switch.refused", txn.id, {"rc": code, "reason": reason})
    return answer_logged(ctx, code, {37: rrn_of(txn.id)}, store, f"refused: {reason}")


def _original_for(
    ctx: RequestContext, kind: TxnKind, store: SwitchStore
) -> tuple[Txn | None, tuple[str, str] | None]:
    """The sale a void or refund refers to (by its RRN in 37), or why it may not proceed."""
    if kind not in (TxnKind.VOID, TxnKind.REFUND):
        return None, None
    txn_id = txn_id_of(ctx.message.rrn or "")
    original = None if txn_id is None else store.txn(txn_id)
    if original is None or original.kind not in (TxnKind.SALE, TxnKind.COMPLETION):
        return None, (rc.ORIGINAL_NOT_FOUND, "no sale with that RRN")
    if original.state is not TxnState.APPROVED:
        return original, (rc.INVALID_TRANSACTION, f"original is {original.state.value}")
    amount = int(ctx.message.get(4) or 0)
    if kind is TxnKind.VOID:
        return original, _void_problem(ctx, original, amount, store)
    return original, _refund_problem(ctx, original, amount, store)


def _live_followers(original: Txn, kind: TxnKind, store: SwitchStore) -> list[Txn]:
    return [
        f
        for f in store.followers(original.id)
        if f.kind is kind and f.state in (TxnState.APPROVED, TxnState.FORWARDED)
    ]


def _void_problem(
    ctx: RequestContext, original: Txn, amount: int, store: SwitchStore
) -> tuple[str, str] | None:
    if original.terminal_id != ctx.terminal.terminal_id or original.batch_no != ctx.batch_no:
        return rc.INVALID_TRANSACTION, "a void must come from the sale's terminal and batch"
    if amount != original.amount_minor:
        return rc.INVALID_AMOUNT, "a void is for the original amount"
    if _live_followers(original, TxnKind.VOID, store):
        return rc.INVALID_TRANSACTION, "already voided"
    if _live_followers(original, TxnKind.REFUND, store):
        # The void would give back the whole sale on top of what was refunded.
        return rc.INVALID_TRANSACTION, "already refunded (in part or whole): refund the rest"
    return None


def _refund_problem(
    ctx: RequestContext, original: Txn, amount: int, store: SwitchStore
) -> tuple[str, str] | None:
    if original.merchant_id != ctx.terminal.merchant_id:
        return rc.INVALID_TRANSACTION, "a refund must come from the sale's merchant"
    if _live_followers(original, TxnKind.VOID, store):
        return rc.INVALID_TRANSACTION, "the sale was voided: nothing is left to refund"
    refunded = sum(f.amount_minor for f in _live_followers(original, TxnKind.REFUND, store))
    if amount <= 0 or refunded + amount > original.amount_minor:
        return rc.INVALID_AMOUNT, "refunds may not exceed the original amount"
    return None
