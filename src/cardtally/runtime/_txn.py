"""What the runtime says about each answered request: the transaction line and its labels.

A party attaches a :class:`TxnNote` to a :class:`~cardtally.runtime.Reply`; the frame server
reads it when the answer is written, because only then is the latency known. The request
type and the response code are read from the answer itself (it echoes the request's MTI
class, processing code and field 60), so both parties label their traffic the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cardtally.wire import DecodeError, Message, classify, decode_message

#: The type label of an answer that could not be read, or of no answer at all.
UNKNOWN: Final = "unknown"
#: The code label when no answer was sent (or it carried no field 39).
NO_CODE: Final = "none"
_CODE_CHARS: Final = 2
#: Field 60.3, network management information code: 301 is the echo test.
_ECHO: Final = "301"
_SIGN_ON: Final = frozenset({"001", "003"})
#: Request MTIs named by their message class alone (wire profile, section 6).
_BY_MTI: Final = {
    "0320": "upload",
    "0400": "reversal",
    "0420": "advice",
    "0500": "settlement",
}


@dataclass(frozen=True, slots=True)
class TxnNote:
    """How a party wants an answer logged and counted.

    ``event`` names the per-transaction log line (None: count it, log nothing; the party
    logged already). ``answer`` is the answer decoded, when the party has it at hand; else
    the server decodes the reply body. ``txn_type`` overrides the type read from the answer
    (for a request that could not be read). ``fields`` go on the line as they are; a
    ``txn_id`` among them names the party's transaction, else the answer's RRN does.
    """

    event: str | None
    answer: Message | None = None
    txn_type: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    """What the metrics and the transaction line need from one answer."""

    txn_type: str
    code: str
    terminal: str | None = None
    stan: str | None = None
    rrn: str | None = None


def request_type(answer: Message) -> str:
    """The type of the request ``answer`` answers (or of a request itself).

    >>> request_type(Message("0210", {3: "000000", 39: "00"}))
    'sale'
    >>> request_type(Message("0810", {60: "00000001301"}))
    'echo'
    """
    mti = answer.mti
    if len(mti) != len("0200") or not mti.isdigit():
        return UNKNOWN
    # Answers (x1xx, x3xx) name their request (x0xx, x2xx); repeats their first send.
    request = mti[:2] + ("2" if mti[2] in "23" else "0") + "0"
    if request == "0800":
        code = (answer.get(60) or "")[8:11]
        return "echo" if code == _ECHO else "signon" if code in _SIGN_ON else "network"
    named = _BY_MTI.get(request)
    if named is not None:
        return named
    kind = classify(Message(request, {n: answer.fields[n] for n in (3, 60) if n in answer}))
    return UNKNOWN if kind is None else kind.value


def answer_facts(note: TxnNote | None, body: bytes | None) -> AnswerFacts:
    """The labels of one answer: from the note's decoded answer, else from ``body``."""
    answer = note.answer if note is not None else None
    if answer is None and body is not None:
        try:
            answer = decode_message(body)
        except DecodeError:
            answer = None
    override = note.txn_type if note is not None else None
    if answer is None:
        return AnswerFacts(override or UNKNOWN, NO_CODE)
    return AnswerFacts(
        txn_type=override or request_type(answer),
        code=code_label(answer.response_code),
        terminal=answer.terminal_id,
        stan=answer.stan,
        rrn=answer.rrn,
    )


def code_label(code: str | None) -> str:
    """Field 39 as a metric label: two letters or digits, else ``none``/``other`` (a label
    set must stay small whatever a peer puts in the field)."""
    if code is None or code == "":
        return NO_CODE
    if len(code) == _CODE_CHARS and code.isascii() and code.isalnum():
        return code
    return "other"


def line_fields(
    facts: AnswerFacts, note: TxnNote, *, latency_ms: float | None, sent: bool
) -> dict[str, object]:
    """The fields of the per-transaction log line."""
    fields: dict[str, object] = {
        "type": facts.txn_type,
        "rc": facts.code,
        "terminal": facts.terminal,
        "stan": facts.stan,
        "txn_id": facts.rrn,
        "latency_ms": latency_ms,
        "sent": sent,
    }
    fields.update(note.fields)
    return fields
