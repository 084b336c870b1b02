"""Transactions for the simulator's in-memory stores: what a crash keeps is what was committed.

A memory store records, for every change made while a transaction is open, how to take it
back. Commit forgets those notes; rollback (a failed commit, or a crash in the middle of a
step) plays them backwards. So a party that "crashes" in the simulator restarts with exactly
the state a database would have given it, and nothing else.

The simulator may also make a commit fail (a full disk, a lost database connection): the
``commit_fault`` hook is asked at every commit and can roll the transaction back and raise
:class:`CommitFailedError`, or let the commit happen and then raise :class:`CrashError` to
model the process dying just after its commit and before it could act on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, MutableMapping, MutableSet
from contextlib import contextmanager
from typing import Any, Final

_MISSING: Final[Any] = object()


class CommitFailedError(Exception):
    """The store refused the commit; everything the transaction changed is undone."""


class CrashError(BaseException):
    """The party died (power loss, kill) at this point; what was committed stays.

    A ``BaseException`` so that no ``except Exception`` in a core can swallow it: a process
    that dies does not run its error handling.
    """


class CommitFault(enum.Enum):
    NONE = "none"
    FAIL = "fail"  # roll back, raise CommitFailedError
    CRASH_AFTER = "crash_after"  # commit, then raise CrashError


class UndoLog:
    """Notes on how to undo the open transaction's changes, and the commit-fault hook."""

    __slots__ = ("_notes", "commit_fault")

    def __init__(self) -> None:
        self._notes: list[Callable[[], None]] | None = None
        self.commit_fault: Callable[[], CommitFault] | None = None

    @property
    def in_transaction(self) -> bool:
        return self._notes is not None

    def begin(self) -> None:
        assert self._notes is None, "transactions do not nest"
        self._notes = []

    def commit(self) -> None:
        assert self._notes is not None, "no transaction to commit"
        fault = CommitFault.NONE if self.commit_fault is None else self.commit_fault()
        if fault is CommitFault.FAIL:
            self.rollback()
            raise CommitFailedError("the commit failed (injected)")
        self._notes = None
        if fault is CommitFault.CRASH_AFTER:
            raise CrashError("crashed just after a commit (injected)")

    def rollback(self) -> None:
        notes, self._notes = self._notes, None
        for undo in reversed(notes or ()):
            undo()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction: committed at the end, rolled back if anything escapes."""
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    # -- changes that can be undone ---------------------------------------------------------

    def set(self, mapping: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        if self._notes is not None:
            old = mapping.get(key, _MISSING)
            self._notes.append(lambda: _restore(mapping, key, old))
        mapping[key] = value

    def delete(self, mapping: MutableMapping[Any, Any], key: Any) -> None:
        if key not in mapping:
            return
        if self._notes is not None:
            old = mapping[key]
            self._notes.append(lambda: _restore(mapping, key, old))
        del mapping[key]

    def append(self, items: list[Any], value: Any) -> None:
        if self._notes is not None:
            self._notes.append(items.pop)
        items.append(value)

    def add(self, items: MutableSet[Any], value: Any) -> None:
        if value in items:
            return
        if self._notes is not None:
            self._notes.append(lambda: items.discard(value))
        items.add(value)

    def discard(self, items: MutableSet[Any], value: Any) -> None:
        if value not in items:
            return
        if self._notes is not None:
            self._notes.append(lambda: items.add(value))
        items.discard(value)

    def counter(self, holder: list[int], value: int) -> None:
        """Set a one-element list used as a mutable integer (an id sequence)."""
        if self._notes is not None:
            old = holder[0]

            def undo() -> None:
                holder[0] = old

            self._notes.append(undo)
        holder[0] = value


def _restore(mapping: MutableMapping[Any, Any], key: Any, old: Any) -> None:
    if old is _MISSING:
        mapping.pop(key, None)
    else:
        mapping[key] = old
