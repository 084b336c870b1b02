"""What flows between the server and a party: requests in, replies out, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Request:
    """One message received on one connection.

    ``body`` is the raw ISO 8583 message (length prefix, TPDU and app header removed), still
    undecoded: a malformed message is the party's to answer, with a format error or by
    closing the connection.
    """

    connection_id: int
    peer: str
    body: bytes
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one :class:`Request`.

    ``body=None`` sends nothing (an advice that needs no answer on this link); ``close=True``
    closes the connection after the body, if any, is written (bytes that are not a message).
    """

    body: bytes | None
    close: bool = False


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
        """
        ...

    def tick(self, now_ms: int) -> None:
        """Periodic housekeeping (expiring holds, retrying advices); ``now_ms`` is wall clock."""
        ...
