"""TransferAudit: verify_report's checks one transfer at a time, over a live store."""

from __future__ import annotations

from dataclasses import replace

from cardtally.ledger import (
    AccountSpec,
    Ledger,
    MemoryLedgerStore,
    TransferAudit,
    TransferKind,
    TransferSpec,
)

NOW = 1_700_000_000_000


def _ledger() -> tuple[MemoryLedgerStore, Ledger]:
    store = MemoryLedgerStore()
    ledger = Ledger(store)
    ledger.open_account(AccountSpec("funding", "156", None, "funding"), NOW)
    ledger.open_account(AccountSpec("card", "156", 0, "card"), NOW)
    ledger.open_account(AccountSpec("shop", "156", None, "shop"), NOW)
    ledger.transfer(TransferSpec("load", "funding", "card", 10_000, "156"), NOW)
    ledger.transfer(TransferSpec("sale", "card", "shop", 2_500, "156"), NOW)
    hold = TransferSpec(
        "hold", "card", "shop", 1_000, "156", kind=TransferKind.PENDING, expires_at_ms=NOW + 1
    )
    ledger.transfer(hold, NOW)
    return store, ledger


def test_a_healthy_store_shows_no_mismatch_as_transfers_are_fed() -> None:
    store, _ = _ledger()
    audit = TransferAudit(store)
    for transfer in store.all_transfers():
        audit.feed(transfer)
    assert not audit.violations
    for account in store.all_accounts():
        assert audit.mismatch(account) is None


def test_an_account_whose_balances_differ_from_its_transfers_is_named() -> None:
    store, _ = _ledger()
    audit = TransferAudit(store)
    for transfer in store.all_transfers():
        audit.feed(transfer)
    card = store.account("card")
    assert card is not None
    found = audit.mismatch(replace(card, credits_posted=card.credits_posted - 1))
    assert found is not None
    assert found.kind == "balance_mismatch"
    assert "credits_posted is 9999, transfers imply 10000" in found.detail


def test_a_transfer_naming_an_unknown_account_is_a_violation() -> None:
    store, _ = _ledger()
    audit = TransferAudit(store)
    sale = store.transfer("sale")
    assert sale is not None
    audit.feed(replace(sale, id="ghost", credit_account_id="nobody"))
    assert [v.kind for v in audit.violations] == ["unknown_account"]
