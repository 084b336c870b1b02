"""The simulator's day end: the real matcher and the real refunds, fed from memory stores.

The real day end (``clearing._dayend``) loads three legs from SQL databases into DuckDB,
classifies every transaction with ``clearing._match`` and refunds each one-sided debit with
``clearing._issuer_leg.refund_one_sided``. Here the same DuckDB input tables are filled from the
simulator's in-memory stores instead, by the same selection rules as ``clearing._extract``
(written over Python objects rather than SQL), and everything after the load is the production
code itself. What the real day end keeps in its clearing tables across days (the items of each
closed day, the batches already reconciled) is kept here in memory.

A run is resumable the way the real one is: the match is done once per day, and a refund that
did not commit (a commit fault, a crash) is retried by the next ``run`` of the same day; the
refund's natural id makes a retry after a commit that did happen find it done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

import duckdb

from cardtally.clearing._calendar import BusinessDay
from cardtally.clearing._extract import DAYEND_ID_PREFIX, MONEY_KINDS, insert_rows
from cardtally.clearing._issuer_leg import Refunded, refund_one_sided
from cardtally.clearing._match import ReconCounts, create_inputs, reconcile
from cardtally.clearing._tables import ReconClass
from cardtally.config import SCHEMA
from cardtally.issuer._model import TxnKind as IssuerKind
from cardtally.issuer._model import TxnRecord
from cardtally.sim._issuer_store import MemoryIssuerStore
from cardtally.sim._switch_store import MemorySwitchStore, UploadRecord
from cardtally.switch._model import Txn, TxnState
from cardtally.switch._store import BatchRecord

#: The config's default for ``dayend.grace_ms``: issuer postings this long after the cutoff
#: still match the day's switch records.
DEFAULT_GRACE_MS: Final[int] = SCHEMA["dayend"]["grace_ms"].default
#: Switch states still waiting on the issuer: the real day end refuses to start over them.
_WAITING: Final = frozenset({TxnState.RECEIVED, TxnState.FORWARDED})


class DayEndRefusedError(Exception):
    """The day end would not start (the real one refuses the same cases); nothing was done."""


@dataclass(frozen=True, slots=True)
class SimItem:
    """One ``recon_item`` row: a transaction (or orphan record) of the day and its class.

    Fields are recon_item's columns, in its order (``class`` read as ``klass``).
    """

    item_no: int
    klass: ReconClass
    reason: str
    switch_txn_id: int | None
    issuer_txn_id: str | None
    kind: str
    terminal_id: str
    merchant_id: str
    batch_no: int | None
    stan: str
    rrn: str
    amount_minor: int
    issuer_amount_minor: int | None
    terminal_amount_minor: int | None
    currency: str
    link_id: str | None
    cleared_as: str | None  # "debit" | "credit" in the clearing file, else None
    at_ms: int

    @property
    def cleared(self) -> bool:
        """In the day's clearing file: what merchant settlement pays (or takes back)."""
        return self.cleared_as is not None


_ITEM_COLUMNS: Final = ", ".join(
    "class" if f.name == "klass" else f.name for f in dataclasses.fields(SimItem)
)


@dataclass(frozen=True, slots=True)
class DayEndResult:
    day: str
    counts: dict[str, int]  # every ReconClass value, zeros included
    items: tuple[SimItem, ...]  # in item_no order
    refunds: tuple[Refunded, ...]  # one per one-sided debit, in item order
    cleared_by_merchant: dict[str, int]  # cleared debits less cleared credits, minor units


@dataclass(slots=True)
class _Day:
    """A day whose match is done; its refunds are done once each is in ``refunds``."""

    window: BusinessDay
    counts: ReconCounts
    items: tuple[SimItem, ...]
    refunds: dict[int, Refunded] = field(default_factory=dict)  # by item_no

    def to_refund(self) -> list[SimItem]:
        return [
            i
            for i in self.items
            if i.klass is ReconClass.ONE_SIDED_DEBIT
            and i.issuer_txn_id is not None
            and i.item_no not in self.refunds
        ]

    def result(self) -> DayEndResult:
        return DayEndResult(
            day=self.window.text,
            counts={c.value: n for c, n in self.counts.by_class.items()},
            items=self.items,
            refunds=tuple(self.refunds.values()),
            cleared_by_merchant=cleared_by_merchant(self.items),
        )


class SimDayEnd:
    """Day ends over a simulated switch and issuer, one business day after the other."""

    def __init__(
        self,
        switch: MemorySwitchStore,
        issuer: MemoryIssuerStore,
        *,
        currency: str = "156",
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        self._switch = switch
        self._issuer = issuer
        self._currency = currency
        self._grace_ms = grace_ms
        self._days: dict[str, _Day] = {}
        self._last: _Day | None = None
        self._claimed_batches: set[tuple[str, int]] = set()
        self._claimed_issuer_ids: set[str] = set()

    def run(self, day: BusinessDay, now_ms: int) -> DayEndResult:
        """Match ``day`` (once) and make its refunds (those not done yet); the day's result.

        Running a finished day again changes nothing and gives the same result.
        """
        done = self._days.get(day.text)
        if done is None:
            self._preflight(day, now_ms)
            done = self._match(day)
            self._days[day.text] = self._last = done
        for item in done.to_refund():
            assert item.issuer_txn_id is not None
            # One transaction per refund, as the real day end: a fault costs only that one.
            with self._issuer.log.transaction():
                refunded = refund_one_sided(self._issuer, item.issuer_txn_id, day.text, now_ms)
            done.refunds[item.item_no] = refunded
        return done.result()

    def result(self, day_text: str) -> DayEndResult | None:
        """What the day end of ``day_text`` (``YYYY-MM-DD``) did so far; None before it ran."""
        done = self._days.get(day_text)
        return None if done is None else done.result()

    # --- preconditions: the real day end's refusals ----------------------------------------

    def _preflight(self, day: BusinessDay, now_ms: int) -> None:
        if now_ms < day.end_ms:
            raise DayEndRefusedError(f"business day {day.text} is still open at {now_ms}")
        self._check_order(day)
        txns = self._switch.all_txns()
        waiting = [t.id for t in txns if t.state in _WAITING and t.received_at_ms < day.end_ms]
        if waiting:
            raise DayEndRefusedError(
                f"RRN {min(waiting):012d} is still waiting on the issuer; answer or time it out"
            )
        if self._last is None and any(t.received_at_ms < day.start_ms for t in txns):
            raise DayEndRefusedError(f"the switch has swipes from before {day.text}")

    def _check_order(self, day: BusinessDay) -> None:
        last = self._last
        if last is None:
            return
        if last.to_refund():
            raise DayEndRefusedError(f"the day end of {last.window.text} has not finished")
        if day.day != last.window.day + timedelta(days=1):
            raise DayEndRefusedError(
                f"the last day closed is {last.window.text}; days close in order"
            )
        if day.start_ms != last.window.end_ms:
            raise DayEndRefusedError(
                f"business day {day.text} must start where {last.window.text} ended"
            )

    # --- the match -----------------------------------------------------------------------

    def _match(self, day: BusinessDay) -> _Day:
        # One core per run: the simulator runs many seeds side by side.
        con = duckdb.connect(config={"threads": 1})
        try:
            create_inputs(con)
            batches = self.load_inputs(con, day)
            counts = reconcile(con, cutoff_ms=day.end_ms)
            rows = con.execute(
                f"SELECT {_ITEM_COLUMNS} FROM recon_item ORDER BY item_no"  # noqa: S608
            ).fetchall()
        finally:
            con.close()
        items = tuple(_item(row) for row in rows)
        # Kept only once the whole match is through, as the real one commits it at once.
        self._claimed_batches.update(batches)
        self._claimed_issuer_ids.update(_placed_issuer_ids(items))
        return _Day(day, counts, items)

    def load_inputs(
        self, con: duckdb.DuckDBPyConnection, day: BusinessDay
    ) -> tuple[tuple[str, int], ...]:
        """Fill the matcher's four (created, empty) input tables for ``day`` as the SQL extract
        does; the closed batches this day claims (not yet reconciled on an earlier day)."""
        txns = day_txns(self._switch, day, self._carried_ids(day))
        insert_rows(con, "sw_txn", [_txn_row(t, day) for t in txns])
        wanted = {(t.terminal_id, t.batch_no) for t in txns}
        batches = [
            b
            for b in self._switch.all_batches()
            if (b.terminal_id, b.batch_no) not in self._claimed_batches
            or (b.terminal_id, b.batch_no) in wanted
        ]
        insert_rows(
            con,
            "sw_batch",
            [
                (b.terminal_id, b.batch_no, b.result, b.closed_at_ms, self._is_claimed(b))
                for b in batches
            ],
        )
        keys = {(b.terminal_id, b.batch_no) for b in batches}
        insert_rows(con, "sw_upload", self._upload_rows(keys))
        earliest = min([day.start_ms, *(t.received_at_ms for t in txns)])
        postings = issuer_postings(
            self._issuer.all_txns(),
            earliest - self._grace_ms,
            day.end_ms + self._grace_ms,
            self._claimed_issuer_ids,
        )
        insert_rows(con, "iss_txn", [_posting_row(r, in_effect) for r, in_effect in postings])
        return tuple(sorted(k for k in keys if k not in self._claimed_batches))

    def _is_claimed(self, batch: BatchRecord) -> bool:
        return (batch.terminal_id, batch.batch_no) in self._claimed_batches

    def _upload_rows(self, keys: set[tuple[str, int]]) -> list[tuple[object, ...]]:
        merchants: dict[str, str] = {}
        rows = []
        for upload in self._switch.all_uploads():
            if (upload.terminal_id, upload.batch_no) not in keys:
                continue
            if upload.terminal_id not in merchants:
                terminal = self._switch.terminal(upload.terminal_id)
                merchants[upload.terminal_id] = "" if terminal is None else terminal.merchant_id
            rows.append(_upload_row(upload, merchants[upload.terminal_id], self._currency))
        return rows

    def _carried_ids(self, day: BusinessDay) -> set[int]:
        """The previous day's awaiting_batch switch transactions: reconciled again today."""
        before = self._days.get((day.day - timedelta(days=1)).isoformat())
        if before is None:
            return set()
        return {
            i.switch_txn_id
            for i in before.items
            if i.klass is ReconClass.AWAITING_BATCH and i.switch_txn_id is not None
        }


# --- the rows, as clearing._extract selects them ---------------------------------------------


def day_txns(switch: MemorySwitchStore, day: BusinessDay, carried_ids: set[int]) -> list[Txn]:
    """Money transactions received in the day's window, and those carried, by id."""
    return sorted(
        (
            t
            for t in switch.all_txns()
            if t.kind.value in MONEY_KINDS and (_in_window(t, day) or t.id in carried_ids)
        ),
        key=lambda t: t.id,
    )


def _in_window(txn: Txn, day: BusinessDay) -> bool:
    return day.start_ms <= txn.received_at_ms < day.end_ms


def _txn_row(t: Txn, day: BusinessDay) -> tuple[object, ...]:
    return (
        t.id,
        t.kind.value,
        t.state.value,
        t.terminal_id,
        t.merchant_id,
        t.batch_no,
        t.stan,
        t.amount_minor,
        t.currency,
        t.link_id,
        t.issuer_stan,
        t.transmitted,
        t.response_code,
        t.auth_code,
        t.pan_masked,
        t.original_id,
        t.received_at_ms,
        not _in_window(t, day),  # carried
    )


def _upload_row(upload: UploadRecord, merchant_id: str, currency: str) -> tuple[object, ...]:
    return (
        upload.terminal_id,
        upload.batch_no,
        upload.stan,
        upload.rrn,
        upload.amount_minor,
        upload.processing_code,
        upload.difference,
        merchant_id,
        currency,
    )


def issuer_postings(
    records: Iterable[TxnRecord], from_ms: int, until_ms: int, claimed: set[str]
) -> list[tuple[TxnRecord, bool]]:
    """Approved money postings in ``[from_ms, until_ms)`` not yet placed, by id, each with
    whether it is still in effect (no approved, posted reversal points at it)."""
    records = list(records)
    undone = {
        r.original_id
        for r in records
        if r.kind is IssuerKind.REVERSAL and _posted(r) and r.original_id is not None
    }
    kept = [
        r
        for r in records
        if r.kind.value in MONEY_KINDS
        and _posted(r)
        and from_ms <= r.at_ms < until_ms
        and not r.id.startswith(DAYEND_ID_PREFIX)
        and r.id not in claimed
    ]
    return [(r, r.id not in undone) for r in sorted(kept, key=lambda r: r.id)]


def _posted(record: TxnRecord) -> bool:
    """The SQL extract's test: approved ('00', not TxnRecord.approved's) and a transfer made."""
    return record.response_code == "00" and record.transfer_id is not None


def _posting_row(r: TxnRecord, in_effect: bool) -> tuple[object, ...]:
    return (
        r.id,
        r.kind.value,
        r.terminal_id,
        r.merchant_id,
        r.stan,
        r.transmitted,
        r.rrn,
        r.amount_minor,
        r.currency,
        in_effect,
        r.at_ms,
    )


# --- the items ----------------------------------------------------------------------------------


def _item(row: Sequence[object]) -> SimItem:
    item = SimItem(*row)  # type: ignore[arg-type]
    return dataclasses.replace(item, klass=ReconClass(item.klass))


def _placed_issuer_ids(items: Iterable[SimItem]) -> set[str]:
    """Issuer records a day placed, never loaded again (awaiting ones are placed again later).

    The SQL extract looks these up only from the day before the earliest transaction's day, to
    keep its query small; records placed before that were posted before this day's issuer
    window opens (a day earlier, less the grace), so keeping every day's is the same.
    """
    return {
        i.issuer_txn_id
        for i in items
        if i.issuer_txn_id is not None and i.klass is not ReconClass.AWAITING_BATCH
    }


def cleared_by_merchant(items: Iterable[SimItem]) -> dict[str, int]:
    """Each merchant's net cleared amount: what ``clearing._settle`` pays before fees (items
    cleared as debits less those cleared as credits), for merchants with any cleared item."""
    net: dict[str, int] = {}
    for item in items:
        if item.cleared_as is None:
            continue
        sign = 1 if item.cleared_as == "debit" else -1
        net[item.merchant_id] = net.get(item.merchant_id, 0) + sign * item.amount_minor
    return dict(sorted(net.items()))
