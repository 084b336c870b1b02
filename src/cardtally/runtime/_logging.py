"""One structured line per event: ``event=name key=value ...``.

Lines are meant for grep and for log shippers alike, so keys are sorted (the same event
always reads the same way) and a value is quoted only when it would otherwise break the
line apart. Callers log lengths, peers and counts, never message bodies: those carry card
numbers.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_installed: logging.Handler | None = None


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not text or any(c.isspace() or c in '"=\\' or not c.isprintable() for c in text):
        # JSON string syntax escapes quotes, backslashes and line breaks: one line, reversible.
        return json.dumps(text, ensure_ascii=False)
    return text


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: object
) -> None:
    """Write ``event=<event>`` and the fields, sorted by key, as one line at ``level``.

    ``log_event(logger, "connection.closed", reason="idle timeout", peer="127.0.0.1:5000")``
    writes::

        event=connection.closed peer=127.0.0.1:5000 reason="idle timeout"
    """
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={_text(event)}"]
    for key in sorted(fields):
        if not _KEY.match(key):
            raise ValueError(f"log field {key!r} must match [a-z_][a-z0-9_]*")
        parts.append(f"{key}={_text(fields[key])}")
    logger.log(level, "%s", " ".join(parts), stacklevel=2)


class _IsoFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(stream: TextIO | None = None, level: str | int = "INFO") -> None:
    """Send every log record to ``stream`` (default: the current ``sys.stderr``).

    Lines read ``2025-01-31T10:00:00.123Z INFO cardtally.runtime.issuer event=...`` (UTC).
    Calling it again replaces the handler it installed before rather than adding a second.
    """
    global _installed  # noqa: PLW0603 - one handler per process, replaced on reconfiguration
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_IsoFormatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    _installed = handler
