"""``cardtally up``: the home's issuer and switch in the foreground, stopped by Ctrl-C."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, err, fail, out
from cardtally.cli._state import state_of
from cardtally.config import Config
from cardtally.security import load_data_keys, load_issuer_keys

if TYPE_CHECKING:
    # Importing cardtally.demo._hosts imports the whole demo package: only when `up` runs.
    from cardtally.demo._hosts import HostProcess


def up_command(
    ctx: typer.Context,
    logs: Annotated[
        bool,
        typer.Option(
            "--logs", help="Show the hosts' structured logs here instead of in <home>/logs/."
        ),
    ] = False,
) -> None:
    """Start the issuer and the switch of this home, each in its own process, and wait.

    The issuer starts first (the switch links to it as it starts). Each listens where the
    config says (issuer.port, switch.port; metrics on issuer.metrics_port and
    switch.metrics_port when set). Logs go to <home>/logs/issuer.log and switch.log (or
    here with --logs). Ctrl-C or SIGTERM stops both cleanly: the switch first, then the
    issuer, each answering what is in flight. Exit 0 after a clean stop, 1 if a host
    failed to start or stopped on its own, 2 on a broken home (try `cardtally doctor`).

    Example (after `cardtally --home ./shop init --sample`):

        cardtally --home ./shop up
    """
    from cardtally.demo._hosts import (  # noqa: PLC0415 - heavy, up only
        HostError,
        HostProcess,
        run_until_stopped,
    )

    state = state_of(ctx)
    config = state.config()
    load_data_keys(state.home)  # a missing key is one clear line here, not a host's traceback
    load_issuer_keys(state.home)
    hosts: list[HostProcess] = []
    try:
        for party in ("issuer", "switch"):
            host = HostProcess(party, state.home)
            hosts.append(host)
            host.start(logs_to_console=logs)
            host.wait_ready()
        out.print(_table(config, hosts))
        out.print("Ctrl-C stops both.")
        gone = run_until_stopped(hosts)
    except HostError as exc:
        _stop(hosts)
        fail(str(exc), EXIT_PROBLEM)
    codes = _stop(hosts)
    if gone is not None:
        err.print(f"the {gone.party} stopped on its own: {escape(gone.log_tail())}")
        raise typer.Exit(EXIT_PROBLEM)
    out.print(f"stopped cleanly (exit codes: {codes})")


def _stop(hosts: list[HostProcess]) -> str:
    """Switch first: it stops forwarding before the issuer goes."""
    codes = [f"{host.party} {host.stop()}" for host in reversed(hosts)]
    return ", ".join(codes)


def _table(config: Config, hosts: list[HostProcess]) -> Table:
    metrics = {"issuer": config.issuer.metrics_port, "switch": config.switch.metrics_port}
    table = Table(title=f"cardtally up: {config.home}", title_justify="left")
    for column in ("party", "listening", "pid", "metrics", "log"):
        table.add_column(column)
    for host in hosts:
        port = metrics[host.party]
        table.add_row(
            host.party,
            f"{getattr(config, host.party).host}:{host.port}",
            str(host.pid),
            f"http://{getattr(config, host.party).host}:{port}/metrics" if port else "off",
            str(host.log_path),
        )
    return table
