"""The day end over real TCP: a network to break, and readers for what each day end did.

:func:`dayend_network` is :func:`tests.terminal.tcp_support.terminal_network` with the
options the reconciliation stories need: a :class:`~tests.terminal.proxy.FaultProxy` on the
switch -> issuer link (the switch reads its issuer links when ``serve`` starts, so the proxy
is linked before the switch starts), and a second merchant (paid D0, signed by an agent) with
its own installed, signed-on terminal.

The home's business-day cutoff is moved twelve hours away from the moment the network starts
(an operator setting, ``[dayend] cutoff``): ``--close-now`` ends the day early anyway, and a
test that happens to run across 23:00 CST then cannot see its swipes land in two business
days.

:class:`DayendNet` runs ``cardtally dayend ...`` in process (the real Typer app) and checks,
after every day end, that ``cardtally ledger verify`` passes on both databases; it reads the
``dayend_*`` rows from the switch's database and the postings and notices from the issuer's.
Every wait is bounded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cardtally.clearing._calendar import day_of, parse_day
from cardtally.clearing._files import ClearingFile, read_clearing_file
from cardtally.config import load_config
from cardtally.runtime import wall_clock_ms
from cardtally.storage import open_engine, sqlite_url, transaction
from cardtally.wire import LOCAL_TIME
from tests.issuer.messages import DEBIT_PAN
from tests.issuer.tcp_support import drop_zone_mac_key, notice_lines
from tests.switch.tcp_support import LINK, MERCHANT, Network, run_cli
from tests.terminal.proxy import FaultProxy
from tests.terminal.tcp_support import (
    ADMIN,
    TERMINAL_ID,
    UNLOCK,
    CliRun,
    TerminalNet,
    cardtally_cli,
    terminal_cli,
)

CURRENCY: Final = "156"
CARD_TAIL: Final = DEBIT_PAN[-4:]
#: The second merchant: paid the same day (D0), signed up by an agent, with its own terminal.
D0_MERCHANT: Final = "898310048160002"
D0_MERCHANT_NAME: Final = "BOOK CLUB"
D0_TERMINAL: Final = "10300003"
AGENT: Final = "agent-7"
#: Bound on anything a test waits for from another process.
WAIT_S: Final = 30.0
_POLL_S: Final = 0.05


def far_cutoff(now_ms: int) -> str:
    """``HH:MM`` (CST) twelve hours from ``now_ms``: the business day of now cannot end
    during a test unless the test ends it."""
    later = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(LOCAL_TIME) + timedelta(hours=12)
    return later.strftime("%H:%M")


def set_cutoff(home: Path, cutoff: str) -> None:
    config = home / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    default = 'cutoff = "23:00"'
    assert text.count(default) == 1, "init wrote an unexpected [dayend] section"
    config.write_text(text.replace(default, f'cutoff = "{cutoff}"'), encoding="utf-8")


# --- SQLite files, backed up and restored as an operator would -----------------------------


def sqlite_file(url: str) -> Path:
    database = make_url(url).database
    assert database, url
    return Path(database)


def backup_database(url: str, to: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API, WAL and all)."""
    with (
        closing(sqlite3.connect(sqlite_file(url))) as source,
        closing(sqlite3.connect(to)) as target,
    ):
        source.backup(target)


def restore_database(url: str, backup: Path) -> None:
    """Put ``backup`` back in place of the database (its host must be stopped)."""
    with (
        closing(sqlite3.connect(backup)) as source,
        closing(sqlite3.connect(sqlite_file(url))) as target,
    ):
        source.backup(target)


# --- reading a database -----------------------------------------------------------------------


def rows_of(url: str, sql: str, **params: object) -> list[dict[str, Any]]:
    engine = open_engine(url)
    try:
        with transaction(engine) as conn:
            return [dict(row) for row in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class DayendNet:
    """A running network (see the module docstring) and what its day ends did."""

    term: TerminalNet
    root: Path
    issuer_db: str
    switch_db: str
    link_proxy: FaultProxy | None = None  # between the switch and the issuer
    d0_term: TerminalNet | None = None  # the D0 merchant's terminal

    @property
    def home(self) -> Path:
        return self.term.home

    @property
    def net(self) -> Network:
        return self.term.net

    # -- business days -------------------------------------------------------------------------

    def today(self) -> str:
        """The business day of now (the one the next swipe belongs to, if none closed early)."""
        cutoff = load_config(self.home).dayend.cutoff_minutes
        return day_of(wall_clock_ms(), cutoff).text

    @staticmethod
    def next_day(day: str) -> str:
        return (parse_day(day) + timedelta(days=1)).isoformat()

    # -- commands ------------------------------------------------------------------------------

    def cli(self, *args: str) -> CliRun:
        return cardtally_cli(self.home, *args)

    def run_dayend(self, day: str, *, close_now: bool = True) -> dict[str, Any]:
        """``dayend run --date DAY [--close-now] --json``: it must close the day; its summary.

        Both ledgers must verify afterwards (``ledger verify --database``, exit 0).
        """
        args = ["dayend", "run", "--date", day, "--json"]
        if close_now:
            args.append("--close-now")
        done = self.cli(*args)
        assert done.exit_code == 0, done
        summary = done.json()
        assert (summary["day"], summary["state"], summary["step"]) == (day, "closed", "closed")
        self.assert_ledgers_verify()
        return summary

    def ledger_verify(self, url: str) -> CliRun:
        return self.cli("ledger", "verify", "--database", url, "--json")

    def assert_ledgers_verify(self) -> None:
        for url in (self.issuer_db, self.switch_db):
            done = self.ledger_verify(url)
            assert done.exit_code == 0, (url, done)

    def check_file(self, path: Path, *args: str) -> CliRun:
        return self.cli("dayend", "check-file", str(path), *args)

    def settle(self, term: TerminalNet | None = None, **options: Any) -> dict[str, Any]:
        """``terminal settle`` (it must be answered); its --json outcome."""
        code, settled = (term or self.term).term_json(
            "settle", "--admin-password", ADMIN, **options
        )
        assert code == 0, settled
        return settled

    # -- the switch's database: the day end's record and the acquirer's ledger ----------------

    def switch_rows(self, sql: str, **params: object) -> list[dict[str, Any]]:
        return rows_of(self.switch_db, sql, **params)

    def items(self, day: str) -> list[dict[str, Any]]:
        return self.switch_rows(
            "SELECT * FROM dayend_item WHERE day = :day ORDER BY item_no", day=day
        )

    def item(self, day: str, switch_txn_id: int) -> dict[str, Any]:
        [found] = [i for i in self.items(day) if i["switch_txn_id"] == switch_txn_id]
        return found

    def actions(self, day: str | None = None) -> list[dict[str, Any]]:
        if day is None:
            return self.switch_rows("SELECT * FROM dayend_action ORDER BY day, item_no")
        return self.switch_rows(
            "SELECT * FROM dayend_action WHERE day = :day ORDER BY item_no", day=day
        )

    def statements(self, day: str) -> dict[str, dict[str, Any]]:
        rows = self.switch_rows("SELECT * FROM dayend_statement WHERE day = :day", day=day)
        return {r["merchant_id"]: r for r in rows}

    def payouts(self, day: str | None = None) -> list[dict[str, Any]]:
        if day is None:
            return self.switch_rows("SELECT * FROM dayend_payout ORDER BY day, merchant_id")
        return self.switch_rows(
            "SELECT * FROM dayend_payout WHERE day = :day ORDER BY merchant_id", day=day
        )

    def files(self, day: str) -> dict[str, dict[str, Any]]:
        rows = self.switch_rows("SELECT * FROM dayend_file WHERE day = :day", day=day)
        return {r["fmt"]: r for r in rows if r["link_id"] == LINK}

    def clearing(self, day: str, fmt: str = "csv") -> tuple[Path, ClearingFile]:
        """The day's clearing file for the issuer link, read and verified as an issuer does."""
        path = Path(self.files(day)[fmt]["path"])
        return path, read_clearing_file(path, business_day=day.replace("-", ""), link_id=LINK)

    def cleared(self, day: str) -> list[tuple[str, str, str, int]]:
        """(RRN, kind, D/C, amount) of every record of the day's CSV clearing file."""
        _, clearing = self.clearing(day)
        return [(r.rrn, r.kind, r.direction, r.amount_minor) for r in clearing.records]

    def account(self, account_id: str) -> int | None:
        """An acquirer ledger account's posted balance, credit-normal (None: never opened)."""
        rows = self.switch_rows(
            "SELECT credits_posted - debits_posted AS balance FROM ledger_account WHERE id = :id",
            id=account_id,
        )
        return None if not rows else int(rows[0]["balance"])

    def transfers(self, prefix: str) -> list[dict[str, Any]]:
        """The acquirer's ledger transfers whose id starts with ``prefix``."""
        return self.switch_rows(
            "SELECT id, debit_account_id, credit_account_id, amount_minor FROM ledger_transfer"
            " WHERE id LIKE :prefix ORDER BY id",
            prefix=prefix + "%",
        )

    def switch_txn(self, rrn: str) -> dict[str, Any]:
        [row] = self.switch_rows("SELECT * FROM switch_txn WHERE id = :id", id=int(rrn))
        return row

    # -- the issuer's database -------------------------------------------------------------------

    def issuer_rows(self, sql: str, **params: object) -> list[dict[str, Any]]:
        return rows_of(self.issuer_db, sql, **params)

    def issuer_txns(self) -> list[dict[str, Any]]:
        return self.issuer_rows("SELECT * FROM issuer_txn ORDER BY at_ms, id")

    def balance(self) -> int:
        """The test card's balance at the issuer (balance and available agree)."""
        return self.term.issuer_balance()

    def notices(self) -> list[tuple[str, str, int]]:
        """(kind, reason, amount) of the test card's notices in the issuer's outbox, in order."""
        found = []
        for row in self.issuer_rows("SELECT payload FROM notice ORDER BY seq"):
            notice = json.loads(row["payload"])
            if notice["card_tail"] == CARD_TAIL:
                found.append((notice["kind"], notice["reason"], notice["amount"]["minor"]))
        return found

    def notice_ids(self) -> list[str]:
        return [str(r["id"]) for r in self.issuer_rows("SELECT id FROM notice ORDER BY seq")]

    def wait_delivered(self, timeout_s: float = WAIT_S) -> list[tuple[str, str, int]]:
        """Wait until every outbox notice is in the notice file (the running issuer delivers
        them); (kind, reason, amount) of the test card's delivered notices, one per id."""
        deadline = time.monotonic() + timeout_s
        wanted = set(self.notice_ids())
        while True:
            lines = [n for n in notice_lines(self.home) if n is not None]
            if wanted <= {str(n["id"]) for n in lines}:
                break
            if time.monotonic() >= deadline:
                pytest.fail(f"notices {sorted(wanted)} not all delivered in {timeout_s} s: {lines}")
            time.sleep(_POLL_S * 4)
        seen: dict[str, tuple[str, str, int]] = {}
        for n in lines:
            if n["card_tail"] == CARD_TAIL:
                seen.setdefault(str(n["id"]), (n["kind"], n["reason"], n["amount"]["minor"]))
        return list(seen.values())

    # -- waiting on the switch ---------------------------------------------------------------

    def wait_state(self, rrn: str, state: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Wait until the switch holds ``rrn`` in ``state``; its row."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.switch_txn(rrn)
            if row["state"] == state:
                return row
            if time.monotonic() >= deadline:
                pytest.fail(f"RRN {rrn} still {row['state']}, not {state}, after {timeout_s} s")
            time.sleep(_POLL_S * 4)


def _install(net: Network, switch_db: str, terminal_id: str, merchant: str) -> TerminalNet:
    args = [
        "install",
        *("--terminal", terminal_id, "--merchant", merchant),
        *("--admin-password", ADMIN, "--unlock-password", UNLOCK),
    ]
    installed = terminal_cli(net.home, *args)
    assert installed.exit_code == 0, installed
    terminal = TerminalNet(net, switch_db, terminal_id)
    code, shown = terminal.term_json("signon")
    assert code == 0, shown
    return terminal


@contextmanager
def dayend_network(
    root: Path, *, issuer_proxy: bool = False, d0_merchant: bool = False, link_mac: bool = True
) -> Iterator[DayendNet]:
    """Issuer and switch running and linked (through a :class:`FaultProxy` with
    ``issuer_proxy``), terminal :data:`~tests.terminal.tcp_support.TERMINAL_ID` installed and
    signed on, and with ``d0_merchant`` the D0 merchant's terminal too. SQLite databases under
    ``root``; the hosts are stopped, then the proxy closed, on the way out. Without
    ``link_mac`` the home's key file is one from before the zone MAC key: the switch-issuer
    link carries no MAC."""
    issuer_db = sqlite_url(root / "issuer.sqlite3")
    switch_db = sqlite_url(root / "switch.sqlite3")
    with ExitStack() as outer, Network(root, issuer_db, switch_db) as net:
        set_cutoff(net.home, far_cutoff(wall_clock_ms()))
        if d0_merchant:
            run_cli(
                net.home,
                *("switch", "merchants", "add", "--id", D0_MERCHANT, "--name", D0_MERCHANT_NAME),
                *("--mcc", "5942", "--settlement", "d0", "--agent", AGENT),
            )
            run_cli(
                net.home,
                "switch",
                "terminals",
                "add",
                "--id",
                D0_TERMINAL,
                "--merchant",
                D0_MERCHANT,
            )
        if not link_mac:
            drop_zone_mac_key(net.home)
        issuer = net.start_issuer()
        proxy = None
        if issuer_proxy:
            # Entered on the outer stack: closed after the hosts stopped.
            proxy = outer.enter_context(FaultProxy(issuer.port))
        net.link_issuer(issuer.port if proxy is None else proxy.port)
        net.start_switch()
        term = _install(net, switch_db, TERMINAL_ID, MERCHANT)
        d0_term = _install(net, switch_db, D0_TERMINAL, D0_MERCHANT) if d0_merchant else None
        yield DayendNet(term, root, issuer_db, switch_db, proxy, d0_term)
