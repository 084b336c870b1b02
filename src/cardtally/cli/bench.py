"""``cardtally bench``: run the benchmark scripts and print their figures in one table.

The scripts live in the source checkout's ``benchmarks/`` directory (they use the test
suite's message builders, so they need the checkout, not just the installed package). Each
runs as a child process of the current interpreter with ``--json``: its figures come back
as one JSON object on stdout, its progress lines on stderr. A script that fails, times out
or prints no JSON gives a FAILED row with the reason, and the command exits 1 at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, Final

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import cardtally
from cardtally.cli._output import EXIT_PROBLEM, err, fail, out

#: What a script may take before it is stopped and reported FAILED (bounded everything).
TIMEOUT_S_DEFAULT: Final = 3_600
TIMEOUT_S_MAX: Final = 24 * 3_600
_REASON_CHARS_MAX: Final = 300
_PROGRESS_CHARS_MAX: Final = 90
_STOP_WAIT_S: Final = 10


@dataclass(frozen=True, slots=True)
class Goal:
    """A target a figure is held to: at least (``>=``) or under (``<``) ``value``."""

    at_least: bool
    value: float
    text: str

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.at_least else figure < self.value


@dataclass(frozen=True, slots=True)
class Figure:
    what: str
    value: float
    unit: str
    digits: int = 0
    goal: Goal | None = None


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One script: its arguments for a quick check and for the report, and its figures."""

    name: str
    title: str
    quick_args: tuple[str, ...]
    report_args: tuple[str, ...]
    figures: Callable[[dict[str, Any]], list[Figure]]


@dataclass(slots=True)
class Outcome:
    """What one script gave: figures, or the reason it gave none."""

    benchmark: Benchmark
    command: list[str]
    shown_command: str
    figures: list[Figure] = field(default_factory=list)
    failure: str | None = None
    seconds: float = 0.0


# -- what each script's JSON says ----------------------------------------------------------------

E2E_RATE_GOAL: Final = Goal(at_least=True, value=5_000, text=">= 5,000")
E2E_P99_GOAL: Final = Goal(at_least=False, value=20, text="< 20")
RECON_10M_GOAL: Final = Goal(at_least=False, value=10, text="< 10")
SIM_GOAL: Final = Goal(at_least=True, value=20_000, text=">= 20,000")


def _codec_figures(data: dict[str, Any]) -> list[Figure]:
    sale = data["results"]["0200 sale"]
    return [
        Figure("wire codec: 0200 sale encode", sale["encode"], "messages/s"),
        Figure("wire codec: 0200 sale frame + decode", sale["frame+decode"], "messages/s"),
    ]


def _issuer_figures(data: dict[str, Any]) -> list[Figure]:
    median = data["median"]
    shape = f"{data['connections']} conns x {data['window']}"
    return [
        Figure(
            f"issuer host: sales ({data['database']}, {shape})", median["sales_per_s"], "sales/s"
        ),
        Figure("issuer host: p99 latency under that load", median["p99_ms"], "ms", 1),
    ]


def _switch_figures(data: dict[str, Any]) -> list[Figure]:
    median = data["median"]
    shape = f"{data['terminals']} terminals x {data['window']}"
    what = f"end to end: purchases, durable, MAC on ({data['database']}, {shape})"
    figures = [
        Figure(what, median["purchases_per_s"], "purchases/s", goal=E2E_RATE_GOAL),
        Figure("end to end: p50 latency", median["p50_ms"], "ms", 1),
        Figure("end to end: p99 latency", median["p99_ms"], "ms", 1, goal=E2E_P99_GOAL),
    ]
    switch_ms, issuer_ms = median.get("switch_cpu_ms"), median.get("issuer_cpu_ms")
    if switch_ms is not None and issuer_ms is not None:
        # Steadier than throughput on a shared machine: what each purchase costs the hosts.
        what = f"end to end: CPU per purchase, switch {switch_ms:.2f} + issuer {issuer_ms:.2f}"
        figures.append(Figure(what, switch_ms + issuer_ms, "CPU ms", 2))
    return figures


def _reconcile_figures(data: dict[str, Any]) -> list[Figure]:
    figures = []
    for size in data["sizes"]:
        rows = size["size"]
        goal = RECON_10M_GOAL if rows == 10_000_000 else None
        what = f"reconciliation: {_count_text(rows)} switch transactions"
        figures.append(Figure(what, size["median_s"], "s", 2, goal=goal))
    return figures


def _simulator_figures(data: dict[str, Any]) -> list[Figure]:
    what = "simulator: faulty swipes per core"
    return [Figure(what, data["median_swipes_per_s"], "swipes/s", goal=SIM_GOAL)]


def _count_text(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    return f"{rows:,}"


def benchmarks(*, skip_10m: bool) -> dict[str, Benchmark]:
    """Every benchmark by name, in the order they run: cheap ones first."""
    sizes = "1000000" if skip_10m else "1000000,10000000"
    listed = [
        Benchmark(
            "codec",
            "wire codec",
            ("--messages", "2000", "--runs", "3"),
            ("--messages", "20000", "--runs", "5"),
            _codec_figures,
        ),
        Benchmark(
            "issuer",
            "issuer host over TCP",
            ("--sales", "400", "--runs", "1"),
            ("--sales", "2000", "--runs", "3"),
            _issuer_figures,
        ),
        Benchmark(
            "switch",
            "switch and issuer end to end",
            ("--sales", "400", "--runs", "1"),
            ("--sales", "2000", "--runs", "3"),
            _switch_figures,
        ),
        Benchmark(
            "reconcile",
            "day-end reconciliation",
            ("--sizes", "1000000", "--runs", "1"),
            ("--sizes", sizes, "--runs", "3"),
            _reconcile_figures,
        ),
        Benchmark(
            "simulator",
            "fault simulator",
            ("--seeds", "1", "--swipes", "300", "--runs", "1"),
            ("--seeds", "5", "--swipes", "1000", "--runs", "3"),
            _simulator_figures,
        ),
    ]
    return {b.name: b for b in listed}


# -- options ------------------------------------------------------------------------------------

QuickOpt = Annotated[
    bool,
    typer.Option(
        "--quick",
        help=(
            "Small sizes and one run each, for a check that the scripts work (about two "
            "minutes, 10M reconciliation left out). Not figures for the report."
        ),
    ),
]
OnlyOpt = Annotated[
    str | None,
    typer.Option(
        "--only",
        help="Run only these, comma-separated: codec, issuer, switch, reconcile, simulator.",
    ),
]
Skip10mOpt = Annotated[
    bool,
    typer.Option(
        "--skip-10m",
        help="Leave out the 10M-transaction reconciliation (it needs about 7 GiB and minutes).",
    ),
]
ScriptsOpt = Annotated[
    Path | None,
    typer.Option(
        "--scripts",
        help=(
            "Directory of the benchmark scripts (default: benchmarks/ of the source checkout "
            "cardtally is imported from)."
        ),
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    int,
    typer.Option(
        "--timeout-s",
        min=1,
        max=TIMEOUT_S_MAX,
        help="Stop a script that runs longer than this and report it FAILED.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")]


def bench_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    quick: QuickOpt = False,
    only: OnlyOpt = None,
    skip_10m: Skip10mOpt = False,
    scripts: ScriptsOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_S_DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """Run the benchmark scripts and print their figures in one table.

    Runs benchmarks/codec.py, issuer.py, switch.py, reconcile.py and simulator.py (in that
    order) as child processes of this interpreter and shows, for each figure, the goal it
    is held to and whether it is met, with the command that reproduces it. The default
    sizes are the ones docs/benchmarks.md reports (several minutes; the 10M reconciliation
    needs about 7 GiB); --quick checks in a minute or two that every script works.

    The machine matters: figures from a shared or busy machine are a floor. Exit 0 when
    every script gave its figures (met goals or not), 1 when one failed, 2 for bad options.
    """
    known = benchmarks(skip_10m=skip_10m or quick)
    chosen = _chosen(only, known)
    directory = _scripts_dir(scripts)
    runs = [_prepare(known[name], directory, quick=quick) for name in chosen]
    _run_all(runs, directory, timeout_s, quiet=as_json)
    if as_json:
        out.print_json(json.dumps(_as_dict(runs, quick=quick)))
    else:
        out.print(_table(runs, quick=quick))
    if any(run.failure is not None for run in runs):
        raise typer.Exit(EXIT_PROBLEM)


def _chosen(only: str | None, known: dict[str, Benchmark]) -> list[str]:
    if only is None:
        return list(known)
    names = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [name for name in names if name not in known]
    if not names:
        fail(f"--only: name at least one benchmark (choose from {', '.join(known)})")
    if unknown:
        fail(
            f"--only: unknown benchmark {', '.join(map(repr, unknown))} "
            f"(choose from {', '.join(known)})"
        )
    return [name for name in known if name in names]


def _scripts_dir(given: Path | None) -> Path:
    if given is not None:
        if not given.is_dir():
            fail(f"--scripts: {given} is not a directory")
        return given.resolve()
    # src/cardtally/__init__.py -> the checkout's root is two levels above the package.
    checkout = Path(cardtally.__file__).resolve().parents[2]
    found = checkout / "benchmarks"
    if not (found / "switch.py").is_file():
        fail(
            "benchmark scripts not found: cardtally is installed without its source checkout; "
            "run from a checkout (pip install -e .) or pass --scripts DIR"
        )
    return found


def _prepare(benchmark: Benchmark, directory: Path, *, quick: bool) -> Outcome:
    script = directory / f"{benchmark.name}.py"
    args = benchmark.quick_args if quick else benchmark.report_args
    shown = " ".join(["python", shlex.quote(_shown_path(script)), *args])
    command = [sys.executable, str(script), *args, "--json"]
    return Outcome(benchmark, command, shown)


def _shown_path(script: Path) -> str:
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


# -- running ------------------------------------------------------------------------------------


def _run_all(runs: list[Outcome], directory: Path, timeout_s: int, *, quiet: bool) -> None:
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[name]:<10}[/]"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=quiet, transient=False) as progress:
        for run in runs:
            task = progress.add_task("starting", name=run.benchmark.name, total=1)

            def show(line: str, task_id: Any = task) -> None:
                progress.update(task_id, description=escape(line[:_PROGRESS_CHARS_MAX]))

            _run_one(run, directory.parent, timeout_s, show)
            done = "done" if run.failure is None else f"[red]FAILED[/]: {escape(run.failure)}"
            progress.update(task, description=done, completed=1)


def _run_one(run: Outcome, cwd: Path, timeout_s: int, show: Callable[[str], None]) -> None:
    script = Path(run.command[1])
    if not script.is_file():
        run.failure = f"no script {script}"
        return
    started = time.monotonic()
    try:
        # The command is this interpreter on a script file; no shell is involved. A session of
        # its own, so a script stopped for its time takes the hosts it started with it.
        proc = subprocess.Popen(  # noqa: S603
            run.command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
            start_new_session=True,
        )
    except OSError as exc:
        run.failure = f"could not start: {exc}"
        return
    with proc:
        run.failure = _collect(run, proc, timeout_s, show)
    run.seconds = time.monotonic() - started


def _collect(
    run: Outcome, proc: subprocess.Popen[str], timeout_s: int, show: Callable[[str], None]
) -> str | None:
    """Wait for the script, showing its stderr; the failure reason, or None with its figures."""
    assert proc.stdout is not None and proc.stderr is not None
    stderr_lines: list[str] = []
    stdout_parts: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(proc.stderr, stderr_lines, show), daemon=True),
        threading.Thread(target=_pump, args=(proc.stdout, stdout_parts, None), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return f"timed out after {timeout_s} s"
    finally:
        for reader in readers:
            reader.join(_STOP_WAIT_S)
    return _read_figures(run, code, "".join(stdout_parts), stderr_lines)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop the script and whatever it started (its session): politely, then not."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(_STOP_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _pump(stream: IO[str], sink: list[str], show: Callable[[str], None] | None) -> None:
    for line in stream:
        sink.append(line)
        if show is not None and line.strip():
            show(line.strip())


def _child_env() -> dict[str, str]:
    env = {**os.environ}
    # The scripts make their own homes; progress lines should arrive as they are printed.
    env.pop("CARDTALLY_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _read_figures(run: Outcome, code: int, stdout: str, stderr_lines: list[str]) -> str | None:
    """Fill ``run.figures`` from the script's JSON; the failure reason if there are none."""
    if code != 0:
        last = next((line.strip() for line in reversed(stderr_lines) if line.strip()), "")
        return _short(f"exit {code}" + (f": {last}" if last else ""))
    try:
        data = json.loads(stdout)
        run.figures = run.benchmark.figures(data)
    except (ValueError, KeyError, TypeError) as exc:
        return _short(f"no figures in its JSON output ({type(exc).__name__}: {exc})")
    if not run.figures:
        return "no figures in its JSON output"
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS_MAX else text[: _REASON_CHARS_MAX - 3] + "..."


# -- the report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory_gib = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not every OS says
        memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "memory_gib": None if memory_gib is None else round(memory_gib, 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def _machine_text() -> str:
    m = machine()
    memory = "" if m["memory_gib"] is None else f", {m['memory_gib']} GiB"
    return f"Python {m['python']}, {m['machine']}, {m['cpus']} CPUs{memory}, {m['date']}"


def _figure_text(figure: Figure) -> str:
    return f"{figure.value:,.{figure.digits}f}"


def _met_text(figure: Figure) -> str:
    if figure.goal is None:
        return "-"
    return "[green]yes[/]" if figure.goal.met(figure.value) else "[red]no[/]"


def _table(runs: list[Outcome], *, quick: bool) -> Table:
    title = "cardtally bench" + (" --quick: small sizes, not figures to report" if quick else "")
    table = Table(title=title, caption=_machine_text())
    table.add_column("what")
    table.add_column("figure", justify="right", max_width=60)
    table.add_column("unit")
    table.add_column("goal")
    table.add_column("met?")
    table.add_column("command", overflow="fold")
    for run in runs:
        if run.failure is not None:
            table.add_row(
                run.benchmark.title,
                f"[red]FAILED[/]: {escape(run.failure)}",
                "",
                "",
                "",
                escape(run.shown_command),
            )
            continue
        for figure in run.figures:
            table.add_row(
                escape(figure.what),
                _figure_text(figure),
                figure.unit,
                figure.goal.text if figure.goal else "-",
                _met_text(figure),
                escape(run.shown_command),
            )
    return table


def _as_dict(runs: list[Outcome], *, quick: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for run in runs:
        common = {
            "benchmark": run.benchmark.name,
            "command": run.shown_command,
            "seconds": round(run.seconds, 1),
        }
        if run.failure is not None:
            rows.append({**common, "status": "FAILED", "reason": run.failure})
            continue
        for figure in run.figures:
            rows.append(
                {
                    **common,
                    "status": "ok",
                    "what": figure.what,
                    "figure": round(figure.value, max(figure.digits, 1)),
                    "unit": figure.unit,
                    "goal": figure.goal.text if figure.goal else None,
                    "met": None if figure.goal is None else figure.goal.met(figure.value),
                }
            )
    return {
        "quick": quick,
        "ok": all(run.failure is None for run in runs),
        "machine": machine(),
        "rows": rows,
    }
