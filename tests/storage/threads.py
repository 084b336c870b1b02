"""Run a function in several threads and collect what they raised."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(targets: list[Callable[[], object]]) -> list[BaseException]:
    """Start every target, wait for all, and return what they raised.

    A thread cannot fail a test itself; the caller asserts on the list.
    """
    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
