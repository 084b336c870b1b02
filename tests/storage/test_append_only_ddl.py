"""append_only_ddl refuses what it cannot build safely."""

from __future__ import annotations

import pytest

from cardtally.storage import append_only_ddl, drop_append_only_ddl


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_statements_name_the_table(dialect: str) -> None:
    for statement in append_only_ddl("ledger_transfer", dialect) + drop_append_only_ddl(
        "ledger_transfer", dialect
    ):
        assert "ledger_transfer" in statement


@pytest.mark.parametrize("table", ["", "Event", "x; DROP TABLE y", "a-b", "1st"])
def test_only_plain_identifiers(table: str) -> None:
    with pytest.raises(ValueError, match="not a plain table name"):
        append_only_ddl(table, "sqlite")


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="mysql"):
        append_only_ddl("event_log", "mysql")
