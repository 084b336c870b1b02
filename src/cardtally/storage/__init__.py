"""Storage base shared by every party: engines, migrations, the event log.

SQLite by default, PostgreSQL for real deployments, through SQLAlchemy Core::

    engine = open_engine(sqlite_url(Path("var/switch.sqlite3")))
    check_reachable(engine)           # StorageError with a masked URL if not
    migrate(engine, "core")           # Alembic, to the head of the tree
    with transaction(engine) as conn:  # commit or roll back, BEGIN IMMEDIATE on SQLite
        append_event(conn, now_ms, "auth.approved", txn_key, {"rc": "00"})
"""

from cardtally.storage._append_only import (
    APPEND_ONLY_MARK,
    append_only_ddl,
    drop_append_only_ddl,
)
from cardtally.storage._engine import (
    BUSY_TIMEOUT_MS_DEFAULT,
    BUSY_TIMEOUT_MS_MAX,
    CONNECT_TIMEOUT_S_DEFAULT,
    check_reachable,
    open_engine,
    sqlite_url,
)
from cardtally.storage._errors import StorageError, mask_url
from cardtally.storage._events import (
    DETAIL_BYTES_MAX,
    EVENTS_LIMIT_DEFAULT,
    EVENTS_LIMIT_MAX,
    Event,
    append_event,
    event_detail_json,
    events,
)
from cardtally.storage._group_commit import commit_batch
from cardtally.storage._migrate import (
    alembic_config,
    current_revision,
    head_revision,
    is_up_to_date,
    migrate,
    migration_trees,
    version_table,
)
from cardtally.storage._party import Party, read_party, register_party
from cardtally.storage._schema import ROLES, core_metadata, event_log_table, party_table
from cardtally.storage._transaction import read_transaction, transaction

__all__ = [
    "APPEND_ONLY_MARK",
    "BUSY_TIMEOUT_MS_DEFAULT",
    "BUSY_TIMEOUT_MS_MAX",
    "CONNECT_TIMEOUT_S_DEFAULT",
    "DETAIL_BYTES_MAX",
    "EVENTS_LIMIT_DEFAULT",
    "EVENTS_LIMIT_MAX",
    "ROLES",
    "Event",
    "Party",
    "StorageError",
    "alembic_config",
    "append_event",
    "append_only_ddl",
    "check_reachable",
    "commit_batch",
    "core_metadata",
    "current_revision",
    "drop_append_only_ddl",
    "event_detail_json",
    "event_log_table",
    "events",
    "head_revision",
    "is_up_to_date",
    "mask_url",
    "migrate",
    "migration_trees",
    "open_engine",
    "party_table",
    "read_party",
    "read_transaction",
    "register_party",
    "sqlite_url",
    "transaction",
    "version_table",
]
