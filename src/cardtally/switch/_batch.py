"""Sign-on, echo, batch settlement (0500) and batch upload (0320) at the switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cardtally.security import WorkingKeys, encode_signon_keys
from cardtally.switch._answers import encode_answer
from cardtally.switch._context import RequestContext, answer_logged, refuse
from cardtally.switch._effects import Answer
from cardtally.switch._model import Txn, TxnState, rrn_of
from cardtally.switch._request import host_time_fields, network_code
from cardtally.switch._store import BatchRecord, StoredRequest, SwitchStore
from cardtally.wire import TOTALS_DIGITS, BatchTotals, content_digest
from cardtally.wire import _codes as rc

_SIGN_ON: Final = "003"
_ECHO: Final = "301"
_UPLOAD_RECORD: Final = "202"
_UPLOAD_CLOSING: Final = "207"
_BALANCED: Final = "1"
_NOT_BALANCED: Final = "2"
_NO_REFERENCE: Final = rrn_of(0)


def network_management(
    ctx: RequestContext, store: SwitchStore, new_keys: Callable[[], WorkingKeys]
) -> Answer:
    """0800: sign-on delivers new working keys under the master key; echo just answers."""
    code = network_code(ctx.message)
    echoed = {n: v for n, v in ctx.message.fields.items() if n in (11, 41, 42)}
    fields = echoed | host_time_fields(ctx.now_ms) | {37: _NO_REFERENCE, 39: rc.APPROVED}
    batch = f"{ctx.terminal.batch_no:06d}"
    if code == _ECHO:
        fields[60] = f"00{batch}{_ECHO}"
        answer, body = encode_answer("0800", fields, None, None)
        return Answer(body, outcome="echo", code="00", message=answer)
    if code != _SIGN_ON:
        return refuse(ctx.message, rc.INVALID_TRANSACTION, f"network code {code!r} not served")
    keys = new_keys()
    store.sign_on(ctx.terminal.terminal_id, keys, ctx.now_ms)
    store.log_event(ctx.now_ms, "switch.signed_on", None, {"terminal": ctx.terminal.terminal_id})
    fields[60] = f"00{batch}{_SIGN_ON}"
    fields[62] = encode_signon_keys(ctx.keys.master_key, keys).hex().upper()
    answer, body = encode_answer("0800", fields, None, None)
    return Answer(body, outcome="sign_on", code="00", message=answer)


def totals_of(txns: list[Txn]) -> BatchTotals:
    """What the switch holds for a batch: approved debits and credits still in effect."""
    return BatchTotals.of((t.kind, t.amount_minor) for t in txns if t.state is TxnState.APPROVED)


def settlement(ctx: RequestContext, store: SwitchStore) -> Answer:
    """0500: compare the terminal's totals with ours, answer balanced or not, close the batch."""
    field48 = ctx.message.get(48) or ""
    if len(field48) not in (TOTALS_DIGITS, TOTALS_DIGITS + 1):
        return refuse(ctx.message, rc.FORMAT_ERROR, "field 48 is not settlement totals")
    claimed = field48[:TOTALS_DIGITS]  # the totals, with or without the request's result digit
    terminal_id = ctx.terminal.terminal_id
    ours = totals_of(store.batch_txns(terminal_id, ctx.batch_no)).field48("")
    closed = store.batch(terminal_id, ctx.batch_no)
    if closed is None:
        result = "balanced" if claimed == ours else "not_balanced"
        closed = BatchRecord(terminal_id, ctx.batch_no, result, claimed, ours, ctx.now_ms)
        store.close_batch(closed)
        store.set_batch(terminal_id, max(ctx.terminal.batch_no, ctx.batch_no + 1))
        store.log_event(
            ctx.now_ms,
            "switch.batch_closed",
            None,
            {"terminal": terminal_id, "batch": ctx.batch_no, "result": result, "ours": ours},
        )
    digit = _BALANCED if closed.result == "balanced" else _NOT_BALANCED
    extra = {15: host_time_fields(ctx.now_ms)[13], 37: _NO_REFERENCE, 48: claimed + digit}
    _log_request(ctx, store)
    return answer_logged(ctx, rc.APPROVED, extra, store, f"settlement {closed.result}")


def upload(ctx: RequestContext, store: SwitchStore) -> Answer:
    """0320: one uploaded transaction (recorded with what differs) or the closing count."""
    code = network_code(ctx.message)
    message = ctx.message
    terminal_id = ctx.terminal.terminal_id
    if code == _UPLOAD_CLOSING:
        recorded = store.count_uploads(terminal_id, ctx.batch_no)
        store.log_event(
            ctx.now_ms,
            "switch.upload_closed",
            None,
            {
                "terminal": terminal_id,
                "batch": ctx.batch_no,
                "count": message.get(48),
                "recorded": recorded,
            },
        )
        extra = {48: message.get(48) or f"{recorded:04d}"}
        _log_request(ctx, store)
        return answer_logged(ctx, rc.APPROVED, extra, store, "upload closed")
    if code != _UPLOAD_RECORD:
        return refuse(message, rc.INVALID_TRANSACTION, f"upload code {code!r} not served")
    ours = store.txn_by_terminal_key(terminal_id, ctx.batch_no, message.stan or "")
    difference = _difference(message.get(4), ours)
    store.add_upload(terminal_id, ctx.batch_no, message.fields, difference, ctx.now_ms)
    extra = {n: v for n, v in message.fields.items() if n in (37,)}
    _log_request(ctx, store)
    return answer_logged(ctx, rc.APPROVED, extra, store, "upload record")


def _log_request(ctx: RequestContext, store: SwitchStore) -> None:
    """Key the request (no transaction of its own), so its stored answer serves repeats."""
    store.add_request(StoredRequest(ctx.key, content_digest(ctx.message), None), ctx.now_ms)


def _difference(amount: str | None, ours: Txn | None) -> str:
    """How an uploaded transaction differs from the switch's log ("" when it agrees)."""
    if ours is None:
        return "unknown at the switch"
    if ours.state is not TxnState.APPROVED:
        return f"switch has it {ours.state.value}"
    if int(amount or 0) != ours.amount_minor:
        return f"amount: terminal {int(amount or 0)}, switch {ours.amount_minor}"
    return ""
