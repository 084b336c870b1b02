"""The worker lane: one thread that runs a party's calls strictly one after another.

One lane per server, rather than ``asyncio.to_thread``'s shared pool, because the party's
writes must be serialized (a batch and a tick never overlap) and because the thread is a
daemon: after a drain timeout or a forced stop the process can exit even while a hung call
is still inside a database transaction, which the database then rolls back. Nothing was
made visible for it, so durable-before-visible still holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

A = TypeVar("A")
T = TypeVar("T")


def _call(future: concurrent.futures.Future[T], fn: Callable[[A], T], arg: A) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(arg)
    except BaseException as exc:  # handed to the awaiting task, which decides
        future.set_exception(exc)
    else:
        future.set_result(result)


class WorkerLane:
    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self, fn: Callable[[A], T], arg: A) -> asyncio.Future[T]:
        """Queue ``fn(arg)`` behind the calls already queued; await the result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(functools.partial(_call, future, fn, arg))
        return asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Let the thread end after the calls already queued; does not wait."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
