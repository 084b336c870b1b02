"""A tiny echo party behind serve_forever, run in a subprocess by test_serve_forever."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from cardtally.runtime import (
    FrameServer,
    Reply,
    Request,
    ServerLimits,
    configure_logging,
    serve_forever,
)
from cardtally.wire import LinkProfile

# Long enough to outlast any test; the process ends (daemon worker lane) without waiting.
HOLD_S = 60


class Echo:
    """Echoes bodies; ``hold`` blocks the batch, to stop the server with a call in progress."""

    def handle_batch(self, requests: Sequence[Request]) -> list[Reply]:
        if any(request.body == b"hold" for request in requests):
            print("holding", file=sys.stderr, flush=True)
            threading.Event().wait(HOLD_S)
        return [Reply(request.body) for request in requests]

    def tick(self, now_ms: int) -> None:
        pass


def main() -> None:
    configure_logging(sys.stderr)
    server = FrameServer(
        Echo(),
        host="127.0.0.1",
        port=0,
        link=LinkProfile(),
        limits=ServerLimits(drain_timeout_ms=HOLD_S * 1000),
        name="echo",
    )
    serve_forever(server, ready=lambda port: print(f"ready {port}", flush=True))
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
