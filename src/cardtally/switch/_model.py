"""What the switch knows: merchants, terminals, issuer links, and its transaction log."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cardtally.security import MacAlgorithm, WorkingKeys, kcv_hex

# Kinds are the wire's, the same as at the issuer; re-exported for the switch's modules.
from cardtally.wire import TxnKind


class SettlementCycle(enum.StrEnum):
    D0 = "d0"  # paid at the day end of the day of the sale
    T1 = "t1"  # paid the next business day


class TerminalStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class TxnState(enum.StrEnum):
    """Where a transaction is in the switch. ``FORWARDED`` is the only one waiting on an issuer.

    ``received -> forwarded -> approved | declined``; ``forwarded -> timed_out`` (answered 98,
    reversal queued) ``-> reversed``; ``approved -> reversal_pending -> reversed`` (the terminal
    or the switch asked to undo it); ``refused``: answered by the switch itself, never forwarded;
    ``reversal_refused``: the issuer acknowledged the reversal advice but declined to undo.
    """

    RECEIVED = "received"
    FORWARDED = "forwarded"
    APPROVED = "approved"
    DECLINED = "declined"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"
    REVERSAL_PENDING = "reversal_pending"
    REVERSED = "reversed"
    REVERSAL_REFUSED = "reversal_refused"


#: States in which the issuer may hold money for the transaction that nobody has undone.
MAYBE_IN_EFFECT: Final = frozenset({TxnState.FORWARDED, TxnState.APPROVED})
#: Kinds that move money and so can be reversed.
REVERSIBLE: Final = frozenset(
    {TxnKind.SALE, TxnKind.VOID, TxnKind.PREAUTH, TxnKind.COMPLETION, TxnKind.REFUND}
)


def rrn_of(txn_id: int) -> str:
    return f"{txn_id:012d}"


def txn_id_of(rrn: str) -> int | None:
    """The log row an RRN names, or ``None`` for text that is not one of ours."""
    return int(rrn) if len(rrn) == 12 and rrn.isdigit() and int(rrn) > 0 else None


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    mcc: str
    city: str
    fee_plan: str
    agent: str | None
    settlement_cycle: SettlementCycle
    settlement_account: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class TerminalKeys:
    """A terminal's master key and, after a sign-on, its working keys. Prints check values."""

    master_key: bytes
    working: WorkingKeys | None

    def __repr__(self) -> str:
        return f"TerminalKeys(master_kcv={kcv_hex(self.master_key)!r}, working={self.working!r})"


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str
    merchant_id: str
    mac_algorithm: MacAlgorithm
    mac_required: bool
    status: TerminalStatus
    batch_no: int
    master_key_kcv: str
    signed_on_at_ms: int | None
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class IssuerRoute:
    """An issuer link and the BIN prefixes routed to it."""

    link_id: str
    host: str
    port: int
    timeout_ms: int
    bins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Txn:
    """One terminal request the switch took on, and where it stands."""

    id: int
    request_key: str  # the terminal request's key in the request log
    kind: TxnKind
    state: TxnState
    terminal_id: str
    merchant_id: str
    batch_no: int
    stan: str
    local_date: str  # YYYYMMDD, switch business date (CST)
    pan_masked: str
    pan_fingerprint: str
    processing_code: str
    amount_minor: int
    currency: str
    link_id: str | None
    issuer_stan: str | None  # field 11 as forwarded: the switch's own trace number
    transmitted: str | None  # field 7 as forwarded, MMDDhhmmss (UTC)
    forwarded_mti: str | None
    forwarded_rrn: str | None  # field 37 as forwarded (the original's RRN on a void or refund)
    response_code: str | None
    auth_code: str | None
    echo_fields: dict[int, str]  # what the terminal's answer echoes (3, 4, 11, 41, 42, 49, 60)
    original_id: int | None
    received_at_ms: int
    updated_at_ms: int

    @property
    def rrn(self) -> str:
        """The retrieval reference number: the log's row id, 12 digits, unique for ever."""
        return rrn_of(self.id)

    @property
    def approved(self) -> bool:
        return self.response_code == "00"


@dataclass(frozen=True, slots=True)
class Advice:
    """A reversal advice in the store-and-forward queue. Acknowledged ones stay, for the record."""

    id: int
    txn_id: int
    link_id: str
    fields: dict[int, str]  # the 0420 without its PAN (read back from the txn when sent)
    attempts: int
    next_at_ms: int
    created_at_ms: int
    acked_at_ms: int | None
    ack_code: str | None


__all__ = [
    "MAYBE_IN_EFFECT",
    "REVERSIBLE",
    "Advice",
    "IssuerRoute",
    "Merchant",
    "SettlementCycle",
    "Terminal",
    "TerminalKeys",
    "TerminalStatus",
    "Txn",
    "TxnKind",
    "TxnState",
    "rrn_of",
    "txn_id_of",
]
