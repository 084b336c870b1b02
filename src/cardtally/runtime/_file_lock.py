"""One process at a time on a resource, by ``flock`` on a file beside it.

The kernel drops the lock when the holder exits, killed or not, so a crash never leaves a
resource locked for ever.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BusyError(Exception):
    """Another process holds the lock; the message says who and what to do."""


@contextmanager
def exclusive(lock_file: Path, busy_message: str) -> Iterator[None]:
    with lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(busy_message) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
