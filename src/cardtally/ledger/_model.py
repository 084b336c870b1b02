"""The ledger's values: accounts, transfers and what a transfer returns.

Amounts are integer minor units. Accounts are read from the holder's side
(credit-normal): money paid in is a credit, money spent a debit, so a
cardholder's balance is ``credits_posted - debits_posted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TransferKind(StrEnum):
    """A transfer either posts at once or runs in two phases (hold, then post or void)."""

    SINGLE = "single"
    PENDING = "pending"
    POST = "post"
    VOID = "void"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """What a caller asks for when opening an account.

    ``floor_minor`` is the lowest available balance allowed: 0 for a debit card
    account, minus the limit for a credit account, ``None`` for an account that may
    go as low as it needs (funding, settlement).
    """

    id: str
    currency: str
    floor_minor: int | None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Account:
    """An account as stored, with its four running totals."""

    id: str
    currency: str
    floor_minor: int | None
    label: str
    created_at_ms: int
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def balance_minor(self) -> int:
        """Posted money: what the holder has after everything settled so far."""
        return self.credits_posted - self.debits_posted

    @property
    def available_minor(self) -> int:
        """What may still be spent: held debits count, held credits do not (yet)."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def spec(self) -> AccountSpec:
        return AccountSpec(self.id, self.currency, self.floor_minor, self.label)

    def below_floor(self) -> bool:
        return self.floor_minor is not None and self.available_minor < self.floor_minor


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A request to move ``amount_minor`` from the debit account to the credit account.

    ``pending_id`` names the hold that a POST or VOID resolves; ``expires_at_ms``
    is when a PENDING hold lapses. ``reference`` is free text (an RRN, say).
    """

    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    kind: TransferKind = TransferKind.SINGLE
    pending_id: str | None = None
    expires_at_ms: int | None = None
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as stored: immutable once written, at the time ``at_ms`` it was applied."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    kind: TransferKind
    pending_id: str | None
    expires_at_ms: int | None
    reference: str
    at_ms: int

    @classmethod
    def of(cls, spec: TransferSpec, at_ms: int) -> Transfer:
        return cls(
            id=spec.id,
            debit_account_id=spec.debit_account_id,
            credit_account_id=spec.credit_account_id,
            amount_minor=spec.amount_minor,
            currency=spec.currency,
            kind=TransferKind(spec.kind),
            pending_id=spec.pending_id,
            expires_at_ms=spec.expires_at_ms,
            reference=spec.reference,
            at_ms=at_ms,
        )

    @property
    def spec(self) -> TransferSpec:
        """The request this transfer answered; a repeat must ask for exactly this."""
        return TransferSpec(
            id=self.id,
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
            kind=self.kind,
            pending_id=self.pending_id,
            expires_at_ms=self.expires_at_ms,
            reference=self.reference,
        )


@dataclass(frozen=True, slots=True)
class Posted:
    """The outcome of a transfer: the stored transfer, and whether this call created it.

    ``created`` is False for an idempotent repeat, which gets the first answer.
    """

    transfer: Transfer
    created: bool
