"""The slips a POS terminal prints, as plain text 40 columns wide.

A transaction is successful only when the terminal prints its receipt, so the slip is the
evidence every later question is settled with: the cardholder's proof of a charge, the
merchant's proof of payment in a retrieval request (调单), and what a hotline operator asks
for (merchant number, terminal number, masked card number, voucher and reference numbers,
date and time). The layout follows a China UnionPay sales slip (签购单) in English: the
merchant copy carries the cardholder's signature and acknowledgement, the cardholder copy does
not, and a reprint differs from the original only by its REPRINT mark. The card number is
never printed in clear; amounts are :class:`Money`, credits printed negative.

The detail list (明细) is what the cashier checks a doubtful sale against: a sale missing from
it failed. The settlement slip says whether the host agreed with the terminal's totals, and
never lets a reversal the host has not yet acknowledged go unnoticed.

Every function is pure: values in, text out, every line at most :data:`WIDTH` columns.
"""

from __future__ import annotations

import enum
import textwrap
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from cardtally.money import Money
from cardtally.terminal._model import (
    LISTED_KINDS,
    Batch,
    JournalTxn,
    PendingReversal,
    SlipHeader,
    TxnState,
    batch_totals,
)
from cardtally.wire import BatchTotals, TxnKind, describe

#: Columns of a thermal POS printer in its normal font.
WIDTH: Final = 40
RULE: Final = "-" * WIDTH
REPRINT_MARK: Final = "*** REPRINT ***"
SIGNATURE_STATEMENT: Final = "I ACKNOWLEDGE SATISFACTORY RECEIPT OF RELATIVE GOODS/SERVICES"

TXN_TYPE_NAMES: Final[dict[TxnKind, str]] = {
    TxnKind.SALE: "SALE",
    TxnKind.BALANCE: "BALANCE INQUIRY",
    TxnKind.VOID: "VOID",
    TxnKind.REFUND: "REFUND",
    TxnKind.PREAUTH: "PRE-AUTH",
    TxnKind.COMPLETION: "PRE-AUTH COMPLETION",
}

#: At most 8 columns each: the type column of the detail list.
_SHORT_NAMES: Final[dict[TxnKind, str]] = {
    TxnKind.SALE: "SALE",
    TxnKind.BALANCE: "BALANCE",
    TxnKind.VOID: "VOID",
    TxnKind.REFUND: "REFUND",
    TxnKind.PREAUTH: "PREAUTH",
    TxnKind.COMPLETION: "COMPLETE",
}

#: Field 22, positions 1-2 (PAN entry mode); position 3 is the PIN entry capability.
_ENTRY_MODES: Final[dict[str, str]] = {
    "01": "MANUAL",
    "02": "SWIPED",
    "05": "CHIP",
    "07": "CONTACTLESS",
}


class Copy(enum.StrEnum):
    """Which of the two printed copies: the merchant keeps the signed one."""

    MERCHANT = "merchant"
    CARDHOLDER = "cardholder"


def entry_mode_name(entry_mode: str) -> str:
    """How the card was read, from field 22 (e.g. ``"021"`` swiped, PIN entered)."""
    name = _ENTRY_MODES.get(entry_mode[:2])
    if name is None or len(entry_mode) != 3 or not entry_mode.isdigit():
        return f"ENTRY {entry_mode}"
    return name


def receipt(header: SlipHeader, txn: JournalTxn, copy: Copy, *, reprint: bool = False) -> str:
    """The sales slip of an approved transaction; a reprint differs only by its mark."""
    if not txn.approved:
        raise ValueError(
            f"voucher {txn.voucher} is {txn.state}: only an approved transaction has a receipt"
        )
    lines = [_center("POS SALES SLIP")]
    if reprint:
        lines.append(_center(REPRINT_MARK))
    lines += [_center(f"{copy.value.upper()} COPY"), RULE, *_merchant_lines(header), RULE]
    lines += [*_card_lines(txn), *_reference_lines(txn), *_original_lines(txn), RULE]
    lines += [*_amount_lines(txn), RULE]
    if copy is Copy.MERCHANT:
        lines += _signature_lines()
    return _render(lines)


def decline_slip(header: SlipHeader, txn: JournalTxn) -> str:
    """What the terminal prints for a declined transaction: no receipt, no money moved."""
    code = txn.response_code
    if txn.state is not TxnState.DECLINED or code is None:
        raise ValueError(f"voucher {txn.voucher} is {txn.state}, not declined with a code")
    lines = [_center("TRANSACTION DECLINED"), RULE, *_merchant_lines(header), RULE]
    lines += [*_card_lines(txn), *_field("VOUCHER NO", txn.voucher)]
    if txn.host_at:
        lines += _field("DATE/TIME", txn.host_at)
    lines += [*_amount_lines(txn), RULE, *_field("RESPONSE CODE", code)]
    lines += _wrap(describe(code).meaning.upper())
    lines += [RULE, *(_center(text) for text in _not_charged(txn.kind))]
    return _render(lines)


def detail_list(
    header: SlipHeader, batch_no: int, txns: Sequence[JournalTxn], printed_at: str
) -> str:
    """The batch's approved money transactions by voucher, with the batch totals."""
    listed = sorted(
        (t for t in txns if t.approved and t.kind in LISTED_KINDS), key=lambda t: (t.stan, t.id)
    )
    lines = [_center("TRANSACTION DETAIL LIST"), RULE, *_merchant_lines(header)]
    lines += [*_field("BATCH NO", f"{batch_no:06d}"), *_field("PRINTED", printed_at), RULE]
    if listed:
        lines += ["VOUCHER TYPE     CARD NO", "AMOUNT".rjust(WIDTH), RULE]
        for txn in listed:
            lines += _detail_row(txn)
    else:
        lines.append(_center("NO TRANSACTIONS"))
    lines += [RULE, *_totals_lines(batch_totals(txns), header.currency)]
    return _render(lines)


def settlement_slip(
    header: SlipHeader,
    batch: Batch,
    totals: BatchTotals,
    *,
    uploaded: int,
    pending: PendingReversal | None,
    printed_at: str,
) -> str:
    """The batch's closing slip: agreed or not, our totals (the 0510 echoes them), any
    reversal still owed."""
    lines = [_center("SETTLEMENT"), RULE, *_merchant_lines(header)]
    lines += [*_field("BATCH NO", f"{batch.batch_no:06d}"), *_field("DATE/TIME", printed_at)]
    lines += [RULE, *_settlement_state(batch, uploaded), RULE, "TERMINAL TOTALS"]
    lines += _totals_lines(totals, header.currency)
    if pending is not None and pending.cleared_at_ms is None:
        lines += _pending_lines(pending)
    lines += [RULE, _center(f"BATCH {batch.batch_no:06d} CLOSED")]
    return _render(lines)


# --- slip sections -------------------------------------------------------------------------


def _merchant_lines(header: SlipHeader) -> list[str]:
    lines = [*_field("MERCHANT NAME", header.merchant_name)]
    lines += _field("MERCHANT NO", header.merchant_id)
    lines += _pair(f"TERMINAL NO: {header.terminal_id}", f"OPERATOR: {header.operator}")
    return lines


def _card_lines(txn: JournalTxn) -> list[str]:
    lines = _field("CARD NO", f"{txn.pan.masked} {entry_mode_name(txn.entry_mode)}")
    if txn.expiry:
        lines += _field("EXP DATE", _expiry(txn.expiry))
    return lines + _field("TXN TYPE", _type_name(txn.kind))


def _reference_lines(txn: JournalTxn) -> list[str]:
    return [
        *_pair(f"BATCH NO: {txn.batch_no:06d}", f"VOUCHER NO: {txn.voucher}"),
        *_pair(f"REF NO: {txn.rrn or ''}", f"AUTH NO: {txn.auth_code or ''}"),
        *_field("DATE/TIME", txn.host_at or ""),
    ]


def _original_lines(txn: JournalTxn) -> list[str]:
    if txn.kind in (TxnKind.VOID, TxnKind.COMPLETION):
        original = "" if txn.original_stan is None else f"{txn.original_stan:06d}"
        return _field("ORIG VOUCHER", original)
    if txn.kind is TxnKind.REFUND:
        return _field("ORIG REF NO", txn.original_rrn or "")
    return []


def _amount_lines(txn: JournalTxn) -> list[str]:
    amount = _signed_amount(txn)
    return [] if amount is None else _field("AMOUNT", str(amount))


def _signature_lines() -> list[str]:
    return ["CARDHOLDER SIGNATURE", "", "", "_" * WIDTH, *_wrap(SIGNATURE_STATEMENT)]


def _not_charged(kind: TxnKind) -> tuple[str, ...]:
    if kind in (TxnKind.VOID, TxnKind.REFUND):
        return ("NOTHING REFUNDED", "THIS IS NOT A RECEIPT")
    if kind is TxnKind.BALANCE:
        return ("THIS IS NOT A RECEIPT",)
    return ("CARD NOT CHARGED - NO MONEY TAKEN", "THIS IS NOT A RECEIPT")


def _detail_row(txn: JournalTxn) -> list[str]:
    marks = []
    if txn.voided:
        marks.append("VOIDED")
    if txn.kind is TxnKind.PREAUTH:
        marks.append("HOLD, NOT IN TOTALS")
    amount = _signed_amount(txn)
    first = f"{txn.voucher} {_SHORT_NAMES.get(txn.kind, txn.kind.upper()):<8} {txn.pan.masked}"
    return [_cut(first), *_pair("  " + "; ".join(marks), "" if amount is None else str(amount))]


def _totals_lines(totals: BatchTotals, currency: str) -> list[str]:
    net = Money(totals.debit_minor - totals.credit_minor, currency)
    return [
        *_pair(f"DEBITS  {totals.debit_count:>4}", str(Money(totals.debit_minor, currency))),
        *_pair(f"CREDITS {totals.credit_count:>4}", str(Money(-totals.credit_minor, currency))),
        *_pair("NET", str(net)),
    ]


def _settlement_state(batch: Batch, uploaded: int) -> list[str]:
    if batch.result == "balanced":
        return [_center("BALANCED")]
    return [_center("NOT BALANCED -"), _center(f"BATCH UPLOADED ({uploaded} RECORDS)")]


def _pending_lines(pending: PendingReversal) -> list[str]:
    lines = ["*" * WIDTH, _center("*** REVERSAL PENDING ***")]
    lines += _wrap("HOST HAS NOT CONFIRMED THIS REVERSAL")
    lines += _pair(f"VOUCHER NO: {pending.stan:06d}", f"BATCH NO: {pending.batch_no:06d}")
    lines += _field("REASON", f"{pending.reason} {describe(pending.reason).meaning.upper()}")
    lines += _field("SENDS", str(pending.sends))
    if pending.flagged:
        lines.append("FLAGGED: CONTACT ACQUIRER")
    return [*lines, "*" * WIDTH]


# --- values --------------------------------------------------------------------------------


def _signed_amount(txn: JournalTxn) -> Money | None:
    """The amount as the slip shows it: money back to the cardholder is negative."""
    if txn.amount_minor is None:
        return None
    minor = -txn.amount_minor if txn.is_credit else txn.amount_minor
    return Money(minor, txn.currency)


def _type_name(kind: TxnKind) -> str:
    return TXN_TYPE_NAMES.get(kind, kind.upper())


def _expiry(yymm: str) -> str:
    """Field 14 is YYMM; slips print YY/MM."""
    if len(yymm) == 4 and yymm.isdigit():
        return f"{yymm[:2]}/{yymm[2:]}"
    return yymm


# --- layout --------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _char_columns(ch: str) -> int:
    """Printed width of one character: CJK (wide and fullwidth) ones take two columns."""
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _columns(text: str) -> int:
    """Printed width: CJK (wide and fullwidth) characters take two columns."""
    # Every slip is laid out line by line and most lines are plain ASCII, where no
    # character is wide: the width is the length, without a per-character lookup.
    if text.isascii():
        return len(text)
    return sum(map(_char_columns, text))


def _cut(text: str, width: int = WIDTH) -> str:
    """``text`` cut to at most ``width`` printed columns."""
    if text.isascii():
        return text[: max(width, 0)]
    used = 0
    for i, ch in enumerate(text):
        used += _char_columns(ch)
        if used > width:
            return text[:i]
    return text


def _center(text: str) -> str:
    text = _cut(text)
    return " " * ((WIDTH - _columns(text)) // 2) + text


def _field(label: str, value: str) -> list[str]:
    """``LABEL: value`` on one line, or the value on its own line (cut) when too long."""
    line = f"{label}: {value}" if value else f"{label}:"
    if _columns(line) <= WIDTH:
        return [line]
    return [_cut(f"{label}:"), _cut(value)]


def _pair(left: str, right: str) -> list[str]:
    """``left`` and ``right`` on one line, right flush, or on two lines when they do not fit."""
    gap = WIDTH - _columns(left) - _columns(right)
    if gap >= 1:
        return [(left + " " * gap + right).rstrip()]
    right = _cut(right)
    return [_cut(left).rstrip(), " " * (WIDTH - _columns(right)) + right]


def _wrap(text: str) -> list[str]:
    return list(_wrapped(text))


@lru_cache(maxsize=256)
def _wrapped(text: str) -> tuple[str, ...]:
    # Wrapped texts come from a small fixed set (the signature statement, response code
    # meanings, notices), so each is wrapped once; a tuple so no caller can change it.
    return tuple(_cut(line) for line in textwrap.wrap(text, WIDTH))


def _render(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines) + "\n"
