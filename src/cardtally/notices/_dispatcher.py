"""The dispatcher: carries committed notices from the outbox to every sink, at least once.

Per sink and round: read a batch of pending notices in a read snapshot (which takes
no lock the issuer's writer would wait for), deliver them with no transaction open (a
slow webhook must not hold the issuer's write lock), then record what was delivered
in one statement and one transaction. A sink that takes batches (the console and the
JSON-lines file) gets the round's batch in one call: one write and one sync. A crash between
delivering and recording delivers those notices again; receivers deduplicate by
id. A sink that fails stops for the round and backs off exponentially on its own,
while the other sinks carry on.

Reading pending notices from the start would scan the whole history every round.
Each sink keeps a floor instead: the highest ``seq`` below which everything visible
has been delivered, and reads above it. On SQLite writers hold the lock from BEGIN
to COMMIT, so notices become visible in ``seq`` order and the floor is exact. On
PostgreSQL a transaction may take its ``seq`` and commit after a later one; such a
notice can land under the floor, so every ``FULL_RESCAN_MS`` the floor drops to
zero and one round reads from the start. A straggler is late by at most that much,
never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.engine import Engine

from cardtally.notices._errors import DeliveryError, NoticeError
from cardtally.notices._notice import Notice
from cardtally.notices._outbox import (
    PENDING_LIMIT_MAX,
    NoticeOutbox,
    check_sink_name,
    last_seq,
    pending_after,
    pending_count_after,
)
from cardtally.notices._sinks import BatchNoticeSink, NoticeSink
from cardtally.storage import read_transaction, transaction

BATCH_MAX_DEFAULT: Final = 100
RETRY_BACKOFF_MS_FIRST: Final = 1_000
RETRY_BACKOFF_MS_MAX_DEFAULT: Final = 60_000
RETRY_BACKOFF_MS_MAX_LIMIT: Final = 3_600_000
INTERVAL_MS_DEFAULT: Final = 500
INTERVAL_MS_MAX: Final = 60_000
SINKS_MAX: Final = 16
FULL_RESCAN_MS: Final = 60_000
# Past this many doublings the delay is at its cap anyway; stops 2**n from growing.
_DOUBLINGS_MAX: Final = 32

_LOGGER = logging.getLogger("cardtally.notices")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one round did, per sink name.

    ``failed`` counts failed attempts (at most one per sink and round, since a
    failing sink stops); ``deferred`` names sinks that were still backing off and
    were not tried; ``errors`` holds the reason of each failure this round.
    """

    delivered: Mapping[str, int] = field(default_factory=dict)
    failed: Mapping[str, int] = field(default_factory=dict)
    pending: Mapping[str, int] = field(default_factory=dict)
    deferred: frozenset[str] = frozenset()
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def delivered_total(self) -> int:
        return sum(self.delivered.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())


@dataclass(slots=True)
class _SinkState:
    failures: int = 0
    next_attempt_ms: int = 0
    # Every notice with seq <= floor_seq that was visible when it was set is delivered.
    floor_seq: int = 0
    rescan_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivered: int
    pending: int
    error: str | None


class NoticeDispatcher:
    """Delivers the outbox of ``engine`` to ``sinks``; one dispatcher per database.

    Two dispatchers on one database would not lose notices, only send each twice.
    """

    def __init__(
        self,
        engine: Engine,
        sinks: Sequence[NoticeSink],
        *,
        batch_max: int = BATCH_MAX_DEFAULT,
        retry_backoff_ms_max: int = RETRY_BACKOFF_MS_MAX_DEFAULT,
        logger: logging.Logger | None = None,
    ) -> None:
        if not 0 < batch_max <= PENDING_LIMIT_MAX:
            raise NoticeError(f"batch_max must be in 1..{PENDING_LIMIT_MAX}")
        if not 0 < retry_backoff_ms_max <= RETRY_BACKOFF_MS_MAX_LIMIT:
            raise NoticeError(f"retry_backoff_ms_max must be in 1..{RETRY_BACKOFF_MS_MAX_LIMIT}")
        if len(sinks) > SINKS_MAX:
            raise NoticeError(f"at most {SINKS_MAX} notice sinks")
        names = [check_sink_name(sink.name) for sink in sinks]
        if len(set(names)) != len(names):
            # Deliveries are recorded by sink name: two sinks with one name would share them.
            raise NoticeError(f"notice sink names must be unique: {names}")
        self._engine = engine
        self._sinks = tuple(sinks)
        self._batch_max = batch_max
        self._backoff_ms_max = retry_backoff_ms_max
        self._log = logger if logger is not None else _LOGGER
        self._state = {name: _SinkState() for name in names}
        # Rounds from run() and direct calls must not interleave on the backoff state.
        self._lock = threading.Lock()

    @property
    def sinks(self) -> tuple[NoticeSink, ...]:
        return self._sinks

    def deliver_once(self, now_ms: int) -> DeliveryReport:
        """One round over every sink at time ``now_ms``; blocking, call it off the event loop.

        Storage errors propagate (nothing is lost: undelivered notices stay pending).
        """
        return self._round(now_ms, threading.Event())

    async def run(
        self,
        stop: asyncio.Event,
        *,
        interval_ms: int = INTERVAL_MS_DEFAULT,
        wake: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Deliver rounds until ``stop`` is set: every ``interval_ms``, or at once on ``wake``.

        The server sets ``wake`` after committing new notices. Once ``stop`` is set the
        loop finishes the delivery in hand, records it and returns: the wait is bounded
        by one sink's timeout. A failing round is logged and the loop goes on.
        """
        if not 0 < interval_ms <= INTERVAL_MS_MAX:
            raise NoticeError(f"interval_ms must be in 1..{INTERVAL_MS_MAX}")
        halt = threading.Event()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if wake is not None:
                    # Cleared before the round: notices committed during it wake the next one.
                    wake.clear()
                await self._guarded_round(clock, halt, stopping)
                if stop.is_set():
                    break
                await _first_of(stopping, wake, interval_ms)
        finally:
            halt.set()
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping

    async def _guarded_round(
        self, clock: Callable[[], float], halt: threading.Event, stopping: asyncio.Task[object]
    ) -> None:
        now_ms = int(clock() * 1000)
        work = asyncio.create_task(asyncio.to_thread(self._round, now_ms, halt))
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            # A thread cannot be cancelled; ask it to stop after the notice in hand.
            halt.set()
            await asyncio.wait({work})
        try:
            work.result()
        except Exception:
            self._log.exception("event=notices.round_failed")

    def _round(self, now_ms: int, halt: threading.Event) -> DeliveryReport:
        if not isinstance(now_ms, int) or isinstance(now_ms, bool) or now_ms < 0:
            raise NoticeError(f"now_ms must be an int of milliseconds since 1970: {now_ms!r}")
        delivered: dict[str, int] = {}
        failed: dict[str, int] = {}
        pending: dict[str, int] = {}
        errors: dict[str, str] = {}
        deferred: set[str] = set()
        with self._lock:
            for sink in self._sinks:
                if halt.is_set():
                    break  # stopping: the sinks left over wait for the next start
                state = self._state[sink.name]
                if now_ms < state.next_attempt_ms:
                    deferred.add(sink.name)
                    pending[sink.name] = self._pending_count(sink.name, state.floor_seq)
                    continue
                outcome = self._serve(sink, state, now_ms, halt)
                delivered[sink.name] = outcome.delivered
                pending[sink.name] = outcome.pending
                failed[sink.name] = 0 if outcome.error is None else 1
                if outcome.error is None:
                    self._recovered(sink.name, state)
                else:
                    errors[sink.name] = outcome.error
                    self._back_off(sink.name, state, now_ms, outcome.error)
        return DeliveryReport(delivered, failed, pending, frozenset(deferred), errors)

    def _serve(
        self, sink: NoticeSink, state: _SinkState, now_ms: int, halt: threading.Event
    ) -> _Outcome:
        if now_ms >= state.rescan_at_ms:
            state.floor_seq = 0
            state.rescan_at_ms = now_ms + FULL_RESCAN_MS
        # A read snapshot: the issuer's worker lane never waits on this thread's reads.
        with read_transaction(self._engine) as conn:
            # Read first: anything committed after it has a higher seq or is a straggler.
            top = last_seq(conn)
            batch = pending_after(conn, sink.name, self._batch_max, after_seq=state.floor_seq)
        done, error = self._hand_over(sink, batch, halt)
        if done:
            # One commit for the batch (group commit); a crash before it means redelivery.
            with transaction(self._engine) as conn:
                NoticeOutbox(conn).mark_all_delivered(
                    [notice.id for _, notice in done], sink.name, now_ms
                )
            self._log_delivered(sink.name, [notice for _, notice in done])
        if len(done) == len(batch) < self._batch_max:
            # Everything visible up to `top` is now delivered.
            state.floor_seq = max(state.floor_seq, top)
            return _Outcome(len(done), 0, error)
        if done:
            state.floor_seq = done[-1][0]
        return _Outcome(len(done), self._pending_count(sink.name, state.floor_seq), error)

    def _hand_over(
        self, sink: NoticeSink, batch: list[tuple[int, Notice]], halt: threading.Event
    ) -> tuple[list[tuple[int, Notice]], str | None]:
        """What ``sink`` took of ``batch``, in order, and why it stopped short (or None)."""
        if isinstance(sink, BatchNoticeSink) and batch:
            # All or nothing: a failed batch comes again whole in a later round.
            error = self._deliver(sink, [notice for _, notice in batch], sink.deliver_many)
            return ([] if error is not None else batch), error
        done: list[tuple[int, Notice]] = []
        for seq, notice in batch:
            if halt.is_set():
                break
            error = self._deliver(sink, [notice], lambda one: sink.deliver(one[0]))
            if error is not None:
                return done, error
            done.append((seq, notice))
        return done, None

    def _log_delivered(self, sink: str, notices: list[Notice]) -> None:
        for notice in notices:
            self._log.info(
                "event=notices.delivered sink=%s id=%s kind=%s card_tail=%s",
                sink,
                notice.id,
                notice.kind.value,
                notice.card_tail,
            )

    def _deliver(
        self,
        sink: NoticeSink,
        notices: list[Notice],
        hand: Callable[[list[Notice]], None],
    ) -> str | None:
        """None once ``hand`` gave ``sink`` every one of ``notices``, else the reason why not."""
        notice = notices[0]  # named in the log lines: the first of a failed batch
        try:
            hand(notices)
        except DeliveryError as exc:
            reason = str(exc)
        except Exception as exc:
            # A sink with a bug must not stop the others; its traceback goes to the log.
            self._log.exception("event=notices.sink_crashed sink=%s id=%s", sink.name, notice.id)
            reason = f"sink raised {type(exc).__name__}"
        else:
            return None
        self._log.warning(
            "event=notices.delivery_failed sink=%s id=%s card_tail=%s reason=%s",
            sink.name,
            notice.id,
            notice.card_tail,
            json.dumps(reason, ensure_ascii=False),
        )
        return reason

    def _back_off(self, sink: str, backoff: _SinkState, now_ms: int, reason: str) -> None:
        backoff.failures += 1
        doublings = min(backoff.failures - 1, _DOUBLINGS_MAX)
        delay_ms = min(RETRY_BACKOFF_MS_FIRST * 2**doublings, self._backoff_ms_max)
        backoff.next_attempt_ms = now_ms + delay_ms
        self._log.warning(
            "event=notices.sink_backing_off sink=%s failures=%d retry_in_ms=%d reason=%s",
            sink,
            backoff.failures,
            delay_ms,
            json.dumps(reason, ensure_ascii=False),
        )

    def _recovered(self, sink: str, backoff: _SinkState) -> None:
        if backoff.failures:
            self._log.info(
                "event=notices.sink_recovered sink=%s after_failures=%d", sink, backoff.failures
            )
        backoff.failures = 0
        backoff.next_attempt_ms = 0

    def _pending_count(self, sink: str, floor_seq: int) -> int:
        with read_transaction(self._engine) as conn:
            return pending_count_after(conn, sink, after_seq=floor_seq)


async def _first_of(
    stopping: asyncio.Task[object], wake: asyncio.Event | None, interval_ms: int
) -> None:
    """Return when ``stopping`` finishes, ``wake`` is set, or ``interval_ms`` passes."""
    waiters: set[asyncio.Task[object]] = {stopping}
    waking: asyncio.Task[object] | None = None
    if wake is not None:
        waking = asyncio.create_task(wake.wait())
        waiters.add(waking)
    try:
        await asyncio.wait(waiters, timeout=interval_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if waking is not None:
            waking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waking
