"""What every host process sets up the same way: its log output and its metrics endpoint."""

from __future__ import annotations

import logging

from cardtally.config import Config, ConfigError
from cardtally.runtime._logging import configure_logging
from cardtally.runtime._metrics import MetricsServer, PartyMetrics


def configure_host_logging(config: Config) -> None:
    """stderr in the home's ``[log]`` format and level, Python warnings included, so that a
    log shipper reading the stream gets nothing but log lines."""
    configure_logging(level=config.log.level, log_format=config.log.format)
    logging.captureWarnings(True)
    # Alembic announces every migration context at INFO; at start-up that is noise.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def start_metrics(
    metrics: PartyMetrics | None,
    *,
    host: str,
    port: int,
    party_port: int,
    logger: logging.Logger,
) -> MetricsServer | None:
    """Serve ``metrics`` on ``host:port`` (None when the port is 0: no endpoint).

    A port that cannot be bound is a :class:`ConfigError` naming ``<party>.metrics_port``:
    one line at start, before the party listens, rather than a traceback or a host that runs
    without the metrics its operator asked for.
    """
    if metrics is None or port == 0:
        return None
    key = f"{metrics.party}.metrics_port"
    if port == party_port:
        raise ConfigError(key, f"port {port} is the {metrics.party}'s own port; choose another")
    server = MetricsServer(metrics.registry, host=host, port=port, logger=logger)
    try:
        server.start()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(key, f"cannot serve metrics on {host}:{port}: {reason}") from None
    return server
