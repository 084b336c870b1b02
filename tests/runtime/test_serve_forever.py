"""serve_forever in a real process: ready callback, round trip, exit 0 on signals."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cardtally.runtime import SyncFrameClient
from tests.runtime.fakes import HOST, LINK, REPLY_TIMEOUT_MS, TPDU, WAIT_S

REPO = Path(__file__).resolve().parents[2]


def _read_until(fd: int, marker: bytes, timeout_s: float) -> bytes:
    """Raw reads from a pipe until ``marker`` shows (no buffered file object in the way)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while marker not in seen:
        remaining_s = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(0.0, remaining_s))
        if not readable:
            pytest.fail(f"{marker!r} did not appear within {timeout_s} s; got {seen!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail(f"pipe closed before {marker!r}; got {seen!r}")
        seen += chunk
    return seen


@contextmanager
def echo_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "tests.runtime.echo_serve"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = _read_until(process.stdout.fileno(), b"\n", WAIT_S * 2)
        assert ready.startswith(b"ready "), ready
        yield process, int(ready.split()[1])
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=WAIT_S)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_forever_stops_cleanly_on_a_signal(signum: signal.Signals) -> None:
    with (
        echo_server() as (process, port),
        SyncFrameClient.connect(HOST, port, LINK, TPDU) as client,
    ):
        assert client.request(b"0800", REPLY_TIMEOUT_MS) == b"0800"
        process.send_signal(signum)
        out, err = process.communicate(timeout=WAIT_S * 2)
    text = err.decode()
    assert process.returncode == 0, text
    assert out == b"stopped\n"
    assert f"event=server.signal action=stop server=echo signal={signum.name}" in text
    assert "event=server.stopped drained=true" in text
    assert "Traceback" not in text


def test_a_second_signal_aborts_a_stop_that_is_waiting_on_the_party() -> None:
    with echo_server() as (process, port):
        assert process.stderr is not None
        with SyncFrameClient.connect(HOST, port, LINK, TPDU) as client:
            client.send(b"hold")
            _read_until(process.stderr.fileno(), b"holding", WAIT_S)
            process.send_signal(signal.SIGTERM)
            _read_until(process.stderr.fileno(), b"event=server.stopping", WAIT_S)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=WAIT_S * 2)
    text = err.decode()
    assert process.returncode == 0, text
    assert out == b"stopped\n"
    assert "action=abort" in text
    assert "event=server.stopped drained=false" in text
