"""The two ways a notice goes wrong: refused before it is kept, or not delivered yet."""

from __future__ import annotations


class NoticeError(ValueError):
    """A notice, an outbox write or a sink setting that cannot be accepted.

    Raised before anything changes: the caller's transaction may go on or roll back.
    """


class DeliveryError(RuntimeError):
    """A sink could not deliver a notice this time; it stays pending and is retried.

    The message is a one-line reason for an operator and never carries a secret
    (no URL credentials or query, no card number).
    """
