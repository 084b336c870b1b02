"""FrameServer: group commit, durable before visible, bounds, bad input, shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cardtally.runtime import FrameClient, LinkClosedError, ServerLimits
from cardtally.wire import LinkProfile, Tpdu, encode_frame
from tests.runtime.fakes import (
    CARD,
    HOST,
    LINK,
    QUIET_MS,
    REPLY_TIMEOUT_MS,
    TEST_LIMITS,
    TPDU,
    FakeParty,
    entered,
    eventually,
    party_until,
    read_eof,
    run,
    running,
    server_for,
)


async def _client(port: int, link: LinkProfile = LINK) -> FrameClient:
    return await FrameClient.connect(HOST, port, link, TPDU)


def test_replies_are_not_written_before_handle_batch_returns() -> None:
    async def scenario() -> None:
        party = FakeParty(hold=True)
        async with running(party) as server, await _client(server.port) as client:
            await client.send(b"0200a")
            await entered(party)
            with pytest.raises(TimeoutError):
                await client.receive(QUIET_MS)
            assert server.counters.get("replies_out") == 0
            party.release.set()
            assert await client.receive(REPLY_TIMEOUT_MS) == b"echo:0200a"

    run(scenario())


def test_pipelined_requests_from_many_connections_share_batches() -> None:
    connections, per_connection = 3, 10
    total = connections * per_connection

    async def scenario() -> None:
        party = FakeParty(hold=True)
        async with running(party) as server:
            clients = [await _client(server.port) for _ in range(connections)]
            try:
                for c, client in enumerate(clients):
                    for i in range(per_connection):
                        await client.send(f"c{c}r{i}".encode())
                # The first batch is held; everything else piles up behind it.
                await entered(party)
                await eventually(lambda: server.counters.get("frames_in") == total)
                party.release.set()
                for c, client in enumerate(clients):
                    for i in range(per_connection):
                        reply = await client.receive(REPLY_TIMEOUT_MS)
                        assert reply == f"echo:c{c}r{i}".encode()
            finally:
                for client in clients:
                    await client.close()
            assert party.requests_seen == total
            assert len(party.batches) < total
            assert max(len(batch) for batch in party.batches) > 1
            assert server.counters.get("batches") == len(party.batches)
            assert server.counters.get("batch_requests") == total
            assert server.counters.get("replies_out") == total

    run(scenario())


def test_in_flight_window_bounds_what_the_handler_sees_of_a_connection() -> None:
    limits = ServerLimits(in_flight_per_connection_max=2, drain_timeout_ms=2000)

    async def scenario() -> None:
        party = FakeParty(hold=True)
        async with running(party, limits) as server, await _client(server.port) as client:
            for i in range(5):
                await client.send(f"r{i}".encode())
            await entered(party)
            await eventually(lambda: server.counters.get("frames_in") == 5)
            party.release.set()
            for i in range(5):
                assert await client.receive(REPLY_TIMEOUT_MS) == f"echo:r{i}".encode()
        # Without the window the first batch would have taken all five.
        assert [len(batch) for batch in party.batches] == [2, 2, 1]

    run(scenario())


def test_connections_beyond_the_maximum_are_refused() -> None:
    limits = ServerLimits(connections_max=1, drain_timeout_ms=2000)

    async def scenario() -> None:
        async with running(FakeParty(), limits) as server, await _client(server.port) as first:
            assert await first.request(b"one", REPLY_TIMEOUT_MS) == b"echo:one"
            async with await _client(server.port) as extra:
                with pytest.raises(LinkClosedError):
                    await extra.receive(REPLY_TIMEOUT_MS)
            assert server.counters.get("connections_refused") == 1
            assert await first.request(b"two", REPLY_TIMEOUT_MS) == b"echo:two"

    run(scenario())


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x00\x07" + bytes.fromhex("61000100020000"), "TPDU ID"),
        (b"\x00\x03" + bytes.fromhex("600001"), "TPDU and header need"),
        ((LINK.frame_bytes_max + 1).to_bytes(2, "big"), "the link allows"),
    ],
    ids=["bad-tpdu-id", "short-tpdu", "oversized"],
)
def test_a_bad_frame_closes_only_its_connection(
    garbage: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running(FakeParty()) as server, await _client(server.port) as good:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            try:
                writer.write(garbage)
                assert await read_eof(reader) == b""
            finally:
                writer.close()
                await writer.wait_closed()
            assert server.counters.get("connections_closed_bad_frame") == 1
            assert await good.request(b"still", REPLY_TIMEOUT_MS) == b"echo:still"

    with caplog.at_level(logging.INFO):
        run(scenario())
    rejected = [r.getMessage() for r in caplog.records if "event=frame.rejected" in r.message]
    assert len(rejected) == 1
    assert reason in rejected[0]
    assert "reason=bad_frame" in caplog.text


def test_replies_use_the_request_header_and_the_swapped_tpdu() -> None:
    link = LinkProfile(app_header=True)
    header = bytes.fromhex("603100310000")

    async def scenario() -> None:
        async with running(FakeParty(), link=link) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            try:
                writer.write(encode_frame(Tpdu(7, 9), b"0800", header, link))
                async with asyncio.timeout(5):
                    reply = await reader.readexactly(2 + 5 + 6 + len(b"echo:0800"))
            finally:
                writer.close()
                await writer.wait_closed()
            assert reply == encode_frame(Tpdu(9, 7), b"echo:0800", header, link)

    run(scenario())


def test_graceful_stop_drains_in_flight_requests_and_refuses_new_connections() -> None:
    async def scenario() -> None:
        party = FakeParty(hold=True)
        server = server_for(party)
        await server.start()
        port = server.port
        async with await _client(port) as client:
            await client.send(b"last")
            await entered(party)
            stopping = asyncio.create_task(server.stop())
            await asyncio.sleep(0)  # stop() closes the listener in its first step
            with pytest.raises(ConnectionRefusedError):
                await _client(port)
            party.release.set()
            assert await client.receive(REPLY_TIMEOUT_MS) == b"echo:last"
            async with asyncio.timeout(TEST_LIMITS.drain_timeout_ms / 1000):
                await stopping
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)

    run(scenario())


def test_stop_abandons_what_is_not_done_within_the_drain_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = ServerLimits(drain_timeout_ms=300)

    async def scenario() -> None:
        party = FakeParty(hold=True)
        server = server_for(party, limits)
        await server.start()
        try:
            async with await _client(server.port) as client:
                await client.send(b"stuck")
                await entered(party)
                loop = asyncio.get_running_loop()
                started = loop.time()
                await server.stop()
                assert loop.time() - started < 2.0
                with pytest.raises(LinkClosedError):
                    await client.receive(REPLY_TIMEOUT_MS)
        finally:
            party.release.set()
        assert server.counters.get("replies_out") == 0

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert "event=server.drain_abandoned" in caplog.text
    assert "reason=abandoned" in caplog.text


def test_abort_closes_at_once() -> None:
    async def scenario() -> None:
        party = FakeParty(hold=True)
        server = server_for(party, ServerLimits(drain_timeout_ms=30_000))
        await server.start()
        try:
            async with await _client(server.port) as client:
                await client.send(b"stuck")
                await entered(party)
                server.abort()
                async with asyncio.timeout(2):
                    await server.wait_closed()
                with pytest.raises(LinkClosedError):
                    await client.receive(REPLY_TIMEOUT_MS)
        finally:
            party.release.set()

    run(scenario())


def test_a_failing_batch_closes_its_connections_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with running(FakeParty()) as server:
            async with await _client(server.port) as doomed:
                await doomed.send(b"boom")
                with pytest.raises(LinkClosedError):
                    await doomed.receive(REPLY_TIMEOUT_MS)
            async with await _client(server.port) as fresh:
                assert await fresh.request(b"ok", REPLY_TIMEOUT_MS) == b"echo:ok"
            assert server.counters.get("handler_errors") == 1

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert "event=batch.failed" in caplog.text
    assert "error=RuntimeError" in caplog.text
    assert CARD not in caplog.text
    assert "boom" not in caplog.text


def test_a_wrong_number_of_replies_is_a_failed_batch() -> None:
    class Short(FakeParty):
        def handle_batch(self, requests):  # type: ignore[no-untyped-def]
            return super().handle_batch(requests)[:-1]

    async def scenario() -> None:
        async with running(Short()) as server, await _client(server.port) as client:
            await client.send(b"x")
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)
            assert server.counters.get("handler_errors") == 1

    run(scenario())


def test_no_reply_and_close_replies() -> None:
    async def scenario() -> None:
        async with running(FakeParty()) as server, await _client(server.port) as client:
            await client.send(b"silent")
            assert await client.request(b"after", REPLY_TIMEOUT_MS) == b"echo:after"
            assert await client.request(b"close", REPLY_TIMEOUT_MS) == b"bye"
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)

    run(scenario())


def test_an_unencodable_reply_closes_the_connection_after_the_earlier_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        party = FakeParty(hold=True)
        async with running(party) as server, await _client(server.port) as client:
            for body in (b"a", b"huge", b"b"):
                await client.send(body)
            await entered(party)
            await eventually(lambda: server.counters.get("frames_in") == 3)
            party.release.set()
            assert await client.receive(REPLY_TIMEOUT_MS) == b"echo:a"
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert "event=reply.unencodable" in caplog.text
    assert "reason=reply_unencodable" in caplog.text


def test_a_half_closed_peer_still_gets_its_replies() -> None:
    async def scenario() -> None:
        party = FakeParty(hold=True)
        async with running(party) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            try:
                writer.write(encode_frame(TPDU, b"a") + encode_frame(TPDU, b"b"))
                writer.write_eof()
                await entered(party)
                party.release.set()
                received = await read_eof(reader)
            finally:
                writer.close()
                await writer.wait_closed()
            reply_tpdu = TPDU.reply()
            assert received == encode_frame(reply_tpdu, b"echo:a") + encode_frame(
                reply_tpdu, b"echo:b"
            )

    run(scenario())


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = ServerLimits(idle_timeout_ms=100, drain_timeout_ms=2000)

    async def scenario() -> None:
        async with running(FakeParty(), limits) as server, await _client(server.port) as client:
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert "reason=idle" in caplog.text


def test_tick_runs_on_the_worker_lane_and_never_overlaps_a_batch() -> None:
    limits = ServerLimits(tick_interval_ms=10, drain_timeout_ms=2000)

    async def scenario() -> None:
        party = FakeParty()
        async with running(party, limits) as server, await _client(server.port) as client:
            for i in range(20):
                assert await client.request(f"t{i}".encode(), REPLY_TIMEOUT_MS)
            await party_until(party, lambda p: len(p.ticks) >= 3)
            assert server.counters.get("ticks") >= 3
        assert party.overlaps == 0
        assert party.thread_names == {"test-lane"}
        assert party.ticks == sorted(party.ticks)

    run(scenario())


def test_requests_carry_connection_peer_and_receive_time() -> None:
    async def scenario() -> None:
        party = FakeParty()
        async with (
            running(party) as server,
            await _client(server.port) as one,
            await _client(server.port) as two,
        ):
            assert await one.request(b"1", REPLY_TIMEOUT_MS) == b"echo:1"
            assert await two.request(b"2", REPLY_TIMEOUT_MS) == b"echo:2"
        first, second = party.batches[0][0], party.batches[1][0]
        assert first.connection_id != second.connection_id
        assert first.peer.startswith("127.0.0.1:")
        assert first.body == b"1"
        assert first.received_at_ms <= second.received_at_ms

    run(scenario())


def test_server_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="connections_max"):
        ServerLimits(connections_max=0)
    with pytest.raises(ValueError, match="drain_timeout_ms"):
        ServerLimits(drain_timeout_ms=True)
    with pytest.raises(ValueError, match="batch_size_max"):
        ServerLimits(batch_size_max=10, queue_depth_max=5)


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = server_for(FakeParty()).port
