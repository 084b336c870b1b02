"""Which party a database belongs to, recorded once when it is first used."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cardtally.storage._errors import StorageError
from cardtally.storage._schema import ROLES, party_table


@dataclass(frozen=True, slots=True)
class Party:
    """The owner of a database: its role and its identifier among parties of that role."""

    role: str
    party_id: str
    created_at_ms: int


def read_party(conn: Connection) -> Party | None:
    """The recorded owner, or ``None`` for a database nobody has claimed yet."""
    row = conn.execute(select(party_table).where(party_table.c.id == 1)).one_or_none()
    if row is None:
        return None
    return Party(role=row.role, party_id=row.party_id, created_at_ms=row.created_at_ms)


def register_party(conn: Connection, role: str, party_id: str, created_at_ms: int) -> Party:
    """Claim the database for ``role``/``party_id``; a repeat claim returns the original.

    A claim by a different party is refused: mixing two parties' records in one
    database could not be untangled later.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}: {role!r}")
    if not party_id:
        raise ValueError("party_id must not be empty")
    existing = read_party(conn)
    if existing is None:
        conn.execute(
            party_table.insert().values(
                id=1, role=role, party_id=party_id, created_at_ms=created_at_ms
            )
        )
        return Party(role=role, party_id=party_id, created_at_ms=created_at_ms)
    if (existing.role, existing.party_id) != (role, party_id):
        raise StorageError(
            f"database belongs to {existing.role} {existing.party_id!r}, not {role} {party_id!r}"
        )
    return existing
