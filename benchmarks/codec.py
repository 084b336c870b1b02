"""Encode and decode throughput of the wire profile for a 0200 sale and its 0210.

Usage: python benchmarks/codec.py [--messages N] [--runs R] [--profile] [--json]

Prints messages per second (median of R runs) for: message encode, message
decode, and the whole receive path (frame decode + message decode). Timing
uses time.perf_counter; the machine is shared, so compare medians, not bests.
``--profile`` instead prints where the time goes (cProfile, so slower overall):
the share spent inside pyiso8583 and inside cardtally's own wire checks.
``--json`` prints the figures as one JSON object instead (for ``cardtally bench``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.wire.samples import SALE_0200, SALE_0210

from cardtally.wire import (
    FrameDecoder,
    Message,
    Tpdu,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)


def rate(operation: Callable[[], object], count: int, runs: int) -> float:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            operation()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def bench(message: Message, count: int, runs: int) -> dict[str, float]:
    raw = encode_message(message)
    frame = encode_frame(Tpdu(1, 2), raw)

    def receive() -> None:
        for body in FrameDecoder().feed(frame):
            decode_frame(body)

    return {
        "encode": rate(lambda: encode_message(message), count, runs),
        "decode": rate(lambda: decode_message(raw), count, runs),
        "frame+decode": rate(receive, count, runs),
        "bytes": float(len(raw)),
    }


def profile_shares(count: int) -> dict[str, float]:
    """Fraction of the 0200 encode + receive time spent per package (by own time)."""
    raw_frame = encode_frame(Tpdu(1, 2), encode_message(SALE_0200))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        encode_message(SALE_0200)
        for body in FrameDecoder().feed(raw_frame):
            decode_frame(body)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    own = {"pyiso8583": 0.0, "cardtally.wire": 0.0, "other": 0.0}
    for (path, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        if "/iso8583/" in path:
            own["pyiso8583"] += tottime
        elif "/cardtally/wire/" in path:
            own["cardtally.wire"] += tottime
        else:
            own["other"] += tottime
    total = sum(own.values())
    return {name: seconds / total for name, seconds in own.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median is reported")
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.profile:
        shares = profile_shares(args.messages)
        print(
            "0200 encode + frame receive, share of own time: "
            + ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
        )
        return
    if args.json:
        results = {
            name: bench(message, args.messages, args.runs)
            for name, message in (("0200 sale", SALE_0200), ("0210", SALE_0210))
        }
        print(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "messages": args.messages,
                    "runs": args.runs,
                    "unit": "messages/s, median of the runs",
                    "results": results,
                }
            )
        )
        return
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{args.runs} runs x {args.messages} messages, median msg/s"
    )
    print(f"{'message':<10}{'bytes':>6}{'encode':>12}{'decode':>12}{'frame+decode':>14}")
    for name, message in (("0200 sale", SALE_0200), ("0210", SALE_0210)):
        r = bench(message, args.messages, args.runs)
        print(
            f"{name:<10}{int(r['bytes']):>6}{r['encode']:>12,.0f}{r['decode']:>12,.0f}"
            f"{r['frame+decode']:>14,.0f}"
        )


if __name__ == "__main__":
    main()
