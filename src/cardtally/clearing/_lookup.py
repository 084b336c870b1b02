"""Looking swipes up for the hotline: did it succeed, and where is the money now?

Support staff answering a cardholder or a merchant find a swipe by any of merchant, terminal,
card (by its keyed fingerprint: the number itself is never stored, and only its mask is shown),
business day, amount, RRN or voucher, and read out one plain sentence with the timeline behind
it. Everything here reads; nothing is written.

The facts come from both parties' databases: the switch's log, answers, advices, batches and the
day end's record (items, refunds, statements, payouts) in the switch's database; the issuer's
postings and the notices it sent in its own. They are read in short transactions (which swipes
match; for a card, which issuer-only records are the card's; then each side's facts for the few
chosen), so a look-up never holds a live host's database for long. :func:`explain` and
:func:`timeline` are pure functions of those facts.

Listed: sales, completions, pre-authorisations, voids and refunds. Balance inquiries move no
money and are left out; a terminal's reversal is not a swipe of its own but a step in the
timeline of the swipe it undoes (its RRN finds that swipe). Issuer-only and terminal-only records
(the day end's items with no switch row) are found too, wherever the criteria apply to them: an
issuer record carries the switch's trace number, not the terminal's voucher, and a terminal's
upload record carries no card.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from cardtally.clearing._calendar import BusinessDay, DayError, day_of, parse_day
from cardtally.clearing._dayend import Dayend, DayendError, day_window
from cardtally.clearing._schema import (
    action_table,
    day_table,
    item_table,
    payout_table,
    statement_table,
)
from cardtally.clearing._tables import EXCEPTIONS, ReconClass
from cardtally.issuer._model import TxnRecord
from cardtally.issuer._schema import card_table
from cardtally.issuer._schema import txn_table as issuer_txn_table
from cardtally.issuer._store import txn_from_row
from cardtally.money import Money, MoneyError
from cardtally.notices import Notice, NoticeOutbox
from cardtally.storage import EVENTS_LIMIT_MAX, Event, event_log_table, events, transaction
from cardtally.switch._errors import RegistryError
from cardtally.switch._model import Advice, Txn, TxnKind, TxnState, rrn_of
from cardtally.switch._registry import check_terminal_id
from cardtally.switch._schema import (
    advice_table,
    batch_table,
    merchant_table,
    response_table,
    upload_table,
)
from cardtally.switch._schema import txn_table as switch_txn_table
from cardtally.switch._store import _advice, _fields_of, _txn
from cardtally.wire import Pan, PanError, describe, local_text

#: Switch kinds a look-up lists (see the module docstring for why the others are not).
LISTED_KINDS: Final = ("sale", "completion", "preauth", "void", "refund")
LIMIT_DEFAULT: Final = 20
LIMIT_MAX: Final = 1_000
#: Bound on the orphan items read before the card filter; there are few (they are exceptions).
_ORPHANS_MAX: Final = 10_000
_MERCHANT_ID: Final = re.compile(r"[0-9A-Za-z]{1,15}")
_DIGITS: Final = re.compile(r"[0-9]{1,12}")
_CREDITS: Final = frozenset({TxnKind.VOID, TxnKind.REFUND})
#: Acknowledgements that close a reversal at the issuer: undone, or nothing there to undo.
_UNDONE_ACKS: Final = frozenset({"00", "25"})
NO_CRITERIA: Final = (
    "say what to look for: at least one of --merchant, --terminal, --pan, --date, --amount, "
    "--rrn, --voucher"
)


class LookupInputError(ValueError):
    """A criterion that cannot be used: one line, naming the option (never a card number)."""


class MoneyState(StrEnum):
    """Where the cardholder's money is now, in one word a machine can act on."""

    NOT_TAKEN = "not_taken"  # declined, refused, or nothing ever moved
    AWAITING_ANSWER = "awaiting_answer"  # forwarded; the card's bank has not answered yet
    HELD = "held"  # a pre-authorisation: reserved on the card, not taken
    DEBITED_AWAITING_DAY_END = "debited_awaiting_day_end"  # taken; the day end clears/refunds it
    REVERSAL_PENDING = "reversal_pending"  # being undone: the switch is delivering a reversal
    REVERSED = "reversed"  # undone at the card's bank: the money is back (or never left)
    REFUNDED_AT_DAY_END = "refunded_at_day_end"  # a one-sided debit the day end gave back
    CLEARED_AWAITING_PAYOUT = "cleared_awaiting_payout"  # cleared; the merchant is paid later
    PAID_TO_MERCHANT = "paid_to_merchant"  # cleared and paid out to the merchant
    VOIDED = "voided"  # a sale voided the same day (or that void): given back, nothing cleared
    CREDITED_TO_CARD = "credited_to_card"  # a merchant's refund: given back to the card
    EXCEPTION = "exception"  # the parties disagree: operations must resolve it by hand


# --- criteria ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Criteria:
    """What to look for; every criterion given must hold (AND)."""

    merchant_id: str | None = None
    terminal_id: str | None = None
    pan_masked: str | None = None
    pan_fingerprint: str | None = None
    day: date | None = None
    amount_minor: int | None = None
    rrn: str | None = None  # 12 digits
    stan: str | None = None  # the terminal's voucher number, 6 digits

    @property
    def empty(self) -> bool:
        given = (self.merchant_id, self.terminal_id, self.pan_fingerprint, self.day)
        return all(v is None for v in (*given, self.amount_minor, self.rrn, self.stan))

    def shown(self, currency: str) -> dict[str, str]:
        """The criteria as the answer repeats them: the card masked, the amount as money."""
        values = {
            "merchant": self.merchant_id,
            "terminal": self.terminal_id,
            "card": self.pan_masked,
            "date": None if self.day is None else self.day.isoformat(),
            "amount": None
            if self.amount_minor is None
            else money_text(self.amount_minor, currency),
            "rrn": self.rrn,
            "voucher": self.stan,
        }
        return {k: v for k, v in values.items() if v is not None}


def parse_criteria(
    *,
    currency: str,
    fingerprint: Callable[[Pan], str],
    merchant: str | None = None,
    terminal: str | None = None,
    pan: str | None = None,
    day: str | None = None,
    amount: str | None = None,
    rrn: str | None = None,
    voucher: str | None = None,
) -> Criteria:
    """Criteria from the options as typed; :class:`LookupInputError` for anything unusable.

    ``fingerprint`` keys the card number (it needs the home's data keys, so it is only called
    once everything else has been checked, and only with a valid card number).
    """
    card = None if pan is None else _card(pan)
    criteria = Criteria(
        merchant_id=None if merchant is None else _merchant(merchant),
        terminal_id=None if terminal is None else _terminal(terminal),
        day=None if day is None else _day(day),
        amount_minor=None if amount is None else _amount(amount, currency),
        rrn=None if rrn is None else _rrn(rrn),
        stan=None if voucher is None else _voucher(voucher),
    )
    if card is not None:
        criteria = replace(criteria, pan_masked=card.masked, pan_fingerprint=fingerprint(card))
    if criteria.empty:
        raise LookupInputError(NO_CRITERIA)
    return criteria


def _card(text: str) -> Pan:
    # Read aloud and typed in groups: spaces and dashes are not part of the number.
    digits = re.sub(r"[\s-]", "", text)
    try:
        return Pan(digits)
    except PanError as exc:  # its message shows the number masked, never in clear
        raise LookupInputError(f"--pan: {exc}") from None


def _merchant(text: str) -> str:
    merchant_id = text.strip()
    if not _MERCHANT_ID.fullmatch(merchant_id):
        raise LookupInputError(f"--merchant must be 1-15 letters and digits, got {text!r}")
    return merchant_id


def _terminal(text: str) -> str:
    try:
        return check_terminal_id(text.strip())
    except RegistryError as exc:
        raise LookupInputError(f"--terminal: {exc}") from None


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except DayError as exc:
        raise LookupInputError(f"--date: {exc}") from None


def _amount(text: str, currency: str) -> int:
    try:
        return Money.parse(text, currency).minor
    except MoneyError as exc:
        raise LookupInputError(f"--amount: {exc}") from None


def _rrn(text: str) -> str:
    digits = text.strip()
    if not _DIGITS.fullmatch(digits) or int(digits) == 0:
        raise LookupInputError(f"--rrn must be 1-12 digits (leading zeros optional), got {text!r}")
    return digits.zfill(12)


def _voucher(text: str) -> str:
    digits = text.strip()
    if not _DIGITS.fullmatch(digits) or not 0 < int(digits) <= 999_999:
        raise LookupInputError(
            f"--voucher must be a trace number 1-999999 (leading zeros optional), got {text!r}"
        )
    return f"{int(digits):06d}"


# --- the facts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundFacts:
    """The day end's refund of a one-sided debit (``dayend_action``)."""

    result: str  # refunded | nothing
    amount_minor: int
    reference: str  # the issuer's refund record
    notice_id: str | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class StatementFacts:
    """The merchant's statement for the item's day: what the merchant is owed, and when."""

    name: str
    cycle: str  # d0 | t1
    net_minor: int
    currency: str
    pay_day: str
    at_ms: int | None  # when the day end settled the day


@dataclass(frozen=True, slots=True)
class PayoutFacts:
    day: str  # the day end that paid
    amount_minor: int
    transfer_id: str | None  # None: nothing was paid (the account held nothing to pay)
    at_ms: int


@dataclass(frozen=True, slots=True)
class DayEndFacts:
    """One day end's verdict on the swipe (``dayend_item``) and what followed from it."""

    day: str
    klass: str
    reason: str
    cleared_as: str | None
    classified_at_ms: int  # when that day end placed it
    refund: RefundFacts | None = None
    statement: StatementFacts | None = None
    payout: PayoutFacts | None = None


@dataclass(frozen=True, slots=True)
class OrphanItem:
    """A day-end item no switch row stands behind: issuer-only, or terminal-only."""

    day: str
    item_no: int
    issuer_txn_id: str | None
    kind: str
    terminal_id: str
    merchant_id: str
    batch_no: int | None
    stan: str  # the issuer's trace number for an issuer-only item, else the terminal's
    rrn: str
    amount_minor: int
    currency: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The switch's answer to the terminal (stored for repeats): code and time."""

    code: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """The terminal's settlement of the swipe's batch, and the swipe's upload record if any."""

    batch_no: int
    result: str  # balanced | not_balanced
    closed_at_ms: int
    upload_difference: str | None  # None: not uploaded; "" uploaded and agreeing
    upload_at_ms: int | None


@dataclass(frozen=True, slots=True)
class SwitchFacts:
    """What the switch knows of one swipe."""

    txn: Txn
    answer: Answer | None
    events: tuple[Event, ...]
    advice: Advice | None
    reversal: Txn | None  # the terminal's own reversal of it
    reversal_why: str | None
    follow_ups: tuple[Txn, ...]  # voids and refunds that name it
    original: Txn | None  # for a void or refund: the sale it names
    batch: BatchFacts | None


@dataclass(frozen=True, slots=True)
class IssuerFacts:
    """The issuer's record of the swipe, the records that followed it, and their notices."""

    record: TxnRecord | None = None
    followers: tuple[TxnRecord, ...] = ()
    notices: Mapping[str, Notice] | None = None

    def notice_of(self, record: TxnRecord) -> Notice | None:
        if record.transfer_id is None or self.notices is None:
            return None
        return self.notices.get(f"notice:{record.transfer_id}")

    @property
    def undo(self) -> TxnRecord | None:
        """The approved reversal that answered for it at the issuer, if any."""
        for f in self.followers:
            if f.kind is TxnKind.REVERSAL and f.approved:
                return f
        return None

    @property
    def moved(self) -> bool:
        """The issuer approved it and posted money for it."""
        return (
            self.record is not None and self.record.approved and self.record.transfer_id is not None
        )


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything known about one swipe, from both parties."""

    network_currency: str
    merchant_name: str
    business_day: str
    switch: SwitchFacts | None
    orphan: OrphanItem | None
    issuer: IssuerFacts
    day_ends: tuple[DayEndFacts, ...]

    @property
    def currency(self) -> str:
        own = (
            self.switch.txn.currency if self.switch else self.orphan.currency if self.orphan else ""
        )
        return own or self.network_currency

    @property
    def amount_minor(self) -> int:
        if self.switch is not None:
            return self.switch.txn.amount_minor
        return self.orphan.amount_minor if self.orphan else 0

    @property
    def amount(self) -> str:
        return money_text(self.amount_minor, self.currency)

    @property
    def latest(self) -> DayEndFacts | None:
        return self.day_ends[-1] if self.day_ends else None


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    at_ms: int
    txn_id: int | None
    orphan: OrphanItem | None


def find_swipes(dayend: Dayend, criteria: Criteria, *, limit: int = LIMIT_DEFAULT) -> list[Found]:
    """The swipes matching every criterion, newest first, at most ``limit``, each explained."""
    if not 0 < limit <= LIMIT_MAX:
        raise LookupInputError(f"--limit must be 1-{LIMIT_MAX}, got {limit}")
    with transaction(dayend.switch) as conn:
        window = _window(conn, dayend, criteria.day)
        txns = _matching_txns(conn, criteria, window, limit)
        orphans = _matching_orphans(conn, criteria)
    if criteria.pan_fingerprint is not None and orphans:
        with transaction(dayend.issuer) as conn:
            orphans = _orphans_of_card(conn, orphans, criteria.pan_fingerprint)
    chosen = sorted(
        [*txns, *(_Candidate(o.at_ms, None, o) for o in orphans)],
        key=lambda c: (c.at_ms, c.txn_id or 0),
        reverse=True,
    )[:limit]
    with transaction(dayend.switch) as conn:
        parts = [_switch_part(conn, dayend, c) for c in chosen]
    with transaction(dayend.issuer) as conn:
        facts = [
            _with_issuer(conn, dayend.config.acquirer_id, dayend.config.currency, p) for p in parts
        ]
    return [found(f) for f in facts]


def _window(conn: Connection, dayend: Dayend, day: date | None) -> BusinessDay | None:
    if day is None:
        return None
    try:
        return day_window(conn, dayend, day)
    except DayendError as exc:  # a day that has not begun: a mistyped date, most likely
        raise LookupInputError(f"--date: {exc}") from None


def _matching_txns(
    conn: Connection, c: Criteria, window: BusinessDay | None, limit: int
) -> list[_Candidate]:
    t = switch_txn_table
    where: list[sa.ColumnElement[bool]] = [t.c.kind.in_(LISTED_KINDS)]
    for column, value in (
        (t.c.merchant_id, c.merchant_id),
        (t.c.terminal_id, c.terminal_id),
        (t.c.pan_fingerprint, c.pan_fingerprint),
        (t.c.amount_minor, c.amount_minor),
        (t.c.stan, c.stan),
    ):
        if value is not None:
            where.append(column == value)
    if c.rrn is not None:
        where.append(_rrn_names(int(c.rrn)))
    if window is not None:
        where.append(t.c.received_at_ms.between(window.start_ms, window.end_ms - 1))
    # Newest first by id: rows are logged as they arrive, so the primary key walked backwards is
    # receive order, and the scan stops after ``limit`` matches (no sort of the whole log).
    rows = conn.execute(
        sa.select(t.c.received_at_ms, t.c.id).where(*where).order_by(t.c.id.desc()).limit(limit)
    ).all()
    return [_Candidate(int(at), int(txn_id), None) for at, txn_id in rows]


def _rrn_names(txn_id: int) -> sa.ColumnElement[bool]:
    """The row with that RRN, or the swipe a terminal's reversal with that RRN undid."""
    t, reversal = switch_txn_table, switch_txn_table.alias("reversal")
    undone = sa.select(reversal.c.original_id).where(
        reversal.c.id == txn_id, reversal.c.kind == TxnKind.REVERSAL.value
    )
    return sa.or_(t.c.id == txn_id, t.c.id.in_(undone.scalar_subquery()))


def _matching_orphans(conn: Connection, c: Criteria) -> list[OrphanItem]:
    i = item_table
    where: list[sa.ColumnElement[bool]] = [i.c.switch_txn_id.is_(None)]
    for column, value in (
        (i.c.merchant_id, c.merchant_id),
        (i.c.terminal_id, c.terminal_id),
        (i.c.amount_minor, c.amount_minor),
        (i.c.rrn, c.rrn),
        (i.c.day, None if c.day is None else c.day.isoformat()),
    ):
        if value is not None:
            where.append(column == value)
    if c.stan is not None:  # only a terminal's record carries its voucher number
        where += [i.c.issuer_txn_id.is_(None), i.c.stan == c.stan]
    if c.pan_fingerprint is not None:  # only the issuer's record names a card
        where.append(i.c.issuer_txn_id.is_not(None))
    rows = conn.execute(
        sa.select(item_table).where(*where).order_by(i.c.at_ms.desc()).limit(_ORPHANS_MAX)
    ).mappings()
    return [_orphan(row) for row in rows]


def _orphan(row: RowMapping) -> OrphanItem:
    return OrphanItem(
        day=row["day"],
        item_no=int(row["item_no"]),
        issuer_txn_id=row["issuer_txn_id"],
        kind=row["kind"],
        terminal_id=row["terminal_id"],
        merchant_id=row["merchant_id"],
        batch_no=row["batch_no"],
        stan=row["stan"],
        rrn=row["rrn"],
        amount_minor=int(row["amount_minor"]),
        currency=row["currency"],
        at_ms=int(row["at_ms"]),
    )


def _orphans_of_card(
    conn: Connection, orphans: Sequence[OrphanItem], fingerprint: str
) -> list[OrphanItem]:
    """The issuer-only items whose issuer record is the card's (the card is at the issuer)."""
    card_id = conn.execute(
        sa.select(card_table.c.id).where(card_table.c.pan_fingerprint == fingerprint)
    ).scalar()
    if card_id is None:
        return []
    t = issuer_txn_table
    ids = [o.issuer_txn_id for o in orphans if o.issuer_txn_id is not None]
    mine = set(
        conn.execute(sa.select(t.c.id).where(t.c.id.in_(ids), t.c.card_id == card_id)).scalars()
    )
    return [o for o in orphans if o.issuer_txn_id in mine]


# --- the switch's side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """A chosen swipe with its switch-side facts, waiting for the issuer's."""

    switch: SwitchFacts | None
    orphan: OrphanItem | None
    merchant_name: str | None  # None: not in the switch's registry
    business_day: str
    day_ends: tuple[DayEndFacts, ...]


def _switch_part(conn: Connection, dayend: Dayend, candidate: _Candidate) -> _Part:
    if candidate.orphan is not None:
        orphan = candidate.orphan
        day_ends = _day_ends(
            conn, (item_table.c.day == orphan.day) & (item_table.c.item_no == orphan.item_no)
        )
        name = _merchant_name(conn, orphan.merchant_id)
        return _Part(None, orphan, name, orphan.day, day_ends)
    assert candidate.txn_id is not None
    txn = _txn_by_id(conn, candidate.txn_id)
    assert txn is not None, f"switch txn {candidate.txn_id} vanished"
    day_ends = _day_ends(conn, item_table.c.switch_txn_id == txn.id)
    business_day = day_ends[0].day if day_ends else _business_day(conn, dayend, txn.received_at_ms)
    facts = _switch_facts(conn, txn)
    return _Part(facts, None, _merchant_name(conn, txn.merchant_id), business_day, day_ends)


def _txn_by_id(conn: Connection, txn_id: int) -> Txn | None:
    row = (
        conn.execute(sa.select(switch_txn_table).where(switch_txn_table.c.id == txn_id))
        .mappings()
        .first()
    )
    return None if row is None else _txn(row)


def _txns_where(conn: Connection, *where: sa.ColumnElement[bool]) -> tuple[Txn, ...]:
    t = switch_txn_table
    rows = conn.execute(sa.select(t).where(*where).order_by(t.c.id)).mappings()
    return tuple(_txn(row) for row in rows)


def _merchant_name(conn: Connection, merchant_id: str) -> str | None:
    m = merchant_table
    name = conn.execute(sa.select(m.c.name).where(m.c.merchant_id == merchant_id)).scalar()
    return None if name is None else str(name)


def _switch_facts(conn: Connection, txn: Txn) -> SwitchFacts:
    t = switch_txn_table
    reversals = _txns_where(conn, t.c.original_id == txn.id, t.c.kind == TxnKind.REVERSAL.value)
    reversal = reversals[0] if reversals else None
    credits = [k.value for k in _CREDITS]
    return SwitchFacts(
        txn=txn,
        answer=_answer(conn, txn.request_key),
        events=tuple(events(conn, str(txn.id), limit=EVENTS_LIMIT_MAX)),
        advice=_advice_of(conn, txn.id),
        reversal=reversal,
        reversal_why=None if reversal is None else _reversal_why(conn, reversal),
        follow_ups=_txns_where(conn, t.c.original_id == txn.id, t.c.kind.in_(credits)),
        original=(
            _txn_by_id(conn, txn.original_id)
            if txn.original_id is not None and txn.kind in _CREDITS
            else None
        ),
        batch=_batch(conn, txn),
    )


def _answer(conn: Connection, request_key: str) -> Answer | None:
    r = response_table
    row = conn.execute(sa.select(r.c.fields, r.c.at_ms).where(r.c.key == request_key)).first()
    if row is None:
        return None
    return Answer(_fields_of(row[0]).get(39, ""), int(row[1]))


def _advice_of(conn: Connection, txn_id: int) -> Advice | None:
    a = advice_table
    row = (
        conn.execute(sa.select(a).where(a.c.txn_id == txn_id).order_by(a.c.id).limit(1))
        .mappings()
        .first()
    )
    return None if row is None else _advice(row)


def _reversal_why(conn: Connection, reversal: Txn) -> str | None:
    for event in events(conn, str(reversal.id), limit=EVENTS_LIMIT_MAX):
        if event.kind == "switch.reversal":
            return str(event.detail.get("why", "")) or None
    return None


def _batch(conn: Connection, txn: Txn) -> BatchFacts | None:
    b, u = batch_table, upload_table
    closed = conn.execute(
        sa.select(b.c.result, b.c.closed_at_ms).where(
            b.c.terminal_id == txn.terminal_id, b.c.batch_no == txn.batch_no
        )
    ).first()
    if closed is None:
        return None
    upload = conn.execute(
        sa.select(u.c.difference, u.c.at_ms).where(
            u.c.terminal_id == txn.terminal_id, u.c.batch_no == txn.batch_no, u.c.stan == txn.stan
        )
    ).first()
    return BatchFacts(
        batch_no=txn.batch_no,
        result=str(closed[0]),
        closed_at_ms=int(closed[1]),
        upload_difference=None if upload is None else str(upload[0]),
        upload_at_ms=None if upload is None else int(upload[1]),
    )


def _business_day(conn: Connection, dayend: Dayend, at_ms: int) -> str:
    """The business day a swipe belongs to: a recorded window holds it, else the cutoff says,
    except that a swipe after a day closed early belongs to the next day."""
    d = day_table
    recorded = conn.execute(
        sa.select(d.c.day).where(d.c.window_start_ms <= at_ms, d.c.window_end_ms > at_ms)
    ).scalar()
    if recorded is not None:
        return str(recorded)
    computed = day_of(at_ms, dayend.cutoff_minutes).text
    last = conn.execute(sa.select(sa.func.max(d.c.day))).scalar()
    if last is not None and computed <= str(last):
        return (date.fromisoformat(str(last)) + timedelta(days=1)).isoformat()
    return computed


# --- the day end's record ------------------------------------------------------------------


def _day_ends(conn: Connection, which: sa.ColumnElement[bool]) -> tuple[DayEndFacts, ...]:
    """Every day end's item for the swipe, oldest first (awaiting_batch is placed again)."""
    i = item_table
    rows = conn.execute(sa.select(i).where(which).order_by(i.c.day)).mappings().all()
    return tuple(_day_end(conn, row) for row in rows)


def _day_end(conn: Connection, item: RowMapping) -> DayEndFacts:
    day, merchant_id = item["day"], item["merchant_id"]
    return DayEndFacts(
        day=day,
        klass=item["klass"],
        reason=item["reason"],
        cleared_as=item["cleared_as"],
        classified_at_ms=_step_time(conn, "dayend.match", day) or _started(conn, day),
        refund=_refund(conn, day, int(item["item_no"])),
        statement=_statement(conn, day, merchant_id) if item["cleared_as"] else None,
        payout=_payout(conn, day, merchant_id) if item["cleared_as"] else None,
    )


def _step_time(conn: Connection, kind: str, day: str) -> int | None:
    e = event_log_table
    at = conn.execute(
        sa.select(sa.func.min(e.c.at_ms)).where(e.c.kind == kind, e.c.txn_key == day)
    ).scalar()
    return None if at is None else int(at)


def _started(conn: Connection, day: str) -> int:
    d = day_table
    return int(conn.execute(sa.select(d.c.started_at_ms).where(d.c.day == day)).scalar_one())


def _refund(conn: Connection, day: str, item_no: int) -> RefundFacts | None:
    a = action_table
    row = conn.execute(
        sa.select(a.c.result, a.c.amount_minor, a.c.reference, a.c.notice_id, a.c.at_ms).where(
            a.c.day == day, a.c.item_no == item_no
        )
    ).first()
    if row is None:
        return None
    return RefundFacts(str(row[0]), int(row[1]), str(row[2]), row[3], int(row[4]))


def _statement(conn: Connection, day: str, merchant_id: str) -> StatementFacts | None:
    s = statement_table
    row = conn.execute(
        sa.select(s.c.name, s.c.cycle, s.c.net_minor, s.c.currency, s.c.pay_day).where(
            s.c.day == day, s.c.merchant_id == merchant_id
        )
    ).first()
    if row is None:
        return None
    at_ms = _step_time(conn, "dayend.settle", day)
    return StatementFacts(str(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]), at_ms)


def _payout(conn: Connection, for_day: str, merchant_id: str) -> PayoutFacts | None:
    p = payout_table
    row = conn.execute(
        sa.select(p.c.day, p.c.amount_minor, p.c.transfer_id, p.c.at_ms).where(
            p.c.for_day == for_day, p.c.merchant_id == merchant_id
        )
    ).first()
    if row is None:
        return None
    return PayoutFacts(str(row[0]), int(row[1]), row[2], int(row[3]))


# --- the issuer's side ---------------------------------------------------------------------


def _with_issuer(conn: Connection, acquirer_id: str, currency: str, part: _Part) -> Facts:
    issuer = _issuer_facts(conn, acquirer_id, part)
    # A merchant the registry does not know (an issuer-only record): field 43 as the issuer got
    # it (name and city, space-padded), else its ID.
    sent = " ".join(issuer.record.merchant_name.split()) if issuer.record else ""
    merchant_id = (
        part.switch.txn.merchant_id
        if part.switch
        else part.orphan.merchant_id
        if part.orphan
        else ""
    )
    return Facts(
        network_currency=currency,
        merchant_name=part.merchant_name or sent or merchant_id,
        business_day=part.business_day,
        switch=part.switch,
        orphan=part.orphan,
        issuer=issuer,
        day_ends=part.day_ends,
    )


def _issuer_facts(conn: Connection, acquirer_id: str, part: _Part) -> IssuerFacts:
    record = _issuer_record(conn, acquirer_id, part)
    if record is None:
        return IssuerFacts()
    t = issuer_txn_table
    followers = tuple(
        txn_from_row(row)
        for row in conn.execute(
            sa.select(t).where(t.c.original_id == record.id).order_by(t.c.at_ms, t.c.id)
        ).mappings()
    )
    outbox = NoticeOutbox(conn)
    notices = {}
    for r in (record, *followers):
        notice = None if r.transfer_id is None else outbox.get(f"notice:{r.transfer_id}")
        if notice is not None:
            notices[notice.id] = notice
    return IssuerFacts(record, followers, notices)


def _issuer_record(conn: Connection, acquirer_id: str, part: _Part) -> TxnRecord | None:
    """The issuer's record of the request: by id for an orphan; for a switch row by what the
    switch sent (acquirer, terminal, merchant, its trace number and transmission time)."""
    t = issuer_txn_table
    if part.orphan is not None:
        where = [t.c.id == (part.orphan.issuer_txn_id or "")]
    elif part.switch is not None and part.switch.txn.issuer_stan and part.switch.txn.transmitted:
        txn = part.switch.txn
        where = [
            t.c.acquirer_id == acquirer_id,
            t.c.terminal_id == txn.terminal_id,
            t.c.merchant_id == txn.merchant_id,
            t.c.stan == txn.issuer_stan,
            t.c.transmitted == txn.transmitted,
            t.c.kind != TxnKind.REVERSAL.value,  # the reversal advice copies 7 and 11
        ]
    else:
        return None
    row = conn.execute(sa.select(t).where(*where).limit(1)).mappings().first()
    return None if row is None else txn_from_row(row)


# --- plain words: the verdict ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the hotline reads out: a headline, and where the money is in one word and a sentence."""

    headline: str
    money: MoneyState
    money_detail: str


def explain(f: Facts) -> Verdict:
    """The swipe in plain words. The day end's latest verdict wins over the switch's state:
    it saw all three parties' records."""
    if f.switch is None:
        return _explain_orphan(f)
    kind = f.switch.txn.kind
    if kind in _CREDITS:
        return _explain_credit(f, f.switch)
    if kind is TxnKind.PREAUTH:
        return _explain_hold(f, f.switch)
    return _explain_debit(f, f.switch)


def _explain_debit(f: Facts, s: SwitchFacts) -> Verdict:
    latest = f.latest
    if latest is not None:
        if latest.klass == ReconClass.MATCHED.value:
            return _matched(f, latest)
        if latest.klass == ReconClass.ONE_SIDED_DEBIT.value:
            return _one_sided(f, latest, _interruption(latest))
        if latest.klass in EXCEPTIONS:
            return _exception(f, latest)
    return _BY_STATE[s.txn.state](f, s)


def _matched(f: Facts, d: DayEndFacts) -> Verdict:
    if d.cleared_as is None:  # a same-day voided pair: matched, never cleared
        return Verdict(
            "Voided the same day: nothing taken",
            MoneyState.VOIDED,
            f"The sale was voided on {d.day}: the card's bank gave the {f.amount} back at once; "
            "nothing was cleared.",
        )
    later = _later_refunds(f)
    st, paid = d.statement, d.payout
    if st is None:
        return Verdict(
            f"Approved and receipted; {f.amount} cleared on {d.day}{later}",
            MoneyState.CLEARED_AWAITING_PAYOUT,
            f"{f.amount} was taken from the card and cleared on {d.day}; "
            f"{f.merchant_name}'s statement is not made yet.",
        )
    cycle = _cycle(st.cycle)
    if paid is not None and paid.transfer_id is not None:
        return Verdict(
            f"Approved and receipted; {f.amount} cleared on {d.day}, paid to {st.name} "
            f"on {paid.day} ({cycle}){later}",
            MoneyState.PAID_TO_MERCHANT,
            f"{f.amount} was taken from the card, cleared on {d.day} and paid to {st.name} "
            f"at the day end of {paid.day} (net of the day's fees and refunds).",
        )
    return Verdict(
        f"Approved and receipted; {f.amount} cleared on {d.day}, to be paid to {st.name} "
        f"on {st.pay_day} ({cycle}){later}",
        MoneyState.CLEARED_AWAITING_PAYOUT,
        f"{f.amount} was taken from the card and cleared on {d.day}; {st.name} is to be paid "
        f"at the day end of {st.pay_day}.",
    )


def _later_refunds(f: Facts) -> str:
    s = f.switch
    done = [t for t in s.follow_ups if t.state is TxnState.APPROVED] if s else []
    return "".join(
        f"; {t.kind.value} of {money_text(t.amount_minor, f.currency)} later (RRN {t.rrn})"
        for t in done
    )


def _cycle(cycle: str) -> str:
    return {"d0": "D0, the same day", "t1": "T+1"}.get(cycle, cycle)


def _interruption(d: DayEndFacts) -> str:
    """Why a debit had no successful sale behind it, from the day end's reason: what the switch
    knew when the day closed (its state may move on, say when a terminal's reversal comes late)."""
    if d.reason.startswith("approved but never receipted"):
        return "Interrupted: the terminal never printed a receipt"
    if "has it timed_out" in d.reason:
        return "Interrupted: the card's bank did not answer in time and the reversal undid nothing"
    if "has it reversal_pending" in d.reason:
        return "Interrupted: the reversal had not reached the card's bank by the day end"
    return "Interrupted: the switch had no success for it but the card's bank kept the debit"


def _one_sided(f: Facts, d: DayEndFacts, why: str) -> Verdict:
    refund = d.refund
    if refund is None:
        return Verdict(
            f"{why}; the day end of {d.day} is to refund it (not done yet)",
            MoneyState.DEBITED_AWAITING_DAY_END,
            f"{f.amount} was taken from the card with no sale behind it; the day end of {d.day} "
            "refunds it when it resumes.",
        )
    if refund.result != "refunded":
        return Verdict(
            f"{why}; the day end of {d.day} found nothing left to refund",
            MoneyState.REVERSED,
            "The card's bank had nothing of it left in effect when the day end came to refund it.",
        )
    back = money_text(refund.amount_minor, f.currency)
    return Verdict(
        f"{why}; the debit was refunded at the day end of {d.day}, with a notice to the cardholder",
        MoneyState.REFUNDED_AT_DAY_END,
        f"{back} went back to the card at the day end of {d.day} ({cst_text(refund.at_ms)} "
        f"CST); the cardholder was sent a notice.",
    )


_EXCEPTION_WORDS: Final = {
    ReconClass.MISSING_AT_ISSUER.value: "approved at the switch but the issuer has no posting",
    ReconClass.UNKNOWN_TO_HOST.value: "receipted at the terminal but the switch has no success",
    ReconClass.AMOUNT_MISMATCH.value: "the parties disagree on the amount",
    ReconClass.ONE_SIDED_CREDIT.value: "the card's bank gave money back that no refund explains",
}


def _exception(f: Facts, d: DayEndFacts) -> Verdict:
    words = _EXCEPTION_WORDS.get(d.klass, d.klass.replace("_", " "))
    if d.reason == "issuer reversed it since":
        words = "approved at the switch but the issuer reversed it since"
    return Verdict(
        f"Exception for operations: {words} (day end {d.day})",
        MoneyState.EXCEPTION,
        f"Operations must resolve it by hand ({d.reason}); nothing automatic moves the "
        f"{f.amount} until then.",
    )


def _approved(f: Facts, s: SwitchFacts) -> Verdict:
    voids = [t for t in s.follow_ups if t.kind is TxnKind.VOID and t.state is TxnState.APPROVED]
    if voids:
        return Verdict(
            f"Voided (RRN {voids[0].rrn}): nothing taken",
            MoneyState.VOIDED,
            f"The sale was voided: the card's bank gave the {f.amount} back at once; the day end "
            "clears neither.",
        )
    receipted, words = _receipt(s)
    if receipted is False:
        return Verdict(
            f"Approved at the switch, but {words}; the day end will refund it",
            MoneyState.DEBITED_AWAITING_DAY_END,
            f"{f.amount} was taken from the card, but the terminal has no receipt for it: the "
            "day end refunds it and tells the cardholder.",
        )
    waiting = f"waiting for the day end{_later_refunds(f)}"
    if f.latest is not None and f.latest.klass == ReconClass.AWAITING_BATCH.value:
        waiting = f"the terminal has not settled its batch, so the day end of {f.latest.day} "
        waiting += f"carried it{_later_refunds(f)}"
    return Verdict(
        f"Approved{' and receipted' if receipted else ''}; {waiting}",
        MoneyState.DEBITED_AWAITING_DAY_END,
        f"{f.amount} was taken from the card; the day end clears it to {f.merchant_name}"
        f"{'' if receipted else ' once the terminal settles its batch'}.",
    )


def _receipt(s: SwitchFacts) -> tuple[bool | None, str]:
    """Did the terminal take the approval? True, False, or None (not known until it settles)."""
    b = s.batch
    if b is None:
        return None, "the terminal has not settled its batch"
    if b.result == "balanced" or b.upload_difference == "":
        return True, "the terminal counted it"
    return (
        False,
        f"the terminal has no receipt for it (not in the upload of batch {b.batch_no:06d})",
    )


def _declined_words(s: SwitchFacts) -> str:
    code = s.txn.response_code or ""
    return f"declined by the card's bank ({code} {reason_of(code)})"


def _refused_words(s: SwitchFacts) -> str:
    code = s.txn.response_code or ""
    why = _event_detail(s, "switch.refused", "reason")
    said = f"{code} {reason_of(code)}" + (f": {why}" if why else "")
    return f"refused by the switch ({said}), never sent to the card's bank"


def _declined(f: Facts, s: SwitchFacts) -> Verdict:
    return Verdict(
        _capital(f"{_declined_words(s)}; no money was taken"),
        MoneyState.NOT_TAKEN,
        "No money was taken from the card.",
    )


def _refused(f: Facts, s: SwitchFacts) -> Verdict:
    return Verdict(
        _capital(f"{_refused_words(s)}; no money was taken"),
        MoneyState.NOT_TAKEN,
        "No money was taken from the card.",
    )


def _in_flight(f: Facts, s: SwitchFacts) -> Verdict:
    return Verdict(
        "Waiting for the card's bank to answer",
        MoneyState.AWAITING_ANSWER,
        "The card's bank has not answered yet; if it does not answer in time, the switch "
        "answers 98 and reverses the request.",
    )


def _reversing(f: Facts, s: SwitchFacts) -> Verdict:
    sends = 0 if s.advice is None else s.advice.attempts
    return Verdict(
        f"{_cause(s)}; the switch is reversing it at the card's bank ({sends} sends so far)",
        MoneyState.REVERSAL_PENDING,
        f"The {f.amount} may have been taken; the switch keeps sending the reversal until the "
        "card's bank confirms it, and then the money is back.",
    )


def _cause(s: SwitchFacts) -> str:
    if s.reversal is not None:
        return "Interrupted: no answer reached the terminal"
    return "Interrupted: the card's bank did not answer in time (98)"


def _reversed(f: Facts, s: SwitchFacts) -> Verdict:
    undo, at_ms = f.issuer.undo, _undone_at(f, s)
    when = "" if at_ms is None else f" at {_clock(at_ms, s.txn.received_at_ms)} CST"
    if f.issuer.moved and undo is not None and undo.transfer_id is not None:
        return Verdict(
            f"{_cause(s)}; the switch reversed it at the issuer{when}; the cardholder's money "
            "is back",
            MoneyState.REVERSED,
            f"The card's bank took the {f.amount} and gave it back{when}.",
        )
    return Verdict(
        f"{_cause(s)}; the switch reversed it{when}: the card's bank had taken nothing",
        MoneyState.NOT_TAKEN,
        "No money was taken from the card: the card's bank had nothing to undo.",
    )


def _undone_at(f: Facts, s: SwitchFacts) -> int | None:
    undo = f.issuer.undo
    if undo is not None:
        return undo.at_ms
    return None if s.advice is None else s.advice.acked_at_ms


def _reversal_refused(f: Facts, s: SwitchFacts) -> Verdict:
    code = "" if s.advice is None else s.advice.ack_code or ""
    return Verdict(
        f"Exception for operations: the card's bank refused the reversal ({code} "
        f"{reason_of(code)})",
        MoneyState.EXCEPTION,
        f"The reversal did not undo the {f.amount}; operations must resolve it by hand.",
    )


_BY_STATE: Final[dict[TxnState, Callable[[Facts, SwitchFacts], Verdict]]] = {
    TxnState.APPROVED: _approved,
    TxnState.DECLINED: _declined,
    TxnState.REFUSED: _refused,
    TxnState.RECEIVED: _in_flight,
    TxnState.FORWARDED: _in_flight,
    TxnState.TIMED_OUT: _reversing,
    TxnState.REVERSAL_PENDING: _reversing,
    TxnState.REVERSED: _reversed,
    TxnState.REVERSAL_REFUSED: _reversal_refused,
}


def _explain_hold(f: Facts, s: SwitchFacts) -> Verdict:
    if s.txn.state is TxnState.APPROVED:
        return Verdict(
            f"Pre-authorisation approved: {f.amount} held on the card",
            MoneyState.HELD,
            f"{f.amount} is reserved on the card, not taken: a completion takes it, or the hold "
            "lapses.",
        )
    return _BY_STATE[s.txn.state](f, s)


def _explain_credit(f: Facts, s: SwitchFacts) -> Verdict:
    """A void or refund: money back to the card, out of the merchant's settlement."""
    o = s.original
    what = f"{s.txn.kind.value.capitalize()} of RRN {rrn_of(s.txn.original_id or 0)}"
    if o is not None:
        what += f" ({money_text(o.amount_minor, f.currency)} {o.kind.value})"
    latest = f.latest
    if latest is not None and latest.klass in EXCEPTIONS:
        verdict = _exception(f, latest)
        return Verdict(f"{what}: {_lower(verdict.headline)}", verdict.money, verdict.money_detail)
    if s.txn.state is TxnState.APPROVED:
        return _credited(f, s, what)
    return _credit_undone(f, s, what)


def _credit_undone(f: Facts, s: SwitchFacts, what: str) -> Verdict:
    """A void or refund that gave nothing back (or is still on its way)."""
    state = s.txn.state
    unchanged = "Nothing was given back to the card; the sale stands."
    if state is TxnState.DECLINED:
        return Verdict(
            f"{what}: {_declined_words(s)}; nothing given back", MoneyState.NOT_TAKEN, unchanged
        )
    if state is TxnState.REFUSED:
        return Verdict(
            f"{what}: {_refused_words(s)}; nothing given back", MoneyState.NOT_TAKEN, unchanged
        )
    if state is TxnState.REVERSED:
        at_ms = _undone_at(f, s)
        when = "" if at_ms is None else f" at {_clock(at_ms, s.txn.received_at_ms)} CST"
        return Verdict(
            f"{what}: reversed{when}; nothing given back", MoneyState.REVERSED, unchanged
        )
    inner = _BY_STATE[state](f, s)
    return Verdict(f"{what}: {_lower(inner.headline)}", inner.money, inner.money_detail)


def _credited(f: Facts, s: SwitchFacts, what: str) -> Verdict:
    latest = f.latest
    if latest is not None and latest.klass == ReconClass.MATCHED.value and not latest.cleared_as:
        return Verdict(
            f"{what}: voided the same day, so neither is cleared",
            MoneyState.VOIDED,
            f"The card's bank gave the {f.amount} back at once; nothing was cleared.",
        )
    if latest is not None and latest.cleared_as == "credit":
        return Verdict(
            f"{what}: {f.amount} given back to the card; cleared on {latest.day}, taken from "
            f"{f.merchant_name}'s settlement",
            MoneyState.CREDITED_TO_CARD,
            f"{f.amount} went back to the card; {f.merchant_name}'s statement of {latest.day} "
            "deducts it.",
        )
    if s.txn.kind is TxnKind.VOID:  # before the day end pairs it with its sale
        return Verdict(
            f"{what}: the sale's {f.amount} given back to the card at once",
            MoneyState.VOIDED,
            f"The card's bank gave the {f.amount} back at once; the day end clears neither.",
        )
    return Verdict(
        f"{what}: {f.amount} given back to the card; waiting for the day end",
        MoneyState.CREDITED_TO_CARD,
        f"{f.amount} went back to the card; the day end deducts it from {f.merchant_name}'s "
        "settlement.",
    )


def _explain_orphan(f: Facts) -> Verdict:
    latest, o = f.latest, f.orphan
    assert latest is not None and o is not None, "an orphan is a day-end item"
    if o.issuer_txn_id is None:
        return _exception(f, latest)
    if latest.klass == ReconClass.ONE_SIDED_DEBIT.value:
        why = "Issuer-only debit: the card's bank took it but the switch has no record of the swipe"
        return _one_sided(f, latest, why)
    if latest.klass == ReconClass.UNSUCCESSFUL.value:
        return Verdict(
            "Issuer-only record, undone since: no money was taken",
            MoneyState.REVERSED,
            "The card's bank undid it; nothing of it is in effect.",
        )
    return _exception(f, latest)


# --- plain words: the timeline ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One moment in a swipe's life: when, a stable tag for machines, and what happened."""

    at_ms: int
    event: str
    text: str


def timeline(f: Facts) -> tuple[Step, ...]:
    """Every step known, oldest first (steps at the same moment keep the order they happen in)."""
    steps: list[Step] = []
    if f.switch is not None:
        steps += _switch_steps(f, f.switch)
    else:
        steps += _orphan_steps(f)
    steps += _issuer_steps(f)
    for d in f.day_ends:
        steps += _day_end_steps(f, d)
    return tuple(sorted(steps, key=lambda s: s.at_ms))


def _switch_steps(f: Facts, s: SwitchFacts) -> list[Step]:
    t = s.txn
    card = f", card {t.pan_masked}" if t.pan_masked else ""
    steps = [
        Step(
            t.received_at_ms,
            "received",
            f"received at the switch from terminal {t.terminal_id} (voucher {t.stan}, batch "
            f"{t.batch_no:06d}): {t.kind.value} {f.amount}{card}",
        )
    ]
    if s.original is not None:
        steps.append(_original_step(f, s.original, t.received_at_ms))
    if t.link_id and t.issuer_stan:
        steps.append(
            Step(
                t.received_at_ms,
                "forwarded",
                f"forwarded to the card's bank over link {t.link_id} (trace {t.issuer_stan})",
            )
        )
    if s.answer is not None:
        code = s.answer.code
        steps.append(
            Step(
                s.answer.at_ms,
                "answered",
                f"the switch sent the terminal its answer: {code} {reason_of(code)} (RRN {t.rrn})",
            )
        )
    steps += _event_steps(s)
    steps += _reversal_steps(s)
    steps += [_follow_up_step(f, x) for x in s.follow_ups]
    steps += _batch_steps(s)
    return steps


def _original_step(f: Facts, o: Txn, at_ms: int) -> Step:
    return Step(
        at_ms,
        "original",
        f"it names {o.kind.value} RRN {o.rrn} of {money_text(o.amount_minor, f.currency)}, "
        f"received {cst_text(o.received_at_ms)} CST, now {o.state.value}",
    )


_EVENT_WORDS: Final = {
    "switch.timed_out": ("timed_out", "no answer from the card's bank in time: answered 98"),
    "switch.late_response": (
        "late_answer",
        "the card's bank answered too late (not relayed; the reversal undoes it)",
    ),
    "switch.refused": ("refused", "the switch refused it"),
}


def _event_steps(s: SwitchFacts) -> list[Step]:
    steps = []
    for e in s.events:
        if e.kind not in _EVENT_WORDS:
            continue  # queued and acknowledged advices are told from the advice itself
        tag, words = _EVENT_WORDS[e.kind]
        code, reason = e.detail.get("rc"), e.detail.get("reason")
        extra = "".join(f", {v}" for v in (code, reason) if v)
        steps.append(Step(e.at_ms, tag, words + extra))
    return steps


def _reversal_steps(s: SwitchFacts) -> list[Step]:
    steps = []
    if s.reversal is not None:
        why = f": {s.reversal_why}" if s.reversal_why else ""
        steps.append(
            Step(
                s.reversal.received_at_ms,
                "terminal_reversal",
                f"the terminal reversed it (it had no answer){why}",
            )
        )
    a = s.advice
    if a is not None:
        steps.append(
            Step(
                a.created_at_ms,
                "reversal_queued",
                f"reversal advice queued for the card's bank over link {a.link_id}",
            )
        )
        if a.acked_at_ms is None:
            steps.append(
                Step(
                    a.next_at_ms,
                    "reversal_next_send",
                    f"reversal advice sent {a.attempts} times, not yet acknowledged; next try",
                )
            )
        else:
            # 00 and 25 close the reversal (undone, or nothing to undo); the issuer's own record
            # (its reversal step) says which. Any other code is a refusal.
            code = a.ack_code or ""
            refused = "" if code in _UNDONE_ACKS else f", refusing it ({reason_of(code)})"
            sends = f"{a.attempts} send{'s' if a.attempts != 1 else ''}"
            steps.append(
                Step(
                    a.acked_at_ms,
                    "reversal_acked",
                    f"the card's bank acknowledged the reversal {code}{refused} after {sends}",
                )
            )
    return steps


def _follow_up_step(f: Facts, x: Txn) -> Step:
    return Step(
        x.received_at_ms,
        f"{x.kind.value}_received",
        f"{x.kind.value} of {money_text(x.amount_minor, f.currency)} (RRN {x.rrn}, voucher "
        f"{x.stan}): {x.state.value}",
    )


def _batch_steps(s: SwitchFacts) -> list[Step]:
    b = s.batch
    if b is None or not _batch_matters(s, b):
        return []
    words = "balanced" if b.result == "balanced" else "not balanced (the totals differ)"
    steps = [
        Step(
            b.closed_at_ms, "batch_settled", f"the terminal settled batch {b.batch_no:06d}: {words}"
        )
    ]
    if b.upload_at_ms is not None:
        agrees = "agrees" if not b.upload_difference else f"differs: {b.upload_difference}"
        steps.append(
            Step(b.upload_at_ms, "uploaded", f"the terminal uploaded its record of it ({agrees})")
        )
    elif b.result != "balanced":  # approved when the batch closed (see _batch_matters)
        steps.append(
            Step(
                b.closed_at_ms,
                "not_uploaded",
                "the terminal's batch upload did not include it: the terminal has no receipt",
            )
        )
    return steps


def _batch_matters(s: SwitchFacts, b: BatchFacts) -> bool:
    """Whether the terminal's settlement says anything about the swipe: it was uploaded, or the
    switch approved it and had not begun undoing it when the terminal settled its batch."""
    if b.upload_at_ms is not None:
        return True
    if s.txn.response_code != "00":
        return False
    return s.advice is None or s.advice.created_at_ms > b.closed_at_ms


def _orphan_steps(f: Facts) -> list[Step]:
    o = f.orphan
    assert o is not None
    if o.issuer_txn_id is not None:
        return []  # told by the issuer's record
    return [
        Step(
            o.at_ms,
            "uploaded",
            f"terminal {o.terminal_id} uploaded a {o.kind} of {f.amount} (voucher {o.stan}, "
            f"batch {o.batch_no or 0:06d}, RRN {o.rrn}) the switch has no record of",
        )
    ]


def _issuer_steps(f: Facts) -> list[Step]:
    r, issuer = f.issuer.record, f.issuer
    if r is None:
        return []
    code = r.response_code
    decided = "approved" if r.approved else "declined"
    said = f"{code} {reason_of(code)}" + (f", auth {r.auth_code}" if r.auth_code else "")
    if not r.approved and r.reason and len(r.reason) <= 60:  # long reasons: --json has them
        said += f": {r.reason}"
    orphan = f" from terminal {r.terminal_id} (trace {r.stan})" if f.switch is None else ""
    steps = [Step(r.at_ms, "issuer_decision", f"the card's bank {decided} it ({said}){orphan}")]
    steps += _notice_steps(issuer.notice_of(r))
    for follower in issuer.followers:
        steps += _issuer_follower_steps(f, follower)
    return steps


def _issuer_follower_steps(f: Facts, r: TxnRecord) -> list[Step]:
    # Voids and refunds are told from the switch's rows; day-end refunds from the day end.
    if r.kind is not TxnKind.REVERSAL:
        return []
    if r.approved and r.transfer_id is not None:
        back = money_text(r.amount_minor, f.currency)
        step = Step(r.at_ms, "issuer_reversal", f"the card's bank reversed it: {back} back")
    else:
        step = Step(
            r.at_ms,
            "issuer_reversal",
            f"the card's bank answered the reversal {r.response_code}: {r.reason}",
        )
    return [step, *_notice_steps(f.issuer.notice_of(r))]


def _notice_steps(notice: Notice | None) -> list[Step]:
    if notice is None:
        return []
    return [Step(notice.at_ms, "notice", f"notice to the cardholder: {notice.text}")]


def _day_end_steps(f: Facts, d: DayEndFacts) -> list[Step]:
    cleared = f"; cleared as a {d.cleared_as}" if d.cleared_as else ""
    steps = [
        Step(d.classified_at_ms, "day_end", f"day end of {d.day}: {d.klass}, {d.reason}{cleared}")
    ]
    steps += _refund_steps(f, d.refund)
    st = d.statement
    if st is not None and st.at_ms is not None:
        net = money_text(st.net_minor, st.currency)
        steps.append(
            Step(
                st.at_ms,
                "statement",
                f"in {st.name}'s statement for {d.day}: net {net} after fees and refunds, to be "
                f"paid at the day end of {st.pay_day} ({_cycle(st.cycle)})",
            )
        )
    p = d.payout
    if p is not None:
        paid = money_text(p.amount_minor, st.currency if st else f.currency)
        words = (
            f"paid {paid} to {f.merchant_name} ({p.transfer_id})"
            if p.transfer_id
            else (f"nothing paid to {f.merchant_name} for {d.day}: its account held nothing to pay")
        )
        steps.append(Step(p.at_ms, "payout", f"day end of {p.day}: {words}"))
    return steps


def _refund_steps(f: Facts, refund: RefundFacts | None) -> list[Step]:
    if refund is None:
        return []
    if refund.result != "refunded":
        return [Step(refund.at_ms, "day_end_refund", "day-end refund: nothing left to refund")]
    back = money_text(refund.amount_minor, f.currency)
    steps = [
        Step(
            refund.at_ms,
            "day_end_refund",
            f"the day end refunded {back} to the card (issuer record {refund.reference})",
        )
    ]
    notices = f.issuer.notices or {}
    return steps + _notice_steps(notices.get(refund.notice_id or ""))


# --- one swipe, found ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """One swipe the look-up found: its facts, the verdict and the timeline."""

    facts: Facts
    verdict: Verdict
    steps: tuple[Step, ...]

    @property
    def source(self) -> str:
        """``switch``; ``issuer_only`` or ``terminal_only`` for a day-end item alone."""
        f = self.facts
        if f.switch is not None:
            return "switch"
        return "issuer_only" if f.orphan and f.orphan.issuer_txn_id else "terminal_only"

    @property
    def at_ms(self) -> int:
        f = self.facts
        if f.switch is not None:
            return f.switch.txn.received_at_ms
        record = f.issuer.record
        return record.at_ms if record is not None else f.orphan.at_ms if f.orphan else 0

    @property
    def rrn(self) -> str:
        f = self.facts
        return f.switch.txn.rrn if f.switch else f.orphan.rrn if f.orphan else ""

    def to_json(self) -> dict[str, Any]:
        """The swipe for machines: ids, amounts (minor units and text), verdict, timeline."""
        return {
            **self._identity(),
            "headline": self.verdict.headline,
            "money": self.verdict.money.value,
            "money_detail": self.verdict.money_detail,
            "issuer": _issuer_json(self.facts.issuer),
            "day_end": [_day_end_json(d) for d in self.facts.day_ends],
            "timeline": [
                {"at": cst_text(s.at_ms), "at_ms": s.at_ms, "event": s.event, "text": s.text}
                for s in self.steps
            ],
        }

    def _identity(self) -> dict[str, Any]:
        f, t, o = self.facts, self.facts.switch, self.facts.orphan
        record = f.issuer.record
        return {
            "rrn": self.rrn,
            "source": self.source,
            "kind": t.txn.kind.value if t else o.kind if o else None,
            "state": t.txn.state.value if t else None,
            "terminal_id": t.txn.terminal_id if t else o.terminal_id if o else None,
            "merchant_id": t.txn.merchant_id if t else o.merchant_id if o else None,
            "merchant_name": f.merchant_name,
            "voucher": t.txn.stan if t else (o.stan if o and not o.issuer_txn_id else None),
            "batch_no": t.txn.batch_no if t else o.batch_no if o else None,
            "card": t.txn.pan_masked if t else record.pan_masked if record else None,
            "amount_minor": f.amount_minor,
            "amount": f.amount,
            "currency": f.currency,
            "business_day": f.business_day,
            "at_ms": self.at_ms,
            "at": cst_text(self.at_ms),
        }


def _issuer_json(issuer: IssuerFacts) -> dict[str, Any] | None:
    r = issuer.record
    if r is None:
        return None
    undo = issuer.undo
    return {
        "record_id": r.id,
        "response_code": r.response_code,
        "meaning": reason_of(r.response_code),
        "reason": r.reason,
        "auth_code": r.auth_code or None,
        "at_ms": r.at_ms,
        "moved_money": issuer.moved,
        "reversed": undo is not None and undo.transfer_id is not None,
    }


def _day_end_json(d: DayEndFacts) -> dict[str, Any]:
    return {
        "day": d.day,
        "class": d.klass,
        "reason": d.reason,
        "exception": d.klass in EXCEPTIONS,
        "cleared_as": d.cleared_as,
        "refund": None
        if d.refund is None
        else {"result": d.refund.result, "amount_minor": d.refund.amount_minor},
        "pay_day": None if d.statement is None else d.statement.pay_day,
        "paid_by": None if d.payout is None else d.payout.transfer_id,
    }


def found(f: Facts) -> Found:
    return Found(f, explain(f), timeline(f))


# --- words and numbers ---------------------------------------------------------------------


def money_text(minor: int, currency: str) -> str:
    """``CNY 12.34``; minor units as they are for a currency the network does not know."""
    try:
        return str(Money(minor, currency))
    except MoneyError:
        return f"{minor} minor units ({currency or 'no currency'})"


def reason_of(code: str) -> str:
    """A response code's meaning in running text: ``51`` -> ``insufficient funds``."""
    meaning = describe(code).meaning
    return meaning[:1].lower() + meaning[1:]


def cst_text(at_ms: int) -> str:
    """``2026-11-21 14:03:07``, China Standard Time, as receipts and operators read it."""
    return local_text(at_ms)


def _clock(at_ms: int, since_ms: int) -> str:
    """``14:03``, or with the date when it is not the same calendar day as ``since_ms``."""
    text, since = cst_text(at_ms), cst_text(since_ms)
    return text[11:16] if text[:10] == since[:10] else text[:16]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower(text: str) -> str:
    """A headline continued after a colon."""
    return text[:1].lower() + text[1:]


def _event_detail(s: SwitchFacts, kind: str, key: str) -> str:
    for e in s.events:
        if e.kind == kind and e.detail.get(key):
            return str(e.detail[key])
    return ""
