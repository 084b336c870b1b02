"""``cardtally init`` and ``cardtally config``: create and check a home."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, err, out
from cardtally.cli._state import state_of
from cardtally.config import config_path, default_config_text
from cardtally.security import KeyFileError, create_data_keys, data_keys_path, load_data_keys

config_app = typer.Typer(help="Show and check the home's configuration.", no_args_is_help=True)


def init_command(ctx: typer.Context) -> None:
    """Create a home: a config file with every default written out, and data-protection keys.

    Existing files are kept, never overwritten. Choose the home with --home or
    CARDTALLY_HOME (default ./.cardtally).
    """
    home = state_of(ctx).home
    home.mkdir(parents=True, exist_ok=True)
    path = config_path(home)
    if path.exists():
        out.print(f"config      kept     {path}")
    else:
        path.write_text(default_config_text(), encoding="utf-8")
        out.print(f"config      created  {path}")
    keys = data_keys_path(home)
    if keys.exists():
        out.print(f"data keys   kept     {keys}")
    else:
        out.print(f"data keys   created  {create_data_keys(home)}  (mode 0600; back it up)")
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
    state = state_of(ctx)
    state.config()
    out.print(f"config      ok  {config_path(state.home)}")
    try:
        load_data_keys(state.home)
    except KeyFileError as exc:
        err.print(f"data keys   PROBLEM  {exc}")
        raise typer.Exit(EXIT_PROBLEM) from None
    out.print("data keys   ok")


def _flatten(values: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + key, value))
    return rows
