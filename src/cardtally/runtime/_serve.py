"""The synchronous entry point of a ``serve`` command: run until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from cardtally.runtime._logging import log_event
from cardtally.runtime._server import FrameServer

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_forever(server: FrameServer, *, ready: Callable[[int], None] | None = None) -> None:
    """Start ``server``, call ``ready(port)`` once listening, and return after a stop.

    The first SIGINT or SIGTERM stops gracefully (see :meth:`FrameServer.stop`); a second one
    aborts at once. Must run in the main thread, which is where Python delivers signals.
    """
    asyncio.run(_serve(server, ready))


async def _serve(server: FrameServer, ready: Callable[[int], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
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
            stop_requested.set()
        else:
            server.abort()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await server.start()
        if ready is not None:
            ready(server.port)
        # The server may also stop on its own (it aborts if its committer fails).
        waits = [
            asyncio.ensure_future(stop_requested.wait()),
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
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
