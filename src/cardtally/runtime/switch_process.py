"""The switch process, wired in one place: config, keys, database, core, server, issuer links.

Terminals connect to one :class:`FrameServer`; each issuer in the registry gets one
:class:`IssuerLink`. A terminal request that must go to an issuer is answered later
(``Reply.later()``): the loop side below keeps which requests wait on which transaction,
arms a deadline per forwarded transaction, and hands issuer answers and expired deadlines
back to the core on the server's worker lane, in batches (one commit each). The reversal
advice queue is pumped from here too, on every link that is up, and read on a timer for its
depth and age (the ``switch.queue`` log line, and with ``switch.metrics_port`` the gauges of
``GET /metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Final

from sqlalchemy.engine import Engine

from cardtally.config import Config, SwitchConfig
from cardtally.runtime._clock import wall_clock_ms
from cardtally.runtime._counters import Counters
from cardtally.runtime._handler import Reply
from cardtally.runtime._host import configure_host_logging, start_metrics
from cardtally.runtime._limits import ServerLimits
from cardtally.runtime._link import LINK_COUNTERS, IssuerLink, LinkLimits
from cardtally.runtime._logging import log_event
from cardtally.runtime._metrics import PartyMetrics
from cardtally.runtime._serve import serve_forever
from cardtally.runtime._server import FrameServer
from cardtally.runtime._switch_metrics import (
    QUEUE_READ_MS,
    QueueSnapshot,
    SwitchGauges,
    read_queue,
)
from cardtally.runtime._txn import TxnNote
from cardtally.security import load_data_keys, load_issuer_keys
from cardtally.storage import transaction
from cardtally.switch import (
    AdviceAcked,
    Forward,
    Ignored,
    IssuerOutcome,
    Join,
    SwitchCore,
    SwitchIdentity,
    SwitchPolicy,
    TerminalAnswer,
)
from cardtally.switch._database import open_switch_database
from cardtally.switch._registry import list_issuer_links
from cardtally.switch._service import SWITCH_COUNTERS, Committed, IssuerEvent, SwitchService
from cardtally.wire import (
    DecodeError,
    LinkProfile,
    Message,
    Tpdu,
    decode_message,
    encode_message,
    transmission_time,
)

#: How often the advice queue is looked at; a due advice waits at most this long.
ADVICE_PUMP_MS: Final = 250
#: How often a non-empty queue's depth and age are logged (and, without metrics, read).
QUEUE_REPORT_MS: Final = 10_000
#: Issuer events settled in one transaction at most.
EVENT_BATCH_MAX: Final = 256
#: The switch's NII towards issuers, and the issuers' (wire profile: TPDU).
SWITCH_NII: Final = 0x0001
ISSUER_NII: Final = 0x0002
#: What the switch's labelled counters are split by.
SWITCH_LABELS: Final = {
    "answered": "code",
    "refused": "code",
    "advices_acked": "code",
    **dict.fromkeys(LINK_COUNTERS, "link"),
}


def link_name(link_id: str) -> str:
    """A registry link id as a runtime link name (a word: logs and counter labels)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", link_id)


@dataclass
class _Waits:
    """Loop-side bookkeeping: who waits on which transaction, and until when."""

    requests: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    deadlines: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    link_of: dict[int, str] = field(default_factory=dict)

    def forget(self, txn_id: int) -> list[int]:
        timer = self.deadlines.pop(txn_id, None)
        if timer is not None:
            timer.cancel()
        self.link_of.pop(txn_id, None)
        return self.requests.pop(txn_id, [])

    def on_link(self, link_id: str) -> list[int]:
        return [txn for txn, link in self.link_of.items() if link == link_id]


class SwitchShell:
    """The loop side of the switch; a runtime ``Service`` (started before the server)."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        core: SwitchCore,
        *,
        counters: Counters,
        logger: logging.Logger,
        metrics: PartyMetrics | None = None,
    ) -> None:
        self._config = config
        self._engine = engine
        self._counters = counters
        self._logger = logger
        self._metrics = metrics
        self._queue = QueueSnapshot()
        #: RRN of each advice sent and not yet acknowledged, for the acknowledgement's log line.
        self._advice_rrns: dict[int, str | None] = {}
        self._waits = _Waits()
        self._events: asyncio.Queue[IssuerEvent] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._links: dict[str, IssuerLink] = {}
        self._serving = asyncio.Event()
        self.service = SwitchService(
            engine,
            core,
            load_data_keys(config.home),
            counters=counters,
            logger=logger,
            clock_ms=wall_clock_ms,
            on_committed=self._committed_threadsafe,
        )
        self.server = FrameServer(
            self.service,
            host=config.switch.host,
            port=config.switch.port,
            link=_link_profile(config),
            limits=ServerLimits(
                connections_max=config.switch.connections_max,
                in_flight_per_connection_max=config.switch.in_flight_per_connection_max,
                batch_size_max=config.switch.batch_max,
            ),
            name="switch",
            logger=logger,
            counters=counters,
            observer=None if metrics is None else metrics.observe,
        )
        if metrics is not None:
            gauges = SwitchGauges(lambda: self._queue, self._links_up, wall_clock_ms)
            metrics.add_gauges(gauges.collect)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        recovered = self.service.recover()
        if recovered:
            log_event(self._logger, "switch.recovered", reversals_queued=len(recovered))
        with transaction(self._engine) as conn:
            routes = list_issuer_links(conn)
        for route in routes:
            self._links[route.link_id] = self._make_link(route.link_id, route.host, route.port)
        for link in self._links.values():
            await link.start()
        self._tasks = [
            asyncio.create_task(self._settle_events(), name="switch-issuer-events"),
            asyncio.create_task(self._pump_advices(), name="switch-advices"),
            asyncio.create_task(self._watch_queue(), name="switch-queue"),
        ]

    def serving(self) -> None:
        """The server is up (its worker lane runs): the loops may use it."""
        self._serving.set()

    @property
    def metrics(self) -> PartyMetrics | None:
        return self._metrics

    def dispose(self) -> None:
        """Release the database once the process is done with it."""
        self._engine.dispose()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self._links.values():
            await link.stop()

    # -- issuer links --------------------------------------------------------------------------

    def _links_up(self) -> dict[str, bool]:
        return {link_id: link.up for link_id, link in list(self._links.items())}

    def _make_link(self, link_id: str, host: str, port: int) -> IssuerLink:
        settings = self._config.switch
        return IssuerLink(
            link_name(link_id),
            host,
            port,
            link=_link_profile(self._config),
            tpdu=Tpdu(ISSUER_NII, SWITCH_NII),
            limits=LinkLimits(
                in_flight_max=settings.link_in_flight_max, echo_idle_ms=settings.echo_idle_ms
            ),
            on_message=lambda raw: self._issuer_event(IssuerEvent(link_id, raw=raw)),
            echo_message=self._echo_message,
            on_state=lambda up: self._link_state(link_id, up),
            logger=self._logger,
            counters=self._counters,
        )

    def _echo_message(self) -> bytes:
        now_ms = wall_clock_ms()
        fields = {
            7: transmission_time(now_ms),
            11: f"{now_ms // 1000 % 1_000_000:06d}",
            32: self._config.acquirer_id,
            60: "00000000301",
        }
        return encode_message(Message("0800", fields))

    def _link_state(self, link_id: str, up: bool) -> None:
        if up:
            return
        # The link forgot everything in flight on it: nothing will answer those requests.
        for txn_id in self._waits.on_link(link_id):
            self._timeout(txn_id, link_id)

    def _issuer_event(self, event: IssuerEvent) -> None:
        assert self._events is not None
        # Bounded by what was sent: each link refuses sends beyond its in-flight bound.
        self._events.put_nowait(event)

    def _timeout(self, txn_id: int, link_id: str) -> None:
        timer = self._waits.deadlines.pop(txn_id, None)
        if timer is not None:
            timer.cancel()
        self._issuer_event(IssuerEvent(link_id, timed_out_txn=txn_id))

    # -- terminal requests that wait -----------------------------------------------------------

    def _committed_threadsafe(self, items: list[Committed]) -> None:
        # Called on the lane after COMMIT. The loop runs this before it delivers the batch's
        # replies (both are queued on it in that order), so waits are registered before the
        # server parks the deferred replies, and long before any issuer answer is settled.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, items)

    def _committed(self, items: list[Committed]) -> None:
        assert self._loop is not None
        for item in items:
            outcome = item.outcome
            if isinstance(outcome, Join):
                self._waits.requests[outcome.txn_id].append(item.request.request_id)
                continue
            assert isinstance(outcome, Forward)
            self._waits.requests[outcome.txn_id].append(item.request.request_id)
            self._forward(outcome)

    def _forward(self, forward: Forward) -> None:
        assert self._loop is not None
        link = self._links.get(forward.link_id)
        self._waits.link_of[forward.txn_id] = forward.link_id
        if link is None or not link.send(forward.body):
            # Not sent, but it was logged as forwarded: the timeout path answers 98 and
            # queues the (harmless) reversal, so the rule stays the same in every case.
            self._timeout(forward.txn_id, forward.link_id)
            return
        delay_s = max(0.0, (forward.deadline_ms - wall_clock_ms()) / 1000)
        self._waits.deadlines[forward.txn_id] = self._loop.call_later(
            delay_s, self._timeout, forward.txn_id, forward.link_id
        )

    # -- settling issuer events ----------------------------------------------------------------

    async def _settle_events(self) -> None:
        assert self._events is not None
        await self._serving.wait()
        while True:
            batch = [await self._events.get()]
            while len(batch) < EVENT_BATCH_MAX and not self._events.empty():
                batch.append(self._events.get_nowait())
            results = await self.server.run_on_lane(self.service.settle_issuer_events, batch)
            for event, result in zip(batch, results, strict=True):
                self._apply(event, result)

    def _answer_terminals(self, result: TerminalAnswer, *, timed_out: bool) -> None:
        """Every terminal request waiting on the transaction gets its answer (and its line)."""
        waiting = self._waits.forget(result.txn_id)
        fields = {
            "outcome": "timed_out" if timed_out else "issuer",
            "txn_id": f"{result.txn_id:012d}",  # the RRN the switch gave it
            "waiting": len(waiting),
        }
        note = TxnNote("switch.answer", answer=result.message, fields=fields)
        for request_id in waiting:
            self.server.complete(request_id, Reply(result.body, note=note))
        if not waiting:  # the terminal left: the answer is still worth a line
            log_event(
                self._logger,
                "switch.answer",
                level=logging.INFO,
                rc=result.code,
                sent=False,
                **fields,
            )

    def _apply(self, event: IssuerEvent, result: IssuerOutcome | None) -> None:
        if result is None and event.timed_out_txn is not None:
            # Settling the deadline failed (logged): try again shortly rather than leave the
            # terminal waiting; a restart would queue the reversal in any case.
            assert self._loop is not None
            self._loop.call_later(1.0, self._timeout, event.timed_out_txn, event.link_id)
            return
        if isinstance(result, TerminalAnswer):
            was_on_link = result.txn_id in self._waits.link_of
            self._answer_terminals(result, timed_out=event.timed_out_txn is not None)
            link = self._links.get(event.link_id)
            if was_on_link and link is not None:
                link.settle()
        elif isinstance(result, AdviceAcked):
            log_event(
                self._logger,
                "switch.advice_acked",
                advice=result.advice_id,
                link=result.link_id,
                rc=result.code,
                txn_id=self._advice_rrns.pop(result.advice_id, None),
            )
        elif isinstance(result, Ignored) and result.reason != "echo answer":
            # Late, unmatched, undecodable, or failing the link MAC: nothing changed, but an
            # operator should be able to see why (a MAC failure may be an attack or a key
            # out of step between the switch and the issuer).
            log_event(
                self._logger,
                "switch.issuer_ignored",
                level=logging.WARNING if result.reason.startswith("MAC") else logging.INFO,
                link=event.link_id,
                reason=result.reason,
                txn_id=None if result.txn_id is None else f"{result.txn_id:012d}",
            )

    # -- the reversal advice queue -------------------------------------------------------------

    async def _pump_advices(self) -> None:
        await self._serving.wait()
        while True:
            await asyncio.sleep(ADVICE_PUMP_MS / 1000)
            up = frozenset(link_id for link_id, link in self._links.items() if link.up)
            if not up:
                continue
            for send in await self.server.run_on_lane(self.service.advices_due, up):
                if send.advice_id not in self._advice_rrns:
                    self._advice_rrns[send.advice_id] = _rrn_of(send.body)
                link = self._links[send.link_id]
                # Advices do not hold in-flight slots: an unanswered one is simply sent
                # again at its next try, so there is nothing to settle later.
                if link.send(send.body):
                    link.settle()

    async def _watch_queue(self) -> None:
        """Read the queue on the lane: every second for the gauges, else for the log line."""
        await self._serving.wait()
        read_s = (QUEUE_READ_MS if self._metrics is not None else QUEUE_REPORT_MS) / 1000
        last_report = -QUEUE_REPORT_MS / 1000
        while True:
            try:
                self._queue = await self.server.run_on_lane(read_queue, self._engine)
            except RuntimeError:
                return  # the lane is gone: the server has stopped
            except Exception as exc:  # the database is busy or down: keep the last reading
                log_event(
                    self._logger,
                    "switch.queue_read_failed",
                    level=logging.WARNING,
                    error=type(exc).__name__,
                )
            if time.monotonic() - last_report >= QUEUE_REPORT_MS / 1000:
                last_report = time.monotonic()
                self._report_queue()
            await asyncio.sleep(read_s)

    def _report_queue(self) -> None:
        depth = self._queue.depth
        if depth:
            age_ms = self._queue.oldest_age_ms(wall_clock_ms())
            log_event(self._logger, "switch.queue", depth=depth, oldest_age_ms=age_ms)


def _rrn_of(advice: bytes) -> str | None:
    """The RRN a reversal advice carries (field 37): the transaction it undoes."""
    try:
        return decode_message(advice).rrn
    except DecodeError:
        return None


def _link_profile(config: Config) -> LinkProfile:
    return LinkProfile(
        app_header=config.wire.app_header, frame_bytes_max=config.wire.frame_bytes_max
    )


def build_switch(config: Config, *, logger: logging.Logger, metrics: bool = False) -> SwitchShell:
    """The switch's parts; with ``metrics``, a registry its server and shell report into."""
    engine = open_switch_database(config.switch.database, wall_clock_ms())
    settings = config.switch
    policy = SwitchPolicy(
        identity=SwitchIdentity(
            acquirer_id=config.acquirer_id,
            forwarding_id=config.acquirer_id,
            currency=config.currency,
        ),
        advice_backoff_min_ms=settings.advice_backoff_min_ms,
        advice_backoff_max_ms=settings.advice_backoff_max_ms,
        advice_batch_max=settings.advice_batch_max,
    )
    # One home, one zone: the switch shares the issuer's zone PIN key and zone MAC key (None
    # for a key file from before the link MAC: the link then goes unsigned; docs/switch.md).
    keys = load_issuer_keys(config.home)
    core = SwitchCore(keys.zpk, policy, keys.zak)
    counters = Counters(label_names=SWITCH_LABELS)
    for name in SWITCH_COUNTERS:
        counters.inc(name, by=0)
    party_metrics = PartyMetrics("switch", counters) if metrics else None
    return SwitchShell(
        config, engine, core, counters=counters, logger=logger, metrics=party_metrics
    )


def serve_switch(
    config: Config, *, host: str | None, port: int | None, metrics_port: int | None = None
) -> None:
    """Run the switch until SIGTERM/SIGINT; print 'listening on HOST:PORT' when ready.

    ``host``, ``port`` and ``metrics_port`` override ``switch.host``, ``switch.port`` and
    ``switch.metrics_port`` (0: no ``/metrics``).
    """
    configure_host_logging(config)
    logger = logging.getLogger("cardtally.switch")
    started = time.monotonic()
    settings = replace(
        config.switch,
        host=config.switch.host if host is None else host,
        port=config.switch.port if port is None else port,
        metrics_port=config.switch.metrics_port if metrics_port is None else metrics_port,
    )
    config = replace(config, switch=settings)
    shell = build_switch(config, logger=logger, metrics=settings.metrics_port != 0)
    try:
        exporter = start_metrics(
            shell.metrics,
            host=settings.host,
            port=settings.metrics_port,
            party_port=settings.port,
            logger=logger,
        )
    except BaseException:
        shell.dispose()
        raise
    try:
        _serve(shell, settings=settings, started=started, logger=logger)
    finally:
        if exporter is not None:
            exporter.stop()


def _serve(
    shell: SwitchShell, *, settings: SwitchConfig, started: float, logger: logging.Logger
) -> None:
    def ready(bound: int) -> None:
        shell.serving()
        startup_ms = round((time.monotonic() - started) * 1000)
        log_event(logger, "switch.ready", host=settings.host, port=bound, startup_ms=startup_ms)
        print(f"listening on {settings.host}:{bound}\n", end="", flush=True)

    try:
        serve_forever(shell.server, ready=ready, services=[shell])
    finally:
        log_event(logger, "switch.stopped", counters=shell.server.counters.snapshot())
        shell.dispose()
        sys.stdout.flush()
