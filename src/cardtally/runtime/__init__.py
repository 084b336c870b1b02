"""The runtime shell: asyncio TCP around a party's sans-I/O core.

A :class:`FrameServer` reads frames, hands the messages to the party in batches
(:class:`BatchHandler`), and writes the replies only after the party has committed the batch.
A party that must wait for someone else (a switch asking an issuer) answers
``Reply.later()`` and sends the answer with :meth:`FrameServer.complete` when it comes.
Everything is bounded by :class:`ServerLimits`. A ``serve`` command wires it up like this::

    server = FrameServer(issuer, host="127.0.0.1", port=9583, link=LinkProfile(),
                         limits=ServerLimits(), name="issuer")
    serve_forever(server, ready=lambda port: print(f"listening on {port}"))

with ``services=[...]`` (each a :class:`Service`) for what must be up around the server, such
as a switch's issuer links: started before it, stopped after its drain.

A party may attach a :class:`TxnNote` to a reply: the server then writes that request's
transaction line (type, terminal, STAN, response code, latency) once the answer is written,
and tells its ``observer`` (a metrics registry) the type, code and latency.

:class:`FrameClient` and :class:`SyncFrameClient` speak the same framing from the other end.
"""

from cardtally.runtime._client import FrameClient, SyncFrameClient
from cardtally.runtime._clock import wall_clock_ms
from cardtally.runtime._counters import Counters
from cardtally.runtime._errors import LinkClosedError
from cardtally.runtime._file_lock import BusyError, exclusive
from cardtally.runtime._handler import BatchHandler, Reply, Request
from cardtally.runtime._limits import ServerLimits
from cardtally.runtime._logging import configure_logging, log_event
from cardtally.runtime._serve import Service, serve_forever
from cardtally.runtime._server import SERVER_COUNTERS, FrameServer, TxnObserver
from cardtally.runtime._txn import TxnNote

__all__ = [
    "SERVER_COUNTERS",
    "BatchHandler",
    "BusyError",
    "Counters",
    "FrameClient",
    "FrameServer",
    "LinkClosedError",
    "Reply",
    "Request",
    "ServerLimits",
    "Service",
    "SyncFrameClient",
    "TxnNote",
    "TxnObserver",
    "configure_logging",
    "exclusive",
    "log_event",
    "serve_forever",
    "wall_clock_ms",
]
