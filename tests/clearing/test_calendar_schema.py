"""Business-day windows, and the day end's tables against their migration."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st

from cardtally.clearing._calendar import DAY_MS, DayError, business_day, day_of, parse_day
from cardtally.clearing._schema import CLEARING_TREE, clearing_metadata
from cardtally.storage import migrate, open_engine, sqlite_url, version_table

CUTOFF_23 = 23 * 60
# 2026-11-21 00:00 CST in ms since 1970.
MIDNIGHT_21 = 1_795_190_400_000


def test_default_cutoff_window_runs_from_23_00_the_evening_before() -> None:
    bd = business_day(date(2026, 11, 21), CUTOFF_23)
    assert bd.start_ms == MIDNIGHT_21 - 3_600_000
    assert bd.end_ms == MIDNIGHT_21 + DAY_MS - 3_600_000
    assert bd.window_text() == "2026-11-20 23:00 to 2026-11-21 23:00 CST"
    assert bd.compact == "20261121"


def test_a_morning_cutoff_closes_the_day_the_next_morning() -> None:
    bd = business_day(date(2026, 11, 21), 2 * 60)
    assert bd.window_text() == "2026-11-21 02:00 to 2026-11-22 02:00 CST"
    assert business_day(date(2026, 11, 21), 0).window_text() == (
        "2026-11-21 00:00 to 2026-11-22 00:00 CST"
    )


def test_a_swipe_at_the_cutoff_belongs_to_the_next_day() -> None:
    bd = business_day(date(2026, 11, 21), CUTOFF_23)
    assert day_of(bd.end_ms - 1, CUTOFF_23).text == "2026-11-21"
    assert day_of(bd.end_ms, CUTOFF_23).text == "2026-11-22"
    assert day_of(bd.start_ms, CUTOFF_23).text == "2026-11-21"


@given(
    at_ms=st.integers(min_value=MIDNIGHT_21 - 400 * DAY_MS, max_value=MIDNIGHT_21 + 400 * DAY_MS),
    cutoff=st.integers(min_value=0, max_value=24 * 60 - 1),
)
def test_every_instant_has_exactly_one_day_and_days_tile(at_ms: int, cutoff: int) -> None:
    bd = day_of(at_ms, cutoff)
    assert bd.start_ms <= at_ms < bd.end_ms
    assert bd.next(cutoff).start_ms == bd.end_ms
    assert bd.previous(cutoff).end_ms == bd.start_ms


@pytest.mark.parametrize("text", ["2026-11-21", "20261121", " 2026-11-21 "])
def test_days_parse_in_both_spellings(text: str) -> None:
    assert parse_day(text) == date(2026, 11, 21)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("21/11/2026", "YYYY-MM-DD"), ("2026-02-30", "not a calendar date"), ("", "YYYY-MM-DD")],
)
def test_bad_days_are_refused_with_the_text(text: str, fragment: str) -> None:
    with pytest.raises(DayError, match=fragment):
        parse_day(text)


def test_table_objects_match_the_clearing_migration(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "switch.sqlite3"))
    try:
        migrate(engine, CLEARING_TREE)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": version_table(CLEARING_TREE)}
            )
            diff = [d for d in compare_metadata(context, clearing_metadata) if _ours(d)]
    finally:
        engine.dispose()
    assert diff == []


def _ours(diff: object) -> bool:
    """Differences about our tables; indexes and the version table are the migration's own."""
    kind = diff[0] if isinstance(diff, tuple) else ""
    return kind not in ("remove_index", "remove_table")
