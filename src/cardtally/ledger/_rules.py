"""Checks on a request alone, before any look-up: the same answer at any time, in any state.

Because these never depend on the clock or the store, a spec that passed them once
passes them again, so an idempotent repeat can be recognised right after them.
"""

from __future__ import annotations

import re

from cardtally.ledger._errors import LedgerError, LedgerErrorCode
from cardtally.ledger._model import AccountSpec, TransferKind, TransferSpec

ID_CHARS_MAX = 128
LABEL_CHARS_MAX = 200
REFERENCE_CHARS_MAX = 64
# A quadrillion minor units per transfer: far above any card payment, far below
# where a BIGINT running total could overflow.
AMOUNT_MINOR_MAX = 10**15
# Ids the ledger gives the voids it writes for lapsed holds; callers may not use them.
EXPIRY_ID_PREFIX = "expire:"

_CURRENCY = re.compile(r"[0-9]{3}")
_INVALID = LedgerErrorCode.INVALID_SPEC


def check_account_spec(spec: AccountSpec) -> None:
    _check_id("account id", spec.id)
    _check_currency(spec.currency)
    floor = spec.floor_minor
    if floor is not None and (not _is_int(floor) or floor > 0):
        # A positive floor would put a new, empty account below it at once.
        raise LedgerError(_INVALID, f"account floor must be an integer <= 0 or None: {floor!r}")
    if not isinstance(spec.label, str) or len(spec.label) > LABEL_CHARS_MAX:
        raise LedgerError(_INVALID, f"account label must be text of at most {LABEL_CHARS_MAX}")


def check_transfer_spec(spec: TransferSpec) -> TransferKind:
    """Refuse a malformed request; return its kind."""
    _check_id("transfer id", spec.id)
    if spec.id.startswith(EXPIRY_ID_PREFIX):
        raise LedgerError(_INVALID, f"transfer ids starting {EXPIRY_ID_PREFIX!r} are reserved")
    kind = _kind(spec)
    _check_shape(spec, kind)
    if spec.debit_account_id == spec.credit_account_id:
        raise LedgerError(
            LedgerErrorCode.SAME_ACCOUNT,
            f"transfer {spec.id!r} debits and credits the same account {spec.debit_account_id!r}",
        )
    amount = spec.amount_minor
    if not _is_int(amount) or not 0 < amount <= AMOUNT_MINOR_MAX:
        raise LedgerError(
            LedgerErrorCode.INVALID_AMOUNT,
            f"transfer {spec.id!r} amount must be an integer in 1..{AMOUNT_MINOR_MAX} minor "
            f"units: {amount!r}",
        )
    _check_currency(spec.currency)
    if not isinstance(spec.reference, str) or len(spec.reference) > REFERENCE_CHARS_MAX:
        raise LedgerError(
            _INVALID, f"transfer reference must be text of at most {REFERENCE_CHARS_MAX}"
        )
    return kind


def _kind(spec: TransferSpec) -> TransferKind:
    try:
        return TransferKind(spec.kind)
    except ValueError:
        raise LedgerError(_INVALID, f"unknown transfer kind {spec.kind!r}") from None


def _check_shape(spec: TransferSpec, kind: TransferKind) -> None:
    resolves = kind in (TransferKind.POST, TransferKind.VOID)
    if resolves and not (isinstance(spec.pending_id, str) and spec.pending_id):
        raise LedgerError(_INVALID, f"a {kind} transfer needs the pending_id it resolves")
    if not resolves and spec.pending_id is not None:
        raise LedgerError(_INVALID, f"a {kind} transfer takes no pending_id")
    if kind is TransferKind.PENDING and not _is_int(spec.expires_at_ms):
        raise LedgerError(_INVALID, "a pending transfer needs expires_at_ms")
    if kind is not TransferKind.PENDING and spec.expires_at_ms is not None:
        raise LedgerError(_INVALID, f"a {kind} transfer takes no expires_at_ms")


def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise LedgerError(_INVALID, f"{what} must be non-empty text: {value!r}")
    if len(value) > ID_CHARS_MAX:
        # The id itself is not echoed: it may be anything, and this message is one line.
        raise LedgerError(_INVALID, f"{what} has {len(value)} characters; at most {ID_CHARS_MAX}")


def _check_currency(currency: object) -> None:
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise LedgerError(
            _INVALID, f"currency must be an ISO 4217 numeric code (3 digits): {currency!r}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
