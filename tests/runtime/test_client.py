"""FrameClient and SyncFrameClient against a live server and against misbehaving peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from cardtally.runtime import FrameClient, LinkClosedError, SyncFrameClient
from cardtally.wire import FrameTooLargeError, LinkProfile, encode_frame
from tests.runtime.fakes import (
    HOST,
    LINK,
    QUIET_MS,
    REPLY_TIMEOUT_MS,
    TPDU,
    WAIT_S,
    FakeParty,
    run,
    running,
)

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_peer(behaviour: Behaviour) -> AsyncIterator[int]:
    """A bare TCP server that does exactly what the test says, for errors a FrameServer avoids."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await behaviour(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def test_async_round_trip_and_pipelining() -> None:
    async def scenario() -> None:
        async with (
            running(FakeParty()) as server,
            await FrameClient.connect(HOST, server.port, LINK, TPDU) as client,
        ):
            assert await client.request(b"0800", REPLY_TIMEOUT_MS) == b"echo:0800"
            for i in range(5):
                await client.send(str(i).encode())
            assert [await client.receive(REPLY_TIMEOUT_MS) for _ in range(5)] == [
                f"echo:{i}".encode() for i in range(5)
            ]

    run(scenario())


def test_sync_round_trip_timeout_and_close() -> None:
    def talk(port: int) -> None:
        with SyncFrameClient.connect(HOST, port, LINK, TPDU) as client:
            assert client.request(b"0800", REPLY_TIMEOUT_MS) == b"echo:0800"
            client.send(b"silent")
            with pytest.raises(TimeoutError, match=f"{QUIET_MS} ms"):
                client.receive(QUIET_MS)
            assert client.request(b"close", REPLY_TIMEOUT_MS) == b"bye"
            with pytest.raises(LinkClosedError):
                client.receive(REPLY_TIMEOUT_MS)
            with pytest.raises(LinkClosedError):
                client.receive(REPLY_TIMEOUT_MS)
        with pytest.raises(LinkClosedError):
            client.send(b"after close")

    async def scenario() -> None:
        async with running(FakeParty()) as server:
            await asyncio.to_thread(talk, server.port)

    run(scenario())


def test_async_timeout_leaves_the_link_usable() -> None:
    async def scenario() -> None:
        async with (
            running(FakeParty()) as server,
            await FrameClient.connect(HOST, server.port, LINK, TPDU) as client,
        ):
            await client.send(b"silent")
            with pytest.raises(TimeoutError, match=f"{QUIET_MS} ms"):
                await client.receive(QUIET_MS)
            assert await client.request(b"next", REPLY_TIMEOUT_MS) == b"echo:next"
        with pytest.raises(LinkClosedError):
            await client.send(b"after close")

    run(scenario())


async def _close_after_one_frame(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
    async with asyncio.timeout(WAIT_S):
        await reader.readexactly(2)


async def _oversized(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write((LINK.frame_bytes_max + 1).to_bytes(2, "big") + bytes(16))
    await writer.drain()


async def _two_replies_in_one_write(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    reply = TPDU.reply()
    writer.write(encode_frame(reply, b"one") + encode_frame(reply, b"two")[:4])
    await writer.drain()
    writer.write(encode_frame(reply, b"two")[4:])
    await writer.drain()


def test_async_client_sees_peer_close_oversize_and_split_frames() -> None:
    async def scenario() -> None:
        async with (
            raw_peer(_close_after_one_frame) as port,
            await FrameClient.connect(HOST, port, LINK, TPDU) as client,
        ):
            await client.send(b"x")
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)
        async with (
            raw_peer(_oversized) as port,
            await FrameClient.connect(HOST, port, LINK, TPDU) as client,
        ):
            with pytest.raises(FrameTooLargeError):
                await client.receive(REPLY_TIMEOUT_MS)
        async with (
            raw_peer(_two_replies_in_one_write) as port,
            await FrameClient.connect(HOST, port, LINK, TPDU) as client,
        ):
            assert await client.receive(REPLY_TIMEOUT_MS) == b"one"
            assert await client.receive(REPLY_TIMEOUT_MS) == b"two"

    run(scenario())


def test_sync_client_enforces_frame_bytes_max() -> None:
    def receive(port: int) -> None:
        with (
            SyncFrameClient.connect(HOST, port, LINK, TPDU) as client,
            pytest.raises(FrameTooLargeError),
        ):
            client.receive(REPLY_TIMEOUT_MS)

    async def scenario() -> None:
        async with raw_peer(_oversized) as port:
            await asyncio.to_thread(receive, port)

    run(scenario())


def test_clients_check_the_header_length_before_connecting() -> None:
    link = LinkProfile(app_header=True)
    with pytest.raises(ValueError, match="6-byte header"):
        SyncFrameClient.connect(HOST, 1, link, TPDU, header=b"\x00")

    async def scenario() -> None:
        with pytest.raises(ValueError, match="6-byte header"):
            await FrameClient.connect(HOST, 1, link, TPDU, header=b"\x00")

    run(scenario())


def test_connect_to_a_closed_port_fails_fast() -> None:
    async def free_port() -> int:
        server = await asyncio.start_server(lambda r, w: None, HOST, 0)
        port: int = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return port

    port = run(free_port())
    with pytest.raises(ConnectionRefusedError):
        SyncFrameClient.connect(HOST, port, LINK, TPDU, connect_timeout_ms=1000)
