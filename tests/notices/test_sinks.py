"""Sinks: console lines, a synced JSON-lines file, a webhook over real loopback HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from cardtally.notices import (
    BatchNoticeSink,
    ConsoleSink,
    DeliveryError,
    JsonLinesSink,
    Notice,
    NoticeError,
    NoticeSink,
    WebhookSink,
    build_sinks,
)
from tests.notices.support import Receiver, make_notice, webhook_server

# Short, so that the timeout test is quick; the loopback server answers in far less.
TIMEOUT_MS = 300


def _free_port() -> int:
    # Bound and closed at once: nothing listens there for a while.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        assert isinstance(port, int)
        return port


def test_console_sink_writes_one_line_per_notice() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    sink.deliver(make_notice("N1"))
    assert stream.getvalue() == f"notice N1 {make_notice('N1').text}\n"
    assert isinstance(sink, NoticeSink)
    assert sink.name == "console"


def test_console_sink_defaults_to_stdout_at_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleSink().deliver(make_notice("N1"))
    assert capsys.readouterr().out.startswith("notice N1 [cardtally bank] Card ending 1234:")


def test_console_sink_on_a_closed_stream() -> None:
    stream = io.StringIO()
    stream.close()
    with pytest.raises(DeliveryError, match="console: cannot write"):
        ConsoleSink(stream).deliver(make_notice())


def test_jsonl_sink_appends_objects_and_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "out" / "notices.jsonl"
    sink = JsonLinesSink(path)
    sink.deliver(make_notice("N1"))
    sink.deliver(make_notice("N2", kind="refund", reason="void"))
    lines = path.read_text("utf-8").splitlines()
    documents = [json.loads(line) for line in lines]
    assert [d["id"] for d in documents] == ["N1", "N2"]
    assert documents[1]["text"] == make_notice("N2", kind="refund", reason="void").text
    assert Notice.from_json(documents[0]) == make_notice("N1")
    assert path.stat().st_mode & 0o077 == 0


def test_jsonl_sink_starts_a_fresh_line_after_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "notices.jsonl"
    path.write_bytes(b'{"id":"N0","te')  # a crash in the middle of a write
    JsonLinesSink(path).deliver(make_notice("N1"))
    lines = path.read_text("utf-8").splitlines()
    assert lines[0] == '{"id":"N0","te'
    assert json.loads(lines[1])["id"] == "N1"


def test_jsonl_sink_syncs_a_batch_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notices.jsonl"
    path.write_bytes(b'{"id":"N0"}\n')  # not new: no directory sync to count
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = JsonLinesSink(path)
    assert isinstance(sink, BatchNoticeSink)
    sink.deliver_many([make_notice(f"N{n}") for n in range(1, 6)])
    sink.deliver_many([])
    assert len(synced) == 1
    lines = path.read_text("utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["N0", "N1", "N2", "N3", "N4", "N5"]


def test_console_sink_writes_a_batch_in_one_write() -> None:
    class Counting(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    stream = Counting()
    ConsoleSink(stream).deliver_many([make_notice("N1"), make_notice("N2")])
    assert stream.writes == 1
    assert [line.split()[1] for line in stream.getvalue().splitlines()] == ["N1", "N2"]


def test_jsonl_sink_that_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DeliveryError, match=r"notices\.jsonl: cannot create directory .*/file: "):
        JsonLinesSink(blocker / "notices.jsonl").deliver(make_notice())
    with pytest.raises(DeliveryError, match=r"jsonl .*: cannot append: Is a directory"):
        JsonLinesSink(tmp_path).deliver(make_notice())


def test_webhook_posts_json_with_an_idempotency_key() -> None:
    receiver = Receiver()
    with webhook_server(receiver) as port:
        sink = WebhookSink(f"http://127.0.0.1:{port}/hooks/notices?token=abc", TIMEOUT_MS)
        sink.deliver(make_notice("N1"))
    [request] = receiver.requests
    assert request.path == "/hooks/notices?token=abc"
    assert request.headers["Idempotency-Key"] == "N1"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert body["text"] == make_notice("N1").text
    assert Notice.from_json(body) == make_notice("N1")
    assert sink.url == f"http://127.0.0.1:{port}/hooks/notices"


def test_webhook_credentials_go_in_a_header_and_never_in_errors() -> None:
    receiver = Receiver(status=503)
    with webhook_server(receiver) as port:
        sink = WebhookSink(f"http://bank:s3cret@127.0.0.1:{port}/n?key=k3y", TIMEOUT_MS)
        with pytest.raises(DeliveryError) as caught:
            sink.deliver(make_notice("N1"))
    message = str(caught.value)
    assert message == f"webhook http://127.0.0.1:{port}/n answered HTTP 503"
    assert "s3cret" not in message
    assert "k3y" not in message
    expected = "Basic " + base64.b64encode(b"bank:s3cret").decode()
    assert receiver.requests[0].headers["Authorization"] == expected


@pytest.mark.parametrize("status", [201, 204])
def test_webhook_any_2xx_is_delivered(status: int) -> None:
    with webhook_server(Receiver(status=status)) as port:
        WebhookSink(f"http://127.0.0.1:{port}/", TIMEOUT_MS).deliver(make_notice())


@pytest.mark.parametrize("status", [301, 302, 307, 400, 500])
def test_webhook_other_statuses_fail_and_redirects_are_not_followed(status: int) -> None:
    receiver = Receiver(status=status)
    with webhook_server(receiver) as port:
        sink = WebhookSink(f"http://127.0.0.1:{port}/", TIMEOUT_MS)
        with pytest.raises(DeliveryError, match=f"answered HTTP {status}$"):
            sink.deliver(make_notice())
    assert [r.path for r in receiver.requests] == ["/"]


def test_webhook_not_listening() -> None:
    sink = WebhookSink(f"http://127.0.0.1:{_free_port()}/", TIMEOUT_MS)
    with pytest.raises(DeliveryError, match=r"unreachable: .*[Cc]onnection refused"):
        sink.deliver(make_notice())


def test_webhook_times_out() -> None:
    receiver = Receiver(hold=threading.Event())
    with webhook_server(receiver) as port:
        sink = WebhookSink(f"http://127.0.0.1:{port}/", TIMEOUT_MS)
        with pytest.raises(DeliveryError, match=f"timed out after {TIMEOUT_MS} ms"):
            sink.deliver(make_notice())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/x", "must be http:// or https://"),
        ("http:///path", "must be http:// or https://"),
        ("127.0.0.1:8080/x", "must be http:// or https://"),
        ("http://127.0.0.1:99999/x", "invalid port"),
    ],
)
def test_webhook_urls_are_checked_at_construction(url: str, message: str) -> None:
    with pytest.raises(NoticeError, match=message):
        WebhookSink(url)


@pytest.mark.parametrize("timeout_ms", [0, 60_001])
def test_webhook_timeout_is_bounded(timeout_ms: int) -> None:
    with pytest.raises(NoticeError, match="timeout_ms"):
        WebhookSink("http://127.0.0.1/", timeout_ms)


def test_build_sinks_in_order(tmp_path: Path) -> None:
    sinks = build_sinks(
        ["webhook", "console", "jsonl"],
        jsonl_path=tmp_path / "n.jsonl",
        webhook_url="https://hooks.example/n",
        webhook_timeout_ms=1_000,
    )
    assert [s.name for s in sinks] == ["webhook", "console", "jsonl"]
    assert build_sinks([], jsonl_path=None, webhook_url=None) == []


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["sms"], "unknown notice sink 'sms' \\(known: console, jsonl, webhook\\)"),
        (["console", "console"], "'console' is listed twice"),
        (["jsonl"], "'jsonl' needs a file path"),
        (["webhook"], "'webhook' needs a URL"),
        ("console", "must be a list"),
    ],
)
def test_build_sinks_errors(names: list[str], message: str) -> None:
    with pytest.raises(NoticeError, match=message):
        build_sinks(names, jsonl_path=None, webhook_url=None)


def test_build_sinks_checks_the_webhook_settings() -> None:
    with pytest.raises(NoticeError, match="timeout_ms"):
        build_sinks(["webhook"], jsonl_path=None, webhook_url="http://h/", webhook_timeout_ms=0)
