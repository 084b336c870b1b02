"""The issuer process, wired in one place: config, keys, database, core, server, notices.

The host answers on the runtime's :class:`FrameServer` (group commit), while a
notice thread delivers the outbox to the configured sinks. Notice delivery is
kept off the commit lane: a slow webhook must never hold up authorisations.
With ``issuer.metrics_port`` set, ``GET /metrics`` on that port reports the
transactions, their latency, the counters and the notices still undelivered.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from cardtally.config import Config
from cardtally.issuer import IssuerCore, IssuerPolicy, IssuerService, open_issuer_database
from cardtally.issuer._core import DAY_MS
from cardtally.notices import NoticeDispatcher, build_sinks
from cardtally.runtime._clock import wall_clock_ms
from cardtally.runtime._counters import Counters
from cardtally.runtime._host import configure_host_logging, start_metrics
from cardtally.runtime._limits import ServerLimits
from cardtally.runtime._logging import log_event
from cardtally.runtime._metrics import PartyMetrics
from cardtally.runtime._serve import serve_forever
from cardtally.runtime._server import FrameServer
from cardtally.security import load_data_keys, load_issuer_keys
from cardtally.wire import LinkProfile

NOTICE_INTERVAL_MS: Final = 500
NOTICE_ROUND_GAP_MS: Final = 50
NOTICE_STOP_TIMEOUT_S: Final = 10.0

#: Counters the issuer declares at start, so a scrape shows them at zero.
ISSUER_COUNTERS: Final = ("approved", "declined", "duplicates", "refused", "reversals", "malformed")
#: What the issuer's labelled counters are split by (the request kind, or field 39).
ISSUER_LABELS: Final = {
    "approved": "kind",
    "declined": "code",
    "refused": "code",
    "reversals": "code",
    "echo": "code",
    "failed": "code",
}


@dataclass
class NoticeStatus:
    """Undelivered notices per sink after the last delivery round (the notice thread writes,
    a metrics scrape reads: one reference swapped whole, so no lock is needed)."""

    pending: Mapping[str, int] = field(default_factory=dict)

    def gauges(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cardtally_issuer_notices_pending",
            "Cardholder notices not yet delivered, per sink, after the last delivery round",
            labels=["sink"],
        )
        for sink, count in sorted(self.pending.items()):
            family.add_metric([sink], count)
        yield family


@dataclass(frozen=True, slots=True)
class IssuerProcess:
    """Everything one issuer process runs, built but not yet started."""

    engine: Engine
    server: FrameServer
    dispatcher: NoticeDispatcher
    counters: Counters
    notices_written: threading.Event
    metrics: PartyMetrics | None = None
    notice_status: NoticeStatus = field(default_factory=NoticeStatus)


def build_issuer(
    config: Config, *, host: str, port: int, logger: logging.Logger, metrics: bool = False
) -> IssuerProcess:
    """The issuer's parts; with ``metrics``, a registry its server reports into."""
    settings = config.issuer
    engine = open_issuer_database(settings.database, wall_clock_ms())
    core = IssuerCore(
        load_issuer_keys(config.home),
        load_data_keys(config.home),
        IssuerPolicy(pin_tries_max=settings.pin_tries_max, hold_ms=settings.hold_days * DAY_MS),
    )
    counters = Counters(label_names=ISSUER_LABELS)
    for name in ISSUER_COUNTERS:
        counters.inc(name, by=0)
    sinks = build_sinks(
        settings.notice_sinks,
        jsonl_path=settings.notice_jsonl,
        webhook_url=settings.notice_webhook or None,
    )
    notices_written = threading.Event()
    party_metrics = PartyMetrics("issuer", counters) if metrics else None
    service = IssuerService(
        engine, core, counters=counters, logger=logger, notices_written=notices_written.set
    )
    server = FrameServer(
        service,
        host=host,
        port=port,
        link=LinkProfile(
            app_header=config.wire.app_header, frame_bytes_max=config.wire.frame_bytes_max
        ),
        limits=ServerLimits(
            connections_max=settings.connections_max,
            in_flight_per_connection_max=settings.in_flight_max,
            batch_size_max=settings.batch_max,
        ),
        name="issuer",
        logger=logger,
        counters=counters,
        observer=None if party_metrics is None else party_metrics.observe,
    )
    dispatcher = NoticeDispatcher(engine, sinks, logger=logger)
    process = IssuerProcess(engine, server, dispatcher, counters, notices_written, party_metrics)
    if party_metrics is not None:
        party_metrics.add_gauges(process.notice_status.gauges)
    return process


def _deliver_notices(process: IssuerProcess, stop: threading.Event) -> None:
    # At least once: every round reads what is still undelivered, so a notice
    # whose delivery failed or was cut short is simply tried again.
    # A stop seen before a round still gets that full round, so notices committed
    # by the last batches before shutdown leave now rather than at the next start.
    while True:
        stopping = stop.is_set()
        started = time.monotonic()
        _delivery_round(process)
        if stopping:
            return
        process.notices_written.wait(NOTICE_INTERVAL_MS / 1000)
        # Under load every commit wakes this thread. Rounds at most every gap let each carry
        # a batch (one read, one write, one sync per sink) instead of taking the database's
        # write lock from the worker lane after every commit; a notice waits that much longer.
        stop.wait(max(0.0, started + NOTICE_ROUND_GAP_MS / 1000 - time.monotonic()))
        process.notices_written.clear()


def _delivery_round(process: IssuerProcess) -> None:
    try:
        report = process.dispatcher.deliver_once(wall_clock_ms())
    except Exception as exc:
        # The database is busy or gone: the notices wait in the outbox for the next round.
        log_event(
            process.server.logger,
            "notices.round_failed",
            level=logging.ERROR,
            error=type(exc).__name__,
        )
        return
    process.notice_status.pending = dict(report.pending)


def serve_issuer(config: Config, *, host: str, port: int, metrics_port: int | None = None) -> None:
    """Run the issuer host until SIGTERM/SIGINT; print 'listening on HOST:PORT' when ready.

    ``metrics_port`` (default: ``issuer.metrics_port``; 0: none) serves ``/metrics`` on
    ``host``.
    """
    configure_host_logging(config)
    logger = logging.getLogger("cardtally.issuer")
    started = time.monotonic()
    metrics_port = config.issuer.metrics_port if metrics_port is None else metrics_port
    process = build_issuer(config, host=host, port=port, logger=logger, metrics=metrics_port != 0)
    try:
        exporter = start_metrics(
            process.metrics, host=host, port=metrics_port, party_port=port, logger=logger
        )
    except BaseException:
        process.engine.dispose()
        raise
    try:
        _serve(process, started=started, host=host, logger=logger)
    finally:
        if exporter is not None:
            exporter.stop()


def _serve(process: IssuerProcess, *, started: float, host: str, logger: logging.Logger) -> None:
    stop = threading.Event()
    notices = threading.Thread(
        target=_deliver_notices, args=(process, stop), name="notices", daemon=True
    )
    notices.start()

    def ready(bound: int) -> None:
        startup_ms = round((time.monotonic() - started) * 1000)
        log_event(logger, "issuer.ready", host=host, port=bound, startup_ms=startup_ms)
        # One write (print writes the newline apart): a console notice must not split the line.
        print(f"listening on {host}:{bound}\n", end="", flush=True)

    try:
        serve_forever(process.server, ready=ready)
    finally:
        stop.set()
        process.notices_written.set()
        notices.join(NOTICE_STOP_TIMEOUT_S)
        log_event(logger, "issuer.stopped", counters=process.counters.snapshot())
        process.engine.dispose()
        sys.stdout.flush()
