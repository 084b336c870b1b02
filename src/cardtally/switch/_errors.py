"""What the switch raises when it is asked for something it cannot do."""

from __future__ import annotations


class SwitchError(Exception):
    """Base of the switch's errors: one line, fit to show an operator."""


class RegistryError(SwitchError, ValueError):
    """A registry change refused as asked: bad IDs, unknown or duplicate entries."""
