"""The issuer's side of the day end: accepting a clearing file, refunding one-sided debits.

Both act on the issuer's own database through its store, ledger and notice outbox, each in
one transaction, and both are idempotent by natural ids: the clearing transfer is
``clearing:<day>:<link>`` and a refund record is ``dayend:<day>:refund:<original>``. A day end
killed between the issuer's commit and its own record finds the work done and records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardtally.clearing._files import ClearingFile, ClearingRecord
from cardtally.issuer._history import standing
from cardtally.issuer._model import TxnKind, TxnRecord
from cardtally.issuer._posting import available_minor, settlement_account_id
from cardtally.issuer._store import IssuerStore
from cardtally.ledger import AccountSpec, Ledger, TransferSpec
from cardtally.money import Money
from cardtally.notices import Notice, NoticeKind

REFUND_REASON: Final = "day-end refund"


class ClearingRefusedError(ValueError):
    """The issuer will not accept a clearing file; nothing was posted."""


@dataclass(frozen=True, slots=True)
class Accepted:
    link_id: str
    records: int
    net_minor: int
    transfer_id: str | None  # None when debits and credits cancel out


@dataclass(frozen=True, slots=True)
class Refunded:
    """What a day-end refund did: ``refunded`` with a record and notice, or ``nothing``."""

    result: str
    amount_minor: int
    record_id: str
    notice_id: str | None
    why: str


def paid_account_id(currency: str) -> str:
    """What the issuer has paid the network for its cardholders' cleared purchases."""
    return f"issuer:paid-to-network:{currency}"


def accept_clearing(
    store: IssuerStore, clearing: ClearingFile, acquirer_id: str, now_ms: int
) -> Accepted:
    """Check every record against the issuer's postings, then settle the file's net amount.

    Any record the issuer cannot find in effect for the same amount refuses the whole file:
    paying part of a file would leave both sides unable to say what was settled. A file
    already settled (its transfer exists) is accepted again as it was, checked and logged once.
    """
    header = clearing.header
    transfer_id = f"clearing:{header.business_day}:{header.link_id}"
    if store.ledger.transfer(transfer_id) is not None:
        return Accepted(header.link_id, len(clearing.records), clearing.net_minor, transfer_id)
    for record in clearing.records:
        problem = _record_problem(store, record, acquirer_id)
        if problem is not None:
            raise ClearingRefusedError(f"record {record.seq} (RRN {record.rrn}): {problem}")
    net = clearing.net_minor
    if net == 0:
        return Accepted(header.link_id, len(clearing.records), 0, None)
    ledger = Ledger(store.ledger)
    owed, paid = settlement_account_id(header.currency), paid_account_id(header.currency)
    for account_id, label in ((owed, "owed to the network"), (paid, "paid to the network")):
        if store.ledger.account(account_id) is None:
            ledger.open_account(AccountSpec(account_id, header.currency, None, label), now_ms)
    debit, credit = (owed, paid) if net > 0 else (paid, owed)
    spec = TransferSpec(
        transfer_id, debit, credit, abs(net), header.currency, reference=header.link_id
    )
    ledger.transfer(spec, now_ms)
    store.log_event(
        now_ms,
        "issuer.clearing_accepted",
        transfer_id,
        {"records": len(clearing.records), "net_minor": net},
    )
    return Accepted(header.link_id, len(clearing.records), net, transfer_id)


def _record_problem(store: IssuerStore, record: ClearingRecord, acquirer_id: str) -> str | None:
    found = [
        t
        for t in store.txns_by_acquirer_key(
            acquirer_id, record.terminal_id, record.merchant_id, record.issuer_stan
        )
        if t.transmitted == record.transmitted and t.kind is not TxnKind.REVERSAL
    ]
    if not found:
        return "no posting at the issuer"
    txn = found[0]
    if not txn.approved or txn.transfer_id is None:
        return f"the issuer declined it ({txn.response_code})"
    if txn.kind.value != record.kind:
        return f"the issuer has it as a {txn.kind.value}, the file as a {record.kind}"
    if txn.amount_minor != record.amount_minor:
        return f"amount differs: file {record.amount_minor}, issuer {txn.amount_minor}"
    if not standing(txn, store).in_effect:
        return "the issuer reversed it"
    return None


def refund_one_sided(
    store: IssuerStore, original_id: str, business_day: str, now_ms: int
) -> Refunded:
    """Give back what is still in effect of a debit that no successful sale stands behind."""
    record_id = f"dayend:{business_day}:refund:{original_id}"
    done = store.txn(record_id)
    if done is not None:
        notice_id = f"notice:{done.transfer_id}" if done.transfer_id else None
        return Refunded("refunded", done.amount_minor, record_id, notice_id, "already refunded")
    original = store.txn(original_id)
    if original is None or original.card_id is None:
        return Refunded("nothing", 0, record_id, None, "no such debit at the issuer")
    now = standing(original, store)
    remaining = original.amount_minor - now.refunded_minor
    if not now.in_effect or now.voided or remaining <= 0:
        return Refunded("nothing", 0, record_id, None, "nothing left in effect to refund")
    card = store.card(original.card_id)
    assert card is not None, f"card {original.card_id} of {original.id} is missing"
    spec = TransferSpec(
        record_id,
        settlement_account_id(card.currency),
        card.account_id,
        remaining,
        card.currency,
        reference=f"dayend refund {original.rrn}".strip(),
    )
    Ledger(store.ledger).transfer(spec, now_ms)
    store.record_txn(_refund_record(original, record_id, remaining, business_day, now_ms))
    notice = Notice(
        id=f"notice:{record_id}",
        at_ms=now_ms,
        kind=NoticeKind.REFUND,
        card_tail=card.tail,
        merchant_name=original.merchant_name,
        amount=Money(remaining, card.currency),
        available=Money(available_minor(store, card), card.currency),
        reference=original.rrn,
        reason=REFUND_REASON,
    )
    store.add_notice(notice)
    store.log_event(
        now_ms, "issuer.dayend_refund", record_id, {"original": original_id, "amount": remaining}
    )
    return Refunded("refunded", remaining, record_id, notice.id, "one-sided debit refunded")


def _refund_record(
    original: TxnRecord, record_id: str, amount_minor: int, business_day: str, now_ms: int
) -> TxnRecord:
    return TxnRecord(
        id=record_id,
        kind=TxnKind.REFUND,
        card_id=original.card_id,
        pan_masked=original.pan_masked,
        amount_minor=amount_minor,
        currency=original.currency,
        response_code="00",
        reason="day-end refund of a one-sided debit",
        rrn="",
        auth_code="",
        acquirer_id=original.acquirer_id,
        terminal_id=original.terminal_id,
        merchant_id=original.merchant_id,
        merchant_name=original.merchant_name,
        stan="",
        transmitted="",
        local_date=business_day.replace("-", ""),
        original_id=original.id,
        transfer_id=record_id,
        at_ms=now_ms,
    )
