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

from cardtally.storage._engine import READ_ONLY_OPTION, connect


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction: committed on exit, rolled back on error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE`` (see ``open_engine``),
    so concurrent writers queue on the lock instead of failing half-way.
    """
    conn = connect(engine)
    with conn, conn.begin():
        yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction for reading only: one consistent snapshot.

    On SQLite it starts with a plain (deferred) ``BEGIN``, so it never takes the write lock
    and never makes a writer wait: in WAL mode readers and the writer run side by side. A
    write attempted in it may fail with "database is locked"; write with
    :func:`transaction`.
    """
    conn = connect(engine).execution_options(**{READ_ONLY_OPTION: True})
    with conn, conn.begin():
        yield conn
