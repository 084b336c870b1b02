"""Where notices go: the console, a JSON-lines file, an HTTP webhook.

A sink either takes a notice or raises :class:`DeliveryError`; it never decides
whether to retry. The dispatcher does, and records each delivery afterwards, so a
sink may see a notice twice and its receivers deduplicate by ``id``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path
from typing import Final, Protocol, TextIO, runtime_checkable
from urllib.error import HTTPError, URLError
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from cardtally.durable import fsync_directory
from cardtally.notices._errors import DeliveryError, NoticeError
from cardtally.notices._notice import Notice

WEBHOOK_TIMEOUT_MS_DEFAULT: Final = 3_000
WEBHOOK_TIMEOUT_MS_MAX: Final = 60_000
# Only the status matters; a receiver that answers with a novel is not read to the end.
WEBHOOK_RESPONSE_BYTES_MAX: Final = 64 * 1024
REASON_CHARS_MAX: Final = 200
SINK_NAMES: Final = ("console", "jsonl", "webhook")


@runtime_checkable
class NoticeSink(Protocol):
    """Something that takes notices: ``deliver`` returns once it has, or raises."""

    @property
    def name(self) -> str:
        """The key under which deliveries to this sink are recorded; keep it stable."""
        ...

    def deliver(self, notice: Notice) -> None:
        """Hand ``notice`` over for good, or raise :class:`DeliveryError`."""
        ...


@runtime_checkable
class BatchNoticeSink(NoticeSink, Protocol):
    """A sink that takes a batch in one go: one write and one sync instead of one per notice.

    ``deliver_many`` returns once the sink has every notice of the batch, or raises
    :class:`DeliveryError`; after a failure none of them counts as delivered and the
    whole batch comes again (receivers deduplicate by id).
    """

    def deliver_many(self, notices: Sequence[Notice]) -> None:
        """Hand every notice in ``notices`` over for good, in order, or raise."""
        ...


def notice_document(notice: Notice) -> dict[str, object]:
    """What sinks write: the notice's fields and the text the cardholder reads."""
    return {**notice.to_json(), "text": notice.text}


class ConsoleSink:
    """Writes ``notice <id> <text>`` lines, for a demo or an operator watching."""

    name: Final = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        # None means sys.stdout as it is at delivery time, so redirection still works.
        self._stream = stream

    def deliver(self, notice: Notice) -> None:
        self.deliver_many((notice,))

    def deliver_many(self, notices: Sequence[Notice]) -> None:
        if not notices:
            return
        stream = self._stream if self._stream is not None else sys.stdout
        # One write: lines of one batch stay together even if others print meanwhile.
        text = "".join(f"notice {notice.id} {notice.text}\n" for notice in notices)
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            raise DeliveryError(f"console: cannot write: {_bounded(str(exc))}") from None


class JsonLinesSink:
    """Appends one JSON object per notice to a file, synced before it counts as delivered."""

    name: Final = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def deliver(self, notice: Notice) -> None:
        self.deliver_many((notice,))

    def deliver_many(self, notices: Sequence[Notice]) -> None:
        if not notices:
            return
        # One append and one fsync for the batch: the sync, not the write, is the cost.
        lines = "".join(
            json.dumps(
                notice_document(notice), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            + "\n"
            for notice in notices
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create directory {self.path.parent}: {exc.strerror or exc}"
            raise DeliveryError(f"jsonl {self.path}: {_bounded(reason)}") from None
        try:
            self._append(lines.encode("utf-8"))
        except OSError as exc:
            reason = f"cannot append: {exc.strerror or exc}"
            raise DeliveryError(f"jsonl {self.path}: {_bounded(reason)}") from None

    def _append(self, data: bytes) -> None:
        # 0600: the lines carry balances and merchants, which are the cardholder's business.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end > 0:
                os.lseek(fd, end - 1, os.SEEK_SET)
                # A crash mid-write leaves a torn last line; start ours on a fresh one.
                if os.read(fd, 1) != b"\n":
                    data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if end == 0:
            fsync_directory(self.path.parent)


class WebhookSink:
    """POSTs each notice as JSON; any 2xx answer means delivered.

    The notice id goes in an ``Idempotency-Key`` header as well as in the body, so a
    receiver can drop repeats before parsing. Redirects are not followed: a POST
    turned into a GET elsewhere would be counted as delivered without being so.
    Credentials in the URL (``https://user:pass@host/...``) are sent as HTTP Basic
    authentication and, like the query string, never appear in error messages.
    """

    name: Final = "webhook"

    def __init__(self, url: str, timeout_ms: int = WEBHOOK_TIMEOUT_MS_DEFAULT) -> None:
        if isinstance(timeout_ms, bool) or not 0 < timeout_ms <= WEBHOOK_TIMEOUT_MS_MAX:
            raise NoticeError(f"webhook timeout_ms must be in 1..{WEBHOOK_TIMEOUT_MS_MAX}")
        self._timeout_ms = timeout_ms
        parts = urlsplit(url)
        # Both spellings of the password: the URL's and the decoded one we send.
        self._secrets = [
            s for s in (parts.password, unquote(parts.password or ""), parts.query) if s
        ]
        #: The URL without credentials or query, for messages and logs.
        self.url = f"{parts.scheme}://{_netloc(parts)}{parts.path}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NoticeError(f"webhook URL must be http:// or https:// with a host: {self.url}")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError:
            raise NoticeError(f"webhook URL has an invalid port: {self.url}") from None
        self._target = urlunsplit(
            (parts.scheme, _netloc(parts), parts.path or "/", parts.query, "")
        )
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "cardtally-notices",
        }
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._opener = urllib.request.build_opener(_RefuseRedirects())

    def deliver(self, notice: Notice) -> None:
        body = json.dumps(notice_document(notice), sort_keys=True, ensure_ascii=False).encode()
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self._target,
            data=body,
            headers={**self._headers, "Idempotency-Key": notice.id},
            method="POST",
        )
        # The timeout bounds the connect and each read, not the whole exchange.
        timeout_s = self._timeout_ms / 1000
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                status = response.status
                response.read(WEBHOOK_RESPONSE_BYTES_MAX)
        except HTTPError as exc:
            exc.close()
            raise self._failure(f"answered HTTP {exc.code}") from None
        except URLError as exc:  # before any answer: refused, no route, name unknown
            raise self._failure(self._network_reason("unreachable", exc.reason)) from None
        except (OSError, HTTPException) as exc:  # the connection broke during the exchange
            raise self._failure(self._network_reason("failed", exc)) from None
        if not 200 <= status < 300:
            raise self._failure(f"answered HTTP {status}")

    def _failure(self, reason: str) -> DeliveryError:
        return DeliveryError(f"webhook {self.url} {self._scrub(reason)}")

    def _network_reason(self, what: str, reason: object) -> str:
        if isinstance(reason, TimeoutError):
            return f"timed out after {self._timeout_ms} ms"
        return f"{what}: {str(reason) or type(reason).__name__}"

    def _scrub(self, reason: str) -> str:
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return _bounded(reason)


def build_sinks(
    names: Sequence[str],
    *,
    jsonl_path: Path | None,
    webhook_url: str | None,
    webhook_timeout_ms: int = WEBHOOK_TIMEOUT_MS_DEFAULT,
) -> list[NoticeSink]:
    """The sinks named in ``names``, in that order, from their settings.

    Unknown or repeated names and a sink without its setting are refused with
    :class:`NoticeError` at start-up, rather than by a notice that never arrives.
    """
    if isinstance(names, str):
        raise NoticeError(f"sink names must be a list, not the string {names!r}")
    sinks: list[NoticeSink] = []
    for name in names:
        if name in (sink.name for sink in sinks):
            raise NoticeError(f"notice sink {name!r} is listed twice")
        if name == "console":
            sinks.append(ConsoleSink())
        elif name == "jsonl":
            if jsonl_path is None:
                raise NoticeError("notice sink 'jsonl' needs a file path (jsonl_path)")
            sinks.append(JsonLinesSink(jsonl_path))
        elif name == "webhook":
            if not webhook_url:
                raise NoticeError("notice sink 'webhook' needs a URL (webhook_url)")
            sinks.append(WebhookSink(webhook_url, timeout_ms=webhook_timeout_ms))
        else:
            raise NoticeError(f"unknown notice sink {name!r} (known: {', '.join(SINK_NAMES)})")
    return sinks


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        # None makes urllib raise HTTPError with the 3xx status, which we report.
        return None


def _netloc(parts: SplitResult) -> str:
    # Host and port only: the user and password stay out of the URL (see WebhookSink).
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return host if port is None else f"{host}:{port}"


def _bounded(reason: str) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= REASON_CHARS_MAX else line[: REASON_CHARS_MAX - 3] + "..."
