"""One structured line per event, as ``event=name key=value ...`` text or as a JSON object.

Lines are meant for grep and for log shippers alike, so keys are sorted (the same event
always reads the same way). In text, a value is quoted only when it would otherwise break
the line apart; in JSON (the hosts' default, ``[log] format``), each line is one object with
``ts``, ``level``, ``logger`` and ``event`` first, then the fields with their JSON types.

Callers log lengths, peers, counts and ids, never message bodies: those carry card numbers.
Both formats also mask any 13-19 digit run that passes the Luhn check (first 6 and last 4
kept), as a safety net behind that rule, not as a licence to log card data.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, TextIO

from cardtally.config import LOG_FORMATS
from cardtally.wire import luhn_ok, mask_pan

_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: A run of digits as long as a card number, not part of a longer run.
_PAN_LIKE = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
#: ``event=x k=v k="quoted v"``: a line written by %-formatting in the text style.
_TOKEN = re.compile(r'([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)(?: |\Z)')
_DOTTED_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+\Z")
#: JSON keys a field may not take over.
_RESERVED: Final = frozenset({"ts", "level", "logger", "event", "message", "exc", "stack"})
#: The smallest number with as many digits as the shortest card number (13).
_CARD_SIZED: Final = 10**12
_installed: logging.Handler | None = None


def mask_card_numbers(text: str) -> str:
    """``text`` with every Luhn-valid 13-19 digit run masked as :class:`~cardtally.wire.Pan`
    masks it; other digits (RRNs, STANs, amounts, ids) stay as they are.

    >>> mask_card_numbers("card=6225880000000019 rrn=000000000042")
    'card=622588******0019 rrn=000000000042'
    """
    return _PAN_LIKE.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    digits = match.group(0)
    return mask_pan(digits) if luhn_ok(digits) else digits


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(_plain(value), sort_keys=True) if isinstance(value, Mapping) else str(value)
    if not text or any(c.isspace() or c in '"=\\' or not c.isprintable() for c in text):
        # JSON string syntax escapes quotes, backslashes and line breaks: one line, reversible.
        return json.dumps(text, ensure_ascii=False)
    return text


class _EventLine:
    """A record's message for :func:`log_event`: text when read as a string (handlers that
    know nothing of JSON, pytest's caplog), the event and fields for the JSON formatter."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        parts = [f"event={_text(self.event)}"]
        parts.extend(f"{key}={_text(self.fields[key])}" for key in sorted(self.fields))
        return " ".join(parts)


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
    for key in fields:
        if not _KEY.match(key):
            raise ValueError(f"log field {key!r} must match [a-z_][a-z0-9_]*")
    logger.log(level, _EventLine(event, fields), stacklevel=2)


def _iso_utc(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso_utc(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return mask_card_numbers(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``event``, then the fields.

    A record from :func:`log_event` keeps its fields' types. A record written the older way,
    ``"event=name k=v ..."`` by %-formatting, is read back into fields (values as strings);
    anything else becomes ``event="log"`` with its text as ``message``.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        line.update(_event_and_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(
            {key: _masked(value) for key, value in line.items()},
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )


def _event_and_fields(record: logging.LogRecord) -> dict[str, object]:
    if isinstance(record.msg, _EventLine) and not record.args:
        return _with_event(record.msg.event, record.msg.fields)
    message = record.getMessage()
    parsed = _parse_event_text(message)
    if parsed is not None:
        return parsed
    return {"event": "log", "message": message}


def _with_event(event: str, fields: Mapping[str, object]) -> dict[str, object]:
    line: dict[str, object] = {"event": event}
    for key in sorted(fields):
        line[f"field_{key}" if key in _RESERVED else key] = _plain(fields[key])
    return line


def _parse_event_text(message: str) -> dict[str, object] | None:
    """``event=a.b k=v`` (or ``a.b k=v``) as an event and string fields; None otherwise."""
    head, _, rest = message.partition(" ")
    name = head.removeprefix("event=")
    if not _DOTTED_NAME.match(name) and not (head.startswith("event=") and _KEY.match(name)):
        return None
    fields: dict[str, object] = {}
    position = 0
    while position < len(rest):
        token = _TOKEN.match(rest, position)
        if token is None:
            return None
        fields[token.group(1)] = _unquoted(token.group(2))
        position = token.end()
    return _with_event(name, fields)


def _unquoted(value: str) -> str:
    if value.startswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:  # a stray quote, not the text format's quoting
            return value
    return value


def _plain(value: object) -> object:
    """A field value as JSON carries it: numbers, booleans, null and mappings (counters) as
    such, the rest as text (``str`` of a :class:`~cardtally.wire.Pan` is its mask)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def _masked(value: object) -> object:
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and value >= _CARD_SIZED:
        masked = mask_card_numbers(str(value))
        return value if masked == str(value) else masked
    return value


def configure_logging(
    stream: TextIO | None = None, level: str | int = "INFO", *, log_format: str = "text"
) -> None:
    """Send every log record to ``stream`` (default: the current ``sys.stderr``).

    ``log_format="text"`` lines read ``2025-01-31T10:00:00.123Z INFO cardtally.runtime.issuer
    event=...`` (UTC); ``"json"`` lines read ``{"ts":"2025-01-31T10:00:00.123Z","level":"INFO",
    "logger":"cardtally.runtime.issuer","event":...}``. Calling it again replaces the handler
    it installed before rather than adding a second.
    """
    global _installed  # noqa: PLW0603 - one handler per process, replaced on reconfiguration
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else _TextFormatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    _installed = handler
