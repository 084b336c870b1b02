"""The frame-aware fault proxy the tests put between two parties.

It lives in :mod:`cardtally.demo._proxy` because ``cardtally demo`` injects its faults through
the very same proxy; the tests use its rule methods (drop, hold, rewrite) directly.
"""

from cardtally.demo._proxy import FaultProxy

__all__ = ["FaultProxy"]
