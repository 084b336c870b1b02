"""Where the end-to-end time goes: ``benchmarks/switch.py`` under py-spy, grouped by cost.

Usage: python benchmarks/profile_e2e.py [--sales 4000] [--rate 100] [--idle]
                                        [--raw FILE] [--from-raw FILE] [switch.py options]

Runs one ``benchmarks/switch.py`` run (real ``issuer serve`` and ``switch serve`` processes,
terminals pipelining MACed sales) under ``py-spy record --subprocesses --nonblocking``, then
sorts every sample of the two hosts into what it was doing, from the innermost frame out:
SQLite executing a statement, SQLite committing (WAL write and fsync), waiting for SQLite's
write lock (BEGIN IMMEDIATE), SQLAlchemy Core around the statements, the ISO 8583 codec
(pyiso8583, and cardtally's own checks and framing), MACs and other cryptography, logging,
metrics, asyncio and the runtime's framing, the parties' own logic, and the rest. Samples are
grouped by thread too: the worker lane (the party's batches), the event loop, and the
issuer's notice thread. Start-up (imports, migrations) is left out of the shares.

By default only samples of a thread on a CPU count (py-spy's idle detection), so the shares
are of CPU time; ``--idle`` counts every sample, which shows waits (a lock, an fsync, an idle
event loop) too. py-spy must be installed (``pip install py-spy``) and allowed to read other
processes (ptrace). Sampling costs CPU of its own on a small machine: the throughput printed
is lower than without it; the shares are what matter. ``--from-raw`` reads a file written
with ``--raw`` earlier instead of running anything.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

SWITCH_SCRIPT: Final = Path(__file__).resolve().with_name("switch.py")
_FRAME: Final = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")

#: Innermost-first rules: the first frame that matches one decides the sample's category.
_LEAF_RULES: Final = (
    ("DefaultDialect.do_commit", None, "SQLite: COMMIT (WAL write + fsync)"),
    ("DefaultDialect.do_execute", None, "SQLite: executing statements"),
    ("DefaultDialect.do_executemany", None, "SQLite: executing statements"),
    ("DefaultDialect.do_execute_no_params", None, "SQLite: executing statements"),
    (None, "sqlalchemy/", "SQLAlchemy Core (execution, parameters, results)"),
    (None, "iso8583/", "ISO 8583 codec: pyiso8583"),
    (None, "cardtally/wire/", "ISO 8583 codec: cardtally checks and framing"),
    (None, "cardtally/security/", "MACs, PIN blocks, keys (cardtally.security, cryptography)"),
    (None, "cryptography/", "MACs, PIN blocks, keys (cardtally.security, cryptography)"),
    (None, "psec/", "MACs, PIN blocks, keys (cardtally.security, cryptography)"),
    (None, "runtime/_logging", "logging"),
    (None, "logging/", "logging"),
    (None, "runtime/_metrics", "metrics"),
    (None, "runtime/_switch_metrics", "metrics"),
    (None, "prometheus_client/", "metrics"),
    (None, "cardtally/notices/", "notices (outbox, sinks, dispatcher)"),
    (None, "cardtally/runtime/", "asyncio and the runtime (framing, server, links)"),
    (None, "asyncio/", "asyncio and the runtime (framing, server, links)"),
    (None, "selectors.py", "asyncio and the runtime (framing, server, links)"),
    (None, "cardtally/issuer/", "the parties' own logic (issuer, switch, ledger, storage)"),
    (None, "cardtally/switch/", "the parties' own logic (issuer, switch, ledger, storage)"),
    (None, "cardtally/ledger/", "the parties' own logic (issuer, switch, ledger, storage)"),
    (None, "cardtally/storage/", "the parties' own logic (issuer, switch, ledger, storage)"),
    (None, "cardtally/", "the parties' own logic (issuer, switch, ledger, storage)"),
)
_IDLE_LEAVES: Final = frozenset(
    {"EpollSelector.select", "Condition.wait", "Event.wait", "SimpleQueue.get", "WorkerLane._work"}
)
STARTUP: Final = "start-up (imports, migrations)"
LOCK_WAIT: Final = "SQLite: waiting for the write lock (BEGIN IMMEDIATE)"
WAITING: Final = "waiting for work (idle)"


def _frame(text: str) -> tuple[str, str]:
    found = _FRAME.match(text)
    return (found["name"], found["file"]) if found else (text, "")


def host_of(stack: list[str]) -> str | None:
    for frame in stack[:2]:
        if "issuer serve" in frame:
            return "issuer"
        if "switch serve" in frame:
            return "switch"
    return None


def thread_of(names: list[str]) -> str:
    if "_deliver_notices" in names:
        return "notice thread"
    if "WorkerLane._work" in names:
        return "worker lane"
    return "event loop"


def category_of(frames: list[tuple[str, str]]) -> str:
    names = [name for name, _ in frames]
    if "_find_and_load" in names or ("serve_forever" not in names and "Thread.run" not in names):
        return STARTUP
    if frames and frames[-1][0] in _IDLE_LEAVES:
        return WAITING
    if "_begin_immediate" in names:  # its statement is the wait for the lock
        return LOCK_WAIT
    for name, file in reversed(frames):
        for rule_name, rule_file, category in _LEAF_RULES:
            if (rule_name is not None and name == rule_name) or (
                rule_file is not None and rule_file in file
            ):
                return category
    return "other (stdlib: json, hashlib, datetime, ...)"


Counts = dict[str, collections.Counter[tuple[str, str]]]


def tally(raw: Path) -> Counts:
    """Samples per host, by (category, thread)."""
    counts: Counts = {"issuer": collections.Counter(), "switch": collections.Counter()}
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        stack = stack_text.split(";")
        host = host_of(stack)
        if host is None:
            continue
        frames = [_frame(text) for text in stack[2:]]
        category = category_of(frames)
        thread = "" if category == STARTUP else thread_of([n for n, _ in frames])
        counts[host][(category, thread)] += int(count)
    return counts


def report(counts: Counts) -> None:
    for host, counter in counts.items():
        total = sum(n for (category, _), n in counter.items() if category != STARTUP)
        if not total:
            print(f"{host}: no samples")
            continue
        print(f"\n{host}: {total:,} samples after start-up (shares of those)")
        by_category: collections.Counter[str] = collections.Counter()
        threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for (category, thread), n in counter.items():
            if category != STARTUP:
                by_category[category] += n
                threads[category][thread] += n
        print(f"| {'what':<60} | share | by thread |")
        print(f"|{'-' * 62}|-------|-----------|")
        for category, n in by_category.most_common():
            split = ", ".join(
                f"{thread} {m / total:.0%}" for thread, m in threads[category].most_common()
            )
            print(f"| {category:<60} | {n / total:5.1%} | {split} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--idle", action="store_true", help="count waiting threads too")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    parser.add_argument("--from-raw", type=Path, help="tally this raw file; run nothing")
    args, switch_args = parser.parse_known_args()
    if args.from_raw is not None:
        report(tally(args.from_raw))
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    if "--sales" not in switch_args:
        switch_args += ["--sales", "4000"]
    with tempfile.TemporaryDirectory(prefix="cardtally-profile-") as tmp:
        raw = args.raw or Path(tmp) / "samples.txt"
        command = [
            py_spy,
            "record",
            "--subprocesses",
            "--nonblocking",
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "--output",
            str(raw),
            *(["--idle"] if args.idle else []),
            "--",
            sys.executable,
            str(SWITCH_SCRIPT),
            "--runs",
            "1",
            *switch_args,
        ]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        print(done.stdout, end="")
        if done.returncode != 0 or not raw.exists():
            sys.exit(f"py-spy or the benchmark failed ({done.returncode}):\n{done.stderr}")
        mode = "every sample (--idle)" if args.idle else "CPU samples only"
        print(f"py-spy at {args.rate} Hz, {mode}")
        report(tally(raw))


if __name__ == "__main__":
    main()
