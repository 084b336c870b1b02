"""IssuerLink against a tiny scripted issuer: delivery, refusal, reconnects, echoes, stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from cardtally.runtime import Counters
from cardtally.runtime._frames import split_frame
from cardtally.runtime._link import LINK_COUNTERS, IssuerLink, LinkLimits
from cardtally.wire import FrameDecoder, LinkProfile, encode_frame
from tests.runtime.fakes import CARD, HOST, LINK, QUIET_MS, TPDU, WAIT_S, eventually, run

NAME = "issuer_a"
# Quick reconnects, and echoes only where a test asks for them.
FAST = LinkLimits(
    connect_timeout_ms=2000,
    write_timeout_ms=1000,
    reconnect_backoff_min_ms=20,
    reconnect_backoff_max_ms=200,
    echo_idle_ms=60_000,
    echo_timeout_ms=60_000,
    in_flight_max=8,
)


class PeerConn:
    """One connection as the issuer sees it: frames in (decoded), replies out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = FrameDecoder(LINK.frame_bytes_max)
        self._messages: list[bytes] = []

    async def next_message(self) -> bytes:
        async with asyncio.timeout(WAIT_S):
            while not self._messages:
                data = await self.reader.read(4096)
                assert data, "the link closed the connection"
                self._messages += [split_frame(b, LINK).message for b in self._decoder.feed(data)]
        return self._messages.pop(0)

    async def read_eof(self) -> None:
        async with asyncio.timeout(WAIT_S):
            while await self.reader.read(4096):
                pass

    def reply(self, *messages: bytes) -> None:
        self.writer.write(b"".join(encode_frame(TPDU.reply(), m, b"", LINK) for m in messages))

    def close(self) -> None:
        self.writer.close()


class Peer:
    def __init__(self) -> None:
        self.accepted: asyncio.Queue[PeerConn] = asyncio.Queue()
        self.conns: list[PeerConn] = []

    def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback: the connection stays open until the test closes it.
        conn = PeerConn(reader, writer)
        self.conns.append(conn)
        self.accepted.put_nowait(conn)

    async def next_conn(self) -> PeerConn:
        async with asyncio.timeout(WAIT_S):
            return await self.accepted.get()


@asynccontextmanager
async def issuer_peer(port: int = 0) -> AsyncIterator[tuple[Peer, int]]:
    peer = Peer()
    server = await asyncio.start_server(peer.on_connect, HOST, port)
    try:
        yield peer, int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for conn in peer.conns:
            conn.writer.transport.abort()
        async with asyncio.timeout(WAIT_S):
            await server.wait_closed()


async def free_port() -> int:
    """A port nobody listens on (bound a moment ago, then closed)."""
    server = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


class Owner:
    """What the switch would be: records messages and state changes."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.states: list[bool] = []
        self.in_flight_when_down: list[int] = []
        self.link: IssuerLink | None = None

    def on_message(self, message: bytes) -> None:
        self.messages.append(message)

    def on_state(self, up: bool) -> None:
        self.states.append(up)
        if not up:
            assert self.link is not None
            self.in_flight_when_down.append(self.link.in_flight)


@asynccontextmanager
async def issuer_link(
    port: int,
    limits: LinkLimits = FAST,
    *,
    echo_message: Callable[[], bytes] | None = None,
    counters: Counters | None = None,
    on_message: Callable[[bytes], None] | None = None,
) -> AsyncIterator[tuple[IssuerLink, Owner]]:
    owner = Owner()
    link = IssuerLink(
        NAME,
        HOST,
        port,
        link=LINK,
        tpdu=TPDU,
        limits=limits,
        on_message=on_message or owner.on_message,
        echo_message=echo_message,
        on_state=owner.on_state,
        counters=counters,
    )
    owner.link = link
    await link.start()
    try:
        yield link, owner
    finally:
        async with asyncio.timeout(WAIT_S):
            await link.stop()


def count(link: IssuerLink, counter: str) -> int:
    return link.counters.get(counter, NAME)


def test_replies_reach_the_owner_in_the_order_the_issuer_writes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = b"0100 " + CARD.encode(), b"0100 second"

    async def scenario() -> None:
        async with issuer_peer() as (peer, port), issuer_link(port) as (link, owner):
            assert await link.wait_up(int(WAIT_S * 1000))
            assert link.send(first)
            assert link.send(second)
            assert link.in_flight == 2
            conn = await peer.next_conn()
            assert [await conn.next_message(), await conn.next_message()] == [first, second]
            conn.reply(b"answer second")
            conn.reply(b"answer first " + CARD.encode())
            await eventually(lambda: len(owner.messages) == 2)
            assert owner.messages == [b"answer second", b"answer first " + CARD.encode()]
            assert link.in_flight == 2  # only the owner knows what an answer settles
            link.settle(2)
            assert link.in_flight == 0
            assert owner.states == [True]
            assert count(link, "link_frames_out") == 2
            assert count(link, "link_frames_in") == 2
            assert count(link, "link_reconnects") == 0
        assert owner.states == [True, False]  # stop() of a link that was up reports it down

    run(scenario())
    assert "event=link.connected" in caplog.text
    assert "event=link.stopped" in caplog.text
    assert CARD not in caplog.text


def test_send_is_refused_while_down_and_the_link_comes_up_when_the_issuer_does() -> None:
    async def scenario() -> None:
        port = await free_port()
        async with issuer_link(port) as (link, owner):
            assert not link.send(b"too early")
            await eventually(lambda: count(link, "link_connect_failures") >= 2)
            assert not link.up
            assert not await link.wait_up(QUIET_MS)
            assert not link.send(b"still too early")
            assert count(link, "link_send_refused_down") == 2
            assert link.in_flight == 0
            async with issuer_peer(port) as (peer, _):
                assert await link.wait_up(int(WAIT_S * 1000))
                assert link.send(b"at last")
                conn = await peer.next_conn()
                assert await conn.next_message() == b"at last"
                assert owner.states == [True]

    run(scenario())


def test_reconnects_after_the_issuer_closes_and_forgets_what_was_in_flight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with issuer_peer() as (peer, port), issuer_link(port) as (link, owner):
            assert await link.wait_up(int(WAIT_S * 1000))
            first = await peer.next_conn()
            for body in (b"a", b"b", b"c"):
                assert link.send(body)
            assert link.in_flight == 3
            assert await first.next_message() == b"a"
            first.close()
            second = await peer.next_conn()
            await eventually(lambda: owner.states == [True, False, True])
            assert owner.in_flight_when_down == [0]
            assert link.in_flight == 0
            assert link.send(b"again")
            assert await second.next_message() == b"again"
            assert count(link, "link_reconnects") == 1

    run(scenario())
    assert "event=link.lost" in caplog.text
    assert "in_flight=3" in caplog.text


def test_a_garbage_frame_drops_the_link_and_it_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # A frame whose TPDU ID is not 0x60: not a frame of this link.
    garbage = (10).to_bytes(2, "big") + bytes(10)

    async def scenario() -> None:
        async with issuer_peer() as (peer, port), issuer_link(port) as (link, owner):
            first = await peer.next_conn()
            await eventually(lambda: link.up)
            first.writer.write(encode_frame(TPDU.reply(), b"good", b"", LINK) + garbage)
            await first.read_eof()  # the link hung up on us
            second = await peer.next_conn()
            await eventually(lambda: owner.states == [True, False, True])
            assert owner.messages == [b"good"]  # frames before the bad one still count
            assert link.send(b"after")
            assert await second.next_message() == b"after"

    run(scenario())
    assert "reason=bad_frame" in caplog.text


def test_an_oversized_frame_drops_the_link() -> None:
    async def scenario() -> None:
        async with issuer_peer() as (peer, port), issuer_link(port) as (_, owner):
            first = await peer.next_conn()
            first.writer.write((LINK.frame_bytes_max + 1).to_bytes(2, "big") + bytes(16))
            await first.read_eof()
            await peer.next_conn()
            await eventually(lambda: owner.states == [True, False, True])

    run(scenario())


def test_echo_after_silence_and_drop_when_it_goes_unanswered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    limits = LinkLimits(
        reconnect_backoff_min_ms=20,
        reconnect_backoff_max_ms=200,
        echo_idle_ms=100,
        echo_timeout_ms=200,
    )

    async def scenario() -> None:
        async with (
            issuer_peer() as (peer, port),
            issuer_link(port, limits, echo_message=lambda: b"0800 echo") as (link, owner),
        ):
            first = await peer.next_conn()
            assert await first.next_message() == b"0800 echo"
            first.reply(b"0810 echo")
            await eventually(lambda: owner.messages == [b"0810 echo"])
            # Quiet again: another echo, and this one goes unanswered.
            assert await first.next_message() == b"0800 echo"
            await first.read_eof()
            await peer.next_conn()
            await eventually(lambda: owner.states == [True, False, True])
            assert count(link, "link_echoes") >= 2
            assert count(link, "link_frames_in") == 1

    run(scenario())
    assert "event=link.echo_timeout" in caplog.text
    assert "reason=echo_timeout" in caplog.text


def test_no_echo_while_frames_keep_arriving() -> None:
    limits = LinkLimits(echo_idle_ms=300, echo_timeout_ms=300)

    async def scenario() -> None:
        async with (
            issuer_peer() as (peer, port),
            issuer_link(port, limits, echo_message=lambda: b"0800 echo") as (link, owner),
        ):
            conn = await peer.next_conn()
            for _ in range(6):
                conn.reply(b"unsolicited")
                await asyncio.sleep(0.1)
            assert count(link, "link_echoes") == 0
            assert owner.states == [True]

    run(scenario())


def test_in_flight_max_refuses_and_settle_frees_slots() -> None:
    limits = LinkLimits(in_flight_max=2)

    async def scenario() -> None:
        async with issuer_peer() as (_, port), issuer_link(port, limits) as (link, _owner):
            assert await link.wait_up(int(WAIT_S * 1000))
            assert link.send(b"1")
            assert link.send(b"2")
            assert not link.send(b"3")
            assert count(link, "link_send_refused_full") == 1
            link.settle()
            assert link.in_flight == 1
            assert link.send(b"3")
            link.settle(10)
            assert link.in_flight == 0
            with pytest.raises(ValueError, match="negative"):
                link.settle(-1)

    run(scenario())


def test_a_peer_that_stops_reading_fills_the_link_and_gets_dropped() -> None:
    link_profile = LinkProfile(frame_bytes_max=0xFFFF)
    limits = LinkLimits(
        write_timeout_ms=200,
        reconnect_backoff_min_ms=20,
        reconnect_backoff_max_ms=200,
        in_flight_max=100_000,
    )
    body = bytes(60_000)

    async def scenario() -> None:
        async with issuer_peer() as (peer, port):
            owner = Owner()
            link = IssuerLink(
                NAME,
                HOST,
                port,
                link=link_profile,
                tpdu=TPDU,
                limits=limits,
                on_message=owner.on_message,
                on_state=owner.on_state,
            )
            owner.link = link
            await link.start()
            try:
                await peer.next_conn()  # and never read from it
                assert await link.wait_up(int(WAIT_S * 1000))
                for _ in range(2000):  # at most 120 MB, far beyond any socket buffer
                    if not link.send(body):
                        break
                else:
                    pytest.fail("the link never filled up")
                # Keep offering, as an owner would, until the link gives up on the peer.
                async with asyncio.timeout(WAIT_S):
                    while owner.states != [True, False, True]:
                        link.send(body)
                        await asyncio.sleep(0.02)
                assert count(link, "link_send_refused_full") >= 1
                await peer.next_conn()
                assert link.send(b"small")
            finally:
                async with asyncio.timeout(WAIT_S):
                    await link.stop()

    run(scenario())


def test_stop_during_backoff_returns_promptly_and_is_idempotent() -> None:
    slow = LinkLimits(reconnect_backoff_min_ms=60_000, reconnect_backoff_max_ms=60_000)

    async def scenario() -> None:
        port = await free_port()
        owner = Owner()
        link = IssuerLink(
            NAME, HOST, port, link=LINK, tpdu=TPDU, limits=slow, on_message=owner.on_message
        )
        await link.start()
        await eventually(lambda: count(link, "link_connect_failures") == 1)
        waiter = asyncio.create_task(link.wait_up(60_000))
        async with asyncio.timeout(WAIT_S):  # far less than the 60 s backoff
            await link.stop()
            assert not await waiter  # stop() releases whoever waits for the link
        await link.stop()
        assert not link.send(b"after stop")
        with pytest.raises(RuntimeError, match="already started"):
            await link.start()

    run(scenario())


def test_stop_while_up_closes_the_connection() -> None:
    async def scenario() -> None:
        async with issuer_peer() as (peer, port):
            async with issuer_link(port) as (link, _):
                conn = await peer.next_conn()
                assert await link.wait_up(int(WAIT_S * 1000))
                assert link.send(b"last words")
            assert not link.up
            assert await conn.next_message() == b"last words"
            await conn.read_eof()

    run(scenario())


def test_an_owner_callback_that_raises_does_not_break_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    seen: list[bytes] = []

    def fussy(message: bytes) -> None:
        seen.append(message)
        if message == b"first":
            raise RuntimeError(f"cannot match card {CARD}")

    async def scenario() -> None:
        async with issuer_peer() as (peer, port), issuer_link(port, on_message=fussy) as (_, o):
            conn = await peer.next_conn()
            conn.reply(b"first", b"second")
            await eventually(lambda: seen == [b"first", b"second"])
            assert o.states == [True]

    run(scenario())
    assert "event=link.callback_failed" in caplog.text
    assert CARD not in caplog.text


def test_counters_are_declared_under_the_link_name() -> None:
    counters = Counters(label_names=dict.fromkeys(LINK_COUNTERS, "link"))
    IssuerLink(
        NAME,
        HOST,
        1,
        link=LINK,
        tpdu=TPDU,
        limits=FAST,
        on_message=lambda m: None,
        counters=counters,
    )
    assert counters.snapshot()['link_frames_in{link="issuer_a"}'] == 0
    assert len(counters.snapshot()) == len(LINK_COUNTERS)


@pytest.mark.parametrize(
    "changes",
    [
        {"connect_timeout_ms": 0},
        {"echo_timeout_ms": -1},
        {"in_flight_max": True},
        {"write_timeout_ms": 1.5},
        {"reconnect_backoff_min_ms": 500, "reconnect_backoff_max_ms": 100},
    ],
)
def test_limits_are_checked(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"reconnect_backoff|positive int"):
        LinkLimits(**changes)  # type: ignore[arg-type]


def test_construction_checks_name_port_and_header() -> None:
    def make(name: str = NAME, port: int = 1, header: bytes | None = None) -> IssuerLink:
        return IssuerLink(
            name,
            HOST,
            port,
            link=LinkProfile(app_header=True),
            tpdu=TPDU,
            limits=FAST,
            on_message=lambda m: None,
            header=header,
        )

    make()
    with pytest.raises(ValueError, match="link name"):
        make(name="two words")
    with pytest.raises(ValueError, match="port"):
        make(port=0)
    with pytest.raises(ValueError, match="6-byte header"):
        make(header=b"\x00")
