"""The demo's tally, read from the parties' databases after the day end.

Nothing here trusts what the demo counted while it ran: swipes and outcomes come from the
terminals' journals, interruptions and where their money went from the journals, the switch's
log and the issuer's postings (:mod:`cardtally.clearing._resolution`, the same reading the
simulator does), refunds from the day end's record, notices from the issuer's outbox, and the
settlement from the day-end statements. Then the promise is checked, one invariant per line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from cardtally.clearing._dayend import Dayend
from cardtally.clearing._fees import Statement
from cardtally.clearing._report import DayReport
from cardtally.clearing._resolution import (
    AUTO_REVERSED,
    DAYEND_REFUNDED,
    SWITCH_REVERSED,
    UNRESOLVED,
    interruptions,
)
from cardtally.clearing._schema import action_table, item_table
from cardtally.clearing._tables import EXCEPTIONS, ReconClass
from cardtally.issuer import OWED_SUFFIX
from cardtally.issuer._schema import txn_table as issuer_txns
from cardtally.issuer._store import SqlIssuerStore
from cardtally.ledger import Transfer
from cardtally.notices._schema import notice_delivery_table, notice_table
from cardtally.security import DataKeys
from cardtally.storage import transaction
from cardtally.switch._registry import queue_status
from cardtally.switch._store import SqlSwitchStore
from cardtally.terminal import Journal, JournalTxn, TxnState, installed_terminals
from cardtally.wire import DEBIT_KINDS, RESPONSE_CODES, TxnKind
from cardtally.wire._codes import APPROVED


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant of the promise: held or not, and what was seen."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Tally:
    day: str
    swipes: int
    approved: int
    declined: tuple[tuple[str, str, int], ...]  # code, meaning, count
    no_answer: int  # inquiries that got no answer (no money involved)
    interrupted: int
    resolutions: tuple[tuple[str, int], ...]
    dayend_refunds: int
    dayend_refunded_minor: int
    notices: int
    notices_delivered: int
    statements: tuple[Statement, ...]
    checks: tuple[Check, ...]  # the promise: any failure fails the demo
    exceptions: Check  # what the day end left for operations: reported, not the promise

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def resolved(self, resolution: str) -> int:
        return dict(self.resolutions).get(resolution, 0)

    @property
    def auto_reversed(self) -> int:
        return self.resolved(AUTO_REVERSED)

    @property
    def switch_reversed(self) -> int:
        return self.resolved(SWITCH_REVERSED)

    @property
    def refunded_at_dayend(self) -> int:
        return self.resolved(DAYEND_REFUNDED)

    @property
    def unresolved(self) -> int:
        return self.resolved(UNRESOLVED)


def read_tally(dayend: Dayend, data_keys: DataKeys, report: DayReport, now_ms: int) -> Tally:
    """The day's tally and the promise's checks, from the databases of ``dayend``'s home."""
    journals = _read_journals(dayend.config.home, data_keys)
    all_txns = [txn for journal in journals.values() for txn in journal.txns]
    with transaction(dayend.switch) as sconn, transaction(dayend.issuer) as iconn:
        resolutions = interruptions(
            SqlIssuerStore(iconn), SqlSwitchStore(sconn, data_keys), journals
        )
        refunds, refunded = _dayend_refunds(sconn, report.business_day)
        notices, delivered = notice_counts(iconn)
        checks = (
            _unresolved(resolutions),
            *_ledgers(report),
            _queue_drained(sconn, now_ms),
            _terminals_clear(journals),
            _no_double_debit(iconn),
            _receipts_settled(sconn, report.business_day, all_txns),
            _notices_delivered(notices, delivered),
        )
        exceptions = _no_exceptions(sconn, iconn, report.business_day)
    return Tally(
        day=report.business_day,
        swipes=len(all_txns),
        approved=sum(t.state is TxnState.APPROVED for t in all_txns),
        declined=_declines(all_txns),
        no_answer=sum(t.state is TxnState.NO_ANSWER for t in all_txns),
        interrupted=sum(resolutions.values()),
        resolutions=tuple(sorted(resolutions.items())),
        dayend_refunds=refunds,
        dayend_refunded_minor=refunded,
        notices=notices,
        notices_delivered=delivered,
        statements=tuple(statement for statement, _, _ in report.statements),
        checks=checks,
        exceptions=exceptions,
    )


@dataclass(frozen=True, slots=True)
class _JournalRead:
    """What one terminal's journal holds, read once for every figure and check."""

    txns: list[JournalTxn]
    reversal_pending: bool
    batch_open_with_txns: bool

    def all_txns(self) -> list[JournalTxn]:  # the resolution's JournalRecords
        return self.txns


def _read_journals(home: Path, data_keys: DataKeys) -> dict[str, _JournalRead]:
    found = {}
    for terminal_id in installed_terminals(home):
        journal = Journal.open(home, terminal_id, data_keys)
        try:
            found[terminal_id] = _JournalRead(
                journal.all_txns(),
                journal.pending_reversal() is not None,
                bool(journal.txns(journal.profile().batch_no)),
            )
        finally:
            journal.close()
    return found


def _declines(txns: list[JournalTxn]) -> tuple[tuple[str, str, int], ...]:
    codes = Counter(t.response_code or "??" for t in txns if t.state is TxnState.DECLINED)
    return tuple(
        (code, RESPONSE_CODES[code].meaning if code in RESPONSE_CODES else "unknown code", n)
        for code, n in sorted(codes.items(), key=lambda item: (-item[1], item[0]))
    )


def _dayend_refunds(conn: sa.Connection, day: str) -> tuple[int, int]:
    row = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(action_table.c.amount_minor), 0))
        .select_from(action_table)
        .where(action_table.c.day == day, action_table.c.kind == "refund")
    ).one()
    return int(row[0]), int(row[1])


def notice_counts(conn: sa.Connection) -> tuple[int, int]:
    """(notices written, notices delivered to at least one sink) in the issuer's outbox."""
    written = conn.execute(sa.select(sa.func.count()).select_from(notice_table)).scalar_one()
    delivered = conn.execute(
        sa.select(sa.func.count(sa.distinct(notice_delivery_table.c.notice_id)))
    ).scalar_one()
    return int(written), int(delivered)


# -- the checks ------------------------------------------------------------------------------


def _unresolved(resolutions: Counter[str]) -> Check:
    left = resolutions.get(UNRESOLVED, 0)
    detail = "every interrupted swipe is charged nothing, reversed or refunded"
    if left:
        detail = f"{left} interrupted swipe(s) still hold the cardholder's money"
    return Check("no interrupted swipe left unresolved", left == 0, detail)


def _ledgers(report: DayReport) -> tuple[Check, ...]:
    return tuple(
        Check(f"{name} balanced", balanced, detail)
        for name, balanced, detail in report.ledger_checks
    )


def _queue_drained(conn: sa.Connection, now_ms: int) -> Check:
    status = queue_status(conn, now_ms)
    return Check(
        "store-and-forward queue drained",
        status.depth == 0,
        "every reversal advice acknowledged by the issuer"
        if status.depth == 0
        else f"{status.depth} advice(s) still queued",
    )


def _terminals_clear(journals: dict[str, _JournalRead]) -> Check:
    pending = [tid for tid, journal in journals.items() if journal.reversal_pending]
    open_txns = [tid for tid, journal in journals.items() if journal.batch_open_with_txns]
    ok = not pending and not open_txns
    detail = "no reversal pending, every batch settled"
    if not ok:
        detail = f"reversal pending at {pending or 'none'}; "
        detail += f"unsettled batch at {open_txns or 'none'}"
    return Check("every terminal settled, no reversal pending", ok, detail)


def _no_double_debit(conn: sa.Connection) -> Check:
    debits = (
        sa.select(issuer_txns.c.rrn, sa.func.count().label("n"))
        .where(
            issuer_txns.c.response_code == APPROVED,
            issuer_txns.c.transfer_id.is_not(None),
            issuer_txns.c.kind.in_([k.value for k in DEBIT_KINDS]),
        )
        .group_by(issuer_txns.c.rrn)
        .having(sa.func.count() > 1)
    )
    twice = conn.execute(debits).all()
    detail = "one issuer debit at most per RRN"
    if twice:
        detail = f"RRNs debited more than once: {', '.join(str(r.rrn) for r in twice[:5])}"
    return Check("nothing charged twice", not twice, detail)


def _receipts_settled(conn: sa.Connection, day: str, txns: list[JournalTxn]) -> Check:
    receipted = {
        t.rrn for t in txns if t.state is TxnState.APPROVED and t.kind in DEBIT_KINDS and t.rrn
    }
    matched = set(
        conn.execute(
            sa.select(item_table.c.rrn).where(
                item_table.c.day == day, item_table.c.klass == ReconClass.MATCHED.value
            )
        ).scalars()
    )
    missing = sorted(receipted - matched)
    detail = f"{len(receipted)} receipted debits, each matched in the day's clearing"
    if missing:
        detail = f"receipts not matched in the day end: RRN {', '.join(missing[:5])}"
    return Check("every receipt is in the merchant's settlement", not missing, detail)


ONE_SIDED_CREDIT = ReconClass.ONE_SIDED_CREDIT.value


def _no_exceptions(sconn: sa.Connection, iconn: sa.Connection, day: str) -> Check:
    """Exceptions the day end left open for operations.

    A one-sided credit (a void or refund the issuer made while the switch timed out, its
    reversal advice still queued at the day end) is closed when the advice gets through
    afterwards and the issuer undoes the credit. If the cardholder had spent the money since,
    the reversal is still posted (a forced post) and the debt booked on the cardholder's owed
    account, for the issuer to collect.
    """
    left = [ReconClass.AWAITING_BATCH.value, *(c.value for c in EXCEPTIONS)]
    rows = sconn.execute(
        sa.select(item_table.c.klass, item_table.c.issuer_txn_id).where(
            item_table.c.day == day, item_table.c.klass.in_(left)
        )
    ).all()
    issuer = SqlIssuerStore(iconn)
    open_items = Counter[str]()
    closed = owed = 0
    for klass, issuer_txn_id in rows:
        undone = _undone(issuer, issuer_txn_id) if klass == ONE_SIDED_CREDIT else None
        if undone is None:
            open_items[klass] += 1
            continue
        closed += 1
        owed += undone.debit_account_id.endswith(OWED_SUFFIX)
    detail = "no exception or unsettled item left for operations"
    if closed:
        detail += f" ({closed} one-sided credit(s) undone by the late reversal advice"
        detail += f", {owed} of them owed by the cardholder)" if owed else ")"
    if open_items:
        detail = ", ".join(f"{n} {klass}" for klass, n in sorted(open_items.items()))
    return Check("day end left nothing for operations", not open_items, detail)


def _undone(issuer: SqlIssuerStore, issuer_txn_id: str | None) -> Transfer | None:
    """The transfer of the reversal that undid ``issuer_txn_id``, if one did."""
    if issuer_txn_id is None:
        return None
    for follower in issuer.followers(issuer_txn_id):
        if follower.kind is TxnKind.REVERSAL and follower.approved and follower.transfer_id:
            return issuer.ledger.transfer(follower.transfer_id)
    return None


def _notices_delivered(written: int, delivered: int) -> Check:
    return Check(
        "every cardholder notice delivered",
        written == delivered,
        f"{delivered} of {written} notices delivered",
    )
