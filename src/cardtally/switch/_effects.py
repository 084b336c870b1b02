"""What the switch core asks its shell to do: answer now, forward, wait, send an advice.

Frozen values, no I/O: the TCP runtime and the simulator carry them out the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardtally.wire import Message


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the terminal now (``body``), or close its connection (``body=None, close``)."""

    body: bytes | None
    close: bool = False
    outcome: str = "answered"  # for counters and logs: approved, refused, duplicate, ...
    code: str = ""
    message: Message | None = None  # ``body`` decoded (without its MAC), for logs and metrics


@dataclass(frozen=True, slots=True)
class Forward:
    """Send ``body`` to the issuer on ``link_id``; answer the terminal when it replies.

    The shell calls :meth:`SwitchCore.timed_out` at ``deadline_ms`` unless the answer came.
    """

    txn_id: int
    link_id: str
    body: bytes
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class Join:
    """A repeat of a request still waiting on its issuer: answer it with the original's answer."""

    txn_id: int


@dataclass(frozen=True, slots=True)
class TerminalAnswer:
    """The answer for every terminal request waiting on ``txn_id``."""

    txn_id: int
    body: bytes
    code: str
    message: Message | None = None  # ``body`` decoded (without its MAC), for logs and metrics


@dataclass(frozen=True, slots=True)
class AdviceAcked:
    advice_id: int
    link_id: str
    code: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An issuer message that changes nothing (late, unknown, echo, garbage), and why."""

    reason: str
    txn_id: int | None = None


@dataclass(frozen=True, slots=True)
class AdviceSend:
    """Send (or resend) a stored reversal advice to its issuer."""

    advice_id: int
    link_id: str
    body: bytes
    attempt: int


IssuerOutcome = TerminalAnswer | AdviceAcked | Ignored
TerminalOutcome = Answer | Forward | Join
