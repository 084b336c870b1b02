"""The POS terminal as a device: one command, driven over a blocking TCP link to the switch.

The core decides; this loop only sends what it says, waits until the deadline it
names, and reports what came back. A link that cannot be opened, or that closes
while waiting, is "no answer" for that send; the next send opens a new link, so a
reversal's retries each get a fresh chance to reach the switch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cardtally.runtime._client import SyncFrameClient
from cardtally.runtime._clock import wall_clock_ms
from cardtally.runtime._errors import LinkClosedError
from cardtally.runtime._file_lock import BusyError, exclusive
from cardtally.terminal import Answer, Command, Done, NoAnswer, Outcome, Send, TerminalCore, Wait
from cardtally.wire import LinkProfile, Tpdu

#: The terminal's TPDU towards the acquirer: destination NII 0001, source 0000.
TERMINAL_TPDU: Final = Tpdu(destination=1, source=0)
CONNECT_TIMEOUT_MS_MAX: Final = 5_000


class TerminalBusyError(Exception):
    """Another process is running a command on this terminal."""


@contextmanager
def device_lock(journal_file: Path) -> Iterator[None]:
    """Hold the terminal for one command, as a real device does one thing at a time.

    Without it a second process would find the first one's sale in flight, recover it as
    failed and reverse it while the first still waits for the approval.
    """
    lock_file = journal_file.with_name(journal_file.name + ".lock")
    busy = (
        f"terminal {journal_file.name.split('.')[0]} is busy: another command is "
        "running on it; wait for it to finish"
    )
    try:
        with exclusive(lock_file, busy):
            yield
    except BusyError as exc:
        raise TerminalBusyError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class SwitchAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> SwitchAddress:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"not HOST:PORT: {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class TerminalDevice:
    """Runs commands of one terminal core against the switch at ``address``."""

    def __init__(self, core: TerminalCore, address: SwitchAddress) -> None:
        self._core = core
        self._address = address
        self._client: SyncFrameClient | None = None

    def run(self, command: Command) -> Outcome:
        try:
            step = self._core.start(command, wall_clock_ms())
            while not isinstance(step, Done):
                assert isinstance(step, Send), "a flow waits only after a send"
                step = self._send_and_wait(step)
            return step.outcome
        finally:
            self._disconnect()

    def _send_and_wait(self, send: Send) -> Wait | Send | Done:
        deadline = time.monotonic() + send.timeout_ms / 1000
        event = self._deliver(send, deadline)
        step = self._core.on_event(event, wall_clock_ms())
        while isinstance(step, Wait):
            step = self._core.on_event(self._receive(deadline), wall_clock_ms())
        return step

    def _deliver(self, send: Send, deadline: float) -> Answer | NoAnswer:
        try:
            client = self._connect(send.timeout_ms)
        except OSError as exc:
            return NoAnswer(f"switch {self._address} unreachable: {exc.strerror or exc}")
        try:
            client.send(send.body)
        except (OSError, LinkClosedError) as exc:
            self._disconnect()
            return NoAnswer(f"link to the switch failed while sending: {exc}")
        return self._receive(deadline)

    def _receive(self, deadline: float) -> Answer | NoAnswer:
        if self._client is None:
            return NoAnswer("link closed")
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            return NoAnswer("timeout")
        try:
            return Answer(self._client.receive(remaining_ms))
        except TimeoutError:
            return NoAnswer(f"no answer within {self._core.timeout_ms} ms")
        except (OSError, LinkClosedError) as exc:
            self._disconnect()
            return NoAnswer(f"link closed while waiting: {exc}")

    def _connect(self, timeout_ms: int) -> SyncFrameClient:
        if self._client is None:
            self._client = SyncFrameClient.connect(
                self._address.host,
                self._address.port,
                LinkProfile(),
                TERMINAL_TPDU,
                connect_timeout_ms=min(timeout_ms, CONNECT_TIMEOUT_MS_MAX),
            )
        return self._client

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
