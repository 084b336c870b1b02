"""End-to-end purchases through the acquirer switch and the issuer, over real TCP.

Usage: python benchmarks/switch.py [--database sqlite|postgres] [--sales N] [--terminals T]
                                   [--window W] [--runs R] [--cards K] [--json]

Each run makes a fresh home (issuer with K PIN-less debit cards; a merchant with T terminals,
MAC required, X9.19), starts ``cardtally issuer serve`` and ``cardtally switch serve`` as child
processes, and gives each terminal its own connection to the switch: it signs on (keys under
its master key), then pipelines N/T MACed sales keeping up to W unanswered. Both parties
commit every request durably before answering (group commit). Latency is send -> reply at the
terminal; throughput is N over the time from the first send to the last reply; the CPU time
each host used meanwhile (from /proc, on Linux) is shown per purchase, a figure that moves far
less than throughput when the machine is shared. Every answer
must be an approval of its own STAN whose MAC verifies, and ``cardtally ledger verify`` must
pass on the issuer, or the benchmark stops: a fast wrong answer is not a figure.

``--database postgres`` gives each party a fresh schema in
postgresql+psycopg://postgres@127.0.0.1:5432/test (CARDTALLY_BENCH_PG_URL overrides).
``--json`` prints the figures as one JSON object on stdout (the per-run lines go to stderr),
for ``cardtally bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.issuer import (
    HOST,
    BenchError,
    Host,
    cli,
    database,
    drive,
    make_home,
    percentile,
)
from tests.issuer.messages import EXPIRY, pan

from cardtally.config import load_config, resolve_database_url
from cardtally.runtime import SyncFrameClient
from cardtally.security import (
    MacAlgorithm,
    WorkingKeys,
    decode_signon_keys,
    load_data_keys,
    message_mac_ok,
)
from cardtally.storage import transaction
from cardtally.switch._database import open_switch_database
from cardtally.switch._registry import add_issuer_link, add_merchant, add_terminal
from cardtally.terminal import Card, TerminalIdentity, sale, sign, sign_on
from cardtally.wire import LinkProfile, Pan, Tpdu, decode_message

MERCHANT: Final = "898310048160001"
AMOUNT_MINOR: Final = 100
TPDU: Final = Tpdu(1, 0x101)
SIGN_ON_TIMEOUT_MS: Final = 15_000
ALGORITHM: Final = MacAlgorithm.X9_19


@dataclass(frozen=True, slots=True)
class RunResult:
    purchases_per_s: float
    p50_ms: float
    p99_ms: float
    #: CPU time each host spent per purchase while the terminals ran (None off Linux).
    switch_cpu_ms: float | None = None
    issuer_cpu_ms: float | None = None


@contextmanager
def two_databases(kind: str, tmp: Path) -> Iterator[tuple[str, str]]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'issuer.sqlite3'}", f"sqlite:///{tmp / 'switch.sqlite3'}"
        return
    with database(kind, tmp) as issuer_url, database(kind, tmp) as switch_url:
        yield issuer_url, switch_url


def register(home: Path, issuer_port: int, terminals: int) -> dict[str, bytes]:
    """Merchant, terminals and the issuer link, straight into the switch database."""
    config = load_config(home)
    now_ms = time.time_ns() // 1_000_000
    engine = open_switch_database(resolve_database_url(home, config.switch.database), now_ms)
    data_keys = load_data_keys(home)
    masters = {}
    try:
        with transaction(engine) as conn:
            add_merchant(conn, merchant_id=MERCHANT, name="BENCH MART", mcc="5411", at_ms=now_ms)
            add_issuer_link(
                conn,
                link_id="issuer",
                host=HOST,
                port=issuer_port,
                timeout_ms=30_000,
                bins=["622588"],
                at_ms=now_ms,
            )
            for n in range(terminals):
                tid = f"9{n:07d}"
                _, masters[tid] = add_terminal(
                    conn, data_keys, terminal_id=tid, merchant_id=MERCHANT, at_ms=now_ms
                )
    finally:
        engine.dispose()
    return masters


def signed_on(port: int, tid: str, master_key: bytes) -> WorkingKeys:
    who = TerminalIdentity(tid, MERCHANT)
    with SyncFrameClient.connect(HOST, port, LinkProfile(), TPDU) as client:
        raw = client.request(sign(sign_on(who, 1, 1), ALGORITHM, None), SIGN_ON_TIMEOUT_MS)
    answer = decode_message(raw)
    if answer.response_code != "00":
        raise BenchError(f"sign-on of {tid} answered {answer.response_code}")
    return decode_signon_keys(master_key, bytes.fromhex(answer.fields[62]))


def sales_for(
    tid: str, keys: WorkingKeys, cards: list[str], count: int, offset: int
) -> list[bytes]:
    who = TerminalIdentity(tid, MERCHANT)
    return [
        sign(
            sale(
                who,
                stan + 2,
                1,
                card=Card(Pan(cards[(offset + stan) % len(cards)]), expiry=EXPIRY),
                amount_minor=AMOUNT_MINOR,
            ),
            ALGORITHM,
            keys,
        )
        for stan in range(count)
    ]


def check(bodies: list[bytes], answers: list[bytes], keys: WorkingKeys) -> None:
    if len(answers) != len(bodies):
        raise BenchError(f"{len(answers)} answers to {len(bodies)} sales")
    stans = {decode_message(body).stan for body in bodies}
    for raw in answers:
        reply = decode_message(raw)
        if reply.mti != "0210" or reply.response_code != "00" or reply.stan not in stans:
            raise BenchError(f"sale answered {reply!r}")
        if not message_mac_ok(raw, reply, ALGORITHM, keys.mac_key):
            raise BenchError(f"answer to STAN {reply.stan} has a bad MAC")
        stans.discard(reply.stan)


def one_run(args: argparse.Namespace) -> RunResult:
    cards = [pan(f"62258830{n:07d}") for n in range(args.cards)]
    with tempfile.TemporaryDirectory(prefix="cardtally-bench-") as tmp_text, ExitStack() as stack:
        tmp = Path(tmp_text)
        issuer_url, switch_url = stack.enter_context(two_databases(args.database, tmp))
        home = make_home(tmp, issuer_url, cards)
        config_file = home / "cardtally.toml"
        default = 'database = "sqlite:///switch.db"'
        config_file.write_text(
            config_file.read_text().replace(default, f"database = {json.dumps(switch_url)}")
        )
        issuer = Host(home, tmp / "issuer.stderr")
        try:
            masters = register(home, issuer.port, args.terminals)
            switch = Host(home, tmp / "switch.stderr", ("switch", "serve", "--port", "0"))
            try:
                cpu_before = (switch.cpu_s(), issuer.cpu_s())
                results = drive_terminals(switch.port, masters, cards, args)
                cpu_after = (switch.cpu_s(), issuer.cpu_s())
            finally:
                switch.stop()
        finally:
            issuer.stop()
        verified = cli(home, "ledger", "verify")
        if verified.returncode != 0:
            raise BenchError(f"ledger verify failed:\n{verified.stdout}{verified.stderr}")
    latencies = [lat for r in results for lat in r[1]]
    elapsed_s = max(r[3] for r in results) - min(r[2] for r in results)
    switch_cpu, issuer_cpu = (
        None if before is None or after is None else (after - before) * 1000 / args.sales
        for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    return RunResult(
        args.sales / elapsed_s,
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
        switch_cpu,
        issuer_cpu,
    )


def drive_terminals(
    port: int, masters: dict[str, bytes], cards: list[str], args: argparse.Namespace
) -> list[tuple[list[bytes], list[float], float, float]]:
    tids = sorted(masters)
    keys = [signed_on(port, tid, masters[tid]) for tid in tids]
    per_terminal = [
        sales_for(tid, keys[i], cards, len(range(i, args.sales, len(tids))), i)
        for i, tid in enumerate(tids)
    ]
    start = threading.Barrier(len(tids))
    results: list[tuple[list[bytes], list[float], float, float] | None] = [None] * len(tids)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = drive(port, per_terminal[index], args.window, start)
        except BaseException as exc:  # reported below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors or any(t.is_alive() for t in threads):
        raise BenchError(f"a terminal failed: {errors!r}")
    done = [r for r in results if r is not None]
    for bodies, result, key in zip(per_terminal, done, keys, strict=True):
        check(bodies, result[0], key)
    return done


def cpu_text(switch_ms: float | None, issuer_ms: float | None) -> str:
    if switch_ms is None or issuer_ms is None:
        return ""
    return f"  CPU ms/purchase: switch {switch_ms:.2f} issuer {issuer_ms:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sales", type=int, default=2000)
    parser.add_argument("--terminals", type=int, default=8)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cards", type=int, default=100, help="cards the sales go to, in turn")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if min(args.sales, args.terminals, args.window, args.runs, args.cards) < 1:
        parser.error("every count must be at least 1")
    if args.sales // args.terminals > 999_990:
        parser.error("--sales: STANs are six digits per terminal")

    # With --json, stdout carries the JSON alone and the human lines go to stderr.
    human = sys.stderr if args.json else sys.stdout
    print(
        f"switch + issuer, {args.database}, durable at both, MAC on: {args.sales} sales, "
        f"{args.terminals} terminals, window {args.window}, {args.cards} cards; "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs",
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
            f"run {number}: {result.purchases_per_s:7.0f} purchases/s  "
            f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
            f"{cpu_text(result.switch_cpu_ms, result.issuer_cpu_ms)}",
            file=human,
            flush=True,
        )
    median = {
        name: statistics.median(getattr(r, name) for r in runs)
        for name in ("purchases_per_s", "p50_ms", "p99_ms")
    }
    for name in ("switch_cpu_ms", "issuer_cpu_ms"):
        values = [getattr(r, name) for r in runs]
        median[name] = None if None in values else statistics.median(values)
    print(
        f"median: {median['purchases_per_s']:7.0f} purchases/s  "
        f"p50 {median['p50_ms']:6.1f} ms  p99 {median['p99_ms']:6.1f} ms"
        f"{cpu_text(median['switch_cpu_ms'], median['issuer_cpu_ms'])}",
        file=human,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "database": args.database,
                    "sales": args.sales,
                    "terminals": args.terminals,
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
