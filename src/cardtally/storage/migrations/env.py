"""Alembic environment shared by every migration tree.

Run only through ``cardtally.storage.migrate``, which passes the connection and
the tree's version table in ``config.attributes``; there is no offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection


def _run(connection: Connection, version_table: str) -> None:
    # transactional_ddl: PostgreSQL has it, and SQLite has it too once SQLAlchemy
    # emits BEGIN itself (see open_engine). A failed migration then leaves nothing.
    context.configure(connection=connection, version_table=version_table, transactional_ddl=True)
    with context.begin_transaction():
        _serialize_migrators(connection, version_table)
        context.run_migrations()


def _serialize_migrators(connection: Connection, version_table: str) -> None:
    # Two processes starting at once must not both apply a revision. On SQLite
    # BEGIN IMMEDIATE already holds the write lock; PostgreSQL needs a lock, taken
    # before Alembic reads the version table and released at commit.
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.' || :table))"),
            {"table": version_table},
        )


if context.is_offline_mode():
    raise RuntimeError("cardtally migrations run online only, through storage.migrate()")
_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("run migrations through cardtally.storage.migrate(), not the alembic CLI")
_run(_connection, context.config.attributes["version_table"])
