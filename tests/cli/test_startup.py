"""Starting ``cardtally`` imports no heavy package: the simulator, the day end, the demo.

Every invocation (``cardtally issuer serve`` and ``switch serve`` as the demo's child
processes, each ``cardtally terminal sale``) pays for what ``cardtally.cli.main`` imports,
so the commands that need the simulator (``cardtally.sim``), the day end
(``cardtally.clearing``: duckdb, pyarrow, jinja2), the demo and the doctor import them
when they run, not when the CLI starts.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Top-level packages that must stay out of a plain start.
HEAVY_PACKAGES = ("duckdb", "pyarrow", "jinja2")
#: cardtally modules (and their submodules) that must stay out of a plain start.
HEAVY_MODULES = ("cardtally.sim", "cardtally.clearing", "cardtally.demo", "cardtally.doctor")

COMMANDS = (
    "wire",
    "config",
    "issuer",
    "switch",
    "terminal",
    "ledger",
    "dayend",
    "init",
    "doctor",
    "demo",
    "up",
    "lookup",
    "chaos",
    "bench",
)

#: Prints, on its last line of stderr, the heavy modules the code before it imported.
_REPORT_HEAVY = textwrap.dedent(
    f"""
    import sys
    heavy = sorted(
        m
        for m in sys.modules
        if m.split(".")[0] in {HEAVY_PACKAGES!r}
        or any(m == h or m.startswith(h + ".") for h in {HEAVY_MODULES!r})
    )
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
    """
)


def _heavy_after(code: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``code`` in a fresh interpreter; return the run and the heavy modules it imported."""
    run = subprocess.run(
        [sys.executable, "-c", code + _REPORT_HEAVY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("HEAVY=")]
    assert lines, f"the child did not report (exit {run.returncode}):\n{run.stderr}"
    found = lines[-1].removeprefix("HEAVY=")
    return run, [m for m in found.split(",") if m]


def test_importing_the_cli_imports_no_heavy_module() -> None:
    run, heavy = _heavy_after("import cardtally.cli.main\n")
    assert run.returncode == 0, run.stderr
    assert heavy == [], f"import cardtally.cli.main imported heavy modules: {heavy}"


def test_help_lists_every_command() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cardtally", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    listed = {line.strip(" │").split(" ")[0] for line in run.stdout.splitlines()}
    missing = [name for name in COMMANDS if name not in listed]
    assert not missing, f"--help does not list {missing}:\n{run.stdout}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["issuer", "serve", "--help"],
        ["switch", "serve", "--help"],
        ["terminal", "sale", "--help"],
        ["demo", "--help"],
        ["chaos", "--help"],
        ["lookup", "--help"],
        ["dayend", "run", "--help"],
    ],
)
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.argv = ["cardtally", *{argv!r}]
        from cardtally.cli.main import run
        try:
            run()
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
        print("EXIT=" + str(code), file=sys.stderr)
        """
    )
    run, heavy = _heavy_after(code)
    assert "EXIT=0" in run.stderr, run.stderr
    assert heavy == [], f"cardtally {' '.join(argv)} imported heavy modules: {heavy}"


# -- option defaults that mirror a heavy module's constant, so they cannot drift -------------


def test_demo_swipes_default_is_the_demo_packages() -> None:
    from cardtally.cli import demo as demo_cli
    from cardtally.demo._run import SWIPES_DEFAULT

    assert demo_cli.SWIPES_DEFAULT == SWIPES_DEFAULT


def test_lookup_limits_are_the_clearing_packages() -> None:
    from cardtally.clearing._lookup import LIMIT_DEFAULT, LIMIT_MAX
    from cardtally.cli import lookup as lookup_cli

    assert lookup_cli.LIMIT_DEFAULT == LIMIT_DEFAULT
    assert lookup_cli.LIMIT_MAX == LIMIT_MAX
