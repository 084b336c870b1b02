"""The issuer as the runtime sees it: batches of frames in, committed answers out.

Group commit: one transaction per batch, so a burst of requests costs one commit; a request
that fails unexpectedly is rolled back alone (and answered 96) while the rest of the batch
commits (:func:`cardtally.storage.commit_batch`: savepoints only when a request fails).
Answers are returned only after the commit, so none leaves before the state behind it is
durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

from sqlalchemy.engine import Engine

from cardtally.issuer._core import FINANCIAL, NETWORK_MANAGEMENT, IssuerCore, Outcome
from cardtally.issuer._request import request_key
from cardtally.issuer._store import SqlIssuerStore
from cardtally.runtime import Counters, Reply, Request, TxnNote, log_event, wall_clock_ms
from cardtally.storage import commit_batch, transaction
from cardtally.wire import DecodeError, Message, decode_message, encode_message, response_mti
from cardtally.wire import _codes as rc

_ANSWERABLE: Final = FINANCIAL | NETWORK_MANAGEMENT
_MTI_BYTES: Final = 2
#: One request's result: its decoding failed, or the message and what the core decided.
_Answer = DecodeError | tuple[Message, Outcome]


class IssuerService:
    """Implements the runtime's ``BatchHandler`` for the issuer core."""

    def __init__(
        self,
        engine: Engine,
        core: IssuerCore,
        *,
        counters: Counters,
        logger: logging.Logger,
        clock_ms: Callable[[], int] = wall_clock_ms,
        notices_written: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._core = core
        self._counters = counters
        self._logger = logger
        self._clock_ms = clock_ms
        self._notices_written = notices_written

    def handle_batch(self, requests: Sequence[Request]) -> list[Reply]:
        now_ms = self._clock_ms()

        def work(store: SqlIssuerStore, request: Request) -> _Answer:
            try:
                message = decode_message(request.body)
            except DecodeError as exc:
                return exc
            return message, self._core.handle(message, now_ms, store, request.body)

        answers = commit_batch(
            self._engine, requests, store_of=SqlIssuerStore, work=work, failed=self._failed
        )
        # Committed: from here on the answers may leave.
        replies = [
            self._malformed(request, a) if isinstance(a, DecodeError) else self._reply(*a)
            for request, a in zip(requests, answers, strict=True)
        ]
        if any(not isinstance(a, DecodeError) and a[1].notices for a in answers):
            self._notices_written()
        return replies

    def tick(self, now_ms: int) -> None:
        with transaction(self._engine) as conn:
            released = self._core.tick(now_ms, SqlIssuerStore(conn))
        if released:
            self._counters.inc("holds_expired", by=len(released))
            log_event(self._logger, "issuer.holds_expired", count=len(released))

    def _failed(self, request: Request, exc: Exception) -> _Answer:
        """A bug or a database fault: this request is undone and answered 96; the log says
        what went wrong without the message (it holds card data)."""
        message = decode_message(request.body)  # it decoded in the run that failed
        self._logger.error(
            "issuer.request_failed mti=%s error=%s",
            message.mti,
            type(exc).__name__,
            exc_info=exc,
        )
        failure = Outcome(
            message.response(rc.SYSTEM_MALFUNCTION),
            "failed",
            rc.SYSTEM_MALFUNCTION,
            type(exc).__name__,
        )
        return message, failure

    def _malformed(self, request: Request, exc: DecodeError) -> Reply:
        self._counters.inc("malformed")
        mti = request.body[:_MTI_BYTES].hex()
        log_event(
            self._logger,
            "issuer.malformed",
            peer=request.peer,
            bytes=len(request.body),
            mti=mti,
            error=str(exc),
        )
        body = malformed_answer(request.body)
        # Counted by the runtime's metrics; the line above says what went wrong.
        note = TxnNote(None, txn_type="malformed")
        return Reply(None, close=True, note=note) if body is None else Reply(body, note=note)

    def _reply(self, message: Message, answer: Outcome) -> Reply:
        self._count(answer)
        response = answer.response
        # Logged by the runtime once the answer is written, with its latency.
        note = TxnNote(
            "issuer.answer",
            answer=response,
            txn_type=None if response is not None or answer.kind is None else answer.kind.value,
            fields={
                "kind": answer.kind.value if answer.kind else "-",
                "result": answer.result,
                "reason": answer.reason,
                "txn_id": request_key(message) if answer.key is None else answer.key,
                "rrn": message.rrn,
            },
        )
        # Every answer from the core, repeats from the log included, goes out signed under
        # the zone MAC key when the link has one.
        body = None if response is None else self._core.encode_answer(response)
        return Reply(body, note=note)

    def _count(self, outcome: Outcome) -> None:
        if outcome.result == "approved":
            self._counters.inc("approved", outcome.kind.value if outcome.kind else None)
        elif outcome.result == "duplicate":
            self._counters.inc("duplicates")
        else:
            self._counters.inc(outcome.result, outcome.response_code)
        if outcome.kind is not None and outcome.kind.value == "reversal":
            self._counters.inc("reversals", outcome.response_code)
        if outcome.notices:
            self._counters.inc("notices_written", by=len(outcome.notices))


def malformed_answer(body: bytes) -> bytes | None:
    """30 to an undecodable request of a type the issuer serves; ``None``: close the link.

    Never signed, even with a zone MAC key: it carries nothing but its MTI and field 39,
    matches nothing at the switch (no trace number), and a switch with the key ignores it.
    """
    mti = body[:_MTI_BYTES].hex()
    if mti not in _ANSWERABLE:
        return None
    return encode_message(Message(response_mti(mti), {39: rc.FORMAT_ERROR}))
