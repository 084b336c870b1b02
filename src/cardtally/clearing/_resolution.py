"""How each interrupted swipe ended, read from what the parties committed.

An interruption is a money-moving transaction that did not go through cleanly: the terminal
could not finish it (no valid answer, or the terminal died waiting), or the switch had to
answer for a late issuer (98) and queue a reversal. Where its money went is read from the
parties' records once the day is over: the terminal's journal, the switch's log and the
issuer's postings. The simulator reads its memory stores and ``cardtally demo`` reads the SQL
stores through the same few questions (:class:`IssuerRecords`, :class:`SwitchRecords`,
:class:`JournalRecords`), so the two count alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

from cardtally.issuer._model import TxnKind as IssuerKind
from cardtally.issuer._model import TxnRecord
from cardtally.switch._model import REVERSIBLE, Txn, TxnKind, TxnState, rrn_of
from cardtally.terminal._model import MONEY_KINDS, JournalTxn
from cardtally.terminal._model import TxnState as TerminalState

NOTHING_CHARGED: Final = "nothing was charged"
AUTO_REVERSED: Final = "auto-reversed from the terminal"
SWITCH_REVERSED: Final = "reversed by the switch's store-and-forward"
DAYEND_REFUNDED: Final = "refunded at day end"
UNRESOLVED: Final = "unresolved"
RESOLUTIONS: Final = (NOTHING_CHARGED, AUTO_REVERSED, SWITCH_REVERSED, DAYEND_REFUNDED, UNRESOLVED)
_INTERRUPTED: Final = frozenset({TerminalState.FAILED})
#: Switch states that mean the issuer's answer did not come back in time, or was undone.
SWITCH_INTERRUPTED: Final = frozenset(
    {TxnState.TIMED_OUT, TxnState.REVERSAL_PENDING, TxnState.REVERSED, TxnState.REVERSAL_REFUSED}
)


class IssuerRecords(Protocol):
    def all_txns(self) -> list[TxnRecord]: ...

    def followers(self, original_id: str) -> list[TxnRecord]: ...


class SwitchRecords(Protocol):
    def txn_by_terminal_key(self, terminal_id: str, batch_no: int, stan: str) -> Txn | None: ...

    def followers(self, original_id: int) -> list[Txn]: ...

    def txns_in_state(self, states: Iterable[TxnState]) -> list[Txn]: ...


class JournalRecords(Protocol):
    def all_txns(self) -> list[JournalTxn]: ...


def is_interrupted(txn: JournalTxn) -> bool:
    """A money-moving transaction the terminal could not finish."""
    return txn.kind in MONEY_KINDS and txn.state in _INTERRUPTED


def interruptions(
    issuer: IssuerRecords, switch: SwitchRecords, journals: Mapping[str, JournalRecords]
) -> Counter[str]:
    """How many interruptions ended each way (keys from :data:`RESOLUTIONS`)."""
    by_rrn: dict[str, list[TxnRecord]] = {}
    for record in issuer.all_txns():
        if record.rrn:
            by_rrn.setdefault(record.rrn, []).append(record)
    counts: Counter[str] = Counter()
    for key in sorted(interrupted_keys(switch, journals)):
        counts[_resolution(issuer, switch, by_rrn, key)] += 1
    return counts


def interrupted_keys(
    switch: SwitchRecords, journals: Mapping[str, JournalRecords]
) -> set[tuple[str, int, str]]:
    """(terminal, batch, STAN) of every interruption, seen from the terminal or the switch."""
    keys = {
        (terminal_id, txn.batch_no, f"{txn.stan:06d}")
        for terminal_id, journal in journals.items()
        for txn in journal.all_txns()
        if is_interrupted(txn)
    }
    for txn in switch.txns_in_state(SWITCH_INTERRUPTED):
        if txn.kind in REVERSIBLE:
            keys.add((txn.terminal_id, txn.batch_no, txn.stan))
    return keys


def _resolution(
    issuer: IssuerRecords,
    switch: SwitchRecords,
    by_rrn: dict[str, list[TxnRecord]],
    key: tuple[str, int, str],
) -> str:
    switch_txn = switch.txn_by_terminal_key(*key)
    if switch_txn is None or switch_txn.kind is TxnKind.REVERSAL:
        return NOTHING_CHARGED
    rrn = rrn_of(switch_txn.id)
    moved = [
        t
        for t in by_rrn.get(rrn, ())
        if t.approved and t.transfer_id is not None and t.kind is not IssuerKind.REVERSAL
    ]
    if not moved:
        return NOTHING_CHARGED
    followers = issuer.followers(moved[0].id)
    if any(f.id.startswith("dayend:") for f in followers):
        return DAYEND_REFUNDED
    if any(f.kind is IssuerKind.REVERSAL and f.approved and f.transfer_id for f in followers):
        reversed_by_terminal = any(
            f.kind is TxnKind.REVERSAL for f in switch.followers(switch_txn.id)
        )
        return AUTO_REVERSED if reversed_by_terminal else SWITCH_REVERSED
    return UNRESOLVED
