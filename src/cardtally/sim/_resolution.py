"""How each interrupted swipe ended: the figures behind the summary's "resolved" column.

An interruption is a money-moving transaction the terminal could not finish (no valid
answer, or the terminal died waiting). Where its money went is read from the parties'
committed state once the cycle is over.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

from cardtally.issuer._model import TxnKind as IssuerKind
from cardtally.issuer._model import TxnRecord
from cardtally.switch._model import TxnKind, rrn_of
from cardtally.terminal._model import MONEY_KINDS
from cardtally.terminal._model import TxnState as TerminalState

if TYPE_CHECKING:
    from cardtally.sim._invariants import Checker

NOTHING_CHARGED: Final = "nothing was charged"
AUTO_REVERSED: Final = "auto-reversed from the terminal"
SWITCH_REVERSED: Final = "reversed by the switch's store-and-forward"
DAYEND_REFUNDED: Final = "refunded at day end"
UNRESOLVED: Final = "unresolved"
RESOLUTIONS: Final = (NOTHING_CHARGED, AUTO_REVERSED, SWITCH_REVERSED, DAYEND_REFUNDED, UNRESOLVED)
_INTERRUPTED: Final = frozenset({TerminalState.FAILED})


def interruptions(checker: Checker) -> Counter[str]:
    by_rrn: dict[str, list[TxnRecord]] = {}
    for record in checker.issuer.all_txns():
        if record.rrn:
            by_rrn.setdefault(record.rrn, []).append(record)
    counts: Counter[str] = Counter()
    for terminal_id, journal in checker.journals.items():
        for txn in journal.all_txns():
            if txn.kind in MONEY_KINDS and txn.state in _INTERRUPTED:
                key = (terminal_id, txn.batch_no, f"{txn.stan:06d}")
                counts[_resolution(checker, by_rrn, key)] += 1
    return counts


def _resolution(
    checker: Checker, by_rrn: dict[str, list[TxnRecord]], key: tuple[str, int, str]
) -> str:
    switch_txn = checker.switch.txn_by_terminal_key(*key)
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
    followers = checker.issuer.followers(moved[0].id)
    if any(f.id.startswith("dayend:") for f in followers):
        return DAYEND_REFUNDED
    if any(f.kind is IssuerKind.REVERSAL and f.approved and f.transfer_id for f in followers):
        reversed_by_terminal = any(
            f.kind is TxnKind.REVERSAL for f in checker.switch.followers(switch_txn.id)
        )
        return AUTO_REVERSED if reversed_by_terminal else SWITCH_REVERSED
    return UNRESOLVED
