"""``cardtally issuer``: the issuing bank's cards, accounts and host process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import Connection

from cardtally.cli._output import cst, fail, out
from cardtally.cli._state import state_of
from cardtally.config import Config
from cardtally.issuer import (
    CardLimits,
    CardStatus,
    CardView,
    NewCard,
    add_card,
    all_cards,
    find_card,
    history,
    issuer_accounts,
    open_issuer_database,
    owed_account_id,
    reveal_card_pan,
    set_status,
    view,
)
from cardtally.ledger import Account, SqlLedgerStore, Transfer
from cardtally.money import Money
from cardtally.runtime import wall_clock_ms
from cardtally.security import DataKeys, load_data_keys, load_issuer_keys
from cardtally.storage import transaction
from cardtally.wire import Pan, PanError

app = typer.Typer(
    help="The issuing bank: cardholder cards and accounts, and the issuer host (serve).",
    no_args_is_help=True,
)
cards_app = typer.Typer(
    help="Issue, list, show, block and unblock cards. PANs are shown masked unless --show-pan.",
    no_args_is_help=True,
)
accounts_app = typer.Typer(
    help="Ledger accounts: balances and recent transfers.", no_args_is_help=True
)
app.add_typer(cards_app, name="cards")
app.add_typer(accounts_app, name="accounts")

PanOption = Annotated[
    str, typer.Option("--pan", help="Card number (PAN), digits only.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ShowPanOption = Annotated[
    bool,
    typer.Option("--show-pan", help="Show full card numbers (they are secret: mind the screen)."),
]


@dataclass(frozen=True, slots=True)
class _Issuer:
    config: Config
    data_keys: DataKeys


def _issuer(ctx: typer.Context) -> _Issuer:
    config = state_of(ctx).config()
    return _Issuer(config, load_data_keys(config.home))


@contextmanager
def _database(issuer: _Issuer) -> Iterator[Connection]:
    engine = open_issuer_database(issuer.config.issuer.database, wall_clock_ms())
    try:
        with transaction(engine) as conn:
            yield conn
    finally:
        engine.dispose()


def _pan(text: str) -> Pan:
    try:
        return Pan(text.strip())
    except PanError as exc:
        fail(f"--pan: {exc}")


def _money(option: str, text: str, currency: str) -> int:
    try:
        return Money.parse(text, currency).minor
    except ValueError as exc:
        fail(f"{option}: {exc}")


# --- cards ---------------------------------------------------------------------------------


@cards_app.command("add")
def add_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    pan: PanOption,
    expiry: Annotated[
        str, typer.Option("--expiry", help="Expiry date YYMM, as on the card.", show_default=False)
    ],
    currency: Annotated[
        str, typer.Option("--currency", help="ISO 4217 numeric currency of the account.")
    ] = "156",
    balance: Annotated[
        str, typer.Option("--balance", help="Opening balance, e.g. 100.00.")
    ] = "0.00",
    credit_limit: Annotated[
        str, typer.Option("--credit-limit", help="Credit line; above 0 makes a credit card.")
    ] = "0",
    pin: Annotated[
        str | None,
        typer.Option("--pin", help="4-12 digit PIN; only its IBM 3624 offset is stored."),
    ] = None,
    no_pin_limit: Annotated[
        str | None,
        typer.Option(
            "--no-pin-limit", help="Largest sale without PIN (default: issuer.no_pin_limit_minor)."
        ),
    ] = None,
    per_txn_limit: Annotated[
        str | None,
        typer.Option(
            "--per-txn-limit", help="Largest single debit (default: issuer.per_txn_limit_minor)."
        ),
    ] = None,
    daily_limit: Annotated[
        str | None,
        typer.Option("--daily-limit", help="Debits per day (default: issuer.daily_limit_minor)."),
    ] = None,
) -> None:
    """Issue a card under one of the issuer's BINs, with its account and opening balance.

    Example:
    cardtally issuer cards add --pan 6225880000000009 --expiry 2812 --balance 500.00 --pin 123456
    """
    issuer = _issuer(ctx)
    settings = issuer.config.issuer
    card_pan = _pan(pan)
    if card_pan.bin not in settings.bins:
        fail(
            f"--pan: {card_pan.masked} is not under this issuer's BINs ({', '.join(settings.bins)})"
        )

    def limit(option: str, text: str | None, default: int) -> int:
        return default if text is None else _money(option, text, currency)

    new = NewCard(
        pan=card_pan,
        expiry=expiry,
        currency=currency,
        balance_minor=_money("--balance", balance, currency),
        credit_limit_minor=_money("--credit-limit", credit_limit, currency),
        pin=pin,
        limits=CardLimits(
            no_pin_limit_minor=limit("--no-pin-limit", no_pin_limit, settings.no_pin_limit_minor),
            per_txn_limit_minor=limit(
                "--per-txn-limit", per_txn_limit, settings.per_txn_limit_minor
            ),
            daily_limit_minor=limit("--daily-limit", daily_limit, settings.daily_limit_minor),
        ),
    )
    keys = load_issuer_keys(issuer.config.home)
    with _database(issuer) as conn:
        shown = view(conn, add_card(conn, issuer.data_keys, keys, new, wall_clock_ms()))
    card = shown.card
    out.print(
        f"card {card.pan_masked} issued: {card.kind}, expiry {card.expiry[2:]}/{card.expiry[:2]}, "
        f"balance {Money(shown.balance_minor, card.currency)}, "
        f"available {Money(shown.available_minor, card.currency)}, "
        f"PIN {'set' if card.pin_offset else 'not set'}"
    )


@cards_app.command("list")
def list_command(
    ctx: typer.Context, as_json: JsonOption = False, show_pan: ShowPanOption = False
) -> None:
    """Every card with its status, balance and available amount."""
    issuer = _issuer(ctx)
    with _database(issuer) as conn:
        rows = [_card_json(conn, issuer, v, show_pan) for v in all_cards(conn)]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"cards ({len(rows)})", title_justify="left")
    table.add_column("card", no_wrap=True)
    for column in ("kind", "status", "expiry", "balance", "available", "PIN tries"):
        table.add_column(column, justify="right" if column in ("balance", "available") else "left")
    for row in rows:
        table.add_row(
            row["card"],
            row["kind"],
            row["status"],
            row["expiry"],
            _amount(row["balance_minor"], row["currency"]),
            _amount(row["available_minor"], row["currency"]),
            str(row["pin_tries"]),
        )
    out.print(table)


@cards_app.command("show")
def show_command(
    ctx: typer.Context, pan: PanOption, as_json: JsonOption = False, show_pan: ShowPanOption = False
) -> None:
    """One card: status, limits, balance and available amount."""
    issuer = _issuer(ctx)
    with _database(issuer) as conn:
        row = _card_json(
            conn, issuer, view(conn, find_card(conn, issuer.data_keys, _pan(pan))), show_pan
        )
    if as_json:
        out.print_json(json.dumps(row))
        return
    currency = row["currency"]
    for label, value in (
        ("card", row["card"]),
        ("kind", row["kind"]),
        ("status", row["status"]),
        ("expiry", row["expiry"]),
        ("balance", _amount(row["balance_minor"], currency)),
        ("available", _amount(row["available_minor"], currency)),
        ("credit limit", _amount(row["credit_limit_minor"], currency)),
        ("PIN", f"set, {row['pin_tries']} wrong tries" if row["pin_set"] else "not set"),
        ("no-PIN limit", _amount(row["no_pin_limit_minor"], currency)),
        ("per-txn limit", _amount(row["per_txn_limit_minor"], currency)),
        ("daily limit", _amount(row["daily_limit_minor"], currency)),
        ("account", row["account_id"]),
    ):
        out.print(f"{label:<14} {value}")


@cards_app.command("block")
def block_command(
    ctx: typer.Context,
    pan: PanOption,
    lost: Annotated[
        bool, typer.Option("--lost", help="Record the card as lost rather than blocked.")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the event log.")] = "operator",
) -> None:
    """Stop a card: every authorisation is declined (05) until it is unblocked."""
    _change_status(ctx, pan, CardStatus.LOST if lost else CardStatus.BLOCKED, reason)


@cards_app.command("unblock")
def unblock_command(
    ctx: typer.Context,
    pan: PanOption,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the event log.")] = "operator",
) -> None:
    """Reactivate a card and clear its wrong-PIN counter."""
    _change_status(ctx, pan, CardStatus.ACTIVE, reason)


def _change_status(ctx: typer.Context, pan: str, status: CardStatus, reason: str) -> None:
    issuer = _issuer(ctx)
    with _database(issuer) as conn:
        card = set_status(
            conn, find_card(conn, issuer.data_keys, _pan(pan)), status, wall_clock_ms(), reason
        )
    out.print(f"card {card.pan_masked} is now {card.status}")


def _card_json(
    conn: Connection, issuer: _Issuer, shown: CardView, show_pan: bool
) -> dict[str, Any]:
    card = shown.card
    return {
        "card": reveal_card_pan(conn, issuer.data_keys, card).reveal()
        if show_pan
        else card.pan_masked,
        "pan_masked": card.pan_masked,
        "kind": card.kind.value,
        "status": card.status.value,
        "expiry": card.expiry,
        "currency": card.currency,
        "balance_minor": shown.balance_minor,
        "available_minor": shown.available_minor,
        "credit_limit_minor": card.credit_limit_minor,
        "pin_set": card.pin_offset is not None,
        "pin_tries": card.pin_tries,
        "no_pin_limit_minor": card.no_pin_limit_minor,
        "per_txn_limit_minor": card.per_txn_limit_minor,
        "daily_limit_minor": card.daily_limit_minor,
        "account_id": card.account_id,
    }


def _amount(minor: int, currency: str) -> str:
    return Money(minor, currency).decimal_text()


# --- accounts ------------------------------------------------------------------------------


@accounts_app.command("show")
def accounts_show_command(
    ctx: typer.Context,
    pan: Annotated[
        str | None,
        typer.Option(
            "--pan", help="Show this card's account and its transfers.", show_default=False
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="How many recent transfers.")
    ] = 10,
    as_json: JsonOption = False,
) -> None:
    """Ledger balances (posted, pending, available) and each account's last transfers.

    With --pan, the card's account and, if it has one, its owed account: reversals of
    refunds or voids the card could no longer cover, which the cardholder owes the bank.
    """
    issuer = _issuer(ctx)
    with _database(issuer) as conn:
        if pan is None:
            accounts = issuer_accounts(conn)
        else:
            card = find_card(conn, issuer.data_keys, _pan(pan))
            # With the card's owed account, if a reversal it could not cover opened one.
            owed = SqlLedgerStore(conn).account(owed_account_id(card))
            accounts = [view(conn, card).account, *([owed] if owed else [])]
        shown = [(account, history(conn, account.id, limit)) for account in accounts]
    if as_json:
        out.print_json(json.dumps([_account_json(a, t) for a, t in shown]))
        return
    for account, transfers in shown:
        _print_account(account, transfers)


def _account_json(account: Account, transfers: list[Transfer]) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "label": account.label,
        "currency": account.currency,
        "floor_minor": account.floor_minor,
        "balance_minor": account.balance_minor,
        "available_minor": account.available_minor,
        "debits_pending_minor": account.debits_pending,
        "credits_pending_minor": account.credits_pending,
        "transfers": [
            {
                "id": t.id,
                "kind": t.kind.value,
                "at_ms": t.at_ms,
                "amount_minor": t.amount_minor,
                "direction": "debit" if t.debit_account_id == account.id else "credit",
                "reference": t.reference,
            }
            for t in transfers
        ],
    }


def _print_account(account: Account, transfers: list[Transfer]) -> None:
    currency = account.currency
    floor = "none" if account.floor_minor is None else _amount(account.floor_minor, currency)
    out.print(
        f"[bold]{account.id}[/]  {account.label}\n"
        f"  balance {_amount(account.balance_minor, currency)}  "
        f"pending debits {_amount(account.debits_pending, currency)}  "
        f"available {_amount(account.available_minor, currency)}  floor {floor}"
    )
    if not transfers:
        return
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("time (CST)", "kind", "debit", "credit", "reference"):
        table.add_column(column, justify="right" if column in ("debit", "credit") else "left")
    for t in transfers:
        amount = _amount(t.amount_minor, currency)
        is_debit = t.debit_account_id == account.id
        table.add_row(
            cst(t.at_ms),
            t.kind.value,
            amount if is_debit else "",
            "" if is_debit else amount,
            t.reference,
        )
    out.print(table)


# --- serve ---------------------------------------------------------------------------------


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default: issuer.host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port; 0 picks a free one (default: issuer.port)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Port of GET /metrics on the same host; 0: none (default: issuer.metrics_port).",
        ),
    ] = None,
) -> None:
    """Run the issuer host: ISO 8583 over TCP, group commit, cardholder notices.

    Logs structured lines on stderr (JSON by default, [log] format; no card numbers), serves
    Prometheus metrics when a metrics port is set, and prints 'listening on HOST:PORT' once
    ready. Stops gracefully on SIGTERM or Ctrl-C, answering what is in flight.
    """
    from cardtally.runtime.issuer_process import serve_issuer  # noqa: PLC0415 - heavy, serve only

    config = state_of(ctx).config()
    serve_issuer(
        config,
        host=host or config.issuer.host,
        port=config.issuer.port if port is None else port,
        metrics_port=metrics_port,
    )
