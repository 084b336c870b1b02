"""A whole-ledger audit: recompute every balance from the transfers and compare.

Balances on accounts are a cache; the transfers are the truth. ``verify`` streams
the transfers once, keeping per-account totals and the holds not yet matched with
their post or void, so memory grows with accounts and open holds, not history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cardtally.ledger._model import Account, Transfer, TransferKind
from cardtally.ledger._store import LedgerStore

_COLUMNS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant. ``kind`` is one of:

    ``unbalanced_currency`` (subject: currency), ``balance_mismatch`` and
    ``below_floor`` (subject: account), ``unknown_account``, ``currency_mismatch``,
    ``malformed_transfer``, ``pending_not_found``, ``not_pending``,
    ``resolution_mismatch`` and ``resolved_twice`` (subject: transfer).
    """

    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    """The running totals of every account in one currency; debits must equal credits."""

    currency: str
    accounts: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balanced(self) -> bool:
        return (self.debits_posted, self.debits_pending) == (
            self.credits_posted,
            self.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify_report` looked at and what it found."""

    accounts_checked: int
    transfers_checked: int
    totals: tuple[CurrencyTotals, ...]
    violations: tuple[Violation, ...]

    @property
    def healthy(self) -> bool:
        return not self.violations


def verify(store: LedgerStore) -> list[Violation]:
    """Every broken invariant in the store; an empty list means the ledger is healthy."""
    return list(verify_report(store).violations)


def verify_report(store: LedgerStore) -> VerifyReport:
    """Audit the store: totals per currency, cached balances, floors, and every transfer."""
    accounts = {account.id: account for account in store.all_accounts()}
    totals = _totals(accounts.values())
    replay = _Replay(accounts)
    for transfer in store.all_transfers():
        replay.feed(transfer)
    replay.finish(store)
    violations = [
        *(
            Violation("unbalanced_currency", t.currency, _imbalance(t))
            for t in totals
            if not t.balanced
        ),
        *_mismatches(accounts.values(), replay.implied),
        *(
            Violation(
                "below_floor",
                a.id,
                f"available {a.available_minor} is below the floor {a.floor_minor}",
            )
            for a in accounts.values()
            if a.below_floor()
        ),
        *replay.violations,
    ]
    return VerifyReport(len(accounts), replay.count, totals, tuple(violations))


def _totals(accounts: Iterable[Account]) -> tuple[CurrencyTotals, ...]:
    sums: dict[str, list[int]] = {}
    for account in accounts:
        row = sums.setdefault(account.currency, [0] * (len(_COLUMNS) + 1))
        row[0] += 1
        for i, name in enumerate(_COLUMNS, start=1):
            row[i] += getattr(account, name)
    return tuple(CurrencyTotals(currency, *row) for currency, row in sorted(sums.items()))


def _imbalance(totals: CurrencyTotals) -> str:
    return (
        f"debits posted {totals.debits_posted} vs credits posted {totals.credits_posted}; "
        f"debits pending {totals.debits_pending} vs credits pending {totals.credits_pending}"
    )


def _mismatches(accounts: Iterable[Account], implied: dict[str, list[int]]) -> list[Violation]:
    found: list[Violation] = []
    for account in accounts:
        expected = implied.get(account.id, [0] * len(_COLUMNS))
        wrong = [
            f"{name} is {getattr(account, name)}, transfers imply {want}"
            for name, want in zip(_COLUMNS, expected, strict=True)
            if getattr(account, name) != want
        ]
        if wrong:
            found.append(Violation("balance_mismatch", account.id, "; ".join(wrong)))
    return found


class TransferAudit:
    """``verify_report``'s checks one transfer at a time, for a watcher of a live store.

    Feed each new transfer as it is written; :meth:`mismatch` then says whether an account
    holds other balances than its transfers imply, and :attr:`violations` what the transfers
    themselves break (unknown accounts, malformed or twice-resolved transfers).
    """

    def __init__(self, store: LedgerStore) -> None:
        self._store = store
        self._replay = _Replay({})

    @property
    def violations(self) -> list[Violation]:
        return self._replay.violations

    def feed(self, transfer: Transfer) -> None:
        accounts = self._replay.accounts
        for account_id in (transfer.debit_account_id, transfer.credit_account_id):
            if account_id not in accounts:
                account = self._store.account(account_id)
                if account is not None:
                    accounts[account_id] = account
        self._replay.feed(transfer)

    def mismatch(self, account: Account) -> Violation | None:
        return next(iter(_mismatches([account], self._replay.implied)), None)


@dataclass
class _Replay:
    """Totals implied by the transfers, built one transfer at a time in any order."""

    accounts: dict[str, Account]
    implied: dict[str, list[int]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    count: int = 0
    # Holds whose resolution has not come by yet, and resolutions whose hold has not.
    open_holds: dict[str, Transfer] = field(default_factory=dict)
    early: dict[str, Transfer] = field(default_factory=dict)

    def feed(self, transfer: Transfer) -> None:
        self.count += 1
        self._check_fields(transfer)
        self._check_accounts(transfer)
        if transfer.kind is TransferKind.SINGLE:
            self._add(transfer, posted=transfer.amount_minor)
        elif transfer.kind is TransferKind.PENDING:
            self._add(transfer, pending=transfer.amount_minor)
            resolution = self.early.pop(transfer.id, None)
            if resolution is None:
                self.open_holds[transfer.id] = transfer
            else:
                self._resolve(resolution, transfer)
        else:
            self._feed_resolution(transfer)

    def finish(self, store: LedgerStore) -> None:
        """Judge resolutions that never met their hold (rare: look each one up)."""
        for pending_id, resolution in sorted(self.early.items()):
            target = store.transfer(pending_id)
            if target is None:
                self._flag(resolution, "pending_not_found", f"no transfer {pending_id!r}")
            elif target.kind is not TransferKind.PENDING:
                self._flag(resolution, "not_pending", f"{pending_id!r} is a {target.kind}")
            else:
                self._flag(resolution, "resolved_twice", f"{pending_id!r} was resolved before")
        self.early.clear()

    def _feed_resolution(self, resolution: Transfer) -> None:
        pending_id = resolution.pending_id
        if pending_id is None:
            return  # already flagged as malformed; there is no hold to match
        hold = self.open_holds.pop(pending_id, None)
        if hold is not None:
            self._resolve(resolution, hold)
        elif pending_id in self.early:
            self._flag(resolution, "resolved_twice", f"{pending_id!r} has another resolution")
        else:
            self.early[pending_id] = resolution

    def _resolve(self, resolution: Transfer, hold: Transfer) -> None:
        parties = (resolution.debit_account_id, resolution.credit_account_id, resolution.currency)
        held = (hold.debit_account_id, hold.credit_account_id, hold.currency)
        if parties != held:
            self._flag(resolution, "resolution_mismatch", f"names {parties}, the hold {held}")
        too_much = resolution.amount_minor > hold.amount_minor
        partial_void = (
            resolution.kind is TransferKind.VOID and resolution.amount_minor != hold.amount_minor
        )
        if too_much or partial_void:
            self._flag(
                resolution,
                "resolution_mismatch",
                f"{resolution.kind} of {resolution.amount_minor} against a hold of "
                f"{hold.amount_minor}",
            )
        self._add(hold, pending=-hold.amount_minor)
        if resolution.kind is TransferKind.POST:
            self._add(resolution, posted=resolution.amount_minor)

    def _add(self, transfer: Transfer, *, posted: int = 0, pending: int = 0) -> None:
        debit = self.implied.setdefault(transfer.debit_account_id, [0] * len(_COLUMNS))
        credit = self.implied.setdefault(transfer.credit_account_id, [0] * len(_COLUMNS))
        debit[0] += posted
        debit[2] += pending
        credit[1] += posted
        credit[3] += pending

    def _check_fields(self, t: Transfer) -> None:
        problems = []
        if t.amount_minor <= 0:
            problems.append(f"amount {t.amount_minor} is not positive")
        if t.debit_account_id == t.credit_account_id:
            problems.append("debits and credits one account")
        if (t.kind in (TransferKind.POST, TransferKind.VOID)) != (t.pending_id is not None):
            problems.append(f"a {t.kind} with pending_id {t.pending_id!r}")
        if (t.kind is TransferKind.PENDING) != (t.expires_at_ms is not None):
            problems.append(f"a {t.kind} with expires_at_ms {t.expires_at_ms!r}")
        if problems:
            self._flag(t, "malformed_transfer", "; ".join(problems))

    def _check_accounts(self, t: Transfer) -> None:
        for side, account_id in (("debit", t.debit_account_id), ("credit", t.credit_account_id)):
            account = self.accounts.get(account_id)
            if account is None:
                self._flag(t, "unknown_account", f"{side} account {account_id!r} does not exist")
            elif account.currency != t.currency:
                self._flag(
                    t,
                    "currency_mismatch",
                    f"in {t.currency}, {side} account {account_id!r} in {account.currency}",
                )

    def _flag(self, transfer: Transfer, kind: str, detail: str) -> None:
        self.violations.append(Violation(kind, transfer.id, detail))
