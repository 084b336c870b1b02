"""What the cashier or the administrator asks the terminal to do, and what it answers.

Commands and outcomes are frozen values: the CLI builds a command from its options,
the core turns it into messages and journal changes, and the outcome carries the
screen text and the slips to print. The simulator builds the same commands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from cardtally.terminal._model import JournalTxn
from cardtally.terminal._requests import Card


@dataclass(frozen=True, slots=True)
class SignOn:
    pass


@dataclass(frozen=True, slots=True)
class Sale:
    card: Card
    amount_minor: int
    paper_out: bool = False  # the printer has no paper: the receipt waits for a reprint


@dataclass(frozen=True, slots=True)
class Balance:
    card: Card


@dataclass(frozen=True, slots=True)
class Void:
    voucher: int
    admin_password: str
    card: Card | None = None  # when given, it must be the sale's card
    paper_out: bool = False


@dataclass(frozen=True, slots=True)
class Refund:
    card: Card
    original_rrn: str
    amount_minor: int
    admin_password: str
    paper_out: bool = False


@dataclass(frozen=True, slots=True)
class PreAuth:
    card: Card
    amount_minor: int
    paper_out: bool = False


@dataclass(frozen=True, slots=True)
class Complete:
    voucher: int  # the pre-authorisation's voucher
    batch_no: int | None = None  # its batch; the current one by default
    amount_minor: int | None = None  # up to the hold; the hold by default
    paper_out: bool = False


@dataclass(frozen=True, slots=True)
class Settle:
    admin_password: str


@dataclass(frozen=True, slots=True)
class Reprint:
    voucher: int | None = None  # None: the last receipt


@dataclass(frozen=True, slots=True)
class Detail:
    batch_no: int | None = None


@dataclass(frozen=True, slots=True)
class Tamper:
    pass


@dataclass(frozen=True, slots=True)
class Unlock:
    password: str


Command = (
    SignOn
    | Sale
    | Balance
    | Void
    | Refund
    | PreAuth
    | Complete
    | Settle
    | Reprint
    | Detail
    | Tamper
    | Unlock
)


class Status(enum.StrEnum):
    """How a command ended; the CLI maps each to its exit code."""

    APPROVED = "approved"  # the host approved; a receipt exists
    DECLINED = "declined"  # the host declined; a decline slip, nothing charged
    REVERSAL_PENDING = "failed_reversal_pending"  # no valid answer to a money-moving request
    NO_ANSWER = "no_answer"  # no valid answer to a request that moves no money
    REFUSED = "refused"  # the terminal itself refused (locked, not signed on, bad voucher...)
    DONE = "done"  # a local job finished (reprint, detail list, tamper, unlock)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    screen: tuple[str, ...]
    printout: tuple[str, ...] = ()
    txn: JournalTxn | None = None
    code: str | None = None
    auto_reversal: str | None = None  # "successful" / "unsuccessful" when one was tried
    data: dict[str, Any] = field(default_factory=dict)
