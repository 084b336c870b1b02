"""Day-end matching (``cardtally.clearing._match.reconcile``) on generated business days.

Usage: python benchmarks/reconcile.py [--sizes 1000000,10000000] [--runs 3] [--seed 7] [--json]

Each run is a fresh process with an in-memory DuckDB: it generates a day of N switch
transactions straight in SQL (``range()`` with fields derived from ``hash(seed, ...)``, so a
seed always gives the same day), about as many issuer postings, the terminals' closed batches
(~200 transactions each) and the upload records of the not-balanced ones, then times
``reconcile()`` alone. The mix: ~94 % matched sales and completions, ~2 % refunds and voids
(half the voids of a sale of the same day), ~2 % declined, ~1 % timed out and reversed at the
issuer, and a few of every fault: timed out at the switch with the issuer's debit (or credit) in
effect, approved but left out of the upload of a not-balanced batch, missing or reversed at the
issuer, amounts that differ at the issuer or the terminal, receipted at the terminal although
the switch failed it, terminal-only uploads (and some in batches reconciled earlier, which must
yield nothing), issuer-only postings before and after the cutoff, and batches not closed yet.

The generator also knows which class each row should land in; a run whose counts differ from
that stops the benchmark (a fast wrong answer is not a figure). Peak RSS is per size: each size
has its own driver process whose children are that size's runs, and the driver reads
``getrusage(RUSAGE_CHILDREN).ru_maxrss``; it covers generation and matching, so the RSS high-water
mark before matching is shown too. ``--json`` prints the summaries as one JSON object on
stdout instead of the tables (a line per size goes to stderr as it finishes), for
``cardtally bench``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import duckdb

from cardtally.clearing._match import create_inputs, reconcile
from cardtally.clearing._tables import ReconClass

DAY_START_MS: Final = 1_795_132_800_000  # 2026-11-21 00:00 UTC
DAY_MS: Final = 86_400_000
CUTOFF_MS: Final = DAY_START_MS + DAY_MS
TXN_BASE: Final = 1_000_000_000  # the day's first txn_id; earlier days have smaller ones
PER_TERMINAL: Final = 1_000  # transactions a terminal makes in the day
BATCH_SIZE: Final = 200

# One row per switch transaction: where it is, and what happened to it (its scenario). ``u``
# picks the scenario (parts per million), ``hb`` the fate of its batch. The faults of
# not-balanced batches (u 60000..99999) are plain sales in the other batches.
_DAY: Final = f"""
CREATE TEMP VIEW day AS
WITH r AS (
    SELECT n, n % terminals AS t, n // terminals AS p,
        n // terminals // {BATCH_SIZE} + 1 AS batch_no,
        hash(seed, n) % 1000000 AS u,
        hash(seed, n % terminals, n // terminals // {BATCH_SIZE}) % 1000000 AS hb,
        (hash(seed, n, 'amount') % 50000 + 100)::BIGINT AS amount,
        {DAY_START_MS} + n * {DAY_MS} // size AS received_at_ms
    FROM range(getvariable('n')) AS g(n), (
        SELECT getvariable('n') AS size, getvariable('seed') AS seed,
            getvariable('terminals') AS terminals
    )
), s AS (
    SELECT *,
        CASE WHEN hb < 2000 THEN 'open' WHEN hb < 12000 THEN 'not_balanced' ELSE 'balanced'
        END AS batch_state,
        CASE
            WHEN u < 20000 THEN 'declined'
            WHEN u < 30000 THEN 'reversed'
            WHEN u < 40000 THEN 'refund'
            WHEN u < 45000 AND p % {BATCH_SIZE} <> 0 THEN 'void_same_day'
            WHEN u < 50000 THEN 'void_earlier'
            WHEN u < 55000 THEN 'completion'
            WHEN u < 55100 THEN 'timeout_in_effect'
            WHEN u < 55200 THEN 'refund_timeout_in_effect'
            WHEN u < 55300 THEN 'no_posting'
            WHEN u < 55400 THEN 'posting_undone'
            WHEN u < 55500 THEN 'issuer_amount'
            WHEN hb NOT BETWEEN 2000 AND 11999 OR u >= 100000 THEN 'sale'
            WHEN u >= 60000 AND u < 80000 THEN 'not_receipted'
            WHEN u >= 80000 AND u < 90000 THEN 'terminal_amount'
            WHEN u >= 90000 THEN 'receipted_failed'
            ELSE 'sale'
        END AS scenario
    FROM r
)
SELECT *,
    {TXN_BASE} + n AS txn_id,
    lpad(t::VARCHAR, 8, '0') AS terminal_id,
    'M' || lpad((t // 4)::VARCHAR, 14, '0') AS merchant_id,
    lpad((p + 1)::VARCHAR, 6, '0') AS stan,
    lpad((n % 999999 + 1)::VARCHAR, 6, '0') AS issuer_stan,
    strftime(epoch_ms(received_at_ms), '%m%d%H%M%S') AS transmitted,
    CASE WHEN scenario LIKE 'refund%' THEN 'refund' WHEN scenario LIKE 'void%' THEN 'void'
        WHEN scenario = 'completion' THEN 'completion' ELSE 'sale' END AS kind,
    CASE scenario WHEN 'declined' THEN 'declined' WHEN 'reversed' THEN 'reversed'
        WHEN 'timeout_in_effect' THEN 'timed_out' WHEN 'refund_timeout_in_effect' THEN 'timed_out'
        WHEN 'receipted_failed' THEN 'timed_out' ELSE 'approved' END AS state,
    scenario NOT IN ('declined', 'no_posting', 'receipted_failed') AS at_issuer,
    scenario NOT IN ('not_receipted', 'declined', 'reversed', 'timeout_in_effect',
        'refund_timeout_in_effect') AND batch_state = 'not_balanced' AS uploaded,
    CASE
        WHEN scenario IN ('declined', 'reversed') THEN 'unsuccessful'
        WHEN scenario = 'refund_timeout_in_effect' THEN 'one_sided_credit'
        WHEN scenario IN ('timeout_in_effect', 'not_receipted') THEN 'one_sided_debit'
        WHEN scenario IN ('no_posting', 'posting_undone') THEN 'missing_at_issuer'
        WHEN scenario IN ('issuer_amount', 'terminal_amount') THEN 'amount_mismatch'
        WHEN scenario = 'receipted_failed' THEN 'unknown_to_host'
        WHEN batch_state = 'open' THEN 'awaiting_batch'
        ELSE 'matched'
    END AS expected
FROM s
"""

_SW_TXN: Final = f"""
INSERT INTO sw_txn SELECT
    txn_id, kind, state, terminal_id, merchant_id, batch_no::INTEGER, stan, amount, '156',
    'issuer', issuer_stan, transmitted,
    CASE state WHEN 'approved' THEN '00' WHEN 'declined' THEN '51' ELSE '98' END,
    CASE WHEN state = 'approved' THEN lpad((n % 1000000)::VARCHAR, 6, '0') END,
    '622588******' || lpad((n % 10000)::VARCHAR, 4, '0'),
    CASE WHEN scenario = 'void_same_day' THEN txn_id - getvariable('terminals')
        WHEN kind IN ('void', 'refund') THEN {TXN_BASE} - 1 - n END,
    received_at_ms, FALSE
FROM day
"""

_ISS_TXN: Final = """
INSERT INTO iss_txn SELECT
    'I' || lpad(n::VARCHAR, 11, '0'), kind, terminal_id, merchant_id, issuer_stan, transmitted,
    CASE WHEN kind IN ('sale', 'completion') THEN lpad((n + 7000000000)::VARCHAR, 12, '0')
        ELSE '' END,
    amount + CASE WHEN scenario = 'issuer_amount' THEN 100 ELSE 0 END, '156',
    scenario NOT IN ('reversed', 'posting_undone'), received_at_ms + 150
FROM day WHERE at_issuer
"""

# Postings no switch row names (field 7 with month 99, which the switch never sends): a quarter
# after the cutoff (next day's), a quarter undone, the rest in effect (an eighth credits).
_ISSUER_ONLY: Final = f"""
INSERT INTO iss_txn SELECT
    'J' || lpad(k::VARCHAR, 11, '0'), CASE WHEN k % 8 = 2 THEN 'refund' ELSE 'sale' END,
    lpad((k % getvariable('terminals'))::VARCHAR, 8, '0'),
    'M' || lpad((k % getvariable('terminals') // 4)::VARCHAR, 14, '0'),
    lpad((k + 1)::VARCHAR, 6, '0'), '99' || lpad(k::VARCHAR, 8, '0'), '', 1234, '156',
    k % 4 <> 1, CASE WHEN k % 4 = 0 THEN {CUTOFF_MS} + 60000 ELSE {CUTOFF_MS} - 60000 - k END
FROM range(getvariable('issuer_only')) AS g(k)
"""

_SW_BATCH: Final = f"""
INSERT INTO sw_batch
SELECT terminal_id, batch_no::INTEGER, batch_state, {CUTOFF_MS} - 1000, FALSE
FROM (SELECT DISTINCT terminal_id, batch_no, batch_state FROM day)
WHERE batch_state <> 'open'
UNION ALL  -- a batch reconciled on an earlier day, every 100th terminal
SELECT lpad(t::VARCHAR, 8, '0'), 0, 'not_balanced', {DAY_START_MS} - 3600000, TRUE
FROM range(0, getvariable('terminals'), 100) AS g(t)
"""

_SW_UPLOAD: Final = """
INSERT INTO sw_upload
SELECT terminal_id, batch_no::INTEGER, stan, lpad(txn_id::VARCHAR, 12, '0'),
    amount + CASE WHEN scenario = 'terminal_amount' THEN 100 ELSE 0 END,
    CASE WHEN kind IN ('sale', 'completion') THEN '000000' ELSE '200000' END,
    CASE WHEN scenario = 'terminal_amount' THEN 'amount: terminal ' || (amount + 100)
        || ', switch ' || amount
        WHEN state <> 'approved' THEN 'switch has it ' || state ELSE '' END,
    merchant_id, '156'
FROM day WHERE uploaded
UNION ALL  -- unknown at the switch: in about half the not-balanced batches, and the old ones
SELECT terminal_id, batch_no, '900000', '000000000000', 4321, '000000', 'unknown at the switch',
    'M' || lpad((terminal_id::INTEGER // 4)::VARCHAR, 14, '0'), '156'
FROM sw_batch
WHERE result = 'not_balanced'
    AND (claimed OR hash(getvariable('seed'), terminal_id, batch_no) % 2 = 0)
"""

# What reconcile() must say, from the scenarios alone.
_EXPECTED: Final = """
SELECT expected, count(*) FROM day GROUP BY ALL
UNION ALL
SELECT CASE WHEN k % 4 = 1 THEN 'unsuccessful' WHEN k % 8 = 2 THEN 'one_sided_credit'
    ELSE 'one_sided_debit' END, count(*)
FROM range(getvariable('issuer_only')) AS g(k) WHERE k % 4 <> 0 GROUP BY ALL
UNION ALL
SELECT 'unknown_to_host', count(*) FROM sw_upload AS u JOIN sw_batch AS b USING (terminal_id,
    batch_no) WHERE NOT b.claimed AND u.difference = 'unknown at the switch'
"""


class BenchError(Exception):
    pass


def generate(con: duckdb.DuckDBPyConnection, size: int, seed: int) -> dict[ReconClass, int]:
    """Fill the input tables with a day of ``size`` transactions; the counts it must give."""
    create_inputs(con)
    knobs = {
        "n": size,
        "seed": seed,
        "terminals": max(1, size // PER_TERMINAL),
        "issuer_only": max(8, size // 10_000),
    }
    for name, value in knobs.items():
        con.execute(f"SET VARIABLE {name} = {value:d}")
    for statement in (_DAY, _SW_TXN, _ISS_TXN, _ISSUER_ONLY, _SW_BATCH, _SW_UPLOAD):
        con.execute(statement)
    expected: dict[ReconClass, int] = dict.fromkeys(ReconClass, 0)
    for name, count in con.execute(_EXPECTED).fetchall():
        expected[ReconClass(name)] += int(count)
    con.execute("DROP VIEW day")
    return expected


def worker(size: int, seed: int) -> dict[str, Any]:
    """One run: generate (untimed), match (timed), check the counts."""
    con = duckdb.connect()
    expected = generate(con, size, seed)
    rows = {t: _count(con, t) for t in ("sw_txn", "iss_txn", "sw_batch", "sw_upload")}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    counts = reconcile(con, cutoff_ms=CUTOFF_MS)
    seconds = time.perf_counter() - start
    if dict(counts.by_class) != expected:
        raise BenchError(f"counts {dict(counts.by_class)} != expected {expected}")
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    return {
        "seconds": seconds,
        "rss_before_kib": rss_before,
        "rows": rows,
        "counts": {c.value: n for c, n in counts.by_class.items()},
        "exceptions": counts.exceptions,
        "threads": None if threads is None else int(threads[0]),
    }


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return 0 if row is None else int(row[0])


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"{args} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def size_driver(size: int, runs: int, seed: int) -> dict[str, Any]:
    """All runs of one size, each its own child, so RUSAGE_CHILDREN is this size's peak."""
    results = [_child("--worker", str(size), "--seed", str(seed)) for _ in range(runs)]
    seconds = [r["seconds"] for r in results]
    return {
        "size": size,
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "rss_before_kib": max(r["rss_before_kib"] for r in results),
        "first": results[0],
    }


def report(summaries: list[dict[str, Any]], seed: int) -> None:
    first = summaries[0]["first"]
    print(
        f"duckdb {duckdb.__version__}, {first['threads']} threads, Python "
        f"{platform.python_version()}, {platform.machine()}, seed {seed}"
    )
    print()
    print(
        "| switch rows | issuer rows | batches | uploads | median s | runs s | peak RSS MiB "
        "| RSS before matching MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in summaries:
        rows = s["first"]["rows"]
        runs = " / ".join(f"{x:.2f}" for x in s["seconds"])
        print(
            f"| {rows['sw_txn']:,} | {rows['iss_txn']:,} | {rows['sw_batch']:,} "
            f"| {rows['sw_upload']:,} | {s['median_s']:.2f} | {runs} "
            f"| {s['peak_rss_kib'] / 1024:,.0f} | {s['rss_before_kib'] / 1024:,.0f} |"
        )
    print()
    print("class counts (first run of each size; each run checked against the generator):")
    print("| class | " + " | ".join(f"{s['size']:,}" for s in summaries) + " |")
    print("|---|" + "---|" * len(summaries))
    for c in ReconClass:
        counts = " | ".join(f"{s['first']['counts'][c.value]:,}" for s in summaries)
        print(f"| {c.value} | {counts} |")
    exceptions = " | ".join(f"{s['first']['exceptions']:,}" for s in summaries)
    print(f"| (exceptions) | {exceptions} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="switch rows per day")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size-driver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.seed)))
        return
    if args.size_driver is not None:
        print(json.dumps(size_driver(args.size_driver, args.runs, args.seed)))
        return
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes takes whole numbers separated by commas, not {args.sizes!r}")
    if min(sizes, default=0) < 1 or args.runs < 1:
        parser.error("every size and --runs must be at least 1")
    summaries = []
    for size in sizes:
        summary = _child(
            "--size-driver", str(size), "--runs", str(args.runs), "--seed", str(args.seed)
        )
        summaries.append(summary)
        if args.json:
            runs = " / ".join(f"{x:.2f}" for x in summary["seconds"])
            print(f"{size:,} rows: median {summary['median_s']:.2f} s ({runs})", file=sys.stderr)
    if args.json:
        print(json.dumps({"seed": args.seed, "runs": args.runs, "sizes": summaries}))
        return
    report(summaries, args.seed)


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"reconcile benchmark: {exc}")
