from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.issuer.bank import Bank, open_bank


@pytest.fixture
def bank(db_url: str) -> Iterator[Bank]:
    opened = open_bank(db_url)
    yield opened
    opened.engine.dispose()
