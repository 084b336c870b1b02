"""The ledger's rules: double entry, two-phase transfers, floors and idempotency.

Plain logic over a :class:`LedgerStore`: no clock (callers pass ``now_ms``), no
transactions (callers own them). Every check runs before the first write, so a
refused request leaves the store exactly as it was.
"""

from __future__ import annotations

import dataclasses

from cardtally.ledger._errors import LedgerError, LedgerErrorCode
from cardtally.ledger._model import (
    Account,
    AccountSpec,
    Posted,
    Transfer,
    TransferKind,
    TransferSpec,
)
from cardtally.ledger._rules import EXPIRY_ID_PREFIX, check_account_spec, check_transfer_spec
from cardtally.ledger._store import LedgerStore

HISTORY_LIMIT_DEFAULT = 20
HISTORY_LIMIT_MAX = 1_000
EXPIRE_LIMIT_DEFAULT = 100
EXPIRE_LIMIT_MAX = 1_000
EXPIRED_REFERENCE = "expired"

_RESOLVES = (TransferKind.POST, TransferKind.VOID)


class Ledger:
    """Accounts and transfers with the invariants of double entry, over one store."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def open_account(self, spec: AccountSpec, now_ms: int) -> Account:
        """Open an account; opening it again with the same spec returns the existing one."""
        _check_time(now_ms)
        check_account_spec(spec)
        existing = self._store.account(spec.id)
        if existing is not None:
            if existing.spec != spec:
                raise LedgerError(
                    LedgerErrorCode.ACCOUNT_EXISTS_DIFFERENT,
                    f"account {spec.id!r} exists with a different "
                    f"{', '.join(_differences(existing.spec, spec))}",
                )
            return existing
        account = Account(spec.id, spec.currency, spec.floor_minor, spec.label, now_ms)
        self._store.insert_account(account)
        return account

    def account(self, account_id: str) -> Account:
        found = self._store.account(account_id)
        if found is None:
            raise LedgerError(LedgerErrorCode.ACCOUNT_NOT_FOUND, f"no account {account_id!r}")
        return found

    def history(self, account_id: str, limit: int = HISTORY_LIMIT_DEFAULT) -> list[Transfer]:
        """The account's latest transfers, newest first."""
        _check_limit(limit, HISTORY_LIMIT_MAX)
        self.account(account_id)
        return self._store.transfers_of(account_id, limit)

    def transfer(self, spec: TransferSpec, now_ms: int) -> Posted:
        """Apply a transfer, or return the first answer to an identical earlier request."""
        _check_time(now_ms)
        check_transfer_spec(spec)
        return self._apply(spec, now_ms)

    def expire_holds(self, now_ms: int, limit: int = EXPIRE_LIMIT_DEFAULT) -> list[Transfer]:
        """Void up to ``limit`` lapsed holds, earliest expiry first; return the voids."""
        _check_time(now_ms)
        _check_limit(limit, EXPIRE_LIMIT_MAX)
        voids: list[Transfer] = []
        for pending in self._store.expired_pending(now_ms, limit):
            # A deterministic id: a sweep retried after a crash repeats, never doubles.
            spec = TransferSpec(
                id=f"{EXPIRY_ID_PREFIX}{pending.id}",
                debit_account_id=pending.debit_account_id,
                credit_account_id=pending.credit_account_id,
                amount_minor=pending.amount_minor,
                currency=pending.currency,
                kind=TransferKind.VOID,
                pending_id=pending.id,
                reference=EXPIRED_REFERENCE,
            )
            voids.append(self._apply(spec, now_ms).transfer)
        return voids

    def _apply(self, spec: TransferSpec, now_ms: int) -> Posted:
        existing = self._store.transfer(spec.id)
        if existing is not None:
            return _repeat(existing, spec)
        kind = TransferKind(spec.kind)
        held = self._hold_resolved_by(spec, kind, now_ms) if kind in _RESOLVES else 0
        if kind is TransferKind.PENDING:
            _check_expiry(spec, now_ms)
        debit, credit = self._accounts_of(spec)
        new_debit, new_credit = _moved(kind, spec.amount_minor, held, debit, credit)
        for before, after in ((debit, new_debit), (credit, new_credit)):
            _check_floor(spec.id, before, after)
        _assert_balanced(debit, new_debit, credit, new_credit)
        transfer = Transfer.of(spec, now_ms)
        self._store.insert_transfer(transfer)
        self._store.save_balances(new_debit)
        self._store.save_balances(new_credit)
        return Posted(transfer, created=True)

    def _hold_resolved_by(self, spec: TransferSpec, kind: TransferKind, now_ms: int) -> int:
        """Check that ``spec`` may resolve its pending transfer; return the amount held."""
        assert spec.pending_id is not None
        pending = self._store.transfer(spec.pending_id)
        if pending is None:
            raise LedgerError(
                LedgerErrorCode.PENDING_NOT_FOUND, f"no pending transfer {spec.pending_id!r}"
            )
        if pending.kind is not TransferKind.PENDING:
            raise LedgerError(
                LedgerErrorCode.NOT_PENDING,
                f"transfer {pending.id!r} is a {pending.kind} transfer, not a pending one",
            )
        resolution = self._store.resolution_of(pending.id)
        if resolution is not None:
            raise LedgerError(
                LedgerErrorCode.PENDING_ALREADY_RESOLVED,
                f"pending transfer {pending.id!r} was resolved by {resolution.kind} "
                f"{resolution.id!r}",
            )
        assert pending.expires_at_ms is not None
        # A lapsed hold may still be voided (that is what the expiry sweep does), never posted.
        if kind is TransferKind.POST and now_ms >= pending.expires_at_ms:
            raise LedgerError(
                LedgerErrorCode.PENDING_EXPIRED,
                f"pending transfer {pending.id!r} expired at {pending.expires_at_ms} ms",
            )
        _check_same_parties(spec, pending)
        _check_resolved_amount(spec, kind, pending)
        return pending.amount_minor

    def _accounts_of(self, spec: TransferSpec) -> tuple[Account, Account]:
        found: dict[str, Account] = {}
        # In id order: two writers locking the same pair of rows lock them in the same
        # order, so they queue instead of deadlocking (PostgreSQL).
        for account_id in sorted((spec.debit_account_id, spec.credit_account_id)):
            account = self.account(account_id)
            if account.currency != spec.currency:
                raise LedgerError(
                    LedgerErrorCode.CURRENCY_MISMATCH,
                    f"transfer {spec.id!r} is in {spec.currency}; "
                    f"account {account.id!r} is in {account.currency}",
                )
            found[account_id] = account
        return found[spec.debit_account_id], found[spec.credit_account_id]


def _repeat(existing: Transfer, spec: TransferSpec) -> Posted:
    if existing.spec != spec:
        raise LedgerError(
            LedgerErrorCode.EXISTS_DIFFERENT,
            f"transfer {spec.id!r} exists with a different "
            f"{', '.join(_differences(existing.spec, spec))}",
        )
    # Not re-validated: balances have moved on, but the first answer stands.
    return Posted(existing, created=False)


def _check_expiry(spec: TransferSpec, now_ms: int) -> None:
    assert spec.expires_at_ms is not None
    if spec.expires_at_ms <= now_ms:
        raise LedgerError(
            LedgerErrorCode.INVALID_SPEC,
            f"pending transfer {spec.id!r} would expire at {spec.expires_at_ms} ms, "
            f"not after now ({now_ms} ms)",
        )


def _check_same_parties(spec: TransferSpec, pending: Transfer) -> None:
    ours = (spec.debit_account_id, spec.credit_account_id, spec.currency)
    theirs = (pending.debit_account_id, pending.credit_account_id, pending.currency)
    if ours != theirs:
        raise LedgerError(
            LedgerErrorCode.INVALID_SPEC,
            f"transfer {spec.id!r} names debit/credit/currency {'/'.join(ours)}; "
            f"pending {pending.id!r} has {'/'.join(theirs)}",
        )


def _check_resolved_amount(spec: TransferSpec, kind: TransferKind, pending: Transfer) -> None:
    if spec.amount_minor > pending.amount_minor:
        raise LedgerError(
            LedgerErrorCode.EXCEEDS_PENDING_AMOUNT,
            f"transfer {spec.id!r} of {spec.amount_minor} exceeds the "
            f"{pending.amount_minor} held by {pending.id!r}",
        )
    if kind is TransferKind.VOID and spec.amount_minor != pending.amount_minor:
        raise LedgerError(
            LedgerErrorCode.INVALID_AMOUNT,
            f"void {spec.id!r} releases the whole hold: amount must be {pending.amount_minor}, "
            f"not {spec.amount_minor}",
        )


def _moved(
    kind: TransferKind, amount: int, held: int, debit: Account, credit: Account
) -> tuple[Account, Account]:
    """The two accounts after the transfer; a POST releases the whole hold, posts ``amount``."""
    posted = amount if kind in (TransferKind.SINGLE, TransferKind.POST) else 0
    pending = amount if kind is TransferKind.PENDING else -held
    return (
        dataclasses.replace(
            debit,
            debits_posted=debit.debits_posted + posted,
            debits_pending=debit.debits_pending + pending,
        ),
        dataclasses.replace(
            credit,
            credits_posted=credit.credits_posted + posted,
            credits_pending=credit.credits_pending + pending,
        ),
    )


def _check_floor(transfer_id: str, before: Account, after: Account) -> None:
    if after.below_floor():
        raise LedgerError(
            LedgerErrorCode.EXCEEDS_FLOOR,
            f"transfer {transfer_id!r} would take account {after.id!r} to an available "
            f"{after.available_minor}, below its floor {after.floor_minor} "
            f"(available now {before.available_minor})",
        )


def _assert_balanced(
    debit: Account, new_debit: Account, credit: Account, new_credit: Account
) -> None:
    # Postconditions of double entry: every debit has its credit, phase by phase,
    # and no running total goes negative.
    assert new_debit.debits_posted - debit.debits_posted == (
        new_credit.credits_posted - credit.credits_posted
    ), (debit, new_debit, credit, new_credit)
    assert new_debit.debits_pending - debit.debits_pending == (
        new_credit.credits_pending - credit.credits_pending
    ), (debit, new_debit, credit, new_credit)
    for account in (new_debit, new_credit):
        totals = (
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        )
        assert min(totals) >= 0, account
        assert not account.below_floor(), account
    assert (new_debit.credits_posted, new_debit.credits_pending) == (
        debit.credits_posted,
        debit.credits_pending,
    )
    assert (new_credit.debits_posted, new_credit.debits_pending) == (
        credit.debits_posted,
        credit.debits_pending,
    )


def _differences(old: object, new: object) -> list[str]:
    assert dataclasses.is_dataclass(old) and type(old) is type(new)
    return [
        field.name
        for field in dataclasses.fields(old)
        if getattr(old, field.name) != getattr(new, field.name)
    ]


def _check_time(now_ms: int) -> None:
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
        raise ValueError(f"now_ms must be a non-negative integer: {now_ms!r}")


def _check_limit(limit: int, limit_max: int) -> None:
    if not 0 < limit <= limit_max:
        raise ValueError(f"limit must be in 1..{limit_max}: {limit}")
