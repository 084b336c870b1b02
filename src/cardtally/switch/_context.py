"""A terminal request that passed the terminal checks, and the answers every path shares."""

from __future__ import annotations

from dataclasses import dataclass

from cardtally.switch._answers import answer_fields, echo_of, encode_answer
from cardtally.switch._effects import Answer
from cardtally.switch._model import Terminal, TerminalKeys, Txn, TxnKind, TxnState
from cardtally.switch._store import NewTxn, StoredRequest, SwitchStore
from cardtally.wire import Message, Pan, content_digest, encode_message, response_mti


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One terminal request that passed the terminal checks."""

    raw: bytes
    message: Message
    terminal: Terminal
    keys: TerminalKeys
    batch_no: int
    local_date: str
    key: str
    now_ms: int


def refuse(message: Message, code: str, reason: str) -> Answer:
    """An answer that records nothing: bad input changes nothing."""
    answer = Message(response_mti(message.mti), echo_of(message) | {39: code})
    return Answer(encode_message(answer), outcome=f"refused: {reason}", code=code, message=answer)


def open_txn(
    ctx: RequestContext, kind: TxnKind, pan: Pan | None, original: Txn | None, store: SwitchStore
) -> Txn:
    """Log the request and its transaction before anything else happens to it."""
    message = ctx.message
    txn = store.add_txn(
        NewTxn(
            request_key=ctx.key,
            kind=kind,
            state=TxnState.RECEIVED,
            terminal_id=ctx.terminal.terminal_id,
            merchant_id=ctx.terminal.merchant_id,
            batch_no=ctx.batch_no,
            stan=message.stan or "",
            local_date=ctx.local_date,
            pan=pan,
            processing_code=message.processing_code or "",
            amount_minor=int(message.get(4) or 0),
            currency=message.get(49) or "",
            echo_fields=echo_of(message),
            original_id=None if original is None else original.id,
            at_ms=ctx.now_ms,
        )
    )
    store.add_request(StoredRequest(ctx.key, content_digest(message), txn.id), ctx.now_ms)
    return txn


def answer_logged(
    ctx: RequestContext, code: str, extra: dict[int, str], store: SwitchStore, outcome: str
) -> Answer:
    """Answer a logged request now, storing the answer for its repeats."""
    fields = answer_fields(echo_of(ctx.message), code, ctx.now_ms, extra)
    store.save_response(ctx.key, ctx.message.mti[:3] + "0", fields, ctx.now_ms)
    answer, body = encode_answer(ctx.message.mti, fields, ctx.terminal, ctx.keys)
    return Answer(body, outcome=outcome, code=code, message=answer)
