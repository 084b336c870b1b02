"""Batch settlement totals as field 48 carries them (wire profile 5.4), counted one way.

The terminal sends them in its 0500 and the switch counts its own to compare: both must
count the same transactions the same way, so the rule lives here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cardtally.wire._kinds import CREDIT_KINDS, DEBIT_KINDS, TxnKind

#: Digits of the totals in field 48, before the result digit.
TOTALS_DIGITS: Final = 30


@dataclass(frozen=True, slots=True)
class BatchTotals:
    """Debits (sales, completions) and credits (voids, refunds): count and sum of each."""

    debit_minor: int = 0
    debit_count: int = 0
    credit_minor: int = 0
    credit_count: int = 0

    @classmethod
    def of(cls, approved: Iterable[tuple[TxnKind, int]]) -> BatchTotals:
        """Totals of approved transactions given as (kind, amount); a voided sale still
        counts as a debit, its void as a credit; other kinds (holds, inquiries) not at all."""
        items = list(approved)
        debits = [amount for kind, amount in items if kind in DEBIT_KINDS]
        credits = [amount for kind, amount in items if kind in CREDIT_KINDS]
        return cls(sum(debits), len(debits), sum(credits), len(credits))

    def field48(self, result: str = "0") -> str:
        """The 30 digits of totals and the result digit (0 in a request)."""
        return (
            f"{self.debit_minor:012d}{self.debit_count:03d}"
            f"{self.credit_minor:012d}{self.credit_count:03d}{result}"
        )
