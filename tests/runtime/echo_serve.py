"""A tiny echo party behind serve_forever, run in a subprocess by test_serve_forever."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cardtally.runtime import FrameServer, Reply, Request, ServerLimits, configure_logging
from cardtally.runtime import serve_forever as serve
from cardtally.wire import LinkProfile


class Echo:
    def handle_batch(self, requests: Sequence[Request]) -> list[Reply]:
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
        limits=ServerLimits(drain_timeout_ms=2000),
        name="echo",
    )
    serve(server, ready=lambda port: print(f"ready {port}", flush=True))
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
