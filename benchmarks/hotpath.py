"""CPU time per purchase in the switch and issuer services, in one process, without TCP.

Usage: python benchmarks/hotpath.py [--sales N] [--terminals T] [--batch B] [--runs R]
                                    [--profile] [--database-dir DIR]

``benchmarks/switch.py`` measures purchases through real processes over TCP; its figures move
with whatever else the shared machine runs. This script drives the very same service objects
the two hosts run on their worker lanes (``SwitchService`` and ``IssuerService``, SQLite files,
durable commits, MAC on) by hand, batch after batch, and reports **CPU milliseconds per
purchase** in each of the three steps of a purchase:

- ``switch request``: ``SwitchService.handle_batch`` on B terminal sales (log, forward, commit);
- ``issuer``: ``IssuerService.handle_batch`` on the B forwarded requests (authorise, post,
  commit);
- ``switch answer``: ``SwitchService.settle_issuer_events`` on the B issuer answers (match,
  relay, commit).

CPU time (``time.process_time``) is what a core gives these steps whatever else runs, so
before/after comparisons of hot-path changes are far steadier than end-to-end figures. What
it leaves out: the event loops, framing, sockets and the other process. Every answer must be
an approval whose MAC verifies, or the run stops. ``--profile`` prints cProfile's view of one
run instead, grouped by package.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import logging
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.issuer import BenchError, make_home
from benchmarks.switch import ALGORITHM, MERCHANT, register, sales_for
from tests.issuer.messages import pan

from cardtally.config import load_config, resolve_database_url
from cardtally.issuer import IssuerCore, IssuerPolicy, IssuerService, open_issuer_database
from cardtally.runtime import Counters, Request
from cardtally.security import (
    WorkingKeys,
    decode_signon_keys,
    load_data_keys,
    load_issuer_keys,
    message_mac_ok,
)
from cardtally.switch import SwitchCore, SwitchIdentity, SwitchPolicy
from cardtally.switch._database import open_switch_database
from cardtally.switch._effects import Forward, TerminalAnswer
from cardtally.switch._service import Committed, IssuerEvent, SwitchService
from cardtally.terminal import TerminalIdentity, sign, sign_on
from cardtally.wire import decode_message

LINK: Final = "issuer"
STEPS: Final = ("switch request", "issuer", "switch answer")
_PROFILE_LINES: Final = 30


@dataclass(frozen=True, slots=True)
class RunResult:
    cpu_ms_per_purchase: dict[str, float]

    @property
    def total_ms(self) -> float:
        return sum(self.cpu_ms_per_purchase.values())


class Harness:
    """A home with both services built as the hosts build them; sales ready to send."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        cards = [pan(f"62258830{n:07d}") for n in range(args.cards)]
        home = make_home(tmp, f"sqlite:///{tmp / 'issuer.sqlite3'}", cards)
        config = load_config(home)
        masters = register(home, 1, args.terminals)
        now_ms = time.time_ns() // 1_000_000
        switch_url = resolve_database_url(home, config.switch.database)
        issuer_url = resolve_database_url(home, config.issuer.database)
        keys, data_keys = load_issuer_keys(home), load_data_keys(home)
        quiet = logging.getLogger("cardtally.bench.hotpath")
        quiet.disabled = True
        self.forwards: list[Committed] = []
        self.engines = (
            open_switch_database(switch_url, now_ms),
            open_issuer_database(issuer_url, now_ms),
        )
        identity = SwitchIdentity(config.acquirer_id, config.acquirer_id, config.currency)
        self.switch = SwitchService(
            self.engines[0],
            SwitchCore(keys.zpk, SwitchPolicy(identity), keys.zak),
            data_keys,
            counters=Counters(),
            logger=quiet,
            clock_ms=lambda: time.time_ns() // 1_000_000,
            on_committed=self.forwards.extend,
        )
        self.issuer = IssuerService(
            self.engines[1],
            IssuerCore(keys, data_keys, IssuerPolicy()),
            counters=Counters(),
            logger=quiet,
        )
        self._ids = itertools.count(1)
        self.mac_keys: dict[str, bytes] = {}
        self.sales: list[bytes] = []
        per_terminal = []
        for i, tid in enumerate(sorted(masters)):
            working = self._sign_on(tid, masters[tid])
            self.mac_keys[tid] = working.mac_key
            count = len(range(i, args.sales, args.terminals))
            per_terminal.append(sales_for(tid, working, cards, count, i))
        # Interleaved as the terminals would send them.
        for round_ in range(max(len(p) for p in per_terminal)):
            self.sales.extend(p[round_] for p in per_terminal if round_ < len(p))

    def _sign_on(self, tid: str, master: bytes) -> WorkingKeys:
        body = sign(sign_on(TerminalIdentity(tid, MERCHANT), 1, 1), ALGORITHM, None)
        (reply,) = self.switch.handle_batch([self._request(body)])
        assert reply.body is not None
        answer = decode_message(reply.body)
        if answer.response_code != "00":
            raise BenchError(f"sign-on of {tid} answered {answer.response_code}")
        return decode_signon_keys(master, bytes.fromhex(answer.fields[62]))

    def _request(self, body: bytes) -> Request:
        return Request(1, "bench", body, time.time_ns() // 1_000_000, next(self._ids))

    def purchase_batch(self, bodies: list[bytes], spent: dict[str, float]) -> None:
        """One batch through all three steps; CPU seconds added to ``spent`` per step."""
        self.forwards.clear()
        started = time.process_time()
        replies = self.switch.handle_batch([self._request(body) for body in bodies])
        spent[STEPS[0]] += time.process_time() - started
        if any(not r.deferred for r in replies) or len(self.forwards) != len(bodies):
            raise BenchError("the switch answered a sale itself instead of forwarding it")
        forwards = [c.outcome for c in self.forwards]
        assert all(isinstance(f, Forward) for f in forwards)
        started = time.process_time()
        answers = self.issuer.handle_batch(
            [self._request(f.body) for f in forwards if isinstance(f, Forward)]
        )
        spent[STEPS[1]] += time.process_time() - started
        events = [IssuerEvent(LINK, raw=a.body) for a in answers]
        started = time.process_time()
        results = self.switch.settle_issuer_events(events)
        spent[STEPS[2]] += time.process_time() - started
        for result in results:
            if not isinstance(result, TerminalAnswer) or result.code != "00":
                raise BenchError(f"a sale was not approved end to end: {result!r}")
            reply = decode_message(result.body)
            tid = reply.terminal_id or ""
            if not message_mac_ok(result.body, reply, ALGORITHM, self.mac_keys[tid]):
                raise BenchError(f"the answer to STAN {reply.stan} has a bad MAC")

    def run(self, batch: int) -> RunResult:
        spent = dict.fromkeys(STEPS, 0.0)
        for start in range(0, len(self.sales), batch):
            self.purchase_batch(self.sales[start : start + batch], spent)
        return RunResult({step: s * 1000 / len(self.sales) for step, s in spent.items()})

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


def one_run(args: argparse.Namespace, work: Callable[[Harness], RunResult]) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="cardtally-hotpath-", dir=args.database_dir) as tmp:
        harness = Harness(Path(tmp), args)
        try:
            return work(harness)
        finally:
            harness.dispose()


def profile(args: argparse.Namespace) -> None:
    profiler = cProfile.Profile()

    def work(harness: Harness) -> RunResult:
        return profiler.runcall(harness.run, args.batch)

    one_run(args, work)
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    for (path, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        own[_package(path)] = own.get(_package(path), 0.0) + tottime
    total = sum(own.values())
    print("own time by package (cProfile, slower than real):")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        if seconds / total >= 0.005:
            print(f"  {seconds / total:6.1%}  {name}")
    stats.sort_stats("tottime").print_stats(_PROFILE_LINES)


def _package(path: str) -> str:
    for marker, name in (
        ("/sqlalchemy/", "sqlalchemy"),
        ("/iso8583/", "pyiso8583"),
        ("/cryptography/", "cryptography"),
        ("/cardtally/", None),
    ):
        if marker in path:
            if name is not None:
                return name
            return "cardtally." + path.split("/cardtally/", 1)[1].split("/", 1)[0]
    if path.startswith("~") or path == "~":
        return "built-ins (C: sqlite3, json, ...)"
    return "stdlib and other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sales", type=int, default=2048)
    parser.add_argument("--terminals", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64, help="sales per batch, each step")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cards", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    parser.add_argument("--database-dir", default=None, help="where the SQLite files go")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if min(args.sales, args.terminals, args.batch, args.runs, args.cards) < 1:
        parser.error("every count must be at least 1")
    if args.profile:
        profile(args)
        return
    if not args.json:
        print(
            f"switch + issuer services in one process, SQLite (synchronous=FULL), MAC on: "
            f"{args.sales} sales, {args.terminals} terminals, batches of {args.batch}; "
            f"Python {platform.python_version()}, {platform.machine()}"
        )
    runs = []
    for number in range(1, args.runs + 1):
        try:
            result = one_run(args, lambda h: h.run(args.batch))
        except BenchError as exc:
            sys.exit(f"run {number}: {exc}")
        runs.append(result)
        if not args.json:
            steps = "  ".join(f"{s} {result.cpu_ms_per_purchase[s]:.3f}" for s in STEPS)
            print(f"run {number}: CPU ms per purchase: {steps}  total {result.total_ms:.3f}")
    medians = {s: statistics.median(r.cpu_ms_per_purchase[s] for r in runs) for s in STEPS}
    total = statistics.median(r.total_ms for r in runs)
    if args.json:
        print(json.dumps({"cpu_ms_per_purchase": medians, "total_ms": total, "runs": args.runs}))
        return
    steps = "  ".join(f"{s} {medians[s]:.3f}" for s in STEPS)
    print(f"median: CPU ms per purchase: {steps}  total {total:.3f}")
    print(f"        = {1000 / total:,.0f} purchases per CPU-second for both hosts together")


if __name__ == "__main__":
    main()
