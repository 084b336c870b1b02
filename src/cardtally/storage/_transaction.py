"""The one idiom for writing: commit everything or nothing, and only then answer.

A party's answer (a response, a receipt, a notice) may only leave after the state
that justifies it is committed. Callers write inside ``with transaction(engine)``
and act on the outcome after the block: leaving the block normally means the
commit returned; an exception means everything was rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from cardtally.storage._engine import connect


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction: committed on exit, rolled back on error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE`` (see ``open_engine``),
    so concurrent writers queue on the lock instead of failing half-way.
    """
    conn = connect(engine)
    with conn, conn.begin():
        yield conn
