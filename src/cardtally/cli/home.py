"""``cardtally init`` and ``cardtally config``: create and check a home."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.table import Table

from cardtally.cli._output import EXIT_PROBLEM, err, out
from cardtally.cli._state import state_of
from cardtally.config import config_path, default_config_text
from cardtally.security import (
    IssuerKeys,
    KeyFileError,
    create_data_keys,
    create_issuer_keys,
    data_keys_path,
    issuer_keys_path,
    load_data_keys,
    load_issuer_keys,
)

config_app = typer.Typer(help="Show and check the home's configuration.", no_args_is_help=True)


def init_command(ctx: typer.Context) -> None:
    """Create a home: a config with every default written out, data keys and issuer keys.

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
    state = state_of(ctx)
    state.config()
    out.print(f"config      ok  {config_path(state.home)}")
    problems = 0
    for label, load in (("data keys  ", load_data_keys), ("issuer keys", load_issuer_keys)):
        try:
            keys = load(state.home)
        except KeyFileError as exc:
            err.print(f"{label} PROBLEM  {exc}")
            problems += 1
        else:
            note = ""
            if isinstance(keys, IssuerKeys) and keys.zak is None:
                note = "  (no zone MAC key: the switch-issuer link carries no MAC)"
            out.print(f"{label} ok{note}")
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
