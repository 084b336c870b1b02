"""The dispatcher: at least once to every sink, per-sink backoff, a loop that stops."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from cardtally.notices import (
    DeliveryError,
    DeliveryReport,
    Notice,
    NoticeDispatcher,
    NoticeError,
    NoticeOutbox,
    WebhookSink,
    notice_table,
)
from cardtally.notices._dispatcher import FULL_RESCAN_MS, RETRY_BACKOFF_MS_FIRST
from cardtally.storage import StorageError, open_engine, sqlite_url, transaction
from tests.notices.support import Receiver, RecordingSink, make_notice, webhook_server

NOW_MS = 1_795_242_720_000
# Generous for a loop that should react in well under a tenth of this.
PROMPT_S = 5.0


@pytest.fixture
def idle_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine for checks that refuse before touching the database (one leg is enough)."""
    engine = open_engine(sqlite_url(tmp_path / "idle.sqlite3"))
    yield engine
    engine.dispose()


def _add(engine: Engine, *ids: str) -> None:
    with transaction(engine) as conn:
        outbox = NoticeOutbox(conn)
        for notice_id in ids:
            outbox.add(make_notice(notice_id))


def _pending(engine: Engine, sink: str) -> int:
    with transaction(engine) as conn:
        return NoticeOutbox(conn).pending_count(sink)


def test_delivers_each_notice_to_every_sink_once(notices_engine: Engine) -> None:
    _add(notices_engine, "N1", "N2", "N3")
    a, b = RecordingSink("a"), RecordingSink("b")
    dispatcher = NoticeDispatcher(notices_engine, [a, b], batch_max=2)
    first = dispatcher.deliver_once(NOW_MS)
    assert first == DeliveryReport(
        delivered={"a": 2, "b": 2}, failed={"a": 0, "b": 0}, pending={"a": 1, "b": 1}
    )
    second = dispatcher.deliver_once(NOW_MS + 1)
    assert (second.delivered_total, second.pending_total) == (2, 0)
    idle = dispatcher.deliver_once(NOW_MS + 2)
    assert (idle.delivered_total, idle.failed_total, idle.pending_total) == (0, 0, 0)
    assert a.ids == b.ids == ["N1", "N2", "N3"]


class BatchRecordingSink(RecordingSink):
    """A sink that takes batches: all of one or, while failing, none of it."""

    def __init__(self, name: str = "batcher") -> None:
        super().__init__(name)
        self.batches: list[list[str]] = []

    def deliver_many(self, notices: Sequence[Notice]) -> None:
        if self.failing:
            raise DeliveryError(f"{self.name} is down")
        self.batches.append([notice.id for notice in notices])
        self.received.extend(notices)


def test_a_batch_sink_gets_each_round_in_one_call(notices_engine: Engine) -> None:
    _add(notices_engine, "N1", "N2", "N3")
    sink = BatchRecordingSink()
    dispatcher = NoticeDispatcher(notices_engine, [sink], batch_max=2)
    assert dispatcher.deliver_once(NOW_MS).delivered == {"batcher": 2}
    assert dispatcher.deliver_once(NOW_MS + 1).delivered == {"batcher": 1}
    assert sink.batches == [["N1", "N2"], ["N3"]]
    assert _pending(notices_engine, sink.name) == 0


def test_a_failed_batch_counts_nothing_and_comes_again_whole(notices_engine: Engine) -> None:
    _add(notices_engine, "N1", "N2")
    sink = BatchRecordingSink()
    sink.failing = True
    dispatcher = NoticeDispatcher(notices_engine, [sink])
    failed = dispatcher.deliver_once(NOW_MS)
    assert (failed.delivered, failed.failed, failed.pending) == (
        {"batcher": 0},
        {"batcher": 1},
        {"batcher": 2},
    )
    sink.failing = False
    later = dispatcher.deliver_once(NOW_MS + RETRY_BACKOFF_MS_FIRST)
    assert later.delivered == {"batcher": 2}
    assert sink.batches == [["N1", "N2"]]


def test_a_rolled_back_notice_is_never_delivered(notices_engine: Engine) -> None:
    sink = RecordingSink()
    with pytest.raises(RuntimeError, match="posting failed"), transaction(notices_engine) as conn:
        NoticeOutbox(conn).add(make_notice("N1"))
        raise RuntimeError("posting failed")
    _add(notices_engine, "N2")
    NoticeDispatcher(notices_engine, [sink]).deliver_once(NOW_MS)
    assert sink.ids == ["N2"]


def test_a_failing_sink_backs_off_alone_and_catches_up(notices_engine: Engine) -> None:
    _add(notices_engine, "N1", "N2")
    good, bad = RecordingSink("good"), RecordingSink("bad")
    bad.failing = True
    dispatcher = NoticeDispatcher(notices_engine, [bad, good], retry_backoff_ms_max=4_000)
    report = dispatcher.deliver_once(NOW_MS)
    assert report.delivered == {"bad": 0, "good": 2}
    assert report.failed == {"bad": 1, "good": 0}
    assert report.pending == {"bad": 2, "good": 0}
    assert report.errors == {"bad": "bad is down"}
    # Backing off: 1 s, 2 s, 4 s, then capped at 4 s; the good sink is not held up.
    failed_at = NOW_MS
    for delay_ms in [1_000, 2_000, 4_000, 4_000]:
        early = dispatcher.deliver_once(failed_at + delay_ms - 1)
        assert early.deferred == frozenset({"bad"})
        assert (early.pending["bad"], early.failed, early.delivered) == (
            2,
            {"good": 0},
            {"good": 0},
        )
        failed_at += delay_ms
        assert dispatcher.deliver_once(failed_at).failed["bad"] == 1
    bad.failing = False
    assert dispatcher.deliver_once(failed_at + 3_999).deferred == frozenset({"bad"})
    late = dispatcher.deliver_once(failed_at + 4_000)
    assert late.delivered["bad"] == 2
    assert late.errors == {}
    assert bad.ids == ["N1", "N2"]
    assert good.ids == ["N1", "N2"]


def test_a_sink_that_crashes_does_not_stop_the_others(
    notices_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name = "broken"

        def deliver(self, notice: Notice) -> None:
            raise KeyError("bug")

    _add(notices_engine, "N1")
    good = RecordingSink("good")
    report = NoticeDispatcher(notices_engine, [Broken(), good]).deliver_once(NOW_MS)
    assert report.errors == {"broken": "sink raised KeyError"}
    assert good.ids == ["N1"]
    assert "notices.sink_crashed sink=broken id=N1" in caplog.text


def test_redelivered_when_the_record_of_delivery_is_lost(
    notices_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash between delivering and recording: the sink has the notice, the outbox
    # does not know. At least once means it comes again, under the same id.
    _add(notices_engine, "N1")
    sink = RecordingSink()

    def crash(*_args: object) -> bool:
        raise SystemExit("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(NoticeOutbox, "mark_all_delivered", crash)
        with pytest.raises(SystemExit):
            NoticeDispatcher(notices_engine, [sink]).deliver_once(NOW_MS)
    assert sink.ids == ["N1"]
    assert _pending(notices_engine, sink.name) == 1
    restarted = NoticeDispatcher(notices_engine, [sink])
    assert restarted.deliver_once(NOW_MS + 1).delivered == {sink.name: 1}
    assert sink.ids == ["N1", "N1"]
    assert _pending(notices_engine, sink.name) == 0


def _add_with_seq(engine: Engine, notice_id: str, seq: int) -> None:
    payload = json.dumps(make_notice(notice_id).to_json())
    with transaction(engine) as conn:
        conn.execute(
            notice_table.insert().values(
                seq=seq, id=notice_id, at_ms=NOW_MS, kind="debit", payload=payload
            )
        )


def test_a_notice_committed_late_under_the_floor_comes_with_the_rescan(
    notices_engine: Engine,
) -> None:
    # On PostgreSQL a transaction can take seq 15, and commit after the one that took 20
    # was read and delivered. Rounds read above a floor, so only the rescan finds it.
    _add_with_seq(notices_engine, "N1", 10)
    _add_with_seq(notices_engine, "N2", 20)
    sink = RecordingSink()
    dispatcher = NoticeDispatcher(notices_engine, [sink])
    assert dispatcher.deliver_once(NOW_MS).delivered == {sink.name: 2}
    _add_with_seq(notices_engine, "N3", 15)
    _add_with_seq(notices_engine, "N4", 30)
    assert dispatcher.deliver_once(NOW_MS + 1).delivered == {sink.name: 1}
    assert sink.ids == ["N1", "N2", "N4"]
    late = dispatcher.deliver_once(NOW_MS + FULL_RESCAN_MS)
    assert (late.delivered, late.pending) == ({sink.name: 1}, {sink.name: 0})
    assert sink.ids == ["N1", "N2", "N4", "N3"]
    assert _pending(notices_engine, sink.name) == 0


def test_the_floor_never_passes_an_undelivered_notice(notices_engine: Engine) -> None:
    _add(notices_engine, "N1", "N2", "N3", "N4", "N5")
    sink = RecordingSink()
    dispatcher = NoticeDispatcher(notices_engine, [sink], batch_max=2)
    assert dispatcher.deliver_once(NOW_MS).pending == {sink.name: 3}
    sink.failing = True
    assert dispatcher.deliver_once(NOW_MS + 1).failed == {sink.name: 1}
    sink.failing = False
    for step in range(2, 5):
        dispatcher.deliver_once(NOW_MS + 10_000 * step)
    assert sink.ids == ["N1", "N2", "N3", "N4", "N5"]


def test_webhook_500_then_recovery(notices_engine: Engine) -> None:
    _add(notices_engine, "N1", "N2")
    receiver = Receiver(status=500)
    with webhook_server(receiver) as port:
        dispatcher = NoticeDispatcher(
            notices_engine, [WebhookSink(f"http://127.0.0.1:{port}/n", 1_000)]
        )
        down = dispatcher.deliver_once(NOW_MS)
        assert down.errors == {"webhook": f"webhook http://127.0.0.1:{port}/n answered HTTP 500"}
        assert down.pending == {"webhook": 2}
        receiver.status = 200
        assert dispatcher.deliver_once(NOW_MS + 999).deferred == frozenset({"webhook"})
        up = dispatcher.deliver_once(NOW_MS + 1_000)
    assert up.delivered == {"webhook": 2}
    assert up.pending == {"webhook": 0}
    # The failed attempt reached the receiver too; the key lets it drop the repeat.
    keys = [r.headers["Idempotency-Key"] for r in receiver.requests]
    assert keys == ["N1", "N1", "N2"]


def test_webhook_not_listening_then_started(notices_engine: Engine) -> None:
    _add(notices_engine, "N1")
    receiver = Receiver()
    with webhook_server(receiver) as port:
        pass  # a port that was just free; nothing listens there now
    dispatcher = NoticeDispatcher(notices_engine, [WebhookSink(f"http://127.0.0.1:{port}/", 500)])
    down = dispatcher.deliver_once(NOW_MS)
    assert "unreachable" in down.errors["webhook"]
    assert down.pending == {"webhook": 1}
    with webhook_server(receiver, port):
        assert dispatcher.deliver_once(NOW_MS + 1_000).delivered == {"webhook": 1}
    assert [b["id"] for b in receiver.bodies()] == ["N1"]


def test_logs_carry_the_card_tail(notices_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    _add(notices_engine, "N1")
    logger = logging.getLogger("test.notices")
    with caplog.at_level(logging.INFO, logger="test.notices"):
        NoticeDispatcher(notices_engine, [RecordingSink()], logger=logger).deliver_once(NOW_MS)
    expected = "event=notices.delivered sink=recorder id=N1 kind=debit card_tail=1234"
    assert caplog.messages == [expected]


@pytest.mark.parametrize(
    ("batch_max", "retry_backoff_ms_max", "message"),
    [
        (0, 60_000, "batch_max"),
        (1_001, 60_000, "batch_max"),
        (100, 0, "retry_backoff_ms_max"),
        (100, 3_600_001, "retry_backoff_ms_max"),
    ],
)
def test_settings_are_bounded(
    idle_engine: Engine, batch_max: int, retry_backoff_ms_max: int, message: str
) -> None:
    with pytest.raises(NoticeError, match=message):
        NoticeDispatcher(
            idle_engine,
            [RecordingSink()],
            batch_max=batch_max,
            retry_backoff_ms_max=retry_backoff_ms_max,
        )


def test_now_must_be_a_time(idle_engine: Engine) -> None:
    with pytest.raises(NoticeError, match="now_ms"):
        NoticeDispatcher(idle_engine, [RecordingSink()]).deliver_once(-1)


def test_sink_names_must_be_unique(idle_engine: Engine) -> None:
    with pytest.raises(NoticeError, match="unique"):
        NoticeDispatcher(idle_engine, [RecordingSink("a"), RecordingSink("a")])


async def _until(predicate: object, timeout_s: float = PROMPT_S) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_run_wakes_on_new_notices_and_stops_promptly(notices_engine: Engine) -> None:
    sink = RecordingSink()
    dispatcher = NoticeDispatcher(notices_engine, [sink])

    async def scenario() -> float:
        stop, wake = asyncio.Event(), asyncio.Event()
        # An interval far longer than the test: only `wake` can explain a delivery.
        loop = asyncio.create_task(dispatcher.run(stop, interval_ms=60_000, wake=wake))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(_add, notices_engine, "N1")
        wake.set()
        await _until(lambda: sink.ids == ["N1"])
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(loop, PROMPT_S)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0
    assert _pending(notices_engine, sink.name) == 0


def test_run_polls_without_wake_and_survives_a_bad_round(
    notices_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    dispatcher = NoticeDispatcher(notices_engine, [sink])
    outages = iter([StorageError("cannot use database: connection refused")])

    def flaky(*_args: object) -> None:
        # The first statement of the dispatcher's first round meets a database outage.
        outage = next(outages, None)
        if outage is not None:
            raise outage

    async def scenario() -> None:
        stop = asyncio.Event()
        await asyncio.to_thread(_add, notices_engine, "N1")
        event.listen(notices_engine, "before_cursor_execute", flaky)
        loop = asyncio.create_task(dispatcher.run(stop, interval_ms=20))
        await _until(lambda: sink.ids == ["N1"])
        stop.set()
        await asyncio.wait_for(loop, PROMPT_S)

    asyncio.run(scenario())
    assert "notices.round_failed" in caplog.text
    assert "connection refused" in caplog.text


def test_stop_during_a_delivery_finishes_that_notice_only(notices_engine: Engine) -> None:
    started, release = threading.Event(), threading.Event()

    class Slow(RecordingSink):
        def deliver(self, notice: Notice) -> None:
            started.set()
            release.wait(PROMPT_S)
            super().deliver(notice)

    _add(notices_engine, "N1", "N2", "N3")
    sink = Slow("slow")
    dispatcher = NoticeDispatcher(notices_engine, [sink])

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(dispatcher.run(stop, interval_ms=20))
        assert await asyncio.to_thread(started.wait, PROMPT_S)
        stop.set()
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.wait_for(loop, PROMPT_S)

    asyncio.run(scenario())
    assert sink.ids == ["N1"]
    assert _pending(notices_engine, "slow") == 2


def test_run_with_stop_already_set_returns_at_once(notices_engine: Engine) -> None:
    _add(notices_engine, "N1")
    sink = RecordingSink()

    async def scenario() -> None:
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(NoticeDispatcher(notices_engine, [sink]).run(stop), PROMPT_S)

    asyncio.run(scenario())
    assert sink.ids == []


def test_run_refuses_an_unbounded_interval(idle_engine: Engine) -> None:
    dispatcher = NoticeDispatcher(idle_engine, [])
    with pytest.raises(NoticeError, match="interval_ms"):
        asyncio.run(dispatcher.run(asyncio.Event(), interval_ms=0))
