"""The runtime's own error type."""

from __future__ import annotations


class LinkClosedError(ConnectionError):
    """The peer closed the link (or reset it) before the awaited frame arrived."""
