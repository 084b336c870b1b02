"""What a terminal's journal holds, as plain values the core and the slips read."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cardtally.security import MacAlgorithm, WorkingKeys
from cardtally.wire import CREDIT_KINDS, BatchTotals, Pan, TxnKind

#: Kinds that move (or hold) money: each is sent only with a reversal record written first.
MONEY_KINDS: Final = frozenset(
    {TxnKind.SALE, TxnKind.VOID, TxnKind.REFUND, TxnKind.PREAUTH, TxnKind.COMPLETION}
)

#: Kinds that appear on the detail list and in the batch totals when approved.
LISTED_KINDS: Final = MONEY_KINDS

#: How many sends a pending reversal gets in one exchange before it is flagged.
REVERSAL_TRIES_MAX: Final = 3

#: STAN cycles 000001-999999 (n6); 0 is never used.
STAN_MAX: Final = 999_999


class TxnState(enum.StrEnum):
    """Where a journalled transaction stands."""

    SENDING = "sending"  # written, sent or about to be; no valid answer yet
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"  # no valid answer: for a money-moving kind a reversal is pending
    NO_ANSWER = "no_answer"  # no valid answer to a request that moves no money


class Protection(enum.StrEnum):
    OFF = "off"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class Profile:
    """Who the terminal is, its keys, and its counters."""

    terminal_id: str
    merchant_id: str
    merchant_name: str
    operator: str
    currency: str
    mac_algorithm: MacAlgorithm
    master_key: bytes
    keys: WorkingKeys | None
    batch_no: int
    stan: int  # the last STAN used
    signed_on_at_ms: int | None

    def __repr__(self) -> str:
        return f"Profile({self.terminal_id}, merchant {self.merchant_id}, batch {self.batch_no})"


@dataclass(frozen=True, slots=True)
class JournalTxn:
    """One transaction of the journal with its full outcome.

    ``request`` holds the request's fields as sent, without the card number, track,
    PIN block and MAC (the card number is ``pan``; the rest is never kept).
    """

    id: int
    batch_no: int
    stan: int
    kind: TxnKind
    state: TxnState
    amount_minor: int | None
    currency: str
    pan: Pan
    expiry: str | None
    entry_mode: str
    request: dict[int, str]
    started_at_ms: int
    response_code: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    host_at: str | None = None  # "YYYY/MM/DD HH:MM:SS" local, from the answer's 13 and 12
    balance_minor: int | None = None
    original_stan: int | None = None  # void: the sale; completion: the pre-authorisation
    original_batch: int | None = None
    original_rrn: str | None = None  # refund: the sale at any terminal of the merchant
    voided: bool = False
    completed: bool = False
    uploaded: bool = False
    printed: int = 0  # how many receipts went to the printer (reprints included)

    @property
    def approved(self) -> bool:
        return self.state is TxnState.APPROVED

    @property
    def is_credit(self) -> bool:
        return self.kind in CREDIT_KINDS

    @property
    def voucher(self) -> str:
        return f"{self.stan:06d}"


@dataclass(frozen=True, slots=True)
class PendingReversal:
    """The one reversal the terminal owes the host (or a cleared one, kept for the record)."""

    id: int
    txn_id: int
    batch_no: int
    stan: int
    reason: str  # 98 no answer, A0 MAC failed, 06 anything else
    sends: int  # sends so far, over all exchanges
    flagged: bool  # a whole exchange's tries failed: settlement reports it
    created_at_ms: int
    cleared_at_ms: int | None = None
    cleared_code: str | None = None


def batch_totals(txns: Iterable[JournalTxn]) -> BatchTotals:
    """The batch's settlement totals, counted as the switch counts them (wire.BatchTotals)."""
    return BatchTotals.of((t.kind, t.amount_minor or 0) for t in txns if t.approved)


class BatchState(enum.StrEnum):
    OPEN = "open"
    SETTLING = "settling"  # 0500 sent: no new transactions until the batch is closed
    SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class Batch:
    batch_no: int
    state: BatchState
    opened_at_ms: int
    result: str | None = None  # balanced / not_balanced, from the 0510
    totals_field48: str | None = None  # what the terminal sent
    uploaded: int = 0
    settled_at_ms: int | None = None
    host_at: str | None = None


@dataclass(frozen=True, slots=True)
class ProtectionState:
    mode: Protection
    reason: str | None = None
    since_ms: int | None = None
    admin_failures: int = 0

    @property
    def locked(self) -> bool:
        return self.mode is Protection.LOCKED


@dataclass(frozen=True, slots=True)
class SlipHeader:
    """What every slip prints at the top."""

    merchant_name: str
    merchant_id: str
    terminal_id: str
    operator: str
    currency: str
