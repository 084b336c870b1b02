"""``cardtally init`` and ``cardtally config``: create and check a home."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, err, fail, out
from cardtally.cli._state import state_of
from cardtally.config import config_path, default_config_text
from cardtally.runtime import wall_clock_ms
from cardtally.security import (
    create_data_keys,
    create_issuer_keys,
    data_keys_path,
    issuer_keys_path,
)

config_app = typer.Typer(help="Show and check the home's configuration.", no_args_is_help=True)


def init_command(
    ctx: typer.Context,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Also create the sample network (cards, merchants, terminals), in a new home.",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="With --sample: seed of its cardholders.")
    ] = 1,
) -> None:
    """Create a home: a config with every default written out, data keys and issuer keys.

    Existing files are kept, never overwritten. Choose the home with --home or
    CARDTALLY_HOME (default ./.cardtally).

    With --sample (the home must be new): the network `cardtally demo` runs, without running
    a day: an issuer with a few hundred cardholders on two BINs (their test card numbers and
    PINs in keys/sample-cards.csv), merchants of four categories and two fee plans (one via
    an agent, one paid D0), 33 terminals installed with their master keys, and the issuer
    link. Metrics on ports 9590 (issuer) and 9591 (switch). Then: cardtally up.
    """
    home = state_of(ctx).home
    if sample:
        _init_sample(home, seed)
        return
    home.mkdir(parents=True, exist_ok=True)
    path = config_path(home)
    if path.exists():
        out.print(f"config      kept     {path}")
    else:
        path.write_text(default_config_text(), encoding="utf-8")
        out.print(f"config      created  {path}")
    for label, path, create in (
        ("data keys  ", data_keys_path(home), create_data_keys),
        ("issuer keys", issuer_keys_path(home), create_issuer_keys),
    ):
        if path.exists():
            out.print(f"{label} kept     {path}")
        else:
            out.print(f"{label} created  {create(home)}  (mode 0600; back it up)")
    state_of(ctx).config()  # a kept config must still be valid
    out.print(f"home ready: {home}")


@config_app.command("show")
def show_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the effective config as JSON."),
) -> None:
    """Print the effective configuration (file values over defaults)."""
    config = state_of(ctx).config()
    values = dataclasses.asdict(config)
    values["home"] = str(config.home)
    if as_json:
        out.print_json(json.dumps(values))
        return
    table = Table(title=f"config of {config.home}", title_justify="left")
    table.add_column("key")
    table.add_column("value")
    for key, value in _flatten(values):
        table.add_row(key, str(value))
    out.print(table)


@config_app.command("check")
def check_command(ctx: typer.Context) -> None:
    """Validate the config file and the data-protection keys; exit 1 on a problem."""
    from cardtally.doctor import Level, check_keys  # noqa: PLC0415 - heavy, check only

    state = state_of(ctx)
    state.config()
    out.print(f"config      ok  {config_path(state.home)}")
    problems = 0
    # The same key checks `cardtally doctor` runs; a warning (no zone MAC key) still loads.
    for finding in check_keys(state.home):
        label = finding.check.ljust(len("issuer keys"))
        if finding.level is Level.PROBLEM:
            err.print(f"{label} PROBLEM  {finding.detail} => {finding.fix}")
            problems += 1
        elif finding.level is Level.WARN:
            out.print(f"{label} ok  ({finding.detail})")
        else:
            out.print(f"{label} ok")
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


def _flatten(values: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + key, value))
    return rows


def _init_sample(home: Path, seed: int) -> None:
    if config_path(home).exists():
        fail(f"{home} already holds a home; --sample builds a new one (choose another --home)")
    from cardtally.demo import Ports, SampleSize, create_sample_home  # noqa: PLC0415 - heavy
    from cardtally.demo._run import SWIPES_DEFAULT  # noqa: PLC0415 - heavy, --sample only

    ports = Ports(issuer=9583, switch=9584, issuer_metrics=9590, switch_metrics=9591)
    network = create_sample_home(
        home,
        size=SampleSize.for_swipes(SWIPES_DEFAULT),
        seed=seed,
        ports=ports,
        now_ms=wall_clock_ms(),
        progress=lambda line: out.print(f"• {line}"),
    )
    out.print(
        f"sample network ready in {home}: {len(network.cardholders)} cards, "
        f"{len(network.merchants)} merchants, {len(network.terminals)} terminals"
    )
    out.print(f"test cards (PAN, expiry, PIN): {network.cards_file}")
    out.print(f"next: cardtally --home {home} up")
