"""The synchronous entry point of a ``serve`` command: run until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from cardtally.runtime._logging import log_event
from cardtally.runtime._server import FrameServer

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Service(Protocol):
    """Something a ``serve`` command runs beside its server, on the same event loop.

    An acquirer switch's links to its issuers are services: they must be up before the first
    terminal request is forwarded and stay up until the last deferred reply is answered.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def serve_forever(
    server: FrameServer,
    *,
    ready: Callable[[int], None] | None = None,
    services: Sequence[Service] = (),
) -> None:
    """Start ``services`` and ``server``, call ``ready(port)`` once listening, return after a stop.

    Services start in order before the server and stop in reverse order after the server has
    stopped, so what they provide outlasts the server's drain. If a service fails to start,
    those already started are stopped and the error propagates.

    The first SIGINT or SIGTERM stops gracefully (see :meth:`FrameServer.stop`); a second one
    aborts at once. Must run in the main thread, which is where Python delivers signals.
    """
    asyncio.run(_serve(server, ready, services))


async def _serve(
    server: FrameServer,
    ready: Callable[[int], None] | None,
    services: Sequence[Service] = (),
    stop_requested: asyncio.Event | None = None,
) -> None:
    """The body of :func:`serve_forever`; ``stop_requested`` lets a test stop it as a signal
    would."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event() if stop_requested is None else stop_requested
    signals_seen = 0

    def on_signal(signum: signal.Signals) -> None:
        nonlocal signals_seen
        signals_seen += 1
        graceful = signals_seen == 1
        log_event(
            server.logger,
            "server.signal",
            level=logging.INFO if graceful else logging.WARNING,
            server=server.name,
            signal=signum.name,
            action="stop" if graceful else "abort",
        )
        if graceful:
            stop.set()
        else:
            server.abort()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with contextlib.AsyncExitStack() as started:
            for service in services:
                await service.start()
                # Unwound in reverse, also when a later start fails; an error in one stop
                # does not skip the others.
                started.push_async_callback(service.stop)
            await _run_server(server, ready, stop)
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _run_server(
    server: FrameServer, ready: Callable[[int], None] | None, stop: asyncio.Event
) -> None:
    try:
        await server.start()
        if ready is not None:
            ready(server.port)
        # The server may also stop on its own (it aborts if its committer fails).
        waits = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(server.wait_closed()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
    finally:
        await server.stop()
