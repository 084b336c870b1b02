"""Deferred replies: Reply.later(), FrameServer.complete(), run_on_lane, services around serve."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cardtally.runtime import (
    SERVER_COUNTERS,
    FrameClient,
    FrameServer,
    LinkClosedError,
    Reply,
    Request,
    ServerLimits,
)
from cardtally.runtime._serve import _serve
from cardtally.wire import encode_frame
from tests.runtime.fakes import (
    HOST,
    LINK,
    QUIET_MS,
    REPLY_TIMEOUT_MS,
    TEST_LIMITS,
    TPDU,
    WAIT_S,
    DeferringParty,
    FakeParty,
    entered,
    eventually,
    party_until,
    read_eof,
    run,
    running,
    server_for,
)


async def _client(port: int) -> FrameClient:
    return await FrameClient.connect(HOST, port, LINK, TPDU)


async def _complete(server: FrameServer, request: Request, body: bytes) -> None:
    """Complete a request the party deferred, once its batch has been delivered.

    The party sees a request before its batch returns; until the server has parked it,
    complete() does not know the id yet, so retry (bounded) rather than race the committer.
    """
    await eventually(lambda: server.complete(request.request_id, Reply(body)))


async def _sync(client: FrameClient) -> None:
    """Round-trip a ping: every request sent before it has been through a batch, so each
    deferred one among them is parked by now."""
    assert await client.request(b"ping", REPLY_TIMEOUT_MS) == b"echo:ping"


# -- Reply.later and Request.request_id ----------------------------------------------------


def test_reply_later_is_a_bodiless_open_deferred_reply() -> None:
    later = Reply.later()
    assert later == Reply(None, close=False, deferred=True)
    assert Reply(b"x").deferred is False


@pytest.mark.parametrize(
    "kwargs",
    [{"body": b"x", "deferred": True}, {"body": None, "close": True, "deferred": True}],
    ids=["with-body", "with-close"],
)
def test_a_deferred_reply_refuses_a_body_or_a_close(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="deferred"):
        Reply(**kwargs)  # type: ignore[arg-type]


def test_a_hand_built_request_has_id_zero_and_counters_are_declared() -> None:
    assert Request(1, "peer", b"", 0).request_id == 0
    assert {"deferred_completed", "deferred_dropped"} <= set(SERVER_COUNTERS)
    counters = server_for(FakeParty()).counters.snapshot()
    assert counters["deferred_completed"] == counters["deferred_dropped"] == 0


# -- complete --------------------------------------------------------------------------------


def test_replies_go_out_in_completion_order_on_one_connection() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        async with running(party) as server, await _client(server.port) as client:
            for i in range(3):
                await client.send(f"later{i}".encode())
            # Answered in its batch, before any deferred one.
            assert await client.request(b"now", REPLY_TIMEOUT_MS) == b"echo:now"
            deferred = party.deferred()
            assert [r.body for r in deferred] == [b"later0", b"later1", b"later2"]
            for request in reversed(deferred):
                assert server.complete(request.request_id, Reply(b"done:" + request.body))
            for i in reversed(range(3)):
                assert await client.receive(REPLY_TIMEOUT_MS) == f"done:later{i}".encode()
            assert not server.complete(deferred[0].request_id, Reply(b"again"))
            assert server.counters.get("deferred_completed") == 3
            assert server.counters.get("replies_out") == 4
        ids = [r.request_id for batch in party.batches for r in batch]
        assert len(set(ids)) == len(ids)
        assert min(ids) > 0

    run(scenario())


def test_request_ids_are_unique_across_connections() -> None:
    async def scenario() -> None:
        party = FakeParty()
        async with (
            running(party) as server,
            await _client(server.port) as one,
            await _client(server.port) as two,
        ):
            for i in range(3):
                assert await one.request(f"a{i}".encode(), REPLY_TIMEOUT_MS)
                assert await two.request(f"b{i}".encode(), REPLY_TIMEOUT_MS)
        ids = [r.request_id for batch in party.batches for r in batch]
        assert len(ids) == 6
        assert len(set(ids)) == 6
        assert min(ids) > 0

    run(scenario())


def test_complete_of_an_unknown_id_is_false_and_a_deferred_answer_is_refused() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        async with running(party) as server, await _client(server.port) as client:
            assert not server.complete(999_999, Reply(b"nobody"))
            await client.send(b"later")
            await _sync(client)
            (request,) = party.deferred()
            with pytest.raises(ValueError, match=r"Reply\.later"):
                server.complete(request.request_id, Reply.later())
            assert server.complete(request.request_id, Reply(b"done"))
            assert await client.receive(REPLY_TIMEOUT_MS) == b"done"
            assert server.counters.get("deferred_completed") == 1
            assert server.counters.get("deferred_dropped") == 0

    run(scenario())


def test_complete_threadsafe_answers_from_another_thread() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        server = server_for(party)
        with pytest.raises(RuntimeError, match="not started"):
            server.complete_threadsafe(1, Reply(b"x"))
        async with running(party) as server, await _client(server.port) as client:
            await client.send(b"later")
            await _sync(client)
            (request,) = party.deferred()
            with pytest.raises(ValueError, match=r"Reply\.later"):
                server.complete_threadsafe(request.request_id, Reply.later())
            await asyncio.to_thread(
                server.complete_threadsafe, request.request_id, Reply(b"from-a-thread")
            )
            assert await client.receive(REPLY_TIMEOUT_MS) == b"from-a-thread"
            assert server.counters.get("deferred_completed") == 1

    run(scenario())


@contextmanager
def _no_linger(writer: asyncio.StreamWriter) -> Iterator[None]:
    """Make closing the socket send a reset, as a terminal that is switched off mid-wait."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    yield
    writer.transport.abort()


def test_completing_after_the_client_reset_is_false_and_counts_a_drop() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        async with running(party) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            with _no_linger(writer):
                writer.write(encode_frame(TPDU, b"later") + encode_frame(TPDU, b"ping"))
                async with asyncio.timeout(WAIT_S):
                    await reader.readexactly(len(encode_frame(TPDU, b"echo:ping")))
            await eventually(lambda: server.counters.get("deferred_dropped") == 1)
            (request,) = party.deferred()
            assert not server.complete(request.request_id, Reply(b"too late"))
            assert server.counters.get("deferred_completed") == 0
            assert server.counters.get("deferred_dropped") == 1

    run(scenario())


def test_a_connection_closed_by_a_later_reply_drops_its_deferred_requests() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        async with running(party) as server, await _client(server.port) as client:
            await client.send(b"later")
            assert await client.request(b"close", REPLY_TIMEOUT_MS) == b"bye"
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)
            assert server.counters.get("deferred_dropped") == 1
            (request,) = party.deferred()
            assert not server.complete(request.request_id, Reply(b"too late"))

    run(scenario())


def test_a_half_closed_peer_gets_its_deferred_reply_and_then_the_close() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        async with running(party) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            try:
                writer.write(encode_frame(TPDU, b"later"))
                writer.write_eof()
                await party_until(party, lambda _: len(party.deferred()) == 1)
                await _complete(server, party.deferred()[0], b"done")
                received = await read_eof(reader)
            finally:
                writer.close()
                await writer.wait_closed()
            assert received == encode_frame(TPDU.reply(), b"done")

    run(scenario())


def test_deferred_requests_hold_the_in_flight_window() -> None:
    limits = ServerLimits(in_flight_per_connection_max=2, drain_timeout_ms=2000)

    async def scenario() -> None:
        party = DeferringParty()
        async with running(party, limits) as server, await _client(server.port) as client:
            for i in range(3):
                await client.send(f"later{i}".encode())
            await party_until(party, lambda p: p.requests_seen == 2)
            await eventually(lambda: server.counters.get("frames_in") == 3)
            await asyncio.sleep(QUIET_MS / 1000)
            assert party.requests_seen == 2  # the third waits for room in the window
            first, second = party.deferred()
            await _complete(server, first, b"done0")
            assert await client.receive(REPLY_TIMEOUT_MS) == b"done0"
            await party_until(party, lambda p: p.requests_seen == 3)
            await _complete(server, second, b"done1")
            await _complete(server, party.deferred()[2], b"done2")
            assert await client.receive(REPLY_TIMEOUT_MS) == b"done1"
            assert await client.receive(REPLY_TIMEOUT_MS) == b"done2"

    run(scenario())


def test_a_deferred_request_keeps_a_silent_connection_from_idling_out() -> None:
    limits = ServerLimits(idle_timeout_ms=50, drain_timeout_ms=2000)

    async def scenario() -> None:
        party = DeferringParty()
        async with running(party, limits) as server, await _client(server.port) as client:
            await client.send(b"later")
            await party_until(party, lambda _: len(party.deferred()) == 1)
            await asyncio.sleep(QUIET_MS / 1000)  # several idle timeouts
            await _complete(server, party.deferred()[0], b"done")
            assert await client.receive(REPLY_TIMEOUT_MS) == b"done"

    run(scenario())


# -- stopping --------------------------------------------------------------------------------


def test_graceful_stop_waits_for_a_deferred_reply_and_delivers_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        party = DeferringParty()
        server = server_for(party)
        await server.start()
        async with await _client(server.port) as client:
            await client.send(b"later")
            await _sync(client)
            stopping = asyncio.create_task(server.stop())
            await asyncio.sleep(0.1)
            assert not stopping.done()
            (request,) = party.deferred()
            assert server.complete(request.request_id, Reply(b"late but there"))
            assert await client.receive(REPLY_TIMEOUT_MS) == b"late but there"
            async with asyncio.timeout(TEST_LIMITS.drain_timeout_ms / 1000):
                await stopping
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)
        assert server.counters.get("deferred_completed") == 1
        assert server.counters.get("deferred_dropped") == 0

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert "event=server.stopped drained=true" in caplog.text
    assert "event=server.drain_abandoned" not in caplog.text


def test_stop_abandons_a_deferred_reply_that_never_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = ServerLimits(drain_timeout_ms=300)

    async def scenario() -> None:
        party = DeferringParty()
        server = server_for(party, limits)
        await server.start()
        async with await _client(server.port) as client:
            await client.send(b"later")
            await _sync(client)
            async with asyncio.timeout(WAIT_S):
                await server.stop()
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)
        (request,) = party.deferred()
        assert not server.complete(request.request_id, Reply(b"too late"))
        assert server.counters.get("deferred_dropped") == 1
        assert server.counters.get("deferred_completed") == 0

    with caplog.at_level(logging.INFO):
        run(scenario())
    abandoned = [r.getMessage() for r in caplog.records if "server.drain_abandoned" in r.message]
    assert len(abandoned) == 1
    assert "deferred=1" in abandoned[0]
    assert "reason=abandoned" in caplog.text
    assert "event=server.stopped drained=false" in caplog.text


def test_abort_drops_deferred_requests_at_once() -> None:
    async def scenario() -> None:
        party = DeferringParty()
        server = server_for(party, ServerLimits(drain_timeout_ms=30_000))
        await server.start()
        async with await _client(server.port) as client:
            await client.send(b"later")
            await _sync(client)
            server.abort()
            async with asyncio.timeout(WAIT_S):
                await server.wait_closed()
            with pytest.raises(LinkClosedError):
                await client.receive(REPLY_TIMEOUT_MS)
        assert server.counters.get("deferred_dropped") == 1

    run(scenario())


# -- run_on_lane -----------------------------------------------------------------------------


def test_run_on_lane_runs_on_the_lane_and_never_overlaps_a_batch() -> None:
    async def scenario() -> None:
        party = FakeParty(hold=True)
        server = server_for(party)
        with pytest.raises(RuntimeError, match="lane"):
            server.run_on_lane(party.lane_job, 0)
        await server.start()
        try:
            async with await _client(server.port) as client:
                await client.send(b"held")
                await entered(party)
                job = server.run_on_lane(party.lane_job, 7)
                await asyncio.sleep(QUIET_MS / 1000)
                assert not job.done()  # queued behind the batch that is still running
                party.release.set()
                async with asyncio.timeout(WAIT_S):
                    assert await job == ("test-lane", 7)
                assert await client.receive(REPLY_TIMEOUT_MS) == b"echo:held"
        finally:
            party.release.set()
            await server.stop()
        assert party.overlaps == 0
        assert party.thread_names == {"test-lane"}
        with pytest.raises(RuntimeError, match="lane"):
            server.run_on_lane(party.lane_job, 0)

    run(scenario())


def test_a_lane_job_behind_a_batch_resumes_after_its_deferred_requests_are_parked() -> None:
    async def scenario() -> None:
        party = DeferringParty(hold=True)
        async with running(party) as server, await _client(server.port) as client:
            await client.send(b"later")
            await entered(party)
            job = server.run_on_lane(party.lane_job, b"issuer answer")
            party.release.set()
            async with asyncio.timeout(WAIT_S):
                _, answer = await job
            # No retry: the batch that deferred it was delivered before this line runs.
            (request,) = party.deferred()
            assert server.complete(request.request_id, Reply(answer))
            assert await client.receive(REPLY_TIMEOUT_MS) == b"issuer answer"

    run(scenario())


def test_an_error_in_a_lane_job_reaches_its_awaiter_and_the_server_keeps_serving() -> None:
    def fail(_: int) -> None:
        raise LookupError("no such issuer")

    async def scenario() -> None:
        async with running(FakeParty()) as server, await _client(server.port) as client:
            with pytest.raises(LookupError):
                async with asyncio.timeout(WAIT_S):
                    await server.run_on_lane(fail, 1)
            assert await client.request(b"still", REPLY_TIMEOUT_MS) == b"echo:still"

    run(scenario())


# -- services around serve -------------------------------------------------------------------


class _Recorder(logging.Handler):
    """Appends the server's lifecycle events to a shared list of what happened, in order."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    def emit(self, record: logging.LogRecord) -> None:
        event = record.getMessage().split()[0]
        if event.startswith("event=server."):
            self.order.append(event.removeprefix("event="))


@contextmanager
def _recorded_logger(order: list[str]) -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.runtime.deferred.serve")
    handler = _Recorder(order)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)


class _Service:
    def __init__(self, name: str, order: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.order = order
        self.fail_start = fail_start

    async def start(self) -> None:
        self.order.append(f"start:{self.name}")
        await asyncio.sleep(0)
        if self.fail_start:
            raise ConnectionRefusedError(f"{self.name} cannot reach its issuer")

    async def stop(self) -> None:
        await asyncio.sleep(0)
        self.order.append(f"stop:{self.name}")


def test_services_start_before_the_server_and_stop_after_its_drain() -> None:
    order: list[str] = []

    async def scenario(logger: logging.Logger) -> None:
        party = DeferringParty()
        server = FrameServer(
            party, host=HOST, port=0, link=LINK, limits=TEST_LIMITS, name="test", logger=logger
        )
        stop = asyncio.Event()
        terminals: list[asyncio.Task[None]] = []

        async def terminal(port: int) -> None:
            async with await _client(port) as client:
                await client.send(b"later")
                await _sync(client)
                stop.set()  # as SIGTERM would
                await eventually(lambda: "server.stopping" in order)
                await asyncio.sleep(0.1)
                order.append("complete")
                (request,) = party.deferred()
                assert server.complete(request.request_id, Reply(b"answer"))
                assert await client.receive(REPLY_TIMEOUT_MS) == b"answer"

        def ready(port: int) -> None:
            order.append("ready")
            terminals.append(asyncio.create_task(terminal(port)))

        services = [_Service("a", order), _Service("b", order)]
        await _serve(server, ready, services, stop)
        await asyncio.gather(*terminals)

    with _recorded_logger(order) as logger:
        run(scenario(logger))
    assert order == [
        "start:a",
        "start:b",
        "server.listening",
        "ready",
        "server.stopping",
        "complete",
        "server.stopped",
        "stop:b",
        "stop:a",
    ]


def test_a_service_that_fails_to_start_stops_the_ones_started_and_no_server_starts() -> None:
    order: list[str] = []

    async def scenario(logger: logging.Logger) -> None:
        server = FrameServer(
            FakeParty(), host=HOST, port=0, link=LINK, limits=TEST_LIMITS, name="t", logger=logger
        )
        services = [_Service("a", order), _Service("b", order, fail_start=True)]
        services.append(_Service("c", order))
        with pytest.raises(ConnectionRefusedError, match="b cannot"):
            await _serve(server, None, services, asyncio.Event())
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.port

    with _recorded_logger(order) as logger:
        run(scenario(logger))
    assert order == ["start:a", "start:b", "stop:a"]
