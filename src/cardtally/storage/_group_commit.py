"""Group commit with one item undone alone: the batch mechanism of every host.

A batch of items (terminal requests, issuer events) is decided in one transaction, so a burst
costs one commit. An item that raises must be rolled back alone while the rest commits. A
SAVEPOINT and its RELEASE per item would do that, but they cost about a sixth of a
purchase's CPU time (docs/benchmarks.md) for the rare case of a bug or a database fault. So
a batch first runs without savepoints; only if an item raises is the whole transaction rolled
back and the batch run again with one SAVEPOINT per item, where the failing item gets
``failed`` instead. The cores decide the same way given the same store and clock, so the
second run answers as the first would have. Nothing done in ``work`` may count or log what
went well: a batch may run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

from cardtally.storage._transaction import transaction

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class _ItemFailedError(Exception):
    """An item raised in a run without savepoints: roll back and run with them."""


def commit_batch(
    engine: Engine,
    items: Sequence[T],
    *,
    store_of: Callable[[Connection], S],
    work: Callable[[S, T], R],
    failed: Callable[[T, Exception], R],
) -> list[R]:
    """``work(store, item)`` for every item, committed in one transaction; an item that
    raises is undone alone and stands as ``failed(item, error)``."""
    try:
        return _attempt(engine, items, store_of, work, failed, isolated=False)
    except _ItemFailedError:
        return _attempt(engine, items, store_of, work, failed, isolated=True)


def _attempt(
    engine: Engine,
    items: Sequence[T],
    store_of: Callable[[Connection], S],
    work: Callable[[S, T], R],
    failed: Callable[[T, Exception], R],
    *,
    isolated: bool,
) -> list[R]:
    results: list[R] = []
    with transaction(engine) as conn:
        store = store_of(conn)
        for item in items:
            if isolated:
                results.append(_alone(conn, store, item, work, failed))
                continue
            try:
                results.append(work(store, item))
            except Exception as exc:
                raise _ItemFailedError from exc
    return results


def _alone(
    conn: Connection,
    store: S,
    item: T,
    work: Callable[[S, T], R],
    failed: Callable[[T, Exception], R],
) -> R:
    savepoint = conn.begin_nested()
    try:
        result = work(store, item)
    except Exception as exc:
        savepoint.rollback()
        return failed(item, exc)
    savepoint.commit()
    return result
