"""Why the ledger refused something: a code for programs and one line for people."""

from __future__ import annotations

from enum import Enum


class LedgerErrorCode(Enum):
    """What was wrong with a request. A refused request changed nothing."""

    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_EXISTS_DIFFERENT = "account_exists_different"
    CURRENCY_MISMATCH = "currency_mismatch"
    SAME_ACCOUNT = "same_account"
    INVALID_AMOUNT = "invalid_amount"
    # Insufficient funds on a debit account, or over the limit on a credit account.
    EXCEEDS_FLOOR = "exceeds_floor"
    # The transfer id exists already with different content.
    EXISTS_DIFFERENT = "exists_different"
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_ALREADY_RESOLVED = "pending_already_resolved"
    PENDING_EXPIRED = "pending_expired"
    EXCEEDS_PENDING_AMOUNT = "exceeds_pending_amount"
    NOT_PENDING = "not_pending"
    INVALID_SPEC = "invalid_spec"


class LedgerError(Exception):
    """A request the ledger refused; ``code`` says why, ``str()`` is one readable line."""

    def __init__(self, code: LedgerErrorCode, message: str) -> None:
        # Both in args, so the error survives pickling across processes.
        super().__init__(code, message)
        self.code = code
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return f"{self.message} ({self.code.value})"
