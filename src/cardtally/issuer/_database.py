"""Opening the issuer's database: migrated, and claimed by the issuer."""

from __future__ import annotations

from typing import Final

from sqlalchemy.engine import Engine

from cardtally.ledger import LEDGER_TREE
from cardtally.notices import NOTICES_TREE
from cardtally.storage import check_reachable, migrate, open_engine, register_party, transaction

ISSUER_TREE: Final = "issuer"
#: Every migration tree the issuer's database holds, in the order they are applied.
ISSUER_TREES: Final = ("core", LEDGER_TREE, NOTICES_TREE, ISSUER_TREE)
ISSUER_PARTY_ID: Final = "issuer"


def open_issuer_database(url: str, now_ms: int) -> Engine:
    """An engine on the issuer database, migrated to every tree's head and claimed.

    Migrating on open keeps ``serve`` and the card commands one step; Alembic
    makes it a no-op once the schema is current.
    """
    engine = open_engine(url)
    check_reachable(engine)
    for tree in ISSUER_TREES:
        migrate(engine, tree)
    with transaction(engine) as conn:
        register_party(conn, "issuer", ISSUER_PARTY_ID, now_ms)
    return engine
