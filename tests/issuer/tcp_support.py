"""The issuer host as an operator runs it: a home made by the CLI, ``issuer serve`` as a child.

Shared by the TCP and crash tests. Everything waits with a bound: a host that does not come up,
does not stop, or does not answer fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.config import load_config, resolve_database_url
from cardtally.issuer import CardLimits, NewCard, add_card, find_card, open_issuer_database, view
from cardtally.runtime import SyncFrameClient
from cardtally.security import (
    MacAlgorithm,
    issuer_keys_path,
    load_data_keys,
    load_issuer_keys,
    message_mac_ok,
    sign_message,
)
from cardtally.storage import open_engine, transaction
from cardtally.wire import LinkProfile, Message, Pan, Tpdu, decode_message
from tests.issuer.messages import CREDIT_PAN, DEBIT_PAN, EXPIRY, PIN, pan

HOST: Final = "127.0.0.1"
TPDU: Final = Tpdu(3, 0x101)
CLI_TIMEOUT_S: Final = 120
STARTUP_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 20.0
REPLY_TIMEOUT_MS: Final = 15_000
_POLL_S: Final = 0.02
#: The ready line; searched for, not matched per line, so a notice printed by the host's
#: notice thread around it cannot hide it.
_LISTENING: Final = re.compile(r"listening on 127\.0\.0\.1:(\d+)\n")
SERVE_ARGS: Final = ("issuer", "serve", "--port", "0")

#: A debit card with a per-transaction limit of 50.00, for the 61 decline.
LIMITED_PAN: Final = pan("622588000000003")


@dataclass(frozen=True, slots=True)
class CardSpec:
    """A card as ``cardtally issuer cards add`` takes it (amounts as the operator types them)."""

    pan: str
    balance: str = "0.00"
    credit_limit: str = "0"
    pin: str | None = PIN
    per_txn_limit: str | None = None
    expiry: str = EXPIRY

    def args(self) -> list[str]:
        args = ["--pan", self.pan, "--expiry", self.expiry, "--balance", self.balance]
        args += ["--credit-limit", self.credit_limit]
        if self.pin is not None:
            args += ["--pin", self.pin]
        if self.per_txn_limit is not None:
            args += ["--per-txn-limit", self.per_txn_limit]
        return args


DEBIT: Final = CardSpec(DEBIT_PAN, balance="500.00")
CREDIT: Final = CardSpec(CREDIT_PAN, balance="0.00", credit_limit="300.00")
LIMITED: Final = CardSpec(LIMITED_PAN, balance="500.00", per_txn_limit="50.00")


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m cardtally --home HOME ARGS`` in a child process, as an operator types it."""
    env = _child_env()
    result = subprocess.run(
        [sys.executable, "-m", "cardtally", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"cardtally {' '.join(args[:3])} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def _child_env() -> dict[str, str]:
    env = {**os.environ}
    for name in ("CARDTALLY_HOME", "CARDTALLY_DEBUG"):
        env.pop(name, None)
    return env


def set_database(home: Path, url: str) -> None:
    """Point the home's ``[issuer] database`` at ``url`` (the line ``init`` wrote)."""
    config = home / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    default = 'database = "sqlite:///issuer.db"'
    assert text.count(default) == 1, "init wrote an unexpected config"
    # A JSON string is a valid TOML basic string for a URL (quotes and backslashes escaped).
    config.write_text(text.replace(default, f"database = {json.dumps(url)}"), encoding="utf-8")


def make_home(root: Path, database_url: str, cards: Sequence[CardSpec] = (DEBIT, CREDIT)) -> Path:
    """``cardtally init``, the issuer database set to ``database_url``, and ``cards`` issued."""
    home = root / "home"
    cli(home, "init")
    set_database(home, database_url)
    for card in cards:
        cli(home, "issuer", "cards", "add", *card.args())
    return home


def issue_cards(home: Path, pans: Sequence[str], balance_minor: int) -> None:
    """Issue PIN-less debit cards in process, through the function ``cards add`` calls.

    For tests that spread load over many cards: a child process per card costs most of a
    second, this costs milliseconds.
    """
    config = load_config(home).issuer
    limits = CardLimits(
        config.no_pin_limit_minor, config.per_txn_limit_minor, config.daily_limit_minor
    )
    keys, data_keys = load_issuer_keys(home), load_data_keys(home)
    engine = open_issuer_database(resolve_database_url(home, config.database), _now_ms())
    try:
        with transaction(engine) as conn:
            for card_pan in pans:
                new = NewCard(Pan(card_pan), EXPIRY, "156", balance_minor, 0, None, limits)
                add_card(conn, data_keys, keys, new, _now_ms())
    finally:
        engine.dispose()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def zpk_of(home: Path) -> bytes:
    """The zone PIN key a switch would share with this issuer."""
    return load_issuer_keys(home).zpk


def zak_of(home: Path) -> bytes:
    """The zone MAC key a switch would share with this issuer (every new home has one)."""
    zak = load_issuer_keys(home).zak
    assert zak is not None, "a home made by init has a zone MAC key"
    return zak


def drop_zone_mac_key(home: Path) -> None:
    """Make the home's key file one from before the link MAC: PVK and ZPK, no ZAK.

    Switch and issuer started afterwards run the link unsigned, as every home did then.
    """
    path = issuer_keys_path(home)
    text = path.read_text(encoding="ascii").strip()
    assert len(text) == 96, "init writes PVK, ZPK and ZAK"
    path.write_text(text[:64] + "\n", encoding="ascii")  # the file keeps its mode 0600
    assert load_issuer_keys(home).zak is None


def signed(message: Message, zak: bytes) -> bytes:
    """``message`` as a switch sends it: MACed (X9.19) under the zone MAC key."""
    return sign_message(message, MacAlgorithm.X9_19, zak)


def link_mac_ok(raw: bytes, zak: bytes) -> bool:
    """Whether an issuer answer carries a MAC that verifies under ``zak``."""
    return message_mac_ok(raw, decode_message(raw), MacAlgorithm.X9_19, zak)


def show_card(home: Path, card_pan: str) -> dict[str, object]:
    """``cardtally issuer cards show --json``: the operator's view of a card."""
    shown = json.loads(cli(home, "issuer", "cards", "show", "--pan", card_pan, "--json").stdout)
    assert isinstance(shown, dict)
    return shown


def balances(home: Path, card_pan: str) -> tuple[int, int]:
    """(balance_minor, available_minor) read straight from the database, in process.

    The same reads as ``cards show`` without a child process per look, for tests that look
    after every step.
    """
    config = load_config(home)
    engine = open_engine(resolve_database_url(home, config.issuer.database))
    try:
        with transaction(engine) as conn:
            shown = view(conn, find_card(conn, load_data_keys(home), Pan(card_pan)))
            return shown.balance_minor, shown.available_minor
    finally:
        engine.dispose()


def notice_lines(home: Path) -> list[dict[str, Any] | None]:
    """The notices in the home's JSON-lines file, in order; None for a line a kill tore."""
    path = home / "notices.jsonl"
    if not path.exists():
        return []
    lines: list[dict[str, Any] | None] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append(None)
    return lines


def wait_for_notices(home: Path, distinct_ids: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Wait until the notice file holds ``distinct_ids`` different notices.

    Notices travel after the answer, on their own thread, so a test that counts them waits
    (bounded) for the delivery rather than for the host to stop.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len({str(n["id"]) for n in notice_lines(home) if n is not None}) >= distinct_ids:
            return
        time.sleep(_POLL_S * 5)
    pytest.fail(f"fewer than {distinct_ids} notices delivered within {timeout_s} s")


def ledger_verify(home: Path) -> subprocess.CompletedProcess[str]:
    return cli(home, "ledger", "verify", check=False)


# --- the host process ---------------------------------------------------------------------


class IssuerHost:
    """A running ``cardtally issuer serve`` child: its port, its logs, and how to kill it."""

    def __init__(self, proc: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
        self.proc = proc
        self.stdout_path = stdout
        self.stderr_path = stderr
        self.port = 0
        self.killed = False

    def log(self) -> str:
        """Everything the host wrote on stderr so far (its structured log)."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        """Everything the host wrote on stdout so far (the ready line, console notices)."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL: no stop, no drain, no flush; what is not committed is gone."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def connect(self) -> SyncFrameClient:
        return SyncFrameClient.connect(HOST, self.port, LinkProfile(), TPDU)

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.output())
            if found is not None:
                self.port = int(found.group(1))
                return self.port
            if self.proc.poll() is not None:
                pytest.fail(f"issuer exited {self.proc.returncode} at start:\n{self.log()}")
            time.sleep(_POLL_S)
        self.kill()
        pytest.fail(f"issuer not listening after {timeout_s} s:\n{self.log()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait for the graceful stop; SIGKILL if it takes longer than the bound."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"issuer did not stop within {timeout_s} s of SIGTERM:\n{self.log()}")
        return self.proc.returncode


@contextmanager
def running_issuer(home: Path) -> Iterator[IssuerHost]:
    """Start ``issuer serve --port 0`` on ``home``; stop it with SIGTERM on the way out.

    Fails the test if the host does not come up, does not stop, or stops with an error (unless
    the test killed it). Logs go to files next to the home, one pair per start.
    """
    starts = len(list(home.parent.glob("issuer-*.stderr")))
    stdout = home.parent / f"issuer-{starts}.stdout"
    stderr = home.parent / f"issuer-{starts}.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cardtally", "--home", str(home), *SERVE_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_child_env(),
        )
    host = IssuerHost(proc, stdout, stderr)
    try:
        host.wait_ready()
        yield host
    except BaseException:
        if host.proc.poll() is None:
            host.kill()
        raise
    if host.killed:
        return
    code = host.stop()
    if code != 0:
        pytest.fail(f"issuer exited {code} after SIGTERM:\n{host.log()}")


# --- talking to it --------------------------------------------------------------------------


def exchange(client: SyncFrameClient, message: Message, zak: bytes) -> Message:
    """Send one request signed under ``zak`` and decode its answer, whose MAC must verify."""
    raw = client.request(signed(message, zak), REPLY_TIMEOUT_MS)
    assert link_mac_ok(raw, zak), "the issuer's answer does not carry a MAC that verifies"
    return decode_message(raw)


def pipeline(
    client: SyncFrameClient,
    bodies: Sequence[bytes],
    replies: list[bytes],
    *,
    window: int,
    timeout_ms: int = REPLY_TIMEOUT_MS,
) -> None:
    """Send ``bodies`` keeping up to ``window`` unanswered; append each reply to ``replies``.

    One connection answers in order, so ``replies[i]`` answers ``bodies[i]`` (callers check
    the STAN). Raises what the client raises (a closed link, a timeout); the replies received
    until then stay in ``replies``.
    """
    assert window >= 1
    sent = 0
    outstanding: deque[int] = deque()
    while len(replies) < len(bodies):
        while sent < len(bodies) and len(outstanding) < window:
            client.send(bodies[sent])
            outstanding.append(sent)
            sent += 1
        replies.append(client.receive(timeout_ms))
        outstanding.popleft()


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout_s``, reading and discarding data."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(4096):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False
