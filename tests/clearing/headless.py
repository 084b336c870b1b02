"""Headless Chromium driven over the DevTools protocol, for tests: no package beyond Debian's.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol commands from file
descriptor 3 and writes answers and events to descriptor 4, each message JSON ended by a NUL
byte. :class:`Chromium` hands it the two pipes, :class:`Page` drives one tab (navigate,
evaluate, screenshot) and collects what the page reported as an error. Every wait is bounded:
a browser that hangs or dies fails the test with the tail of its log, and the browser's whole
process group is killed on the way out if ``Browser.close`` does not end it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

#: Where Debian's ``chromium`` package puts the browser.
CHROMIUM: Final = Path("/usr/bin/chromium")
#: Flags that work as root, offline, without a display or a GPU. ``--disable-dev-shm-usage``:
#: containers often have a small /dev/shm, and Chromium crashes when it fills.
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)
#: Bound on one protocol command, and on a page load.
COMMAND_S: Final = 30.0
#: Bound on the browser's start and on its exit.
PROCESS_S: Final = 15.0
_LOG_TAIL: Final = 2000
# Run in a child Python: moves the two pipe ends to descriptors 3 and 4, where Chromium expects
# them (by way of descriptors >= 10, so that neither end is overwritten), then becomes Chromium.
_TRAMPOLINE: Final = """\
import fcntl, os, sys
ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
os.dup2(ends[0], 3)
os.dup2(ends[1], 4)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(RuntimeError):
    """The browser failed, refused a command, or did not answer in time."""


class Chromium:
    """One headless Chromium with a fresh profile in ``workdir``; a context manager."""

    def __init__(self, executable: Path, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.log_path = workdir / "chromium.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._to: int | None = None  # we write commands here
        self._from: int | None = None  # we read answers and events here
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # -- the process ---------------------------------------------------------------------------

    def __enter__(self) -> Chromium:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        to_browser, commands = os.pipe()
        answers, from_browser = os.pipe()
        args = [
            sys.executable,
            "-c",
            _TRAMPOLINE,
            str(to_browser),
            str(from_browser),
            str(self.executable),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        try:
            with self.log_path.open("wb") as log:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(to_browser, from_browser),
                    start_new_session=True,  # its own process group: killed as one
                )
        except BaseException:
            for fd in (commands, answers):
                os.close(fd)
            raise
        finally:
            os.close(to_browser)
            os.close(from_browser)
        self._to, self._from = commands, answers
        os.set_blocking(commands, False)
        self.call("Browser.getVersion", timeout_s=PROCESS_S)

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            if proc.poll() is None and self._to is not None:
                with contextlib.suppress(BrowserError, OSError):
                    self.call("Browser.close", timeout_s=5)
            try:
                proc.wait(timeout=PROCESS_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started, by its id
                proc.wait(timeout=PROCESS_S)
        finally:
            for fd in (self._to, self._from):
                if fd is not None:
                    os.close(fd)
            self._to = self._from = None

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-_LOG_TAIL:]

    def _fail(self, what: str) -> BrowserError:
        return BrowserError(f"{what}; chromium log ends:\n{self.log_tail()}")

    # -- the protocol --------------------------------------------------------------------------

    def _send(self, message: dict[str, Any], deadline: float) -> None:
        assert self._to is not None, "the browser is not running"
        data = json.dumps(message).encode() + b"\0"
        while data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"the browser took no command in time ({message['method']})")
            _, ready, _ = select.select([], [self._to], [], left)
            if ready:
                data = data[os.write(self._to, data) :]

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self._from is not None, "the browser is not running"
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail("no answer from the browser in time")
            ready, _, _ = select.select([self._from], [], [], left)
            if ready:
                chunk = os.read(self._from, 1 << 16)
                if not chunk:
                    raise self._fail("the browser closed its end of the protocol pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout_s: float = COMMAND_S,
    ) -> dict[str, Any]:
        """Send a command and wait for its answer; events that arrive meanwhile are kept."""
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        deadline = time.monotonic() + timeout_s
        self._send(message, deadline)
        while True:
            got = self._receive(deadline)
            if got.get("id") != ident:
                self._events.append(got)
                continue
            if "error" in got:
                raise BrowserError(f"{method}: {got['error']}")
            result: dict[str, Any] = got.get("result", {})
            return result

    def take_events(self, session: str) -> list[dict[str, Any]]:
        """The events of ``session`` received so far, removed from the queue."""
        mine = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return mine

    def wait_event(self, session: str, method: str, timeout_s: float, **match: Any) -> None:
        """Wait for an event of ``session`` named ``method`` whose params include ``match``.
        Events seen on the way are kept for :meth:`take_events`."""
        deadline = time.monotonic() + timeout_s

        def wanted(event: dict[str, Any]) -> bool:
            params = event.get("params", {})
            return (
                event.get("sessionId") == session
                and event.get("method") == method
                and all(params.get(k) == v for k, v in match.items())
            )

        if any(wanted(e) for e in self._events):
            return
        while True:
            event = self._receive(deadline)
            self._events.append(event)
            if wanted(event):
                return

    def new_page(self, width: int, height: int) -> Page:
        """A new tab, ``width`` x ``height`` CSS pixels at one device pixel per CSS pixel."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Page.setLifecycleEventsEnabled", enabled=True)
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return page


class Page:
    """One tab of :class:`Chromium`."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self._errors: list[str] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event, its fonts and two painted frames. The
        errors of the page before are forgotten."""
        self._collect()
        self._errors.clear()
        done = self.call("Page.navigate", url=url)
        if done.get("errorText"):
            raise BrowserError(f"cannot load {url}: {done['errorText']}")
        self.browser.wait_event(
            self.session, "Page.lifecycleEvent", COMMAND_S, name="load", loaderId=done["loaderId"]
        )
        self.evaluate(
            "document.fonts.ready.then(() => new Promise(r =>"
            " requestAnimationFrame(() => requestAnimationFrame(r))))"
        )

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JS expression (awaiting a promise); its value, as JSON gives it."""
        done = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in done:
            details = done["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"script failed: {text}")
        return done["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page (not just the viewport), written to ``path``."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip
        )
        png = base64.b64decode(shot["data"])
        path.write_bytes(png)
        return png

    def errors(self) -> list[str]:
        """What the page reported as an error since it was loaded: uncaught exceptions,
        ``console.error``/``console.assert``, and browser log entries of level error (a
        resource that failed to load, a blocked request, ...)."""
        self._collect()
        return list(self._errors)

    def _collect(self) -> None:
        for event in self.browser.take_events(self.session):
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                self._errors.append(f"uncaught: {text}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in {
                "error",
                "assert",
            }:
                args = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
                self._errors.append(f"console.{params['type']}: {' '.join(args)}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                self._errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
