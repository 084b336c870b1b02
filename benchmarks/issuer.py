"""Throughput, latency and start-up time of the issuer host, over real TCP.

Usage: python benchmarks/issuer.py [--database sqlite|postgres] [--sales N] [--connections C]
                                   [--window W] [--runs R] [--cards K] [--json]

Each run makes a fresh home (``cardtally init``, K PIN-less debit cards), starts
``cardtally issuer serve --port 0`` as a child process and times spawn -> its
``listening on`` line (start-up). Then C connections, each in its own thread,
send N/C sales apiece, keeping up to W unanswered (pipelining); per-request
latency is send -> reply on that connection, throughput is N over the time from
the first send to the last reply. Each sale is signed under the home's zone MAC
key, as the switch signs what it forwards. After each run every answer must be an
approval of its own STAN whose MAC verifies, and ``cardtally ledger verify`` must
pass, or the benchmark stops with an error: a fast wrong answer is not a figure.

``--database postgres`` uses a fresh schema in
postgresql+psycopg://postgres@127.0.0.1:5432/test (override with
CARDTALLY_BENCH_PG_URL), dropped after the run. Sales go to the cards in turn;
amounts are below the no-PIN limit, so no PIN block is verified. ``--json`` prints the
figures as one JSON object on stdout (the per-run lines go to stderr), for ``cardtally bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import queue
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url
from tests.issuer.messages import EXPIRY, pan, sale

from cardtally.config import load_config, resolve_database_url
from cardtally.issuer import CardLimits, NewCard, add_card, open_issuer_database
from cardtally.runtime import SyncFrameClient
from cardtally.security import (
    MacAlgorithm,
    load_data_keys,
    load_issuer_keys,
    message_mac_ok,
    sign_message,
)
from cardtally.storage import open_engine, transaction
from cardtally.wire import LinkProfile, Message, Pan, Tpdu, decode_message, encode_message

PG_URL_DEFAULT: Final = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HOST: Final = "127.0.0.1"
TPDU: Final = Tpdu(3, 0x101)
STARTUP_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 30.0
REPLY_TIMEOUT_MS: Final = 30_000
CLI_TIMEOUT_S: Final = 120
LISTENING: Final = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
SERVE_ARGS: Final = ("issuer", "serve", "--port", "0")
AMOUNT_MINOR: Final = 100
BALANCE_MINOR: Final = 100_000_000


@dataclass(frozen=True, slots=True)
class RunResult:
    sales_per_s: float
    p50_ms: float
    p99_ms: float
    startup_ms: float


class BenchError(RuntimeError):
    """The run did not do what it should; its figures mean nothing."""


def child_env() -> dict[str, str]:
    env = {**os.environ}
    for name in ("CARDTALLY_HOME", "CARDTALLY_DEBUG"):
        env.pop(name, None)
    return env


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardtally", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file in ``tmp``, or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'issuer.sqlite3'}"
        return
    base = os.environ.get("CARDTALLY_BENCH_PG_URL", PG_URL_DEFAULT)
    schema = f"bench_{secrets.token_hex(6)}"
    admin = open_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()


def make_home(tmp: Path, url: str, cards: list[str]) -> Path:
    home = tmp / "home"
    done = cli(home, "init")
    if done.returncode != 0:
        raise BenchError(f"init failed: {done.stderr}")
    config = home / "cardtally.toml"
    default = 'database = "sqlite:///issuer.db"'
    config.write_text(config.read_text().replace(default, f"database = {json.dumps(url)}"))
    settings = load_config(home).issuer
    limits = CardLimits(
        settings.no_pin_limit_minor, settings.per_txn_limit_minor, settings.daily_limit_minor
    )
    keys, data_keys = load_issuer_keys(home), load_data_keys(home)
    now_ms = time.time_ns() // 1_000_000
    engine = open_issuer_database(resolve_database_url(home, settings.database), now_ms)
    try:
        with transaction(engine) as conn:
            for card in cards:
                new = NewCard(Pan(card), EXPIRY, "156", BALANCE_MINOR, 0, None, limits)
                add_card(conn, data_keys, keys, new, now_ms)
    finally:
        engine.dispose()
    return home


class Host:
    """``cardtally issuer serve`` as a child; stdout drained by a thread (console notices)."""

    def __init__(self, home: Path, log: Path, serve_args: tuple[str, ...] = SERVE_ARGS) -> None:
        self._name = serve_args[0]
        self._ready: queue.Queue[int] = queue.Queue()
        self._log = log.open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cardtally", "--home", str(home), *serve_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env(),
        )
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            self.port = self._ready.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
            raise BenchError(f"no 'listening on' line within {STARTUP_TIMEOUT_S} s") from None
        self.startup_ms = (time.perf_counter() - started) * 1000

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = LISTENING.search(line)
            if found is not None:
                self._ready.put(int(found.group(1)))

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the host has used so far; None off Linux."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # utime and stime are fields 14 and 15 of stat(5), here 11 and 12 after the name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
            raise BenchError(f"{self._name} did not stop on SIGTERM") from None
        finally:
            self._log.close()
        if code != 0:
            raise BenchError(f"{self._name} exited {code}")


def drive(
    port: int, bodies: list[bytes], window: int, start: threading.Barrier
) -> tuple[list[bytes], list[float], float, float]:
    """Pipeline ``bodies`` on one connection; replies, latencies (s), first send, last reply."""
    replies: list[bytes] = []
    latencies: list[float] = []
    in_flight: deque[float] = deque()
    with SyncFrameClient.connect(HOST, port, LinkProfile(), TPDU) as client:
        start.wait(timeout=STARTUP_TIMEOUT_S)
        first = time.perf_counter()
        sent = 0
        while len(replies) < len(bodies):
            while sent < len(bodies) and len(in_flight) < window:
                in_flight.append(time.perf_counter())
                client.send(bodies[sent])
                sent += 1
            replies.append(client.receive(REPLY_TIMEOUT_MS))
            latencies.append(time.perf_counter() - in_flight.popleft())
        return replies, latencies, first, time.perf_counter()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def one_run(args: argparse.Namespace) -> RunResult:
    cards = [pan(f"62258830{n:07d}") for n in range(args.cards)]
    with tempfile.TemporaryDirectory(prefix="cardtally-bench-") as tmp_text:
        tmp = Path(tmp_text)
        with database(args.database, tmp) as url:
            home = make_home(tmp, url, cards)
            zak = load_issuer_keys(home).zak
            # One request list per connection; STANs unique over the run.
            per_connection = [
                [
                    link_encode(sale(cards[n % len(cards)], AMOUNT_MINOR, n + 1), zak)
                    for n in range(c, args.sales, args.connections)
                ]
                for c in range(args.connections)
            ]
            host = Host(home, tmp / "issuer.stderr")
            try:
                results = run_clients(host.port, per_connection, args.window)
            finally:
                host.stop()
            check(per_connection, [r[0] for r in results], zak)
            verified = cli(home, "ledger", "verify")
            if verified.returncode != 0:
                raise BenchError(f"ledger verify failed:\n{verified.stdout}{verified.stderr}")
    latencies = [lat for r in results for lat in r[1]]
    elapsed_s = max(r[3] for r in results) - min(r[2] for r in results)
    return RunResult(
        args.sales / elapsed_s,
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
        host.startup_ms,
    )


def run_clients(
    port: int, per_connection: list[list[bytes]], window: int
) -> list[tuple[list[bytes], list[float], float, float]]:
    start = threading.Barrier(len(per_connection))
    results: list[tuple[list[bytes], list[float], float, float] | None] = [None] * len(
        per_connection
    )
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = drive(port, per_connection[index], window, start)
        except BaseException as exc:  # reported below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(per_connection))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REPLY_TIMEOUT_MS / 1000 * 4)
    if errors or any(t.is_alive() for t in threads):
        raise BenchError(f"a client failed: {errors!r}")
    return [r for r in results if r is not None]


def link_encode(message: Message, zak: bytes | None) -> bytes:
    """A request as the switch sends it: signed under the zone MAC key (a home has one)."""
    if zak is None:
        return encode_message(message)
    return sign_message(message, MacAlgorithm.X9_19, zak)


def check(per_connection: list[list[bytes]], replies: list[list[bytes]], zak: bytes | None) -> None:
    for bodies, answers in zip(per_connection, replies, strict=True):
        if len(answers) != len(bodies):
            raise BenchError(f"{len(answers)} answers to {len(bodies)} sales")
        for body, raw in zip(bodies, answers, strict=True):
            request, reply = decode_message(body), decode_message(raw)
            if (reply.mti, reply.stan, reply.response_code) != ("0210", request.stan, "00"):
                raise BenchError(f"sale {request.stan} answered {reply!r}")
            if zak is not None and not message_mac_ok(raw, reply, MacAlgorithm.X9_19, zak):
                raise BenchError(f"sale {request.stan}: the answer's MAC does not verify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sales", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cards", type=int, default=100, help="cards the sales go to, in turn")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if min(args.sales, args.connections, args.window, args.runs, args.cards) < 1:
        parser.error("every count must be at least 1")
    if args.sales > 999_999:
        parser.error("--sales: STANs are six digits")

    # With --json, stdout carries the JSON alone and the human lines go to stderr.
    human = sys.stderr if args.json else sys.stdout
    print(
        f"issuer host, {args.database}: {args.sales} sales, {args.connections} connections, "
        f"window {args.window}, {args.cards} cards; Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs",
        file=human,
    )
    runs = []
    for number in range(1, args.runs + 1):
        try:
            result = one_run(args)
        except BenchError as exc:
            sys.exit(f"run {number}: {exc}")
        runs.append(result)
        print(
            f"run {number}: {result.sales_per_s:7.0f} sales/s  p50 {result.p50_ms:6.1f} ms  "
            f"p99 {result.p99_ms:6.1f} ms  startup {result.startup_ms:5.0f} ms",
            file=human,
            flush=True,
        )
    median = {
        name: statistics.median(getattr(r, name) for r in runs)
        for name in ("sales_per_s", "p50_ms", "p99_ms", "startup_ms")
    }
    print(
        f"median: {median['sales_per_s']:7.0f} sales/s  p50 {median['p50_ms']:6.1f} ms  "
        f"p99 {median['p99_ms']:6.1f} ms  startup {median['startup_ms']:5.0f} ms",
        file=human,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "database": args.database,
                    "sales": args.sales,
                    "connections": args.connections,
                    "window": args.window,
                    "cards": args.cards,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "runs": [dataclasses.asdict(r) for r in runs],
                    "median": median,
                }
            )
        )


if __name__ == "__main__":
    main()
