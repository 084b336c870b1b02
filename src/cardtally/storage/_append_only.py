"""Append-only tables, enforced by the database itself.

"Nothing is deleted" must hold against every client, including a console, a
hurried operator with psql, or a bug in a later version of this code, so the
rule lives in triggers rather than in Python. Each migration that creates a
journal or ledger table runs :func:`append_only_ddl` for it.
"""

from __future__ import annotations

import re

# The DDL is built by formatting, so only plain lower-case identifiers are accepted.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,40}")
# Every refusal message contains this, on both databases.
APPEND_ONLY_MARK = "is append-only"


def append_only_ddl(table: str, dialect: str) -> list[str]:
    """Statements that make ``table`` refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL)."""
    _check_identifier(table)
    if dialect == "sqlite":
        return [_sqlite_trigger(table, operation) for operation in ("UPDATE", "DELETE")]
    if dialect == "postgresql":
        return [
            # One function per table, so that dropping one table's rule leaves the others.
            f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION USING ERRCODE = 'restrict_violation', "
            f"MESSAGE = TG_TABLE_NAME || ' {APPEND_ONLY_MARK}; ' || TG_OP || ' refused'; "
            "END $$",
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
            # TRUNCATE skips row triggers; it needs its own statement-level one.
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()",
        ]
    raise ValueError(f"no append-only DDL for dialect {dialect!r}")


def drop_append_only_ddl(table: str, dialect: str) -> list[str]:
    """Statements that undo :func:`append_only_ddl` (for migrations that replace a table)."""
    _check_identifier(table)
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {table}_no_{op.lower()}" for op in ("UPDATE", "DELETE")]
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"DROP FUNCTION IF EXISTS {table}_append_only()",
        ]
    raise ValueError(f"no append-only DDL for dialect {dialect!r}")


def _sqlite_trigger(table: str, operation: str) -> str:
    # RAISE(ABORT) undoes the statement and surfaces as a constraint failure.
    return (
        f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} {APPEND_ONLY_MARK}; {operation} refused'); END"
    )


def _check_identifier(table: str) -> None:
    if not _IDENTIFIER.fullmatch(table):
        raise ValueError(f"not a plain table name: {table!r}")
