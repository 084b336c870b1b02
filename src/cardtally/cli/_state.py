"""What the root command hands to its subcommands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from cardtally.config import Config, load_config


@dataclass(frozen=True, slots=True)
class CliState:
    home: Path
    home_given: bool = False  # --home or $CARDTALLY_HOME, rather than the default

    def config(self) -> Config:
        return load_config(self.home)


def state_of(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    assert isinstance(root.obj, CliState), "the root callback sets the CLI state"
    return root.obj
