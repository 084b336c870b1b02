"""What flows between the server and a party: requests in, replies out, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cardtally.runtime._txn import TxnNote


@dataclass(frozen=True, slots=True)
class Request:
    """One message received on one connection.

    ``body`` is the raw ISO 8583 message (length prefix, TPDU and app header removed), still
    undecoded: a malformed message is the party's to answer, with a format error or by
    closing the connection. ``request_id`` is unique per server (positive; 0 only for a
    request built by hand) and names the request to :meth:`FrameServer.complete
    <cardtally.runtime.FrameServer.complete>` when its answer comes later.
    """

    connection_id: int
    peer: str
    body: bytes
    received_at_ms: int
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one :class:`Request`.

    ``body=None`` sends nothing (an advice that needs no answer on this link); ``close=True``
    closes the connection after the body, if any, is written (bytes that are not a message).
    ``deferred=True`` (build it with :meth:`later`) answers nothing yet: the answer comes
    later through :meth:`FrameServer.complete <cardtally.runtime.FrameServer.complete>`.
    ``note`` asks for a transaction log line and labels the metrics (see :class:`TxnNote`);
    the server reads it when the answer is written, when the latency is known.
    """

    body: bytes | None
    close: bool = False
    deferred: bool = False
    note: TxnNote | None = None

    def __post_init__(self) -> None:
        # A deferred reply is a promise of one later; a body or a close now would break it.
        if self.deferred and (self.body is not None or self.close or self.note is not None):
            raise ValueError("a deferred reply carries no body and does not close")

    @classmethod
    def later(cls) -> Reply:
        """No answer yet: the request stays in flight until ``complete`` is called for it."""
        return cls(body=None, close=False, deferred=True)


class BatchHandler(Protocol):
    """A party's core as the runtime sees it.

    Both methods run on the server's single worker lane, one call at a time, so the party's
    writes are serialized without locks of its own.
    """

    def handle_batch(self, requests: Sequence[Request]) -> list[Reply]:
        """Answer every request, in order, one reply each.

        Returns only after the state behind the replies is committed (one transaction for the
        batch): the server writes the replies only after this returns. Raising means nothing
        was committed; the server then closes the batch's connections without replies.

        A request whose answer depends on someone else (an acquirer switch forwarding to an
        issuer) gets :meth:`Reply.later`; the party answers it afterwards with
        :meth:`FrameServer.complete <cardtally.runtime.FrameServer.complete>`, keyed by its
        ``request_id``. Until then the request holds its place in the connection's in-flight
        window and a graceful stop waits for it, so the party must make sure every deferred
        request is eventually completed (its own timer answers one that gets no answer).
        """
        ...

    def tick(self, now_ms: int) -> None:
        """Periodic housekeeping (expiring holds, retrying advices); ``now_ms`` is wall clock."""
        ...
