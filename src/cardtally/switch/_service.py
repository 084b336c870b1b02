"""The switch on the runtime's worker lane: one transaction per batch, an item undone alone.

Everything here runs on the lane thread, so the core's writes are serialized. The loop side
(``runtime/switch_process.py``) is told what to do only after the transaction committed:
durable before visible, for answers, forwards and advices alike.

An item (a terminal request, an issuer event) that raises is rolled back alone and the rest
of its batch commits (:func:`cardtally.storage.commit_batch`: savepoints only when an item
fails). The core decides the same way given the same store and ``now_ms`` (a sign-on draws
new keys, but the first draw was rolled back and never sent), so a batch run twice answers as
it would have once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy.engine import Engine

from cardtally.runtime import Counters, Reply, Request, TxnNote, log_event
from cardtally.security import DataKeys
from cardtally.storage import commit_batch, transaction
from cardtally.switch._core import SwitchCore
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
from cardtally.switch._store import RegistryCache, SqlSwitchStore
from cardtally.wire import DecodeError, Message, decode_message, encode_message, response_mti
from cardtally.wire import _codes as rc

#: Counters the switch declares at start, so a scrape shows them at zero.
SWITCH_COUNTERS: Final = (
    "answered",
    "forwarded",
    "refused",
    "duplicates",
    "joined",
    "timeouts",
    "late_responses",
    "advices_sent",
    "advices_acked",
    "issuer_ignored",
    "item_errors",
)


T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class IssuerEvent:
    """Something from the issuer side to settle: a message received, or a deadline passed."""

    link_id: str
    raw: bytes | None = None  # a message from the issuer
    timed_out_txn: int | None = None  # a forwarded transaction whose time is up


@dataclass(frozen=True, slots=True)
class Committed:
    """A terminal request's outcome, handed to the loop once its batch committed."""

    request: Request
    outcome: TerminalOutcome


class SwitchService:
    """The runtime's :class:`~cardtally.runtime.BatchHandler` for terminals, plus issuer work."""

    def __init__(
        self,
        engine: Engine,
        core: SwitchCore,
        data_keys: DataKeys,
        *,
        counters: Counters,
        logger: logging.Logger,
        clock_ms: Callable[[], int],
        on_committed: Callable[[list[Committed]], None],
    ) -> None:
        self._engine = engine
        self._core = core
        self._data_keys = data_keys
        self._counters = counters
        self._logger = logger
        self._clock_ms = clock_ms
        self._on_committed = on_committed
        # Lane-only, like every store call: no lock needed.
        self._cache = RegistryCache()

    # -- terminals (the BatchHandler contract) ---------------------------------------------

    def handle_batch(self, requests: Sequence[Request]) -> list[Reply]:
        now_ms = self._clock_ms()

        def work(store: SqlSwitchStore, request: Request) -> TerminalOutcome:
            return self._core.terminal_request(request.body, now_ms, store)

        outcomes = self._run_batch(requests, work, self._request_failed)
        # Committed: the loop may now forward, and the replies may leave.
        waiting = [
            Committed(request, outcome)
            for request, outcome in zip(requests, outcomes, strict=True)
            if not isinstance(outcome, Answer)
        ]
        if waiting:
            self._on_committed(waiting)
        return [
            self._reply(request, outcome)
            for request, outcome in zip(requests, outcomes, strict=True)
        ]

    def tick(self, now_ms: int) -> None:
        del now_ms  # timers and the advice queue are driven from the loop side

    def _request_failed(self, request: Request, exc: Exception) -> TerminalOutcome:
        self._counters.inc("item_errors")
        log_event(
            self._logger,
            "switch.request_failed",
            level=logging.ERROR,
            error=type(exc).__name__,
            peer=request.peer,
        )
        return system_malfunction(request.body)

    def _run_batch(
        self,
        items: Sequence[T],
        work: Callable[[SqlSwitchStore, T], R],
        failed: Callable[[T, Exception], R],
    ) -> list[R]:
        return commit_batch(
            self._engine,
            items,
            store_of=lambda conn: SqlSwitchStore(conn, self._data_keys, self._cache),
            work=work,
            failed=failed,
        )

    def _reply(self, request: Request, outcome: TerminalOutcome) -> Reply:
        if isinstance(outcome, Forward):
            self._counters.inc("forwarded")
            return Reply.later()
        if isinstance(outcome, Join):
            self._counters.inc("joined")
            return Reply.later()
        self._count_answer(outcome)
        # Logged by the runtime once the answer is written, with its latency and its type,
        # terminal, STAN and RRN read from the answer.
        fields = {"outcome": outcome.outcome, "peer": request.peer}
        note = TxnNote("switch.answer", answer=outcome.message, fields=fields)
        return Reply(outcome.body, close=outcome.close, note=note)

    def _count_answer(self, answer: Answer) -> None:
        if answer.outcome == "duplicate":
            self._counters.inc("duplicates")
        elif answer.outcome.startswith("refused") or answer.outcome == "malformed":
            self._counters.inc("refused", answer.code or None)
        else:
            self._counters.inc("answered", answer.code or None)

    # -- the issuer side and the queue -----------------------------------------------------

    def settle_issuer_events(self, events: Sequence[IssuerEvent]) -> list[IssuerOutcome | None]:
        """Issuer messages and expired deadlines, one transaction for the lot."""
        now_ms = self._clock_ms()

        def work(store: SqlSwitchStore, event: IssuerEvent) -> IssuerOutcome | None:
            return self._settle_one(event, now_ms, store)

        results = self._run_batch(events, work, self._event_failed)
        timeouts = sum(1 for event in events if event.timed_out_txn is not None)
        if timeouts:
            self._counters.inc("timeouts", by=timeouts)
        for result in results:
            self._count_issuer(result)
        return results

    def _event_failed(self, event: IssuerEvent, exc: Exception) -> IssuerOutcome | None:
        self._counters.inc("item_errors")
        log_event(
            self._logger,
            "switch.issuer_event_failed",
            level=logging.ERROR,
            link=event.link_id,
            error=type(exc).__name__,
        )
        return None

    def _settle_one(
        self, event: IssuerEvent, now_ms: int, store: SqlSwitchStore
    ) -> IssuerOutcome | None:
        if event.timed_out_txn is not None:
            return self._core.timed_out(event.timed_out_txn, now_ms, store)
        assert event.raw is not None
        return self._core.issuer_message(event.raw, now_ms, store)

    def _count_issuer(self, result: IssuerOutcome | None) -> None:
        if isinstance(result, AdviceAcked):
            self._counters.inc("advices_acked", result.code)
        elif isinstance(result, Ignored):
            self._counters.inc("issuer_ignored")
            if result.reason.startswith("late"):
                self._counters.inc("late_responses")
        elif isinstance(result, TerminalAnswer):
            self._counters.inc("answered", result.code)

    def advices_due(self, links_up: frozenset[str]) -> list[AdviceSend]:
        with transaction(self._engine) as conn:
            sends = self._core.advices_due(
                self._clock_ms(), SqlSwitchStore(conn, self._data_keys, self._cache), links_up
            )
        self._counters.inc("advices_sent", by=len(sends))
        return sends

    def recover(self) -> list[int]:
        """Queue a reversal for everything forwarded and never finished (start-up only)."""
        with transaction(self._engine) as conn:
            return self._core.recover(
                self._clock_ms(), SqlSwitchStore(conn, self._data_keys, self._cache)
            )


def system_malfunction(raw: bytes) -> Answer:
    """The answer to a request whose handling failed unexpectedly: 96, nothing kept."""
    try:
        message = decode_message(raw)
    except DecodeError:
        return Answer(None, close=True, outcome="malformed")
    body = encode_message(Message(response_mti(message.mti), {39: rc.SYSTEM_MALFUNCTION}))
    return Answer(body, outcome="refused: system malfunction", code=rc.SYSTEM_MALFUNCTION)
