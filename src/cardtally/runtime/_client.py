"""Clients of a frame server: an asyncio one and a blocking one, same framing, same limits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from types import TracebackType
from typing import Self

from cardtally.runtime._errors import LinkClosedError
from cardtally.runtime._frames import split_frame
from cardtally.wire import LENGTH_PREFIX_BYTES, FrameDecoder, LinkProfile, Tpdu, encode_frame

CONNECT_TIMEOUT_MS_DEFAULT = 3000
WRITE_TIMEOUT_MS_DEFAULT = 5000


class _Framing:
    """The client's half of the link, shared by both clients: frames out, messages in."""

    def __init__(self, link: LinkProfile, tpdu: Tpdu, header: bytes | None) -> None:
        # A link with an application header needs one on every frame; zeros unless told.
        header = bytes(link.header_bytes) if header is None else header
        if len(header) != link.header_bytes:
            raise ValueError(f"link expects a {link.header_bytes}-byte header, got {len(header)}")
        self.link = link
        self.tpdu = tpdu
        self.header = header
        self.read_bytes_max = LENGTH_PREFIX_BYTES + link.frame_bytes_max
        self._decoder = FrameDecoder(link.frame_bytes_max)
        self._bodies: deque[bytes] = deque()

    def encode(self, body: bytes) -> bytes:
        return encode_frame(self.tpdu, body, self.header, self.link)

    def feed(self, data: bytes) -> None:
        """Raises FrameTooLargeError for a length prefix above the link's frame_bytes_max."""
        self._bodies.extend(self._decoder.feed(data))

    def next_message(self) -> bytes | None:
        """The next whole message received, TPDU and header stripped; None if none yet."""
        if not self._bodies:
            return None
        return split_frame(self._bodies.popleft(), self.link).message


class FrameClient:
    """An asyncio client: send messages, receive replies, one link.

    ``receive`` raises :class:`TimeoutError` when no reply arrives in time (the link stays
    usable), :class:`LinkClosedError` when the peer closed it, and
    :class:`~cardtally.wire.DecodeError` for bytes that are not a frame of the link.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framing: _Framing,
        write_timeout_ms: int,
    ) -> None:
        """Use :meth:`connect`."""
        self._reader = reader
        self._writer = writer
        self._framing = framing
        self._write_timeout_ms = write_timeout_ms
        self._eof = False
        self._closed = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        link: LinkProfile,
        tpdu: Tpdu,
        *,
        header: bytes | None = None,
        connect_timeout_ms: int = CONNECT_TIMEOUT_MS_DEFAULT,
        write_timeout_ms: int = WRITE_TIMEOUT_MS_DEFAULT,
    ) -> FrameClient:
        framing = _Framing(link, tpdu, header)
        async with asyncio.timeout(connect_timeout_ms / 1000):
            reader, writer = await asyncio.open_connection(host, port, limit=framing.read_bytes_max)
        return cls(reader, writer, framing, write_timeout_ms)

    async def send(self, body: bytes) -> None:
        if self._closed:
            raise LinkClosedError("the link is closed")
        frame = self._framing.encode(body)
        try:
            self._writer.write(frame)
            async with asyncio.timeout(self._write_timeout_ms / 1000):
                await self._writer.drain()
        except ConnectionError as exc:
            raise LinkClosedError(f"peer closed the link: {exc}") from exc

    async def receive(self, timeout_ms: int) -> bytes:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                while (message := self._framing.next_message()) is None:
                    await self._read()
        except TimeoutError:
            raise TimeoutError(f"no reply within {timeout_ms} ms") from None
        return message

    async def request(self, body: bytes, timeout_ms: int) -> bytes:
        await self.send(body)
        return await self.receive(timeout_ms)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(self._write_timeout_ms / 1000):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass  # reset by the peer: closed all the same

    async def _read(self) -> None:
        if self._eof or self._closed:
            raise LinkClosedError("peer closed the link")
        try:
            data = await self._reader.read(self._framing.read_bytes_max)
        except ConnectionError as exc:
            self._eof = True
            raise LinkClosedError(f"peer reset the link: {exc}") from exc
        if not data:
            self._eof = True
            raise LinkClosedError("peer closed the link")
        self._framing.feed(data)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class SyncFrameClient:
    """The same client over a blocking socket, for tests, benchmarks and simple tools."""

    def __init__(self, sock: socket.socket, framing: _Framing, write_timeout_ms: int) -> None:
        """Use :meth:`connect`."""
        self._sock = sock
        self._framing = framing
        self._write_timeout_ms = write_timeout_ms
        self._eof = False
        self._closed = False

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        link: LinkProfile,
        tpdu: Tpdu,
        *,
        header: bytes | None = None,
        connect_timeout_ms: int = CONNECT_TIMEOUT_MS_DEFAULT,
        write_timeout_ms: int = WRITE_TIMEOUT_MS_DEFAULT,
    ) -> SyncFrameClient:
        framing = _Framing(link, tpdu, header)
        sock = socket.create_connection((host, port), timeout=connect_timeout_ms / 1000)
        # Frames are small and answered one by one: Nagle's delay would only add latency.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, framing, write_timeout_ms)

    def send(self, body: bytes) -> None:
        if self._closed:
            raise LinkClosedError("the link is closed")
        frame = self._framing.encode(body)
        self._sock.settimeout(self._write_timeout_ms / 1000)
        try:
            self._sock.sendall(frame)
        except TimeoutError:
            # Part of a frame may be out: the stream is out of step, so the link is done.
            self.close()
            raise TimeoutError(f"frame not sent within {self._write_timeout_ms} ms") from None
        except ConnectionError as exc:
            raise LinkClosedError(f"peer closed the link: {exc}") from exc

    def receive(self, timeout_ms: int) -> bytes:
        deadline = time.monotonic() + timeout_ms / 1000
        while (message := self._framing.next_message()) is None:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError(f"no reply within {timeout_ms} ms")
            self._read(remaining_s)
        return message

    def request(self, body: bytes, timeout_ms: int) -> bytes:
        self.send(body)
        return self.receive(timeout_ms)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def _read(self, timeout_s: float) -> None:
        if self._eof or self._closed:
            raise LinkClosedError("peer closed the link")
        self._sock.settimeout(timeout_s)
        try:
            data = self._sock.recv(self._framing.read_bytes_max)
        except TimeoutError:
            return  # the caller re-checks its deadline
        except ConnectionError as exc:
            self._eof = True
            raise LinkClosedError(f"peer reset the link: {exc}") from exc
        if not data:
            self._eof = True
            raise LinkClosedError("peer closed the link")
        self._framing.feed(data)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
