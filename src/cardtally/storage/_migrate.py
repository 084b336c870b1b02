"""Alembic migrations, run from code: no alembic.ini at runtime.

Each party owns a *tree* of revisions under ``migrations/<tree>/`` and records its
position in its own version table, ``alembic_version_<tree>``, so an issuer's and
a switch's schema can evolve independently even in one database. All trees share
``migrations/env.py`` and ``migrations/script.py.mako``.

A new revision, for developers::

    from alembic import command
    command.revision(alembic_config("core"), "add x", rev_id="core_0002")
"""

from __future__ import annotations

import re
import threading
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from cardtally.storage._engine import connect
from cardtally.storage._errors import StorageError

# A tree name becomes part of a table name.
_TREE_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
# Alembic's ``context`` and ``op`` are module-level proxies: two upgrades running
# in threads of one process would trample each other's. Processes are serialized
# by the database (see migrations/env.py).
_ALEMBIC_IN_PROCESS = threading.Lock()


def version_table(tree: str) -> str:
    """The table in which ``tree`` records its current revision."""
    _check_tree_name(tree)
    return f"alembic_version_{tree}"


def migration_trees() -> tuple[str, ...]:
    """The names of the migration trees shipped in the package."""
    root = _migrations_root()
    return tuple(
        sorted(p.name for p in root.iterdir() if p.is_dir() and _TREE_NAME.fullmatch(p.name))
    )


def alembic_config(tree: str) -> Config:
    """An Alembic configuration for ``tree``, built in memory."""
    _check_tree_name(tree)
    root = _migrations_root()
    versions = root / tree
    if not versions.is_dir():
        raise StorageError(f"unknown migration tree {tree!r} (known: {migration_trees()})")
    config = Config()
    # ConfigParser interpolates '%', which a directory name may contain.
    config.set_main_option("script_location", str(root).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions).replace("%", "%%"))
    config.attributes["version_table"] = version_table(tree)
    return config


def head_revision(tree: str) -> str:
    """The newest revision of ``tree``."""
    head = ScriptDirectory.from_config(alembic_config(tree)).get_current_head()
    if head is None:
        raise StorageError(f"migration tree {tree!r} has no revisions")
    return head


def current_revision(engine: Engine, tree: str) -> str | None:
    """The revision of ``tree`` the database is at, or ``None`` if never migrated."""
    table = version_table(tree)
    with connect(engine) as conn:
        context = MigrationContext.configure(conn, opts={"version_table": table})
        return context.get_current_revision()


def is_up_to_date(engine: Engine, tree: str) -> bool:
    """Whether the database is at the head of ``tree`` (a party refuses to start if not)."""
    return current_revision(engine, tree) == head_revision(tree)


def migrate(engine: Engine, tree: str = "core") -> str:
    """Upgrade ``tree`` to its head in one transaction and return the revision reached."""
    config = alembic_config(tree)
    with _ALEMBIC_IN_PROCESS, connect(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    reached = current_revision(engine, tree)
    head = head_revision(tree)
    assert reached == head, f"{tree} migrated to {reached}, head is {head}"
    return head


def _migrations_root() -> Path:
    root = files("cardtally.storage") / "migrations"
    # Alembic reads revisions from directories, so the package must be on a file system.
    if not isinstance(root, Path):
        raise StorageError(f"migrations are not on a file system: {root}")
    return root


def _check_tree_name(tree: str) -> None:
    if not _TREE_NAME.fullmatch(tree):
        raise ValueError(f"not a migration tree name: {tree!r}")
