"""verify(): each invariant it checks is shown to hold, and shown to fail when broken."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine

from cardtally.ledger import (
    Account,
    CurrencyTotals,
    Ledger,
    MemoryLedgerStore,
    SqlLedgerStore,
    Transfer,
    TransferKind,
    Violation,
    ledger_account_table,
    ledger_transfer_table,
    verify,
    verify_report,
)
from cardtally.storage import transaction
from tests.ledger.conftest import CNY, NOW, USD, open_all, pending, resolve, single

POST, VOID = TransferKind.POST, TransferKind.VOID


def healthy_history(ledger: Ledger) -> None:
    """Every kind of transfer: loads, spends, holds posted in full and in part, voids, expiry."""
    open_all(ledger)
    ledger.transfer(single("load", "funding", "card", 10_000), NOW)
    ledger.transfer(single("spend", "card", "merchant", 1_500), NOW + 1)
    full = pending("auth-1", "card", "merchant", 2_000)
    part = pending("auth-2", "credit", "merchant", 4_000)
    gone = pending("auth-3", "card", "merchant", 500)
    lapse = pending("auth-4", "credit", "merchant", 700, NOW + 50)
    for hold in (full, part, gone, lapse):
        ledger.transfer(hold, NOW + 2)
    ledger.transfer(resolve("cap-1", full, POST), NOW + 3)
    ledger.transfer(resolve("cap-2", part, POST, 3_100), NOW + 4)
    ledger.transfer(resolve("rev-3", gone, VOID), NOW + 5)
    assert len(ledger.expire_holds(NOW + 50)) == 1
    ledger.transfer(pending("open", "card", "merchant", 100), NOW + 60)


class FrozenStore:
    """A store made of plain lists, so a test can corrupt it in ways no store allows."""

    def __init__(self, accounts: list[Account], transfers: list[Transfer]) -> None:
        self.accounts = accounts
        self.transfers = transfers

    def all_accounts(self) -> Iterator[Account]:
        return iter(self.accounts)

    def all_transfers(self) -> Iterator[Transfer]:
        return iter(self.transfers)

    def transfer(self, transfer_id: str) -> Transfer | None:
        return next((t for t in self.transfers if t.id == transfer_id), None)


def frozen_healthy() -> FrozenStore:
    store = MemoryLedgerStore()
    healthy_history(Ledger(store))
    return FrozenStore(list(store.all_accounts()), list(store.all_transfers()))


def _account(store: FrozenStore, account_id: str, **changes: int) -> None:
    _accounts(store, **{account_id: changes})


def _accounts(store: FrozenStore, **changes: dict[str, int]) -> None:
    store.accounts = [
        dataclasses.replace(a, **changes[a.id]) if a.id in changes else a  # type: ignore[arg-type]
        for a in store.accounts
    ]


def _transfer(store: FrozenStore, transfer_id: str, **changes: object) -> None:
    store.transfers = [
        dataclasses.replace(t, **changes) if t.id == transfer_id else t  # type: ignore[arg-type]
        for t in store.transfers
    ]


def _add(store: FrozenStore, transfer: Transfer) -> None:
    store.transfers.append(transfer)


def _raw(transfer_id: str, debit: str, credit: str, amount: int, **changes: object) -> Transfer:
    base = Transfer(transfer_id, debit, credit, amount, CNY, TransferKind.SINGLE, None, None, "", 1)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# Each corruption breaks one invariant; the listed violation must be among those reported.
CORRUPTIONS: list[tuple[str, Callable[[FrozenStore], None], Violation]] = [
    (
        "unbalanced",
        lambda s: _account(s, "funding", debits_posted=10_001),
        Violation(
            "unbalanced_currency",
            CNY,
            "debits posted 16601 vs credits posted 16600; "
            "debits pending 100 vs credits pending 100",
        ),
    ),
    (
        "cache-moved",
        # Totals still balance: only recomputing from the transfers can see it.
        lambda s: _accounts(s, card={"credits_posted": 9_999}, merchant={"credits_posted": 6_601}),
        Violation("balance_mismatch", "card", "credits_posted is 9999, transfers imply 10000"),
    ),
    (
        "pending-cache",
        lambda s: _accounts(s, card={"debits_pending": 0}, merchant={"credits_pending": 0}),
        Violation("balance_mismatch", "card", "debits_pending is 0, transfers imply 100"),
    ),
    (
        "below-floor",
        lambda s: _account(s, "card", floor_minor=-1, debits_posted=10_000),
        Violation("below_floor", "card", "available -100 is below the floor -1"),
    ),
    (
        "unknown-account",
        lambda s: _add(s, _raw("ghostly", "ghost", "funding", 5)),
        Violation("unknown_account", "ghostly", "debit account 'ghost' does not exist"),
    ),
    (
        "currency",
        lambda s: _add(s, _raw("fx", "funding", "usd", 5)),
        Violation("currency_mismatch", "fx", "in 156, credit account 'usd' in 840"),
    ),
    (
        "malformed",
        lambda s: _add(s, _raw("bad", "funding", "funding", 0, expires_at_ms=5)),
        Violation(
            "malformed_transfer",
            "bad",
            "amount 0 is not positive; debits and credits one account; "
            "a single with expires_at_ms 5",
        ),
    ),
    (
        "missing-pending",
        lambda s: _add(s, _raw("v", "card", "merchant", 5, kind=VOID, pending_id="nope")),
        Violation("pending_not_found", "v", "no transfer 'nope'"),
    ),
    (
        "not-pending",
        lambda s: _add(s, _raw("v", "card", "merchant", 5, kind=VOID, pending_id="spend")),
        Violation("not_pending", "v", "'spend' is a single"),
    ),
    (
        "over-post",
        lambda s: _transfer(s, "cap-2", amount_minor=4_001),
        Violation("resolution_mismatch", "cap-2", "post of 4001 against a hold of 4000"),
    ),
    (
        "other-parties",
        lambda s: _transfer(s, "rev-3", credit_account_id="funding"),
        Violation(
            "resolution_mismatch",
            "rev-3",
            "names ('card', 'funding', '156'), the hold ('card', 'merchant', '156')",
        ),
    ),
    (
        "resolved-twice",
        lambda s: _add(s, _raw("rev-1", "card", "merchant", 2_000, kind=VOID, pending_id="auth-1")),
        Violation("resolved_twice", "rev-1", "'auth-1' was resolved before"),
    ),
]


def test_a_healthy_ledger_has_no_violations() -> None:
    store = MemoryLedgerStore()
    healthy_history(Ledger(store))
    report = verify_report(store)
    assert report.healthy and verify(store) == []
    assert (report.accounts_checked, report.transfers_checked) == (5, 11)
    assert report.totals == (
        CurrencyTotals(CNY, 4, 16_600, 16_600, 100, 100),
        CurrencyTotals(USD, 1, 0, 0, 0, 0),
    )


def test_the_order_of_transfers_does_not_matter() -> None:
    # Resolutions may stream before their holds (SQL promises no order).
    store = frozen_healthy()
    store.transfers.reverse()
    assert verify(store) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("corrupt", "expected"), [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS]
)
def test_each_check_fails_when_its_invariant_is_broken(
    corrupt: Callable[[FrozenStore], None], expected: Violation
) -> None:
    store = frozen_healthy()
    corrupt(store)
    found = verify(store)  # type: ignore[arg-type]
    assert expected in found, found
    store.transfers.reverse()
    assert expected.kind in {v.kind for v in verify(store)}  # type: ignore[arg-type]


def test_every_violation_kind_is_shown_to_fail() -> None:
    documented = set(re.findall(r"``(\w+)``", Violation.__doc__ or "")) - {"kind"}
    assert {expected.kind for _, _, expected in CORRUPTIONS} == documented


def test_unbalanced_transfer_written_behind_the_ledgers_back(ledger_engine: Engine) -> None:
    write_unbalanced_transfer(ledger_engine)
    with transaction(ledger_engine) as conn:
        found = verify(SqlLedgerStore(conn))
    assert (
        Violation("balance_mismatch", "card", "credits_posted is 10000, transfers imply 10500")
        in found
    )
    assert any(v.kind == "unbalanced_currency" and v.subject == CNY for v in found)


def test_healthy_sql_ledger_verifies(ledger_engine: Engine) -> None:
    with transaction(ledger_engine) as conn:
        healthy_history(Ledger(SqlLedgerStore(conn)))
    with transaction(ledger_engine) as conn:
        report = verify_report(SqlLedgerStore(conn))
    assert report.healthy, report.violations
    assert report.transfers_checked == 11


def write_unbalanced_transfer(engine: Engine) -> None:
    """A healthy ledger, then a raw transfer of 5.00 whose credit side was never booked."""
    with transaction(engine) as conn:
        healthy_history(Ledger(SqlLedgerStore(conn)))
    with transaction(engine) as conn:
        conn.execute(
            insert(ledger_transfer_table).values(
                id="sneaky",
                kind="single",
                debit_account_id="funding",
                credit_account_id="card",
                amount_minor=500,
                currency=CNY,
                reference="written by hand",
                at_ms=NOW + 100,
            )
        )
        accounts = ledger_account_table
        conn.execute(
            update(accounts)
            .where(accounts.c.id == "funding")
            .values(debits_posted=accounts.c.debits_posted + 500)
        )
