"""The frame server: frames in from TCP, one batch at a time through the party, replies out.

Each connection has a reader task that splits frames and queues requests. A single committer
task takes whatever is queued (up to ``batch_size_max``), hands it to the party on the worker
lane, and writes the replies only after that call returns: the party commits the batch in one
transaction, so the replies are durable before they are visible, and a burst of requests
costs one commit instead of one each (group commit).

A party that must ask someone else first (an acquirer switch asks the issuer) answers
:meth:`Reply.later <cardtally.runtime.Reply.later>` instead: the request is parked, keeps its
place in the connection's in-flight window, and is answered by :meth:`FrameServer.complete`
whenever its answer arrives, so several requests on one connection are answered in the order
they complete, not the order they came in.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from cardtally.runtime._clock import wall_clock_ms
from cardtally.runtime._counters import Counters
from cardtally.runtime._frames import SplitFrame, split_frame
from cardtally.runtime._handler import BatchHandler, Reply, Request
from cardtally.runtime._lane import WorkerLane
from cardtally.runtime._limits import ServerLimits
from cardtally.runtime._logging import log_event
from cardtally.runtime._txn import TxnNote, answer_facts, line_fields
from cardtally.wire import (
    LENGTH_PREFIX_BYTES,
    DecodeError,
    EncodeError,
    FrameDecoder,
    LinkProfile,
    Tpdu,
    encode_frame,
)

#: Counters every server keeps; declared at zero so a snapshot always lists them.
SERVER_COUNTERS: Final = (
    "connections_opened",
    "connections_refused",
    "connections_closed_bad_frame",
    "frames_in",
    "replies_out",
    "batches",
    "batch_requests",
    "handler_errors",
    "ticks",
    "tick_errors",
    "deferred_completed",
    "deferred_dropped",
)

A = TypeVar("A")
T = TypeVar("T")

#: Told of every answered request: (request type, response code, seconds from arrival to the
#: answer written). A metrics exporter; it runs on the event loop, so it must be quick.
TxnObserver = Callable[[str, str, float], None]


def _peer_text(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if not isinstance(address, tuple) or len(address) < 2:
        return "unknown"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class _Connection:
    __slots__ = (
        "closed",
        "done_reason",
        "frames_in",
        "id",
        "in_flight",
        "parked",
        "peer",
        "reader",
        "reader_task",
        "replies_out",
        "window",
        "writer",
    )

    def __init__(
        self,
        connection_id: int,
        peer: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.id = connection_id
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.reader_task: asyncio.Task[None] | None = None
        #: Requests queued, in a batch or deferred whose replies are not written yet.
        self.in_flight = 0
        #: Ids of this connection's deferred requests, dropped with it when it closes.
        self.parked: set[int] = set()
        #: Set whenever in_flight drops, so a reader waiting for room re-checks.
        self.window = asyncio.Event()
        #: Why reading ended while requests were still in flight; close once they are answered.
        self.done_reason: str | None = None
        self.closed = False
        self.frames_in = 0
        self.replies_out = 0


@dataclass(frozen=True, slots=True)
class _Pending:
    request: Request
    conn: _Connection
    tpdu: Tpdu
    header: bytes
    arrived_s: float  # time.perf_counter() when its bytes were read, for the latency


class FrameServer:
    """Serve one party on one TCP port. Single use: start, serve, stop.

    The party answers each request in its batch, or defers it with ``Reply.later()`` and
    answers it afterwards with :meth:`complete` (or :meth:`complete_threadsafe`). A deferred
    request keeps its place in the connection's in-flight window; a graceful stop waits for it
    within ``drain_timeout_ms``; if its connection closes first, it is dropped. The party may
    run its own jobs on the worker lane, serialized with its batches, via :meth:`run_on_lane`.

    Counters kept (see :data:`SERVER_COUNTERS`): ``connections_opened``,
    ``connections_refused``, ``connections_closed_bad_frame``, ``frames_in``, ``replies_out``,
    ``batches``, ``batch_requests`` (sum of batch sizes), ``handler_errors``, ``ticks``,
    ``tick_errors``, ``deferred_completed`` (deferred requests answered) and
    ``deferred_dropped`` (deferred requests whose connection closed before their answer).

    As each answer is written (or found to have nobody to go to), the reply's
    :class:`~cardtally.runtime.TxnNote`, if any, becomes the request's transaction log line,
    and ``observer`` (a metrics registry) is told its type, code and latency.
    """

    def __init__(
        self,
        handler: BatchHandler,
        *,
        host: str,
        port: int,
        link: LinkProfile,
        limits: ServerLimits,
        name: str,
        logger: logging.Logger | None = None,
        counters: Counters | None = None,
        observer: TxnObserver | None = None,
    ) -> None:
        if not name or not name.replace("-", "_").isidentifier():
            raise ValueError(f"server name must be a word such as 'issuer', got {name!r}")
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port must be 0..65535, got {port}")
        self._handler = handler
        self._host = host
        self._port = port
        self._link = link
        self._limits = limits
        self._name = name
        self._logger = (
            logger if logger is not None else logging.getLogger(f"cardtally.runtime.{name}")
        )
        self._counters = counters if counters is not None else Counters()
        self._observer = observer
        for counter in SERVER_COUNTERS:
            self._counters.inc(counter, by=0)
        # One read never exceeds one whole frame, and the stream reader pauses the socket at
        # twice this, so a connection that is not being read buffers a few frames at most.
        self._read_bytes_max = LENGTH_PREFIX_BYTES + link.frame_bytes_max
        self._conns: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        #: Deferred requests awaiting complete(), by request id.
        self._parked: dict[int, _Pending] = {}
        #: Set while nothing is parked, for a stop to wait on.
        self._none_parked = asyncio.Event()
        self._none_parked.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(limits.queue_depth_max)
        self._lane = WorkerLane(f"{name}-lane")
        self._lane_open = False
        self._listener: asyncio.Server | None = None
        self._bound_port: int | None = None
        self._committer: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self._batch_requests_running = 0
        self._stop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._forced = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0); only after start()."""
        if self._bound_port is None:
            raise RuntimeError(f"server {self._name} is not started")
        return self._bound_port

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError(f"server {self._name} was already started")
        self._listener = await asyncio.start_server(
            self._on_connect, self._host, self._port, limit=self._read_bytes_max
        )
        self._bound_port = int(self._listener.sockets[0].getsockname()[1])
        self._loop = asyncio.get_running_loop()
        self._lane.start()
        self._lane_open = True
        self._committer = asyncio.create_task(self._commit_loop(), name=f"{self._name}-committer")
        self._committer.add_done_callback(self._on_committer_done)
        log_event(
            self._logger,
            "server.listening",
            server=self._name,
            host=self._host,
            port=self._bound_port,
            connections_max=self._limits.connections_max,
            frame_bytes_max=self._link.frame_bytes_max,
        )

    async def stop(self) -> None:
        """Graceful stop; returns when every connection is closed.

        Stops accepting and reading, lets queued and in-flight requests finish and their replies
        be written, waits for deferred requests to be completed, then closes every connection.
        Whatever is unfinished after ``drain_timeout_ms`` is abandoned: its connections are
        closed without replies.
        """
        if self._listener is None:
            return
        # A caller that gives up waiting must not leave the server half stopped.
        await asyncio.shield(self._begin_stop())

    def abort(self) -> None:
        """Stop at once: close every connection now and abandon what is queued.

        Call from the event loop's thread; await :meth:`wait_closed` (or :meth:`stop`) after.
        """
        self._forced.set()
        if self._listener is not None:
            self._begin_stop()

    async def wait_closed(self) -> None:
        if self._listener is not None:
            await self._closed.wait()

    def _begin_stop(self) -> asyncio.Task[None]:
        """Stop accepting now, synchronously; the rest of the stop runs as one task."""
        if self._stop_task is None:
            assert self._listener is not None
            self._stopping = True
            self._listener.close()
            self._stop_task = asyncio.create_task(self._shutdown(), name=f"{self._name}-stop")
        return self._stop_task

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._limits.drain_timeout_ms / 1000
        log_event(
            self._logger,
            "server.stopping",
            server=self._name,
            connections=len(self._conns),
            queued=self._queue.qsize(),
            deferred=len(self._parked),
            forced=self._forced.is_set(),
        )
        readers = [c.reader_task for c in self._conns.values() if c.reader_task is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for conn in list(self._conns.values()):
            conn.done_reason = "stopping"
            self._close_if_answered(conn)

        # The committer keeps running while deferred replies drain: the party's ticks may be
        # what answers them (a timer firing for an issuer that never replied).
        drained = await self._wait_or_forced(self._queue.join(), deadline)
        drained = drained and await self._wait_or_forced(self._none_parked.wait(), deadline)
        if not drained:
            log_event(
                self._logger,
                "server.drain_abandoned",
                level=logging.WARNING,
                server=self._name,
                queued=self._queue.qsize(),
                in_batch=self._batch_requests_running,
                deferred=len(self._parked),
                connections=len(self._conns),
                forced=self._forced.is_set(),
            )
        assert self._committer is not None
        self._committer.cancel()
        await asyncio.gather(self._committer, return_exceptions=True)
        for conn in list(self._conns.values()):
            self._close(conn, "stopping" if drained else "abandoned")
        await self._flush_closing(deadline)
        self._lane_open = False
        self._lane.shutdown()
        log_event(
            self._logger,
            "server.stopped",
            server=self._name,
            drained=drained,
            elapsed_ms=round((loop.time() - started) * 1000),
        )
        self._closed.set()

    async def _wait_or_forced(self, work: Awaitable[object], deadline: float) -> bool:
        """Wait for ``work`` until ``deadline`` or abort(); say whether it finished."""
        loop = asyncio.get_running_loop()
        work_task = asyncio.ensure_future(work)
        forced_task = asyncio.ensure_future(self._forced.wait())
        try:
            await asyncio.wait(
                {work_task, forced_task},
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            work_task.cancel()
            forced_task.cancel()
            await asyncio.gather(work_task, forced_task, return_exceptions=True)
        return work_task.done() and not work_task.cancelled()

    async def _flush_closing(self, deadline: float) -> None:
        """Give closed connections until the deadline to flush their last replies, then cut."""
        while self._closers:
            closers = list(self._closers)
            if not await self._wait_or_forced(asyncio.gather(*closers), deadline):
                for closer in closers:
                    closer.cancel()
                await asyncio.gather(*closers, return_exceptions=True)

    def _on_committer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # A bug in the committer itself: without it nothing is answered, so stop serving.
            log_event(
                self._logger,
                "server.committer_failed",
                level=logging.ERROR,
                server=self._name,
                error=type(error).__name__,
            )
            self.abort()

    # -- answers that come later -------------------------------------------------------------

    def complete(self, request_id: int, reply: Reply) -> bool:
        """Answer a request that was deferred with ``Reply.later()``; say whether it was sent.

        Call on the event loop's thread (from another, use :meth:`complete_threadsafe`). The
        reply is written like one from a batch: right away, so each deferred request is
        answered as it completes. False means there was nothing to answer: the id was never
        deferred, was completed already, or its connection closed meanwhile (that was counted
        in ``deferred_dropped`` when it closed).
        """
        if reply.deferred:
            raise ValueError("complete() takes the answer itself, not another Reply.later()")
        pending = self._unpark(request_id)
        if pending is None:
            self._observe(reply, None, sent=False)
            return False
        outgoing: dict[_Connection, list[bytes]] = {}
        self._answer(pending, reply, outgoing)
        for conn, frames in outgoing.items():
            self._write(conn, frames)
        self._counters.inc("deferred_completed")
        return True

    def complete_threadsafe(self, request_id: int, reply: Reply) -> None:
        """:meth:`complete` from any thread: scheduled on the server's loop, result unseen."""
        if self._loop is None:
            raise RuntimeError(f"server {self._name} is not started")
        if reply.deferred:  # refused here, where the caller sees it, not in the loop's log
            raise ValueError("complete() takes the answer itself, not another Reply.later()")
        self._loop.call_soon_threadsafe(self.complete, request_id, reply)

    def run_on_lane(self, fn: Callable[[A], T], arg: A) -> asyncio.Future[T]:
        """Run ``fn(arg)`` on the worker lane, never alongside a batch or a tick; await it.

        For the party's own work between batches (recording an issuer's answer before
        completing the terminal's request). Call on the event loop's thread, after start()
        and until the stop has finished; a slow job holds up every batch behind it. A job
        queued behind a batch resumes its awaiter only after that batch's replies are written
        and its deferred requests parked, so the awaiter may complete them straight away.
        """
        if not self._lane_open:
            raise RuntimeError(f"server {self._name} has no worker lane running")
        return self._lane.run(fn, arg)

    def _park(self, pending: _Pending) -> None:
        request_id = pending.request.request_id
        self._parked[request_id] = pending
        pending.conn.parked.add(request_id)
        self._none_parked.clear()

    def _unpark(self, request_id: int) -> _Pending | None:
        pending = self._parked.pop(request_id, None)
        if pending is not None:
            pending.conn.parked.discard(request_id)
            if not self._parked:
                self._none_parked.set()
        return pending

    def _drop_parked(self, conn: _Connection) -> int:
        """Forget a closing connection's deferred requests (nobody is left to read their
        answers), so what is parked stays bounded by the open connections' windows."""
        dropped = len(conn.parked)
        for request_id in list(conn.parked):
            self._unpark(request_id)
        self._counters.inc("deferred_dropped", by=dropped)
        return dropped

    # -- connections -------------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine: asyncio closes the transport when a callback task
        # is cancelled (3.12+), and a stop must keep connections open to write final replies.
        peer = _peer_text(writer)
        if self._stopping or len(self._conns) >= self._limits.connections_max:
            self._counters.inc("connections_refused")
            log_event(
                self._logger,
                "connection.refused",
                server=self._name,
                peer=peer,
                reason="stopping" if self._stopping else "connections_max",
                connections_max=self._limits.connections_max,
            )
            self._finish_close(writer)
            return
        conn = _Connection(next(self._ids), peer, reader, writer)
        self._conns[conn.id] = conn
        self._counters.inc("connections_opened")
        log_event(self._logger, "connection.opened", server=self._name, conn=conn.id, peer=peer)
        conn.reader_task = asyncio.create_task(
            self._serve_connection(conn), name=f"{self._name}-conn-{conn.id}"
        )

    async def _serve_connection(self, conn: _Connection) -> None:
        try:
            reason = await self._read_frames(conn)
        except Exception as exc:  # a bug here must cost one connection, not the server
            log_event(
                self._logger,
                "connection.failed",
                level=logging.ERROR,
                server=self._name,
                conn=conn.id,
                error=type(exc).__name__,
            )
            reason = "internal_error"
        if reason is None:
            conn.done_reason = "eof"
            self._close_if_answered(conn)
        else:
            self._close(conn, reason)

    async def _read_frames(self, conn: _Connection) -> str | None:
        """Read until the connection must close (the reason) or the peer half-closes (None)."""
        decoder = FrameDecoder(self._link.frame_bytes_max)
        while True:
            reason = await self._drain(conn)
            if reason is not None:
                return reason
            try:
                data = await self._read_some(conn)
            except ConnectionError:
                return "reset"
            if data is None:
                return "idle"
            if not data:
                return "eof_mid_frame" if decoder.buffered_bytes else None
            received_at_ms, arrived_s = wall_clock_ms(), time.perf_counter()
            try:
                frames = [split_frame(body, self._link) for body in decoder.feed(data)]
            except DecodeError as exc:  # FrameTooLargeError included
                self._counters.inc("connections_closed_bad_frame")
                log_event(
                    self._logger,
                    "frame.rejected",
                    level=logging.WARNING,
                    server=self._name,
                    conn=conn.id,
                    peer=conn.peer,
                    field=exc.field,
                    reason=exc.reason,
                )
                return "bad_frame"
            conn.frames_in += len(frames)
            self._counters.inc("frames_in", by=len(frames))
            for frame in frames:
                await self._admit(conn, frame, received_at_ms, arrived_s)

    async def _drain(self, conn: _Connection) -> str | None:
        """Backpressure on replies: a peer that does not read its replies is not read either."""
        try:
            async with asyncio.timeout(self._limits.write_timeout_ms / 1000):
                await conn.writer.drain()
        except TimeoutError:
            return "write_timeout"
        except ConnectionError:
            return "reset"
        return None

    async def _read_some(self, conn: _Connection) -> bytes | None:
        """The next bytes (b"" at EOF), or None once the peer has been silent too long."""
        while True:
            try:
                async with asyncio.timeout(self._limits.idle_timeout_ms / 1000):
                    return await conn.reader.read(self._read_bytes_max)
            except TimeoutError:
                # A peer waiting on a slow batch is silent for a reason: not idle.
                if conn.in_flight == 0:
                    return None

    async def _admit(
        self, conn: _Connection, frame: SplitFrame, received_at_ms: int, arrived_s: float
    ) -> None:
        while conn.in_flight >= self._limits.in_flight_per_connection_max:
            conn.window.clear()
            await conn.window.wait()
        request_id = next(self._request_ids)
        request = Request(conn.id, conn.peer, frame.message, received_at_ms, request_id)
        await self._queue.put(_Pending(request, conn, frame.tpdu, frame.header, arrived_s))
        # Counted after the put: a reader cancelled while the queue is full queued nothing.
        conn.in_flight += 1

    def _close_if_answered(self, conn: _Connection) -> None:
        if conn.done_reason is not None and conn.in_flight == 0:
            self._close(conn, conn.done_reason)

    def _close(self, conn: _Connection, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        del self._conns[conn.id]
        deferred = self._drop_parked(conn)
        task = conn.reader_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        log_event(
            self._logger,
            "connection.closed",
            server=self._name,
            conn=conn.id,
            peer=conn.peer,
            reason=reason,
            frames_in=conn.frames_in,
            replies_out=conn.replies_out,
            unanswered=conn.in_flight,
            deferred=deferred,
        )
        self._finish_close(conn.writer)

    def _finish_close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        closer = asyncio.create_task(self._await_closed(writer))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _await_closed(self, writer: asyncio.StreamWriter) -> None:
        """Let buffered replies flush, within write_timeout_ms; then cut the connection."""
        try:
            async with asyncio.timeout(self._limits.write_timeout_ms / 1000):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except OSError:
            pass  # the peer reset: closed all the same

    # -- the committer -----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self._limits.tick_interval_ms / 1000
        next_tick = loop.time() + tick_s
        while True:
            if loop.time() >= next_tick:
                await self._run_tick()
                next_tick = loop.time() + tick_s
            try:
                async with asyncio.timeout_at(next_tick):
                    first = await self._queue.get()
            except TimeoutError:
                continue  # a get() cut short leaves its item in the queue
            batch = [first]
            while len(batch) < self._limits.batch_size_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._run_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_tick(self) -> None:
        self._counters.inc("ticks")
        try:
            await self._lane.run(self._handler.tick, wall_clock_ms())
        except Exception as exc:
            self._counters.inc("tick_errors")
            log_event(
                self._logger,
                "tick.failed",
                level=logging.ERROR,
                server=self._name,
                error=type(exc).__name__,
            )

    async def _run_batch(self, batch: list[_Pending]) -> None:
        # A closed connection's requests are dropped unanswered: nothing was committed for them
        # and nobody is left to read the answer; its sender retries or reverses.
        live = [pending for pending in batch if not pending.conn.closed]
        if not live:
            return
        requests = [pending.request for pending in live]
        self._counters.inc("batches")
        self._counters.inc("batch_requests", by=len(requests))
        self._batch_requests_running = len(requests)
        try:
            replies = await self._lane.run(self._handler.handle_batch, requests)
        except Exception as exc:
            self._fail_batch(live, type(exc).__name__)
            return
        finally:
            self._batch_requests_running = 0
        if len(replies) != len(requests):
            self._fail_batch(live, f"ReplyCountMismatch({len(replies)}/{len(requests)})")
            return
        self._deliver(live, replies)

    def _fail_batch(self, live: list[_Pending], error: str) -> None:
        # The exception's message is not logged: it may quote a card number.
        self._counters.inc("handler_errors")
        log_event(
            self._logger,
            "batch.failed",
            level=logging.ERROR,
            server=self._name,
            error=error,
            requests=len(live),
        )
        for conn in {pending.conn.id: pending.conn for pending in live}.values():
            self._close(conn, "handler_error")

    def _deliver(self, live: list[_Pending], replies: list[Reply]) -> None:
        """Write a committed batch's replies: one write per connection, not one per reply."""
        outgoing: dict[_Connection, list[bytes]] = {}
        for pending, reply in zip(live, replies, strict=True):
            if pending.conn.closed:
                # Closed during the batch: a deferred answer would find nobody either.
                if reply.deferred:
                    self._counters.inc("deferred_dropped")
                else:
                    self._settled(pending, reply, sent=False)
                continue
            if reply.deferred:
                # Still in flight: the request keeps its place in the window until complete().
                self._park(pending)
                continue
            self._answer(pending, reply, outgoing)
        for conn, frames in outgoing.items():
            self._write(conn, frames)

    def _answer(
        self, pending: _Pending, reply: Reply, outgoing: dict[_Connection, list[bytes]]
    ) -> None:
        """Settle one request: its frame joins ``outgoing``, or is written now with a close."""
        conn = pending.conn
        conn.in_flight -= 1
        conn.window.set()
        close_reason = "handler_close" if reply.close else None
        frame = None if reply.body is None else self._encode_reply(pending, reply.body)
        if frame is not None:
            outgoing.setdefault(conn, []).append(frame)
        elif reply.body is not None:
            close_reason = "reply_unencodable"
        self._settled(pending, reply, sent=frame is not None)
        if close_reason is None and conn.in_flight == 0:
            close_reason = conn.done_reason
        if close_reason is not None:
            self._write(conn, outgoing.pop(conn, []))
            self._close(conn, close_reason)

    def _settled(self, pending: _Pending, reply: Reply, *, sent: bool) -> None:
        """Count the answer and write its transaction line (if the party asked for one)."""
        self._observe(reply, time.perf_counter() - pending.arrived_s, sent=sent)

    def _observe(self, reply: Reply, elapsed_s: float | None, *, sent: bool) -> None:
        """``elapsed_s`` None: the request is unknown here (its connection closed before this
        answer came), so there is nothing to time and nothing to count, only to log."""
        note: TxnNote | None = reply.note
        observer = self._observer if elapsed_s is not None else None
        logged = note is not None and note.event is not None
        if observer is None and not logged:
            return
        try:
            facts = answer_facts(note, reply.body)
            if observer is not None and elapsed_s is not None:
                observer(facts.txn_type, facts.code, elapsed_s)
            if note is not None and note.event is not None:
                latency_ms = None if elapsed_s is None else round(elapsed_s * 1000, 3)
                fields = line_fields(facts, note, latency_ms=latency_ms, sent=sent)
                log_event(self._logger, note.event, level=logging.INFO, **fields)
        except Exception as exc:  # observability must never cost an answer
            log_event(
                self._logger,
                "txn.observe_failed",
                level=logging.ERROR,
                server=self._name,
                error=type(exc).__name__,
            )

    def _encode_reply(self, pending: _Pending, body: bytes) -> bytes | None:
        try:
            return encode_frame(pending.tpdu.reply(), body, pending.header, self._link)
        except EncodeError as exc:
            log_event(
                self._logger,
                "reply.unencodable",
                level=logging.ERROR,
                server=self._name,
                conn=pending.conn.id,
                field=exc.field,
                reason=exc.reason,
            )
            return None

    def _write(self, conn: _Connection, frames: list[bytes]) -> None:
        if frames:
            conn.writer.writelines(frames)
            conn.replies_out += len(frames)
            self._counters.inc("replies_out", by=len(frames))
