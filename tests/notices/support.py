"""Notices, sinks and a real loopback webhook receiver for the notice tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cardtally.money import Money
from cardtally.notices import DeliveryError, Notice, NoticeKind

# 2026-11-21 14:32:00 in China Standard Time.
AT_MS = 1_795_242_720_000
# A handler that hangs is released after this, so a test can never wait on it forever.
HANDLER_HOLD_S_MAX = 5


def make_notice(notice_id: str = "N1", /, **changes: object) -> Notice:
    fields: dict[str, object] = {
        "id": notice_id,
        "at_ms": AT_MS,
        "kind": NoticeKind.DEBIT,
        "card_tail": "1234",
        "merchant_name": "LUCKY MART",
        "amount": Money(10_000),
        "available": Money(90_000),
        "reference": "123456789012",
        "reason": "sale",
    }
    fields.update(changes)
    return Notice(**fields)  # type: ignore[arg-type]


class RecordingSink:
    """Keeps what it was given; fails while ``failing`` is set."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.received: list[Notice] = []
        self.failing = False

    def deliver(self, notice: Notice) -> None:
        if self.failing:
            raise DeliveryError(f"{self.name} is down")
        self.received.append(notice)

    @property
    def ids(self) -> list[str]:
        return [notice.id for notice in self.received]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the loopback webhook answers and what it was sent."""

    status: int = 200
    hold: threading.Event | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, object]]:
        with self.lock:
            return [json.loads(r.body) for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if receiver.hold is not None:
                receiver.hold.wait(HANDLER_HOLD_S_MAX)
                return  # the client gave up long ago; answer nothing
            with receiver.lock:
                receiver.requests.append(Received(self.path, dict(self.headers), body))
            self.send_response(receiver.status)
            if 300 <= receiver.status < 400:
                self.send_header("Location", "/moved")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            # Only a client that followed a redirect gets here; answering 200 would
            # make it believe the notice was delivered.
            with receiver.lock:
                receiver.requests.append(Received(self.path, dict(self.headers), b""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def webhook_server(receiver: Receiver, port: int = 0) -> Iterator[int]:
    """A ThreadingHTTPServer on 127.0.0.1 (``port`` 0: any free one); yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(HANDLER_HOLD_S_MAX)
