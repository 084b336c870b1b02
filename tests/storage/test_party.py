"""The party row: claimed once, repeat claims answered, other claims refused."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cardtally.storage import (
    Party,
    StorageError,
    party_table,
    read_party,
    register_party,
    transaction,
)


def test_claim_once_and_repeat(core_engine: Engine) -> None:
    with transaction(core_engine) as conn:
        assert read_party(conn) is None
        first = register_party(conn, "switch", "SW01", 1_700_000_000_000)
    with transaction(core_engine) as conn:
        again = register_party(conn, "switch", "SW01", 1_800_000_000_000)
        assert read_party(conn) == first == again == Party("switch", "SW01", 1_700_000_000_000)


def test_another_party_is_refused(core_engine: Engine) -> None:
    with transaction(core_engine) as conn:
        register_party(conn, "switch", "SW01", 1)
    with (
        pytest.raises(StorageError, match="belongs to switch 'SW01', not issuer 'IS01'"),
        transaction(core_engine) as conn,
    ):
        register_party(conn, "issuer", "IS01", 2)


def test_unknown_role_is_refused(core_engine: Engine) -> None:
    with pytest.raises(ValueError, match="role"), transaction(core_engine) as conn:
        register_party(conn, "bank", "B1", 1)


def test_database_keeps_a_single_unchangeable_row(core_engine: Engine) -> None:
    with transaction(core_engine) as conn:
        register_party(conn, "terminal", "T0000001", 1)
    with pytest.raises(IntegrityError), transaction(core_engine) as conn:
        conn.execute(
            party_table.insert().values(id=2, role="issuer", party_id="X", created_at_ms=1)
        )
    with pytest.raises(IntegrityError, match="append-only"), transaction(core_engine) as conn:
        conn.execute(update(party_table).values(party_id="T0000002"))
