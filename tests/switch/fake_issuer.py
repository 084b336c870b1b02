"""A scripted fake issuer for the switch's TCP tests: it answers as told, or misbehaves as told.

An asyncio TCP server on 127.0.0.1 (a free port, kept for the fake's life, so a switch that
lost the link reconnects to the same place), run on its own thread. It speaks the wire
profile's framing (2-byte length, TPDU, no application header), decodes every request,
records it, and answers per its script, keyed by the kind of request:

=============  ==============================================================================
``approve``    answer 00 with an auth code
``decline``    answer 51 (insufficient funds)
``silent``     never answer
``late``       answer 00 after ``late_s`` (longer than the switch's link timeout)
``slow``       answer 00 after ``slow_s``
``twice``      answer 00 twice
``drop``       close the connection without answering
``garbage``    answer with a frame whose message cannot be decoded
``noise``      answer with bytes that are not a frame at all
``ack``        (advices) answer 0430 00
``unsigned``   answer 00 without a MAC (only wrong when the fake has the zone MAC key)
``forged``     answer 00 with a MAC under a key that is not the zone MAC key
=============  ==============================================================================

Given the home's zone MAC key (``zak``), the fake signs its answers with it (X9.19), as the
real issuer does, and records whether each request's MAC verified (:attr:`Received.mac_ok`).

Every script but ``decline`` debits the card when the request arrives, as a real issuer does
before its answer is delayed or lost: that is the worst case the switch has to put right.
The fake's *ledger* is the set of sales it debited, keyed by the switch's trace number and
transmission time (11 + 7), minus those whose reversal advice it acknowledged with 00:
exactly what a real issuer would still hold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Self

from cardtally.runtime._frames import split_frame
from cardtally.security import MacAlgorithm, message_mac_ok, sign_message
from cardtally.wire import (
    DecodeError,
    FrameDecoder,
    LinkProfile,
    Message,
    Tpdu,
    decode_message,
    encode_frame,
    encode_message,
    original_of,
)

HOST: Final = "127.0.0.1"
Action = Literal[
    "approve",
    "decline",
    "silent",
    "late",
    "slow",
    "twice",
    "drop",
    "garbage",
    "noise",
    "ack",
    "unsigned",
    "forged",
]
Kind = Literal["sale", "balance", "void", "advice", "echo", "other"]
#: Fields an answer echoes besides Message.response's: how the switch matches it (11 + 7).
_LINK_ECHO: Final = (7, 32, 33, 37, 90)
_DEBITS: Final = frozenset(
    {"approve", "silent", "late", "slow", "twice", "drop", "garbage", "noise", "unsigned", "forged"}
)
#: Not the zone MAC key of any home (init draws keys at random): what ``forged`` signs with.
_FORGER_KEY: Final = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
_NOT_A_FRAME: Final = b"\xff\xffTHIS IS NOT A FRAME\r\n"
_POLL_S: Final = 0.01


def kind_of(message: Message) -> Kind:
    mti = original_of(message.mti)
    if mti == "0420":
        return "advice"
    if mti == "0800":
        return "echo"
    if mti == "0200":
        code = (message.processing_code or "")[:2]
        return {"00": "sale", "31": "balance", "20": "void"}.get(code, "other")  # type: ignore[return-value]
    return "other"


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the fake got it, with what it did about it."""

    message: Message
    kind: Kind
    action: Action
    at: float  # time.monotonic()
    #: Whether the request's MAC verified under the zone MAC key; None when the fake has none.
    mac_ok: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The switch's key for the request (and for its advices): 11 + 7."""
        return self.message.get(11) or "", self.message.get(7) or ""


class FakeIssuer:
    """Use as a context manager; change the script at any time with :meth:`on`."""

    def __init__(
        self,
        script: dict[Kind, Action] | None = None,
        *,
        late_s: float = 4.0,
        slow_s: float = 1.0,
        zak: bytes | None = None,
    ) -> None:
        self._script: dict[Kind, Action] = {
            "sale": "approve",
            "balance": "approve",
            "void": "approve",
            "advice": "ack",
            "echo": "approve",
            "other": "decline",
        }
        self._script.update(script or {})
        self.late_s = late_s
        self.slow_s = slow_s
        self.zak = zak
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._debited: dict[tuple[str, str], Message] = {}
        self._reversed: set[tuple[str, str]] = set()
        self._answers_sent: dict[Kind, int] = {}
        self._connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.port = 0

    # -- the test's side ---------------------------------------------------------------------

    def on(self, kind: Kind, action: Action) -> None:
        """From now on, answer requests of ``kind`` with ``action``."""
        with self._lock:
            self._script[kind] = action

    def received(self, kind: Kind | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if kind is None or r.kind == kind]

    def ledger(self) -> dict[tuple[str, str], Message]:
        """Sales still debited: approved (or taken) and not reversed by an acknowledged advice."""
        with self._lock:
            return {k: m for k, m in self._debited.items() if k not in self._reversed}

    def held_rrns(self) -> set[str]:
        """The switch RRNs (field 37 as forwarded) of the sales still debited."""
        return {m.get(37) or "" for m in self.ledger().values()}

    def answers_sent(self, kind: Kind) -> int:
        """Answers written so far to requests of ``kind`` (late ones once they went)."""
        with self._lock:
            return self._answers_sent.get(kind, 0)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout_s: float, what: str
    ) -> list[Received]:
        """Wait (bounded) until ``predicate(received)`` holds; AssertionError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.received()
            if predicate(seen):
                return seen
            if time.monotonic() >= deadline:
                raise AssertionError(f"fake issuer: {what} not seen within {timeout_s} s: {seen}")
            time.sleep(_POLL_S)

    def wait_connected(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.connections < count:
            if time.monotonic() >= deadline:
                raise AssertionError(f"fake issuer: {count} connections not seen in {timeout_s} s")
            time.sleep(_POLL_S)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="fake-issuer", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("fake issuer did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "fake issuer did not stop"
        if self._failure is not None and exc is None:
            raise AssertionError("fake issuer failed") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    # -- serving -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
        self._writers.add(writer)
        decoder = FrameDecoder()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for body in decoder.feed(data):
                    frame = split_frame(body, LinkProfile())
                    if not self._answer(frame.tpdu.reply(), frame.message, writer):
                        return
        except (ConnectionError, DecodeError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _answer(self, tpdu: Tpdu, raw: bytes, writer: asyncio.StreamWriter) -> bool:
        """Record and act on one request; False when the connection is to be dropped."""
        message = decode_message(raw)  # the switch sends nothing undecodable
        kind = kind_of(message)
        mac_ok = None
        if self.zak is not None:
            mac_ok = message_mac_ok(raw, message, MacAlgorithm.X9_19, self.zak)
        with self._lock:
            action = self._script[kind]
            received = Received(message, kind, action, time.monotonic(), mac_ok)
            self._received.append(received)
            if kind == "sale" and action in _DEBITS:
                self._debited.setdefault(received.key, message)
            if kind == "advice" and action == "ack":
                self._reversed.add(received.key)
        assert self._loop is not None
        if action == "drop":
            return False
        if action == "silent":
            return True
        if action == "noise":
            writer.write(_NOT_A_FRAME)
            return True
        if action == "garbage":
            writer.write(encode_frame(tpdu, bytes.fromhex("0210") + b"\xff\xfe garbage"))
            return True
        frame = encode_frame(tpdu, self._encode(_response(message, action), action))
        if action == "late":
            self._loop.call_later(self.late_s, self._write, writer, frame, kind)
        elif action == "slow":
            self._loop.call_later(self.slow_s, self._write, writer, frame, kind)
        elif action == "twice":
            self._write(writer, frame, kind)
            self._write(writer, frame, kind)
        else:
            self._write(writer, frame, kind)
        return True

    def _encode(self, response: Message, action: Action) -> bytes:
        """The answer as sent: signed under the zone MAC key, unless told otherwise."""
        if action == "forged":
            return sign_message(response, MacAlgorithm.X9_19, _FORGER_KEY)
        if self.zak is None or action == "unsigned":
            return encode_message(response)
        return sign_message(response, MacAlgorithm.X9_19, self.zak)

    def _write(self, writer: asyncio.StreamWriter, frame: bytes, kind: Kind) -> None:
        if writer.transport.is_closing():
            return
        writer.write(frame)
        with self._lock:
            self._answers_sent[kind] = self._answers_sent.get(kind, 0) + 1


def _response(request: Message, action: Action) -> Message:
    code = "51" if action == "decline" else "00"
    extra = {n: v for n, v in request.fields.items() if n in _LINK_ECHO}
    if code == "00" and kind_of(request) in ("sale", "void"):
        extra[38] = f"{int(request.fields[11]) % 1_000_000:06d}"
    if code == "00" and kind_of(request) == "balance":
        extra[54] = "1002156C000000050000"
    return request.response(code, extra)
