"""The acquirer switch as an operator runs it: a home made with the CLI, real child processes.

A :class:`Network` is one home: ``cardtally init``, cards issued with ``issuer cards add``, a
merchant, terminals (their master keys written by ``switch terminals add``) and one issuer
link, added once the test knows which issuer port it wants (a real ``issuer serve`` or a
:class:`~tests.switch.fake_issuer.FakeIssuer`). It starts, stops and kills ``issuer serve``
and ``switch serve`` as child processes, and reads the switch's queue and transaction log
with ``switch queue --json`` and ``switch txns --json``.

The registry commands run in this process through the real Typer app: the same parsing and
code as ``python -m cardtally``, without an interpreter start (about two seconds) for each
of the dozen commands a home takes. The hosts are always real child processes.

A :class:`Terminal` is a POS terminal on one TCP connection to the switch: it signs on,
unwraps its working keys from field 62 with the master key file, signs its requests with
the MAC key, and checks every answer as the wire profile says a terminal must (MTI, 3, 4,
11, 41, 42, and the MAC).

Every wait is bounded: a host that does not come up, an answer that does not come, or a
queue that does not drain fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import pytest
from typer.testing import CliRunner

from cardtally.cli.main import app as cardtally_app
from cardtally.runtime import SyncFrameClient
from cardtally.security import MacAlgorithm, WorkingKeys, decode_signon_keys, message_mac_ok
from cardtally.storage import sqlite_url
from cardtally.terminal import (
    Card,
    TerminalIdentity,
    balance_inquiry,
    reversal_of,
    sale,
    settlement,
    sign,
    sign_on,
    void,
)
from cardtally.wire import LinkProfile, Message, Pan, decode_message, response_mti
from tests.conftest import pg_leg, pg_schema
from tests.issuer.messages import DEBIT_PAN, EXPIRY, PIN
from tests.issuer.tcp_support import (
    CREDIT,
    DEBIT,
    HOST,
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    TPDU,
    CardSpec,
    IssuerHost,
    _child_env,
    balances,
    set_database,
)
from tests.runtime.logs import count_events, events
from tests.switch.fake_issuer import FakeIssuer

MERCHANT: Final = "898310048160001"
TERMINAL_IDS: Final = ("10300001", "10300002")
BINS: Final = ("622588", "625807")
LINK: Final = "issuer_a"
#: Short, so a silent issuer costs a test little; long enough for a loaded 2-core machine.
ISSUER_TIMEOUT_MS: Final = 1500
ADVICE_BACKOFF_MIN_MS: Final = 200
ADVICE_BACKOFF_MAX_MS: Final = 1000
#: How long a terminal waits for any answer (the switch answers 98 after ISSUER_TIMEOUT_MS).
REPLY_TIMEOUT_MS: Final = 15_000
#: How long a queue gets to drain once the issuer answers.
DRAIN_TIMEOUT_S: Final = 30.0
_POLL_S: Final = 0.05

DEBIT_CARD: Final = Card(Pan(DEBIT_PAN), expiry=EXPIRY, pin=PIN)
DEBIT_OPENING: Final = 50_000

_runner = CliRunner()


def run_cli(home: Path, *args: str) -> str:
    """``cardtally --home HOME ARGS`` through the real Typer app, in process; its stdout."""
    result = _runner.invoke(cardtally_app, ["--home", str(home), *args])
    if result.exit_code != 0:
        pytest.fail(
            f"cardtally {' '.join(args[:3])} exited {result.exit_code}:\n{result.output}\n"
            f"{result.exception!r}"
        )
    return result.stdout


def run_cli_process(home: Path, *args: str) -> str:
    """The same, through ``python -m cardtally`` in a child process (the real entry point)."""
    result = subprocess.run(
        [sys.executable, "-m", "cardtally", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"cardtally {' '.join(args[:3])} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


@contextmanager
def switch_database(issuer_url: str, config: pytest.Config, root: Path) -> Iterator[str]:
    """A database for the switch, separate from the issuer's and of the same kind.

    On PostgreSQL a second fresh schema (dropped afterwards), on SQLite a file under ``root``.
    """
    if issuer_url.startswith("postgresql"):
        with pg_schema(pg_leg(config).url) as url:
            yield url
    else:
        yield sqlite_url(root / "switch.sqlite3")


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"init wrote an unexpected config: {old!r}"
    return text.replace(old, new)


def configure_switch(home: Path, database_url: str) -> None:
    """``[switch] database`` and a short advice backoff, in the config ``init`` wrote."""
    config = home / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    text = _replace_once(
        text, 'database = "sqlite:///switch.db"', f"database = {json.dumps(database_url)}"
    )
    text = _replace_once(
        text, "advice_backoff_min_ms = 500", f"advice_backoff_min_ms = {ADVICE_BACKOFF_MIN_MS}"
    )
    text = _replace_once(
        text,
        "advice_backoff_max_ms = 30000",
        f"advice_backoff_max_ms = {ADVICE_BACKOFF_MAX_MS}",
    )
    config.write_text(text, encoding="utf-8")


# --- child processes -------------------------------------------------------------------------


class Host(IssuerHost):
    """A running ``cardtally issuer serve`` or ``cardtally switch serve`` child."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], stdout: Path, stderr: Path):
        super().__init__(proc, stdout, stderr)
        self.name = name

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> int:
        try:
            return super().wait_ready(timeout_s)
        except pytest.fail.Exception as exc:
            raise pytest.fail.Exception(f"{self.name}: {exc}") from None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (bounded) for the graceful stop; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"{self.name} did not stop within {timeout_s} s:\n{self.log()}")
        return self.proc.returncode

    def stop_ok(self) -> None:
        code = self.stop()
        assert code == 0, f"{self.name} exited {code} after SIGTERM:\n{self.log()}"

    def stop_counters(self) -> dict[str, int]:
        """The counters the switch logged when it stopped (``event=switch.stopped``)."""
        stopped = events(self.log(), "switch.stopped")
        assert stopped, f"{self.name} logged no stop:\n{self.log()}"
        counters = stopped[-1]["counters"]
        assert isinstance(counters, dict)
        return counters

    def wait_log(self, needle: str, count: int = 1, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """Wait (bounded) until the host's log holds ``count`` lines of the event ``needle``
        names (``event=NAME k=v``, see :func:`tests.runtime.logs.count_events`); the log."""
        deadline = time.monotonic() + timeout_s
        while True:
            log = self.log()
            if count_events(log, needle) >= count:
                return log
            if time.monotonic() >= deadline:
                pytest.fail(f"{self.name}: {needle!r} x{count} not logged in {timeout_s} s:\n{log}")
            time.sleep(_POLL_S)


# --- the network -------------------------------------------------------------------------------


class Network:
    """One home: registry made with the CLI, hosts started as children, stopped on exit."""

    def __init__(
        self,
        root: Path,
        issuer_db: str,
        switch_db: str,
        cards: Sequence[CardSpec] = (DEBIT, CREDIT),
    ) -> None:
        self.root = root
        self.home = root / "home"
        self._issuer_db = issuer_db
        self._switch_db = switch_db
        self._cards = cards
        self._hosts: list[Host] = []
        self.issuer: Host | None = None
        self.switch: Host | None = None
        self._terminals: list[Terminal] = []

    def __enter__(self) -> Self:
        run_cli(self.home, "init")
        set_database(self.home, self._issuer_db)
        configure_switch(self.home, self._switch_db)
        for card in self._cards:
            run_cli(self.home, "issuer", "cards", "add", *card.args())
        run_cli(
            self.home,
            *("switch", "merchants", "add", "--id", MERCHANT, "--name", "COFFEE SHOP"),
            *("--mcc", "5812", "--city", "SHANGHAI"),
        )
        for terminal_id in TERMINAL_IDS:
            run_cli(
                self.home, "switch", "terminals", "add", "--id", terminal_id, "--merchant", MERCHANT
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for terminal in self._terminals:
            terminal.close()
        failures = []
        for host in reversed(self._hosts):  # the switch before the issuer it talks to
            if not host.running:
                continue
            if exc is not None:
                host.kill()
                continue
            code = host.stop()
            if code != 0:
                failures.append(f"{host.name} exited {code} after SIGTERM:\n{host.log()}")
        if failures and exc is None:
            pytest.fail("\n".join(failures))

    # -- hosts ---------------------------------------------------------------------------------

    def _start(self, name: str, *args: str) -> Host:
        starts = len(list(self.root.glob(f"{name}-*.stderr")))
        stdout = self.root / f"{name}-{starts}.stdout"
        stderr = self.root / f"{name}-{starts}.stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cardtally", "--home", str(self.home), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_child_env(),
            )
        host = Host(name, proc, stdout, stderr)
        self._hosts.append(host)
        host.wait_ready()
        return host

    def start_issuer(self, port: int = 0) -> Host:
        """``issuer serve`` (on ``port``, or a free one)."""
        self.issuer = self._start("issuer", "issuer", "serve", "--port", str(port))
        return self.issuer

    def start_switch(self, *, link_up: bool = True) -> Host:
        """``switch serve``; with ``link_up``, also wait until its issuer link is connected."""
        self.switch = self._start("switch", "switch", "serve", "--port", "0")
        if link_up:
            self.switch.wait_log("event=link.connected")
        return self.switch

    def link_issuer(self, port: int, timeout_ms: int = ISSUER_TIMEOUT_MS) -> None:
        """``switch issuers add``: every BIN of the home's cards to the issuer at ``port``."""
        bins = [arg for b in BINS for arg in ("--bin", b)]
        run_cli(
            self.home,
            "switch",
            "issuers",
            "add",
            *bins,
            "--host",
            HOST,
            "--port",
            str(port),
            "--timeout-ms",
            str(timeout_ms),
            "--name",
            LINK,
        )

    # -- terminals -----------------------------------------------------------------------------

    def terminal(self, terminal_id: str = TERMINAL_IDS[0], *, signed_on: bool = True) -> Terminal:
        """A terminal connected to the running switch (signed on unless told otherwise)."""
        assert self.switch is not None and self.switch.port, "start the switch first"
        terminal = Terminal.connect(self.home, self.switch.port, terminal_id)
        self._terminals.append(terminal)
        if signed_on:
            terminal.sign_on()
        return terminal

    # -- what the switch holds -------------------------------------------------------------------

    def queue(self) -> dict[str, Any]:
        """``switch queue --json``."""
        shown = json.loads(run_cli(self.home, "switch", "queue", "--json", "--limit", "1000"))
        assert isinstance(shown, dict)
        return shown

    def wait_queue_drained(self, timeout_s: float = DRAIN_TIMEOUT_S) -> dict[str, Any]:
        """Poll ``switch queue --json`` until its depth is 0; the last view."""
        deadline = time.monotonic() + timeout_s
        while True:
            shown = self.queue()
            if shown["depth"] == 0:
                return shown
            if time.monotonic() >= deadline:
                log = "" if self.switch is None else self.switch.log()
                pytest.fail(f"queue not drained within {timeout_s} s: {shown}\n{log}")
            time.sleep(_POLL_S * 4)

    def txns(self) -> list[dict[str, Any]]:
        """``switch txns --json``: the whole log, newest first."""
        shown = json.loads(run_cli(self.home, "switch", "txns", "--json", "--limit", "10000"))
        assert isinstance(shown, list)
        return shown

    def txn(self, rrn: str) -> dict[str, Any]:
        found = [t for t in self.txns() if t["rrn"] == rrn]
        assert len(found) == 1, (rrn, found)
        return found[0]

    def balance(self, card_pan: str) -> int:
        """The card's balance at the real issuer, read from its database."""
        balance, available = balances(self.home, card_pan)
        assert balance == available, (balance, available)
        return int(balance)


def live_sales(txns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sales the switch holds as done: approved, and not undone by an approved void."""
    voided = {t["original_rrn"] for t in txns if t["kind"] == "void" and t["state"] == "approved"}
    return [
        t
        for t in txns
        if t["kind"] == "sale" and t["state"] == "approved" and t["rrn"] not in voided
    ]


def expected_balance(txns: Sequence[dict[str, Any]], card_pan: str, opening: int) -> int:
    """What the issuer must hold for ``card_pan`` if it agrees with the switch's log."""
    masked = Pan(card_pan).masked
    return opening - sum(int(t["amount_minor"]) for t in live_sales(txns) if t["card"] == masked)


UNSETTLED: Final = frozenset({"forwarded", "timed_out", "reversal_pending", "received"})


def assert_agrees_with_fake(net: Network, fake: FakeIssuer) -> list[dict[str, Any]]:
    """Once the queue drained: the fake holds a debit exactly for each sale the switch holds."""
    net.wait_queue_drained()
    txns = net.txns()
    assert fake.held_rrns() == {t["rrn"] for t in live_sales(txns)}, (fake.ledger(), txns)
    assert not [t for t in txns if t["state"] in UNSETTLED], txns
    return txns


def assert_agrees_with_issuer(net: Network, openings: dict[str, int]) -> list[dict[str, Any]]:
    """Once the queue drained: each card's balance is its opening minus the switch's sales."""
    net.wait_queue_drained()
    txns = net.txns()
    for card_pan, opening in openings.items():
        assert net.balance(card_pan) == expected_balance(txns, card_pan, opening), txns
    assert not [t for t in txns if t["state"] in UNSETTLED], txns
    return txns


# --- the terminal --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer as the terminal received it: decoded, raw, and whether its MAC verified."""

    message: Message
    raw: bytes
    mac_ok: bool | None  # None: no MAC expected (sign-on, or not signed on)

    @property
    def code(self) -> str | None:
        return self.message.response_code

    @property
    def stan(self) -> str:
        return self.message.stan or ""


class Terminal:
    """A POS terminal on one connection to the switch."""

    def __init__(self, client: SyncFrameClient, who: TerminalIdentity, master_key: bytes):
        self.client = client
        self.who = who
        self.master_key = master_key
        self.algorithm = MacAlgorithm.X9_19
        self.keys: WorkingKeys | None = None
        self.stan = 0
        self.batch_no = 1

    @classmethod
    def connect(cls, home: Path, port: int, terminal_id: str) -> Terminal:
        tmk = home / "keys" / "terminals" / f"{terminal_id}.tmk"
        master_key = bytes.fromhex(tmk.read_text(encoding="ascii").strip())
        client = SyncFrameClient.connect(HOST, port, LinkProfile(), TPDU)
        return cls(client, TerminalIdentity(terminal_id, MERCHANT), master_key)

    def close(self) -> None:
        self.client.close()

    def next_stan(self) -> int:
        self.stan += 1
        return self.stan

    # -- requests, built with cardtally.terminal --------------------------------------------------

    def sign_on(self) -> Message:
        answer = self.exchange(sign_on(self.who, self.next_stan(), self.batch_no))
        assert answer.code == "00", answer.message
        self.keys = decode_signon_keys(self.master_key, bytes.fromhex(answer.message.fields[62]))
        self.batch_no = int(answer.message.fields[60][2:8])
        return answer.message

    def sale(self, card: Card, amount_minor: int) -> Message:
        pin_key = None if self.keys is None else self.keys.pin_key
        return sale(
            self.who,
            self.next_stan(),
            self.batch_no,
            card=card,
            amount_minor=amount_minor,
            pin_key=pin_key if card.pin else None,
        )

    def balance_inquiry(self, card: Card) -> Message:
        assert self.keys is not None
        return balance_inquiry(
            self.who, self.next_stan(), self.batch_no, card=card, pin_key=self.keys.pin_key
        )

    def void(self, card: Card, original: Message, original_answer: Message) -> Message:
        bare = Card(card.pan, card.expiry)
        return void(
            self.who,
            self.next_stan(),
            self.batch_no,
            card=bare,
            original=original,
            original_answer=original_answer,
        )

    def settlement(self, debits: Sequence[int], credits: Sequence[int] = ()) -> Message:
        totals = f"{sum(debits):012d}{len(debits):03d}{sum(credits):012d}{len(credits):03d}0"
        return settlement(self.who, self.next_stan(), self.batch_no, totals)

    @staticmethod
    def reversal(original: Message, reason: str = "98") -> Message:
        return reversal_of(original, reason)

    # -- the link ----------------------------------------------------------------------------------

    def raw(self, message: Message) -> bytes:
        keys = None if message.mti == "0800" else self.keys
        return sign(message, self.algorithm, keys)

    def send(self, message: Message) -> None:
        self.client.send(self.raw(message))

    def receive(self, timeout_ms: int = REPLY_TIMEOUT_MS) -> Answer:
        raw = self.client.receive(timeout_ms)
        message = decode_message(raw)
        mac_ok = None
        if message.mti != "0810" and self.keys is not None:
            mac_ok = message_mac_ok(raw, message, self.algorithm, self.keys.mac_key)
        return Answer(message, raw, mac_ok)

    def exchange(self, request: Message, timeout_ms: int = REPLY_TIMEOUT_MS) -> Answer:
        """Send ``request`` and return its answer, checked as a terminal checks it."""
        self.send(request)
        answer = self.receive(timeout_ms)
        check_answer(request, answer)
        return answer

    def pipelined(
        self, requests: Sequence[Message], timeout_ms: int = REPLY_TIMEOUT_MS
    ) -> dict[str, Answer]:
        """Send every request, then read as many answers (any order); answers by STAN."""
        for request in requests:
            self.send(request)
        answers: dict[str, Answer] = {}
        by_stan = {r.stan: r for r in requests}
        assert len(by_stan) == len(requests), "pipelined requests need distinct STANs"
        deadline = time.monotonic() + timeout_ms / 1000
        while len(answers) < len(requests):
            left_ms = max(1, round((deadline - time.monotonic()) * 1000))
            answer = self.receive(left_ms)
            assert answer.stan in by_stan, f"answer to a STAN never sent: {answer.message}"
            assert answer.stan not in answers, f"second answer for STAN {answer.stan}"
            check_answer(by_stan[answer.stan], answer)
            answers[answer.stan] = answer
        return answers

    def quiet_for(self, seconds: float) -> bool:
        """True when nothing arrives on the link for ``seconds``."""
        try:
            answer = self.receive(round(seconds * 1000))
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message on the terminal link: {answer.message}")


def check_answer(request: Message, answer: Answer) -> None:
    """The wire profile's matching rules (section 6): MTI + 10, 3/4/11/41/42 echoed, MAC."""
    reply = answer.message
    assert reply.mti == response_mti(request.mti), (request.mti, reply)
    for number in (3, 11, 41, 42):
        assert reply.get(number) == request.get(number), (number, request, reply)
    if 4 in request:
        assert reply.get(4) == request.get(4), (request, reply)
    if answer.mac_ok is not None:
        assert answer.mac_ok, f"answer MAC does not verify: {reply}"
