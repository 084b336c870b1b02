"""An issuer on a real database, driven through its core without sockets."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cardtally.issuer import (
    LOCAL_TIME,
    CardLimits,
    IssuerCore,
    IssuerPolicy,
    NewCard,
    Outcome,
    SqlIssuerStore,
    add_card,
    all_cards,
    find_card,
    open_issuer_database,
    owed_account_id,
    view,
)
from cardtally.ledger import SqlLedgerStore, verify
from cardtally.notices import Notice, NoticeOutbox
from cardtally.security import DataKeys, IssuerKeys, generate_master_key
from cardtally.storage import transaction
from cardtally.wire import Message, Pan
from tests.issuer.messages import CREDIT_PAN, DEBIT_PAN, EXPIRY, PIN

NOON: Final = int(datetime(2026, 11, 21, 12, 0, tzinfo=LOCAL_TIME).timestamp() * 1000)
DEFAULT_LIMITS: Final = CardLimits(
    no_pin_limit_minor=100_000, per_txn_limit_minor=5_000_000, daily_limit_minor=20_000_000
)


@dataclass
class Bank:
    engine: Engine
    core: IssuerCore
    keys: IssuerKeys
    data_keys: DataKeys

    def run(self, message: Message, now_ms: int = NOON, raw: bytes | None = None) -> Outcome:
        with transaction(self.engine) as conn:
            return self.core.handle(message, now_ms, SqlIssuerStore(conn), raw)

    def tick(self, now_ms: int) -> int:
        with transaction(self.engine) as conn:
            return len(self.core.tick(now_ms, SqlIssuerStore(conn)))

    def add(
        self,
        pan: str,
        *,
        balance_minor: int = 0,
        credit_minor: int = 0,
        pin: str | None = PIN,
        expiry: str = EXPIRY,
        limits: CardLimits = DEFAULT_LIMITS,
    ) -> None:
        new = NewCard(Pan(pan), expiry, "156", balance_minor, credit_minor, pin, limits)
        with transaction(self.engine) as conn:
            add_card(conn, self.data_keys, self.keys, new, NOON)

    def money(self, pan: str) -> tuple[int, int]:
        """(balance, available) of the card's account, minor units."""
        with transaction(self.engine) as conn:
            shown = view(conn, find_card(conn, self.data_keys, Pan(pan)))
        return shown.balance_minor, shown.available_minor

    def owed(self, pan: str) -> int:
        """What the cardholder owes the bank (reversed credits the card could not cover)."""
        with transaction(self.engine) as conn:
            card = find_card(conn, self.data_keys, Pan(pan))
            account = SqlLedgerStore(conn).account(owed_account_id(card))
        return 0 if account is None else -account.available_minor

    def pin_tries(self, pan: str) -> int:
        with transaction(self.engine) as conn:
            return find_card(conn, self.data_keys, Pan(pan)).pin_tries

    def snapshot(self) -> tuple[object, ...]:
        """Everything a bad request must leave alone: cards, balances, notices, transfers."""
        with transaction(self.engine) as conn:
            cards = tuple((v.card, v.account) for v in all_cards(conn))
            transfers = conn.execute(sa.text("SELECT count(*) FROM ledger_transfer")).scalar_one()
            notices = conn.execute(sa.text("SELECT count(*) FROM notice")).scalar_one()
        return cards, transfers, notices

    def notices(self) -> list[Notice]:
        with transaction(self.engine) as conn:
            return list(reversed(NoticeOutbox(conn).recent(1000)))

    def violations(self) -> list[object]:
        with transaction(self.engine) as conn:
            return list(verify(SqlLedgerStore(conn)))


def open_bank(url: str, *, zak: bytes | None = None) -> Bank:
    """An issuer on ``url`` with a debit and a credit card; ``zak``: its link is MACed."""
    engine = open_issuer_database(url, NOON)
    keys = IssuerKeys(pvk=generate_master_key(), zpk=generate_master_key(), zak=zak)
    data_keys = DataKeys(secrets.token_bytes(32), secrets.token_bytes(32))
    bank = Bank(engine, IssuerCore(keys, data_keys, IssuerPolicy()), keys, data_keys)
    bank.add(DEBIT_PAN, balance_minor=100_000)  # CNY 1,000.00
    bank.add(CREDIT_PAN, credit_minor=200_000, pin=None)  # CNY 2,000.00 credit line
    return bank
