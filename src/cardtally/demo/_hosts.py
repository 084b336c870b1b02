"""The issuer and the switch as child processes: started, waited for, stopped cleanly.

``cardtally demo`` and ``cardtally up`` run each host as ``python -m cardtally issuer serve``
(or ``switch serve``) in a process of its own, exactly as an operator would start it, with
its stdout and stderr in ``<home>/logs/``. A host is ready when it prints
``listening on HOST:PORT``; it stops on SIGTERM after answering what is in flight, and is
killed only if it outlives the bound.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

STARTUP_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
_POLL_S: Final = 0.05
_LISTENING: Final = re.compile(r"listening on \S+:(\d+)")
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class HostError(RuntimeError):
    """A host did not start, or stopped on its own; the message quotes its log."""


@dataclass
class HostProcess:
    """One ``cardtally <party> serve`` child of ``home``."""

    party: str  # "issuer" or "switch"
    home: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / f"{self.party}.log"

    @property
    def out_path(self) -> Path:
        return self.home / "logs" / f"{self.party}.out"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, *, logs_to_console: bool = False) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.out_path.open("wb")
        self._files.append(out)
        err: IO[bytes] | None = None
        if not logs_to_console:
            err = self.log_path.open("ab")
            self._files.append(err)
        command = [sys.executable, "-m", "cardtally", "--home", str(self.home)]
        self._proc = subprocess.Popen(  # noqa: S603 - our interpreter, our arguments
            [*command, self.party, "serve"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_child_env(),
        )

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> int:
        """The port it listens on, once it says so; :class:`HostError` if it died or hung."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.output())
            if found is not None:
                self.port = int(found.group(1))
                return self.port
            if self.exited() is not None:
                raise HostError(f"the {self.party} exited at start: {self.log_tail()}")
            time.sleep(_POLL_S)
        self.stop()
        raise HostError(f"the {self.party} was not listening after {timeout_s:.0f} s")

    def exited(self) -> int | None:
        """Its exit code, or None while it runs."""
        return None if self._proc is None else self._proc.poll()

    def output(self) -> str:
        try:
            return self.out_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM): it answers what is in flight, then exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, SIGKILL if it is still there; its exit code."""
        if self._proc is None:
            return None
        self.terminate()
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait(timeout=timeout_s)
        for file in self._files:
            file.close()
        self._files.clear()
        return code


def _child_env() -> dict[str, str]:
    """The parent's environment without the settings that would point a host elsewhere."""
    env = dict(os.environ)
    for name in ("CARDTALLY_HOME", "CARDTALLY_DEBUG"):
        env.pop(name, None)
    return env


def run_until_stopped(hosts: Sequence[HostProcess], poll_s: float = 0.5) -> HostProcess | None:
    """Block until SIGINT or SIGTERM (None) or until a host exits on its own (that host).

    Ctrl-C in a terminal reaches the hosts too (one process group): they stop by themselves,
    and the caller's :meth:`HostProcess.stop` then only waits for them.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        while not stop.wait(poll_s):
            for host in hosts:
                if host.exited() is not None:
                    return host
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
