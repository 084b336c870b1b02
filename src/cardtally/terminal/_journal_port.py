"""What the terminal core needs of a journal: the SQLite file, or the simulator's memory.

The core's safety rests on three promises every journal keeps, whatever it is made of:

- each method that changes something is one commit: all of it is kept, or none;
- a method that only reads changes nothing (not even a counter);
- at most one reversal is pending: writing a second one is refused, not queued.

:class:`~cardtally.terminal._journal.Journal` keeps them with one SQLite transaction per
method and a unique index; ``cardtally.sim.MemoryJournal`` with an undo log. The members
here are exactly those the core calls; reading the event log, opening and closing belong
to each journal's own API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cardtally.security import WorkingKeys
from cardtally.terminal._model import (
    Batch,
    JournalTxn,
    PendingReversal,
    Profile,
    ProtectionState,
)
from cardtally.wire import Message, Pan, TxnKind


class JournalPort(Protocol):
    """A terminal's journal as :class:`~cardtally.terminal.TerminalCore` uses it."""

    # -- profile, keys, counters
    def profile(self) -> Profile: ...

    def password_hashes(self) -> tuple[str, str]: ...

    def take_stan(self, now_ms: int, what: str) -> int: ...

    def signed_on(self, keys: WorkingKeys, host_batch: int, now_ms: int) -> int: ...

    def log_event(self, at_ms: int, kind: str, detail: dict[str, Any]) -> None: ...

    # -- protection
    def protection(self) -> ProtectionState: ...

    def set_protection(self, state: ProtectionState, now_ms: int) -> None: ...

    # -- transactions
    def begin(
        self,
        kind: TxnKind,
        build: Callable[[int, int], Message],
        pan: Pan,
        now_ms: int,
        *,
        original_stan: int | None = None,
        original_batch: int | None = None,
        original_rrn: str | None = None,
    ) -> tuple[JournalTxn, Message]: ...

    def finish(
        self,
        txn_id: int,
        answer: Message,
        now_ms: int,
        *,
        host_at: str,
        balance_minor: int | None = None,
    ) -> JournalTxn: ...

    def fail(self, txn_id: int, reason: str, now_ms: int, why: str) -> JournalTxn: ...

    def recover(self, now_ms: int) -> list[JournalTxn]: ...

    def mark_printed(self, txn_id: int) -> JournalTxn: ...

    def txn(self, txn_id: int) -> JournalTxn: ...

    def txn_by_voucher(self, batch_no: int, stan: int) -> JournalTxn | None: ...

    def txns(self, batch_no: int) -> list[JournalTxn]: ...

    def last_receipted(self) -> JournalTxn | None: ...

    # -- the pending reversal
    def pending_reversal(self) -> PendingReversal | None: ...

    def reversal_sent(self, reversal_id: int, now_ms: int) -> PendingReversal: ...

    def reversal_cleared(self, reversal_id: int, code: str, now_ms: int) -> None: ...

    def reversal_flagged(self, reversal_id: int, now_ms: int) -> None: ...

    # -- batches and settlement
    def batch(self, batch_no: int) -> Batch: ...

    def settling(self, batch_no: int, field48: str, now_ms: int) -> None: ...

    def settlement_result(self, batch_no: int, result: str, host48: str, host_at: str) -> None: ...

    def uploaded(self, txn_id: int, batch_no: int) -> None: ...

    def close_batch(self, batch_no: int, now_ms: int) -> int: ...


if TYPE_CHECKING:
    from cardtally.terminal._journal import Journal

    # The SQLite journal is checked here, so a change to either side fails mypy at once.
    _SQLITE_JOURNAL: type[JournalPort] = Journal
