"""serve_forever in a real process: ready callback, round trip, clean exit on a signal."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cardtally.runtime import SyncFrameClient
from tests.runtime.fakes import HOST, LINK, REPLY_TIMEOUT_MS, TPDU, WAIT_S

REPO = Path(__file__).resolve().parents[2]


def _start() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "tests.runtime.echo_serve"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], WAIT_S * 2)
    if not readable:
        process.kill()
        process.communicate(timeout=WAIT_S)
        pytest.fail("the server never said it was ready")
    line = process.stdout.readline()
    assert line.startswith("ready "), line
    return process, int(line.split()[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_forever_stops_cleanly_on_a_signal(signum: signal.Signals) -> None:
    process, port = _start()
    try:
        with SyncFrameClient.connect(HOST, port, LINK, TPDU) as client:
            assert client.request(b"0800", REPLY_TIMEOUT_MS) == b"0800"
            process.send_signal(signum)
            out, err = process.communicate(timeout=WAIT_S * 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, err
    assert out == "stopped\n"
    assert f"event=server.signal action=stop server=echo signal={signum.name}" in err
    assert "event=server.stopped drained=true" in err
    assert "Traceback" not in err
