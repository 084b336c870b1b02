"""Prometheus metrics of one host process, served on their own port at ``/metrics``.

Every process builds its own :class:`~prometheus_client.CollectorRegistry` (never the
global one), so tests and tools can run several parties in one interpreter. What is
counted on the hot path (transactions, latency) is counted as it happens, on the event
loop, in O(1). What needs the database (the switch's advice queue) is read on a timer
by the party and only *reported* here: a scrape never waits for the commit lane.

The HTTP server is the standard library's, one daemon thread per scrape: a scrape costs
the event loop nothing but the GIL it takes to render the text.
"""

from __future__ import annotations

import io
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from cardtally.runtime._counters import Counters
from cardtally.runtime._logging import log_event

#: Arrival to answer written: 1 ms (a repeat answered from the log) to 5 s (an issuer
#: timeout). Above the top bucket only +Inf counts it.
LATENCY_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
METRICS_PATH: Final = "/metrics"
_STOP_TIMEOUT_S: Final = 5.0

#: Builds gauges at scrape time from what the process already holds in memory.
GaugeSource = Callable[[], Iterable[Metric]]


class PartyMetrics:
    """One party's registry: transactions by type and code, latency by type, its counters.

    ``party`` (``issuer`` or ``switch``) prefixes every name: ``cardtally_switch_...``.
    """

    def __init__(self, party: str, counters: Counters) -> None:
        self.party = party
        self.registry = CollectorRegistry()
        prefix = f"cardtally_{party}"
        self._transactions = Counter(
            f"{prefix}_transactions",
            "Requests answered, by request type and response code (field 39; none: no answer)",
            ["type", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{prefix}_latency_seconds",
            "Seconds from a request's arrival to its answer being written, by request type",
            ["type"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_CountersCollector(prefix, counters))

    def observe(self, txn_type: str, code: str, seconds: float) -> None:
        """One answered request (a :data:`~cardtally.runtime._server.TxnObserver`)."""
        self._transactions.labels(txn_type, code).inc()
        self._latency.labels(txn_type).observe(seconds)

    def add_gauges(self, source: GaugeSource) -> None:
        """Report ``source()``'s metrics at every scrape; it must not block (no I/O)."""
        self.registry.register(_GaugeCollector(source))


class _CountersCollector(Collector):
    """The process's :class:`Counters`, each as ``<prefix>_<name>_total`` with its label."""

    def __init__(self, prefix: str, counters: Counters) -> None:
        self._prefix = prefix
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[tuple[str | None, int]]] = {}
        for name, _, label, value in self._counters.samples():
            by_name.setdefault(name, []).append((label, value))
        for name, samples in by_name.items():
            labelled = any(label is not None for label, _ in samples)
            family = CounterMetricFamily(
                f"{self._prefix}_{name}",
                f"runtime counter {name}",
                labels=[self._counters.label_name(name)] if labelled else [],
            )
            for label, value in samples:
                # An empty label value is no label at all to Prometheus: the plain count.
                family.add_metric([label or ""] if labelled else [], value)
            yield family


class _GaugeCollector(Collector):
    def __init__(self, source: GaugeSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """One daemon thread per scrape; errors go to the log, not to stderr as tracebacks."""

    daemon_threads = True
    block_on_close = False
    logger: logging.Logger = logging.getLogger("cardtally.runtime.metrics")

    def handle_error(self, request: Any, client_address: Any) -> None:
        log_event(self.logger, "metrics.request_failed", level=logging.WARNING)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape; an application error is one log event."""

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def get_stderr(self) -> io.TextIOBase:
        server = self.server
        logger = server.logger if isinstance(server, _Server) else _Server.logger
        return _LogStream(logger)


class _LogStream(io.TextIOBase):
    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def write(self, text: str) -> int:
        if text.strip():
            log_event(self._logger, "metrics.app_error", level=logging.ERROR)
        return len(text)


class MetricsServer:
    """``GET /metrics`` for ``registry`` on ``host:port``, served from daemon threads."""

    def __init__(
        self, registry: CollectorRegistry, *, host: str, port: int, logger: logging.Logger
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._logger = logger
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() first"
        return int(self._httpd.server_address[1])

    def start(self) -> int:
        """Bind and serve; the bound port. Raises ``OSError`` when the port cannot be bound."""
        httpd = make_server(
            self._host,
            self._port,
            make_wsgi_app(self._registry),
            server_class=_Server6 if ":" in self._host else _Server,
            handler_class=_QuietHandler,
        )
        httpd.logger = self._logger
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log_event(
            self._logger,
            "metrics.listening",
            host=self._host,
            port=self.port,
            path=METRICS_PATH,
        )
        return self.port

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
        self._httpd = None
