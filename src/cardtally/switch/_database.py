"""Opening the switch's database: migrated, and claimed by the switch."""

from __future__ import annotations

from typing import Final

from sqlalchemy.engine import Engine

from cardtally.storage import check_reachable, migrate, open_engine, register_party, transaction

SWITCH_TREE: Final = "switch"
#: Every migration tree the switch's database holds, in the order they are applied.
SWITCH_TREES: Final = ("core", SWITCH_TREE)
SWITCH_PARTY_ID: Final = "switch"


def open_switch_database(url: str, now_ms: int) -> Engine:
    """An engine on the switch database, migrated to every tree's head and claimed.

    Migrating on open keeps ``serve`` and the registry commands one step; Alembic
    makes it a no-op once the schema is current.
    """
    engine = open_engine(url)
    try:
        check_reachable(engine)
        for tree in SWITCH_TREES:
            migrate(engine, tree)
        with transaction(engine) as conn:
            register_party(conn, "switch", SWITCH_PARTY_ID, now_ms)
    except BaseException:
        engine.dispose()
        raise
    return engine
