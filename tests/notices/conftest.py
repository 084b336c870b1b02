"""An engine on a database migrated to the core and notices trees; no web proxies."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from cardtally.notices import NOTICES_TREE
from cardtally.storage import migrate

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY")


@pytest.fixture
def notices_engine(engine: Engine) -> Engine:
    migrate(engine, "core")
    migrate(engine, NOTICES_TREE)
    return engine


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours proxy variables; the loopback webhook must be reached directly.
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
