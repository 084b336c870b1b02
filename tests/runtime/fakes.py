"""Fake parties and helpers for the runtime tests: no database, just the handler contract."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from cardtally.runtime import FrameServer, Reply, Request, ServerLimits
from cardtally.wire import LinkProfile, Tpdu

T = TypeVar("T")

LINK = LinkProfile()
TPDU = Tpdu(0x0001, 0x0002)
HOST = "127.0.0.1"
# Bounds on every wait in these tests: generous against a loaded CI box, short against a hang.
WAIT_S = 5.0
REPLY_TIMEOUT_MS = 5000
SCENARIO_TIMEOUT_S = 20.0
# A negative check ("nothing arrives") needs some window; this one is short.
QUIET_MS = 200
# Tests stop servers with a short drain budget so a failing test does not stall the run.
TEST_LIMITS = ServerLimits(drain_timeout_ms=2000, tick_interval_ms=60_000)

# A card number that must never reach a log line.
CARD = "6225880123456789"


class FakeParty:
    """Echoes each body as ``echo:<body>``; records what it saw; can be held or made to fail.

    Bodies with a meaning: ``silent`` gets no reply, ``close`` gets ``bye`` and a close,
    ``huge`` gets a reply too big for a frame, and ``boom`` makes the whole batch raise with a
    card number in the message, which must not reach the log.
    """

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[Request]] = []
        self.ticks: list[int] = []
        self.thread_names: set[str] = set()
        self.overlaps = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._active = 0
        self._changed = threading.Condition()

    @contextmanager
    def _call(self) -> Iterator[None]:
        with self._changed:
            self._active += 1
            if self._active > 1:
                self.overlaps += 1
            self.thread_names.add(threading.current_thread().name)
        try:
            yield
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def handle_batch(self, requests: Sequence[Request]) -> list[Reply]:
        with self._call():
            with self._changed:
                self.batches.append(list(requests))
                self._changed.notify_all()
            self.entered.set()
            if not self.release.wait(WAIT_S * 2):
                raise TimeoutError("the test never released the fake party")
            if any(request.body == b"boom" for request in requests):
                raise RuntimeError(f"cannot post card {CARD}")
            return [self.reply_for(request) for request in requests]

    def tick(self, now_ms: int) -> None:
        with self._call(), self._changed:
            self.ticks.append(now_ms)
            self._changed.notify_all()

    @staticmethod
    def reply_for(request: Request) -> Reply:
        if request.body == b"silent":
            return Reply(None)
        if request.body == b"close":
            return Reply(b"bye", close=True)
        if request.body == b"huge":
            return Reply(bytes(LINK.frame_bytes_max))
        return Reply(b"echo:" + request.body)

    def lane_job(self, arg: T) -> tuple[str, T]:
        """A job for ``FrameServer.run_on_lane``, counted like a call (thread name, overlaps)."""
        with self._call():
            return threading.current_thread().name, arg

    def wait_until(self, predicate: Callable[[FakeParty], bool]) -> bool:
        """Block (in a worker thread, via asyncio.to_thread) until predicate holds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), WAIT_S)

    @property
    def requests_seen(self) -> int:
        return sum(len(batch) for batch in self.batches)


class DeferringParty(FakeParty):
    """A FakeParty that answers bodies starting with ``later`` with ``Reply.later()``."""

    @staticmethod
    def reply_for(request: Request) -> Reply:
        if request.body.startswith(b"later"):
            return Reply.later()
        return FakeParty.reply_for(request)

    def deferred(self) -> list[Request]:
        """The deferred requests seen so far, in the order the party saw them."""
        with self._changed:
            return [r for batch in self.batches for r in batch if r.body.startswith(b"later")]


async def party_until(party: FakeParty, predicate: Callable[[FakeParty], bool]) -> None:
    assert await asyncio.to_thread(party.wait_until, predicate), "party never got there"


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll a condition the event loop itself brings about, within WAIT_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def entered(party: FakeParty) -> None:
    assert await asyncio.to_thread(party.entered.wait, WAIT_S), "handler never called"


def server_for(
    party: FakeParty, limits: ServerLimits = TEST_LIMITS, link: LinkProfile = LINK
) -> FrameServer:
    return FrameServer(party, host=HOST, port=0, link=link, limits=limits, name="test")


@asynccontextmanager
async def running(
    party: FakeParty, limits: ServerLimits = TEST_LIMITS, link: LinkProfile = LINK
) -> AsyncIterator[FrameServer]:
    server = server_for(party, limits, link)
    await server.start()
    try:
        yield server
    finally:
        party.release.set()
        await server.stop()


def run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT_S))


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    async with asyncio.timeout(WAIT_S):
        return await reader.read()
