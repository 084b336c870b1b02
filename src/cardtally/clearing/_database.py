"""Opening what a day end works on: the switch's database (which also keeps the day-end
record and the acquirer's ledger) and the issuer's."""

from __future__ import annotations

from typing import Final

from cardtally.clearing._dayend import Dayend
from cardtally.clearing._schema import CLEARING_TREE
from cardtally.config import Config
from cardtally.issuer._database import open_issuer_database
from cardtally.ledger import LEDGER_TREE
from cardtally.storage import migrate
from cardtally.switch._database import open_switch_database

#: Trees the day end adds to the switch's database, after the switch's own.
DAYEND_TREES: Final = (LEDGER_TREE, CLEARING_TREE)


def open_dayend(config: Config, now_ms: int) -> Dayend:
    """Both databases, migrated; the caller disposes of them with :func:`close_dayend`."""
    switch = open_switch_database(config.switch.database, now_ms)
    try:
        for tree in DAYEND_TREES:
            migrate(switch, tree)
        issuer = open_issuer_database(config.issuer.database, now_ms)
    except BaseException:
        switch.dispose()
        raise
    return Dayend(config, switch, issuer)


def close_dayend(dayend: Dayend) -> None:
    dayend.switch.dispose()
    dayend.issuer.dispose()
