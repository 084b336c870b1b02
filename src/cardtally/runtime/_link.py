"""A persistent, multiplexed, self-healing client link to one issuer host.

The acquirer switch keeps one :class:`IssuerLink` open per issuer host. Requests go out
through :meth:`IssuerLink.send` without waiting for their answers; answers come back through
``on_message`` in whatever order the issuer sends them, and matching them to requests is the
owner's business. A single background task connects, reads, sends echoes on a quiet link,
and reconnects with backoff whenever the link is lost, until :meth:`IssuerLink.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final, NoReturn, TypeVar

from cardtally.runtime._client import _Framing
from cardtally.runtime._counters import Counters
from cardtally.runtime._logging import log_event
from cardtally.wire import DecodeError, LinkProfile, Tpdu

#: Counters every link keeps, each labelled with the link's name; declared at zero so a
#: snapshot always lists them. Pass ``Counters(label_names=dict.fromkeys(LINK_COUNTERS,
#: "link"))`` to read them as ``link_frames_in{link="..."}``.
LINK_COUNTERS: Final = (
    "link_frames_in",
    "link_frames_out",
    "link_echoes",
    "link_reconnects",
    "link_connect_failures",
    "link_send_refused_down",
    "link_send_refused_full",
)

#: Above this many bytes waiting in the transport's write buffer the link counts as full.
WRITE_BUFFER_BYTES_MAX: Final = 1 << 20
#: Reconnect delays get up to this fraction added at random, so links that failed together
#: do not all come back in the same instant.
BACKOFF_JITTER: Final = 0.2

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """Limits of one :class:`IssuerLink`.

    ``in_flight_max`` bounds the sends the owner has not yet settled (see
    :meth:`IssuerLink.settle`). ``write_timeout_ms`` bounds how long the write buffer may stay
    above its 1 MiB bound without shrinking (every send refused meanwhile) before the link is
    dropped as stuck, and how long :meth:`IssuerLink.stop` waits for buffered frames to go out.
    """

    connect_timeout_ms: int = 2000
    write_timeout_ms: int = 2000
    reconnect_backoff_min_ms: int = 100
    reconnect_backoff_max_ms: int = 5000
    #: Send an echo when nothing was received for this long.
    echo_idle_ms: int = 30_000
    #: No frame at all within this after an echo: drop the link and reconnect.
    echo_timeout_ms: int = 5_000
    in_flight_max: int = 1024

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            # bool is an int to Python, but True milliseconds is a typo, not a limit.
            if type(value) is not int or value < 1:
                raise ValueError(f"{spec.name} must be a positive int, got {value!r}")
        if self.reconnect_backoff_min_ms > self.reconnect_backoff_max_ms:
            raise ValueError(
                f"reconnect_backoff_min_ms ({self.reconnect_backoff_min_ms}) cannot exceed "
                f"reconnect_backoff_max_ms ({self.reconnect_backoff_max_ms})"
            )


class _Lost(Exception):  # noqa: N818 - a control-flow signal, not an error to report
    """The connection is gone or unusable; ``reason`` says why (for the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerLink:
    """One TCP link to one issuer host, kept open until :meth:`stop`.

    ``on_message(message)`` is called on the event loop for every frame received (TPDU and
    header stripped), echo answers included, in the order the frames arrive.
    ``on_state(True)`` follows each successful connect; ``on_state(False)`` follows the loss
    of a link that was up, and :meth:`stop` of one that was up. ``on_state(False)`` means
    every outstanding request on this link will not be answered through it: the link forgets
    them (:attr:`in_flight` drops to zero) and the owner must treat them as unanswered.
    Exceptions raised by the callbacks are logged and otherwise ignored.

    The link is lost, and reconnected with exponential backoff, on EOF, a reset, a frame
    that cannot be decoded, an unanswered echo, or a write buffer stuck above its bound.
    Connect failures are retried the same way, for as long as the link is not stopped.

    ``header`` is the application header put on every frame when the link has one (zeros
    unless given). ``clock`` (seconds, monotonic) is what the echo deadlines are reckoned
    with; the waits themselves are the event loop's.

    Counters kept (see :data:`LINK_COUNTERS`, each labelled with the link's name):
    ``link_frames_in`` (echo answers included), ``link_frames_out`` (echoes included),
    ``link_echoes``, ``link_reconnects`` (connections made after the first),
    ``link_connect_failures``, ``link_send_refused_down``, ``link_send_refused_full``.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        link: LinkProfile,
        tpdu: Tpdu,
        limits: LinkLimits,
        on_message: Callable[[bytes], None],
        echo_message: Callable[[], bytes] | None = None,
        on_state: Callable[[bool], None] | None = None,
        header: bytes | None = None,
        logger: logging.Logger | None = None,
        counters: Counters | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not name or not name.replace("-", "_").isidentifier():
            raise ValueError(f"link name must be a word such as 'issuer_a', got {name!r}")
        if not 1 <= port <= 0xFFFF:
            raise ValueError(f"port must be 1..65535, got {port}")
        # Checks the header against the link now rather than at the first connect.
        _Framing(link, tpdu, header)
        self._name = name
        self._host = host
        self._port = port
        self._link = link
        self._tpdu = tpdu
        self._header = header
        self._limits = limits
        self._on_message = on_message
        self._echo_message = echo_message
        self._on_state = on_state
        self._logger = (
            logger if logger is not None else logging.getLogger(f"cardtally.runtime.link.{name}")
        )
        self._counters = counters if counters is not None else Counters()
        for counter in LINK_COUNTERS:
            self._counters.inc(counter, name, by=0)
        self._clock = clock
        self._rng = random.Random(name)
        self._peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._up = False
        self._up_event = asyncio.Event()
        self._in_flight = 0
        self._connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._framing: _Framing | None = None
        self._closing: list[asyncio.StreamWriter] = []
        self._stuck_check: asyncio.TimerHandle | None = None
        self._abort_reason: str | None = None

    # -- the owner's side --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def up(self) -> bool:
        """Connected now: :meth:`send` may accept frames."""
        return self._up

    @property
    def in_flight(self) -> int:
        """Sends accepted and not yet settled; zero again after every disconnect."""
        return self._in_flight

    async def start(self) -> None:
        """Start the background task; returns at once, without waiting for a connection."""
        if self._task is not None or self._stopped:
            raise RuntimeError(f"link {self._name} was already started")
        self._task = asyncio.create_task(self._run(), name=f"link-{self._name}")
        self._task.add_done_callback(self._on_task_done)

    async def stop(self) -> None:
        """Stop reconnecting, close the socket, wait for the task. Idempotent.

        Frames already written get up to ``write_timeout_ms`` to go out before the socket is
        cut. A link that was up reports ``on_state(False)``.
        """
        self._stopped = True
        self._up_event.set()  # wakes wait_up() callers, which then see the link stopped
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        closing, self._closing = self._closing, []
        for writer in closing:
            await self._finish_close(writer)

    async def wait_up(self, timeout_ms: int) -> bool:
        """Wait until the link is up (True) or ``timeout_ms`` passes or it is stopped (False)."""
        try:
            async with asyncio.timeout(max(0, timeout_ms) / 1000):
                while not self._up:
                    if self._stopped:
                        return False
                    # Set while up, and by stop(); it may be down again by the time we run.
                    await self._up_event.wait()
        except TimeoutError:
            return self._up
        return True

    def send(self, body: bytes) -> bool:
        """Frame ``body`` and write it without waiting; False if the link is down or full.

        Full means ``in_flight_max`` unsettled sends or more than 1 MiB not yet written out.
        A refusal is counted (``link_send_refused_down`` / ``_full``); nothing is raised for
        the state of the link. A body too large for the link's frames raises
        :class:`~cardtally.wire.EncodeError`: that is the caller's mistake, not the link's.
        """
        writer, framing = self._writer, self._framing
        if not self._up or writer is None or framing is None or writer.transport.is_closing():
            self._counters.inc("link_send_refused_down", self._name)
            return False
        if self._in_flight >= self._limits.in_flight_max or self._buffer_full(writer):
            self._counters.inc("link_send_refused_full", self._name)
            return False
        frame = framing.encode(body)
        if not self._write(writer, frame):
            self._counters.inc("link_send_refused_down", self._name)
            return False
        self._in_flight += 1
        return True

    def settle(self, count: int = 1) -> None:
        """Free ``count`` in-flight slots: a response was matched, or given up on."""
        if count < 0:
            raise ValueError(f"settle count must not be negative, got {count}")
        self._in_flight = max(0, self._in_flight - count)

    # -- the background task -----------------------------------------------------------------

    async def _run(self) -> None:
        backoff_ms = self._limits.reconnect_backoff_min_ms
        try:
            while True:
                try:
                    reader, writer, framing = await self._open()
                except Exception as exc:  # refused, timed out, unresolvable: all retried
                    delay_ms = self._delay_ms(backoff_ms)
                    self._counters.inc("link_connect_failures", self._name)
                    log_event(
                        self._logger,
                        "link.connect_failed",
                        level=logging.WARNING,
                        link=self._name,
                        peer=self._peer,
                        error=type(exc).__name__,
                        next_attempt_ms=delay_ms,
                    )
                else:
                    backoff_ms = self._limits.reconnect_backoff_min_ms
                    self._attach(writer, framing)
                    reason = await self._serve(reader, writer)
                    delay_ms = self._delay_ms(backoff_ms)
                    abandoned = self._went_down(graceful=False)
                    log_event(
                        self._logger,
                        "link.lost",
                        level=logging.WARNING,
                        link=self._name,
                        peer=self._peer,
                        reason=reason,
                        in_flight=abandoned,
                        next_attempt_ms=delay_ms,
                    )
                    self._tell_state(False)
                await asyncio.sleep(delay_ms / 1000)
                backoff_ms = min(backoff_ms * 2, self._limits.reconnect_backoff_max_ms)
        finally:
            # Cancelled by stop() (or by the loop shutting down): hand the socket to stop().
            if self._writer is not None:
                self._went_down(graceful=True)
                log_event(self._logger, "link.stopped", link=self._name, peer=self._peer)
                self._tell_state(False)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, _Framing]:
        framing = _Framing(self._link, self._tpdu, self._header)
        async with asyncio.timeout(self._limits.connect_timeout_ms / 1000):
            reader, writer = await asyncio.open_connection(
                self._host, self._port, limit=framing.read_bytes_max
            )
        sock = writer.get_extra_info("socket")
        # Requests are small and latency-bound: Nagle's delay would only add latency. A socket
        # already gone by now is the read loop's to find out.
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer, framing

    def _attach(self, writer: asyncio.StreamWriter, framing: _Framing) -> None:
        self._connections += 1
        if self._connections > 1:
            self._counters.inc("link_reconnects", self._name)
        self._writer = writer
        self._framing = framing
        self._abort_reason = None
        self._in_flight = 0
        self._up = True
        self._up_event.set()
        log_event(
            self._logger,
            "link.connected",
            link=self._name,
            peer=self._peer,
            connection=self._connections,
        )
        self._tell_state(True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Read and deliver frames until the connection is lost; the reason why."""
        try:
            await self._read_frames(reader, writer)
        except _Lost as lost:
            return lost.reason
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must cost one connection, not the link
            log_event(
                self._logger,
                "link.failed",
                level=logging.ERROR,
                link=self._name,
                peer=self._peer,
                error=type(exc).__name__,
            )
            return "internal_error"

    async def _read_frames(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> NoReturn:
        framing = self._framing
        assert framing is not None
        last_frame_at = self._clock()
        echo_sent_at: float | None = None
        while True:
            wait_s = self._read_wait_s(last_frame_at, echo_sent_at)
            try:
                async with asyncio.timeout(wait_s):
                    data = await reader.read(framing.read_bytes_max)
            except TimeoutError:
                if echo_sent_at is not None:
                    log_event(
                        self._logger,
                        "link.echo_timeout",
                        level=logging.WARNING,
                        link=self._name,
                        peer=self._peer,
                        echo_timeout_ms=self._limits.echo_timeout_ms,
                    )
                    raise _Lost("echo_timeout") from None
                if self._send_echo(writer, framing):
                    echo_sent_at = self._clock()
                else:
                    last_frame_at = self._clock()  # try again after another quiet spell
                continue
            except ConnectionError:
                raise _Lost(self._abort_reason or "reset") from None
            except OSError as exc:
                raise _Lost(f"error:{type(exc).__name__}") from None
            if not data:
                raise _Lost(self._abort_reason or "eof")
            delivered = 0
            try:
                framing.feed(data)
                while (message := framing.next_message()) is not None:
                    delivered += 1
                    self._counters.inc("link_frames_in", self._name)
                    self._call_owner("on_message", self._on_message, message)
            except DecodeError as exc:  # FrameTooLargeError included
                log_event(
                    self._logger,
                    "link.bad_frame",
                    level=logging.WARNING,
                    link=self._name,
                    peer=self._peer,
                    field=exc.field,
                    reason=exc.reason,
                )
                raise _Lost("bad_frame") from None
            if delivered:
                last_frame_at = self._clock()
                echo_sent_at = None

    def _read_wait_s(self, last_frame_at: float, echo_sent_at: float | None) -> float | None:
        """How long the next read may wait before the echo logic acts; None: no bound."""
        if self._echo_message is None:
            return None  # no liveness check asked for: a quiet link is a healthy one
        if echo_sent_at is None:
            deadline = last_frame_at + self._limits.echo_idle_ms / 1000
        else:
            deadline = echo_sent_at + self._limits.echo_timeout_ms / 1000
        return max(0.0, deadline - self._clock())

    def _send_echo(self, writer: asyncio.StreamWriter, framing: _Framing) -> bool:
        assert self._echo_message is not None
        try:
            frame = framing.encode(self._echo_message())
        except Exception as exc:
            log_event(
                self._logger,
                "link.callback_failed",
                level=logging.ERROR,
                link=self._name,
                callback="echo_message",
                error=type(exc).__name__,
            )
            return False
        if not self._write(writer, frame):
            return False
        self._counters.inc("link_echoes", self._name)
        return True

    # -- helpers -----------------------------------------------------------------------------

    def _write(self, writer: asyncio.StreamWriter, frame: bytes) -> bool:
        try:
            writer.write(frame)
        except (OSError, RuntimeError):
            return False
        self._counters.inc("link_frames_out", self._name)
        return True

    def _buffer_full(self, writer: asyncio.StreamWriter) -> bool:
        size = writer.transport.get_write_buffer_size()
        if size <= WRITE_BUFFER_BYTES_MAX:
            return False
        if self._stuck_check is None:
            self._watch_buffer(writer, size)
        return True

    def _watch_buffer(self, writer: asyncio.StreamWriter, size: int) -> None:
        self._stuck_check = asyncio.get_running_loop().call_later(
            self._limits.write_timeout_ms / 1000, self._check_stuck, writer, size
        )

    def _check_stuck(self, writer: asyncio.StreamWriter, size_before: int) -> None:
        """Over the bound and not shrinking for write_timeout_ms: the peer is not reading."""
        self._stuck_check = None
        if writer is not self._writer or writer.transport.is_closing():
            return
        size = writer.transport.get_write_buffer_size()
        if size <= WRITE_BUFFER_BYTES_MAX:
            return  # drained below the bound: sends are accepted again
        if size < size_before:
            self._watch_buffer(writer, size)  # slow, but the peer is reading
            return
        log_event(
            self._logger,
            "link.write_timeout",
            level=logging.WARNING,
            link=self._name,
            peer=self._peer,
            write_timeout_ms=self._limits.write_timeout_ms,
        )
        self._abort_reason = "write_timeout"
        writer.transport.abort()  # the read loop sees the connection end

    def _went_down(self, *, graceful: bool) -> int:
        """Forget the connection and what was in flight on it; the in-flight count it had."""
        abandoned = self._in_flight
        self._up = False
        self._up_event.clear()
        self._in_flight = 0
        if self._stuck_check is not None:
            self._stuck_check.cancel()
            self._stuck_check = None
        writer, self._writer, self._framing = self._writer, None, None
        if writer is not None:
            if graceful:
                writer.close()  # flushes what is buffered; stop() bounds the wait
                self._closing.append(writer)
            else:
                writer.transport.abort()
        return abandoned

    async def _finish_close(self, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._limits.write_timeout_ms / 1000):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except OSError:
            pass  # reset by the peer: closed all the same

    def _delay_ms(self, backoff_ms: int) -> int:
        jittered = backoff_ms * (1 + BACKOFF_JITTER * self._rng.random())
        return round(min(jittered, self._limits.reconnect_backoff_max_ms))

    def _tell_state(self, up: bool) -> None:
        if self._on_state is not None:
            self._call_owner("on_state", self._on_state, up)

    def _call_owner(self, what: str, callback: Callable[[_T], None], argument: _T) -> None:
        try:
            callback(argument)
        except Exception as exc:
            log_event(
                self._logger,
                "link.callback_failed",
                level=logging.ERROR,
                link=self._name,
                callback=what,
                error=type(exc).__name__,
            )

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log_event(
                self._logger,
                "link.task_failed",
                level=logging.ERROR,
                link=self._name,
                error=type(error).__name__,
            )
