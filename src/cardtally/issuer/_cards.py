"""Card administration: issue, look up, block and show cards with their balances.

Used by the operator commands, outside the authorisation path. Each operation
runs in its caller's transaction and writes what it did to the event log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cardtally.issuer._model import Card, CardKind, CardStatus
from cardtally.issuer._posting import funding_account_id, settlement_account_id
from cardtally.issuer._schema import card_table
from cardtally.issuer._store import IssuerStore, SqlIssuerStore, card_from_row
from cardtally.ledger import Account, AccountSpec, Ledger, SqlLedgerStore, Transfer, TransferSpec
from cardtally.security import (
    DataKeys,
    IssuerKeys,
    ProtectedPan,
    make_pin_verification,
    pan_fingerprint,
    protect_pan,
    reveal_pan,
)
from cardtally.storage import append_event
from cardtally.wire import Pan

_MONTHS: Final = range(1, 13)
# The card table's columns besides the PAN ciphertext are exactly the Card record's fields.
_CARD_FIELDS: Final = tuple(f.name for f in fields(Card))


class CardError(ValueError):
    """A card operation that cannot be done as asked (one line, for the operator)."""


@dataclass(frozen=True, slots=True)
class CardLimits:
    no_pin_limit_minor: int
    per_txn_limit_minor: int
    daily_limit_minor: int


@dataclass(frozen=True, slots=True)
class NewCard:
    pan: Pan
    expiry: str
    currency: str
    balance_minor: int
    credit_limit_minor: int
    pin: str | None
    limits: CardLimits


@dataclass(frozen=True, slots=True)
class CardView:
    """A card with its account, as the operator sees it."""

    card: Card
    account: Account

    @property
    def balance_minor(self) -> int:
        return self.account.balance_minor

    @property
    def available_minor(self) -> int:
        """Balance less holds, plus the unused credit line (what the cardholder may spend)."""
        return self.account.available_minor - (self.account.floor_minor or 0)


def check_expiry_text(expiry: str) -> str:
    if len(expiry) != 4 or not expiry.isdigit() or int(expiry[2:]) not in _MONTHS:
        raise CardError(f"expiry must be YYMM with a month 01-12, got {expiry!r}")
    return expiry


def add_card(
    conn: Connection, data_keys: DataKeys, keys: IssuerKeys, new: NewCard, now_ms: int
) -> Card:
    """Issue a card: its account (floor 0, or minus the credit line), opening balance, PIN."""

    def insert(card: Card) -> None:
        # Only the database keeps the PAN itself, encrypted; the rest is the card record.
        protected = protect_pan(data_keys, new.pan)
        assert protected.fingerprint == card.pan_fingerprint
        values = {name: getattr(card, name) for name in _CARD_FIELDS}
        values.update(kind=card.kind.value, status=card.status.value)
        conn.execute(card_table.insert().values(pan_ciphertext=protected.ciphertext, **values))

    return issue_card_on(SqlIssuerStore(conn), data_keys, keys, new, now_ms, insert=insert)


def issue_card_on(
    store: IssuerStore,
    data_keys: DataKeys,
    keys: IssuerKeys,
    new: NewCard,
    now_ms: int,
    *,
    insert: Callable[[Card], None],
) -> Card:
    """Issue a card through any store; ``insert`` keeps the card record, as the store can.

    The card port has no "add a card" (the core never adds one), so the caller says how.
    Both the operator's ``add_card`` (SQL) and the simulator's memory store issue through
    here, so a simulated card is the very card an operator would have issued.
    """
    check_expiry_text(new.expiry)
    if new.balance_minor < 0 or new.credit_limit_minor < 0:
        raise CardError("balance and credit limit must not be negative")
    fingerprint = pan_fingerprint(data_keys, new.pan)
    if store.card_by_fingerprint(fingerprint) is not None:
        raise CardError(f"card {new.pan.masked} already exists")
    card_id = f"card-{fingerprint[:20]}"
    ledger = Ledger(store.ledger)
    account = _open_card_account(ledger, new, card_id, now_ms)
    insert(
        _card_record(new, keys, now_ms, card_id=card_id, fingerprint=fingerprint, account=account)
    )
    if new.balance_minor:
        _deposit_opening_balance(ledger, new, card_id, account, now_ms)
    detail = {"card": new.pan.masked, "kind": _card_kind(new).value}
    store.log_event(now_ms, "issuer.card_added", card_id, detail)
    card = store.card(card_id)
    assert card is not None
    return card


def _open_card_account(ledger: Ledger, new: NewCard, card_id: str, now_ms: int) -> Account:
    """The card's account (floor: minus the credit line), and the issuer's own if missing."""
    _open_issuer_accounts(ledger, new.currency, now_ms)
    label = f"{_card_kind(new)} card {new.pan.masked}"
    spec = AccountSpec(f"account:{card_id}", new.currency, -new.credit_limit_minor, label)
    return ledger.open_account(spec, now_ms)


def _deposit_opening_balance(
    ledger: Ledger, new: NewCard, card_id: str, account: Account, now_ms: int
) -> None:
    deposit = TransferSpec(
        id=f"opening:{card_id}",
        debit_account_id=funding_account_id(new.currency),
        credit_account_id=account.id,
        amount_minor=new.balance_minor,
        currency=new.currency,
        reference="opening balance",
    )
    ledger.transfer(deposit, now_ms)


def _card_kind(new: NewCard) -> CardKind:
    return CardKind.CREDIT if new.credit_limit_minor > 0 else CardKind.DEBIT


def _card_record(
    new: NewCard, keys: IssuerKeys, now_ms: int, *, card_id: str, fingerprint: str, account: Account
) -> Card:
    offset = make_pin_verification(keys.pvk, new.pan, new.pin).offset if new.pin else None
    return Card(
        id=card_id,
        pan_fingerprint=fingerprint,
        pan_masked=new.pan.masked,
        expiry=new.expiry,
        kind=_card_kind(new),
        status=CardStatus.ACTIVE,
        currency=new.currency,
        account_id=account.id,
        credit_limit_minor=new.credit_limit_minor,
        pin_offset=offset,
        pin_tries=0,
        no_pin_limit_minor=new.limits.no_pin_limit_minor,
        per_txn_limit_minor=new.limits.per_txn_limit_minor,
        daily_limit_minor=new.limits.daily_limit_minor,
        created_at_ms=now_ms,
    )


def _open_issuer_accounts(ledger: Ledger, currency: str, now_ms: int) -> None:
    for account_id, label in (
        (settlement_account_id(currency), "due to the card network"),
        (funding_account_id(currency), "cardholder deposits received"),
    ):
        ledger.open_account(AccountSpec(account_id, currency, None, label), now_ms)


def find_card(conn: Connection, data_keys: DataKeys, pan: Pan) -> Card:
    card = SqlIssuerStore(conn).card_by_fingerprint(pan_fingerprint(data_keys, pan))
    if card is None:
        raise CardError(f"no card {pan.masked} at this issuer")
    return card


def set_status(conn: Connection, card: Card, status: CardStatus, now_ms: int, reason: str) -> Card:
    """Block, report lost, or reactivate (which also clears the PIN try counter)."""
    tries = 0 if status is CardStatus.ACTIVE else card.pin_tries
    SqlIssuerStore(conn).set_card_state(card.id, status, tries)
    detail = {"from": card.status.value, "to": status.value, "reason": reason}
    append_event(conn, now_ms, "issuer.card_status", card.id, detail)
    changed = SqlIssuerStore(conn).card(card.id)
    assert changed is not None
    return changed


def view(conn: Connection, card: Card) -> CardView:
    return CardView(card, Ledger(SqlLedgerStore(conn)).account(card.account_id))


def all_cards(conn: Connection) -> list[CardView]:
    rows = conn.execute(
        sa.select(card_table).order_by(card_table.c.created_at_ms, card_table.c.id)
    ).mappings()
    return [view(conn, card_from_row(row)) for row in rows]


def reveal_card_pan(conn: Connection, data_keys: DataKeys, card: Card) -> Pan:
    """The clear PAN, for an operator who asked for it explicitly (``--show-pan``)."""
    ciphertext = conn.execute(
        sa.select(card_table.c.pan_ciphertext).where(card_table.c.id == card.id)
    ).scalar_one()
    return reveal_pan(data_keys, ProtectedPan(bytes(ciphertext), card.pan_fingerprint))


def issuer_accounts(conn: Connection) -> list[Account]:
    ledger = SqlLedgerStore(conn)
    return sorted(ledger.all_accounts(), key=lambda a: a.id)


def history(conn: Connection, account_id: str, limit: int) -> list[Transfer]:
    return Ledger(SqlLedgerStore(conn)).history(account_id, limit)
