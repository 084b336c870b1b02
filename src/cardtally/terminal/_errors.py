"""Errors a terminal command reports to its user in one line."""

from __future__ import annotations


class TerminalError(Exception):
    """The terminal cannot do what was asked (unknown terminal, bad journal, bad option)."""
