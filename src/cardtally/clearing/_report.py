"""The day-end report, rendered from plain data: a terminal summary and one HTML file.

Nothing here reads a database: the day end fills a :class:`DayReport` and either renderer turns
it into text. Both work from the same figures (:func:`_view`), so the terminal and the HTML
never disagree. Amounts are integer minor units formatted with :class:`~cardtally.money.Money`;
floats appear only as pixel positions in the charts.

The HTML is a single self-contained file (inline CSS and SVG, no script, no external asset)
written to be well-formed XML as well as HTML, so it opens in any browser and can be checked
with an XML parser. Every value goes through Jinja2 autoescaping.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import jinja2

from cardtally.clearing._fees import CYCLE_D0, Statement, format_rate
from cardtally.clearing._tables import EXCEPTIONS, ReconClass
from cardtally.money import Money, MoneyError, currency_exponent

#: The terminal summary is printed in at most this many columns.
TEXT_COLUMNS: Final = 100
HOURS: Final = 24

_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
#: The hour the window starts at, e.g. ``2026-11-20 23:00 to ...`` -> 23.
_WINDOW_START: Final = re.compile(r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[ T]([0-9]{2}):", re.ASCII)

#: What each reconciliation class means, in an operator's words.
CLASS_MEANING: Final[dict[str, str]] = {
    ReconClass.MATCHED: "terminal, switch and issuer agree; cleared",
    ReconClass.ONE_SIDED_DEBIT: "issuer debit without a successful sale; refunded at day end",
    ReconClass.MISSING_AT_ISSUER: "approved at the switch, no posting in effect at the issuer",
    ReconClass.UNKNOWN_TO_HOST: "receipted at the terminal, unknown to or failed at the host",
    ReconClass.AMOUNT_MISMATCH: "the legs disagree on the amount",
    ReconClass.ONE_SIDED_CREDIT: "issuer credit in effect, the switch shows no success",
    ReconClass.AWAITING_BATCH: "approved on both sides; the terminal has not settled its batch",
    ReconClass.UNSUCCESSFUL: "no money moved on any leg (declined, reversed, ...)",
}


class ReportError(ValueError):
    """Report data that does not hang together."""


# --- the contract: what the day end fills in -------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourVolume:
    """Transactions the switch received in one clock hour of the window (local time)."""

    hour: int  # 0..23
    count: int
    amount_minor: int

    def __post_init__(self) -> None:
        if not 0 <= self.hour < HOURS:
            raise ReportError(f"hour must be 0..23, got {self.hour}")
        if self.count < 0:
            raise ReportError(f"hour {self.hour}: count must be >= 0, got {self.count}")


@dataclass(frozen=True, slots=True)
class Interruption:
    """A transaction that did not finish cleanly, and what became of it."""

    rrn: str
    terminal_id: str
    merchant_id: str
    kind: str
    amount_minor: int
    happened: str  # what went wrong, e.g. "timed out at the switch (98)"
    resolution: str  # e.g. "refunded at day end (notice sent)", "reversed by advice"


@dataclass(frozen=True, slots=True)
class ClassCount:
    """How many of the day's transactions landed in one reconciliation class."""

    klass: str
    count: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class FileLine:
    """One clearing file written for an issuer link."""

    link_id: str
    path: str
    records: int
    debit_minor: int
    credit_minor: int
    state: str


@dataclass(frozen=True, slots=True)
class DayReport:
    """Everything the day-end report shows for one business day, as plain data.

    ``hourly`` may list the hours in any order and leave out hours without traffic; the charts
    run through the 24 hours of the window starting at the hour ``window`` starts at.
    Every statement must be in ``currency``.
    """

    business_day: str  # YYYY-MM-DD
    window: str  # e.g. "2026-11-20 23:00 to 2026-11-21 23:00 CST"
    state: str  # closed / running (step ...)
    currency: str
    hourly: tuple[HourVolume, ...]
    outcomes: tuple[tuple[str, int], ...]  # switch outcome -> count (approved, declined, ...)
    classes: tuple[ClassCount, ...]
    interruptions: tuple[Interruption, ...]
    exceptions: tuple[Interruption, ...]
    files: tuple[FileLine, ...]
    statements: tuple[tuple[Statement, str, bool], ...]  # statement, pay_day, paid
    ledger_checks: tuple[tuple[str, bool, str], ...]  # (ledger name, balanced, detail)

    def __post_init__(self) -> None:
        if not _DAY.fullmatch(self.business_day):
            raise ReportError(f"business day must be YYYY-MM-DD, got {self.business_day!r}")
        try:
            currency_exponent(self.currency)
        except MoneyError as exc:
            raise ReportError(f"report currency: {exc}") from None
        hours = [h.hour for h in self.hourly]
        if len(set(hours)) != len(hours):
            twice = sorted({h for h in hours if hours.count(h) > 1})
            raise ReportError(f"hourly lists hour(s) {twice} more than once")
        for st, _, _ in self.statements:
            if st.currency != self.currency:
                raise ReportError(
                    f"merchant {st.merchant_id}'s statement is in currency "
                    f"{st.currency}, the report in {self.currency}"
                )


# --- the figures both renderers show ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """One item of a list: its cells as text, and whether to flag it."""

    cells: tuple[str, ...]
    flag: bool = False


@dataclass(frozen=True, slots=True)
class _View:
    code: str
    provisional: bool
    headline: tuple[tuple[str, str, str], ...]  # label, figure, detail
    hours: tuple[tuple[str, int, str], ...]  # "23:00", count, amount (24, in window order)
    outcomes: tuple[tuple[str, int, str], ...]  # outcome, count, share
    classes: tuple[_Row, ...]  # class, meaning, count, amount; flag: exception class
    interruptions: tuple[_Row, ...]  # rrn, tid, mid, kind, amount, happened, resolution
    resolutions: tuple[tuple[str, int, str], ...]  # resolution, count, amount
    exceptions: tuple[_Row, ...]
    files: tuple[_Row, ...]  # link, records, debits, credits, state, path
    merchants: tuple[_Row, ...]  # mid, name, plan, rate, agent, cycle, pay day, status
    amounts: tuple[_Row, ...]  # mid, n, sales, n, refunds, mdr, agent, net; flag: net < 0
    amount_totals: tuple[str, ...]
    nets: tuple[tuple[str, int, str], ...]  # "MID name", net minor, net text
    ledgers: tuple[_Row, ...]  # name, "balanced"/"NOT BALANCED", detail; flag: not balanced


def _window_start_hour(window: str) -> int:
    match = _WINDOW_START.match(window)
    return int(match[1]) % HOURS if match else 0


def _ledger_verdict(checked: int, unbalanced: int) -> str:
    if checked == 0:
        return "not checked"
    return "balanced" if unbalanced == 0 else f"{unbalanced} NOT BALANCED"


def _count(n: int) -> str:
    return f"{n:,}"


def _plural(n: int, noun: str) -> str:
    return f"{_count(n)} {noun}" + ("" if n == 1 else "s")


def _view(report: DayReport) -> _View:
    cur = report.currency

    def money(minor: int) -> str:
        return str(Money(minor, cur))

    def amount(minor: int) -> str:
        return Money(minor, cur).decimal_text()

    by_hour = {h.hour: h for h in report.hourly}
    start = _window_start_hour(report.window)
    hours = []
    for i in range(HOURS):
        slot = (start + i) % HOURS
        hv = by_hour.get(slot, HourVolume(slot, 0, 0))
        hours.append((f"{slot:02d}:00", hv.count, money(hv.amount_minor)))
    txn_count = sum(h.count for h in report.hourly)
    txn_amount = sum(h.amount_minor for h in report.hourly)

    outcome_total = sum(n for _, n in report.outcomes)
    outcomes = tuple(
        (name, n, f"{100 * n / outcome_total:.1f}%" if outcome_total else "-")
        for name, n in report.outcomes
    )
    outcome_of = dict(report.outcomes)

    classes = tuple(
        _Row(
            (c.klass, CLASS_MEANING.get(c.klass, ""), _count(c.count), amount(c.amount_minor)),
            flag=c.klass in EXCEPTIONS and c.count > 0,
        )
        for c in report.classes
    )
    matched = [c for c in report.classes if c.klass == ReconClass.MATCHED]

    def incident(item: Interruption) -> _Row:
        return _Row(
            (
                item.rrn,
                item.terminal_id,
                item.merchant_id,
                item.kind,
                amount(item.amount_minor),
                item.happened,
                item.resolution,
            )
        )

    tally: dict[str, tuple[int, int]] = {}
    for item in report.interruptions:
        n, total = tally.get(item.resolution, (0, 0))
        tally[item.resolution] = (n + 1, total + item.amount_minor)
    resolutions = tuple((res, n, money(total)) for res, (n, total) in tally.items())

    files = tuple(
        _Row(
            (
                f.link_id,
                _count(f.records),
                amount(f.debit_minor),
                amount(f.credit_minor),
                f.state,
                f.path,
            )
        )
        for f in report.files
    )

    merchants, amounts, nets = [], [], []
    sums = [0] * 7
    for st, pay_day, paid in report.statements:
        d = st
        merchants.append(
            _Row(
                (
                    d.merchant_id,
                    d.name,
                    d.fee_plan,
                    format_rate(st.rate_ppm),
                    "-" if d.agent is None else f"{d.agent} {format_rate(st.agent_ppm)}",
                    "D0" if d.cycle == CYCLE_D0 else "T+1",
                    pay_day,
                    "PAID" if paid else "TO BE PAID",
                )
            )
        )
        figures = (
            d.sales_count,
            d.sales_minor,
            d.refunds_count,
            d.refunds_minor,
            st.fee_minor,
            st.agent_minor,
            st.net_minor,
        )
        sums = [a + b for a, b in zip(sums, figures, strict=True)]
        amounts.append(_Row((d.merchant_id, *_amount_cells(figures, amount)), st.net_minor < 0))
        nets.append((f"{d.merchant_id} {d.name}", st.net_minor, money(st.net_minor)))
    totals = ("Total", *_amount_cells(tuple(sums), amount))
    fee_total, agent_total, net_total = sums[4], sums[5], sums[6]

    ledgers = tuple(
        _Row((name, "balanced" if ok else "NOT BALANCED", detail), flag=not ok)
        for name, ok, detail in report.ledger_checks
    )
    unbalanced = sum(1 for _, ok, _ in report.ledger_checks if not ok)

    headline = [
        ("Transactions", _count(txn_count), f"{money(txn_amount)} received at the switch"),
        (
            "Approved",
            _count(outcome_of.get("approved", 0)),
            f"of {_count(outcome_total)} switch outcomes",
        ),
        (
            "Cleared (matched)",
            _count(sum(c.count for c in matched)),
            money(sum(c.amount_minor for c in matched)),
        ),
        (
            "Interruptions",
            _count(len(report.interruptions)),
            "; ".join(f"{n} {res}" for res, n, _ in resolutions) or "none",
        ),
        (
            "Exceptions",
            _count(len(report.exceptions)),
            f"{money(sum(e.amount_minor for e in report.exceptions))} for operations",
        ),
        (
            "Net to merchants",
            money(net_total),
            f"{_plural(len(report.statements), 'merchant')}; MDR {money(fee_total)}"
            f" (agents {money(agent_total)}, acquirer {money(fee_total - agent_total)})",
        ),
        (
            "Clearing files",
            _count(len(report.files)),
            f"{_count(sum(f.records for f in report.files))} records",
        ),
        (
            "Ledgers",
            _ledger_verdict(len(report.ledger_checks), unbalanced),
            f"{len(report.ledger_checks)} checked",
        ),
    ]
    return _View(
        code=Money.code_of(cur),
        provisional=report.state.strip().lower() != "closed",
        headline=tuple(headline),
        hours=tuple(hours),
        outcomes=outcomes,
        classes=classes,
        interruptions=tuple(incident(i) for i in report.interruptions),
        resolutions=resolutions,
        exceptions=tuple(incident(e) for e in report.exceptions),
        files=files,
        merchants=tuple(merchants),
        amounts=tuple(amounts),
        amount_totals=totals,
        nets=tuple(nets),
        ledgers=ledgers,
    )


def _amount_cells(figures: Sequence[int], amount: Callable[[int], str]) -> tuple[str, ...]:
    sales_n, sales, refunds_n, refunds, fee, agent, net = figures
    return (
        _count(sales_n),
        amount(sales),
        _count(refunds_n),
        amount(refunds),
        amount(fee),
        amount(agent),
        amount(net),
    )


# --- text ----------------------------------------------------------------------------------


def _clip(text: str, width: int, *, left: bool = False) -> str:
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    return "..." + text[-(width - 3) :] if left else text[: width - 3] + "..."


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    align: str,
    *,
    flex: int | None = None,
    flex_min: int = 8,
    clip_left: bool = False,
    footer: Sequence[str] | None = None,
    indent: int = 2,
) -> list[str]:
    """A table within :data:`TEXT_COLUMNS`: column ``flex`` gives way (clipped) if it must;
    if even that does not fit, each row is printed as ``header: value`` lines."""
    body = [*rows, *([footer] if footer else [])]
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    gaps = 2 * (len(headers) - 1)
    excess = indent + sum(widths) + gaps - TEXT_COLUMNS
    if excess > 0 and flex is not None:
        widths[flex] = max(flex_min, widths[flex] - excess)
    pad = " " * indent

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            shown = _clip(cell, width, left=clip_left and i == flex)
            parts.append(shown.rjust(width) if align[i] == "r" else shown.ljust(width))
        return (pad + "  ".join(parts)).rstrip()

    rule = pad + "  ".join("-" * w for w in widths)
    out = [line(headers), rule, *(line(r) for r in rows)]
    if footer:
        out += [rule, line(footer)]
    if max(len(x) for x in out) <= TEXT_COLUMNS:
        return out
    stacked = []
    label = max(len(h) for h in headers)
    room = TEXT_COLUMNS - indent - label - 2
    for row in body:
        for head, cell in zip(headers, row, strict=True):
            shown = _clip(cell, room, left=clip_left and head == headers[flex or 0])
            stacked.append(f"{pad}{head:<{label}}  {shown}".rstrip())
        stacked.append("")
    return stacked[:-1]


def _section(title: str, count: int | None = None) -> list[str]:
    heading = title if count is None else f"{title} ({count})"
    return ["", heading, "=" * len(heading)]


def _wrapped(label: str, text: str, indent: int) -> list[str]:
    lead = " " * indent + f"{label:<15}"
    return textwrap.wrap(
        text or "-",
        TEXT_COLUMNS,
        initial_indent=lead,
        subsequent_indent=" " * len(lead),
        break_long_words=True,
    )


def _incidents(rows: Sequence[_Row], none: str, code: str) -> list[str]:
    if not rows:
        return [f"  {none}"]
    out = []
    for row in rows:
        rrn, tid, mid, kind, amount, happened, resolution = row.cells
        head = f"  RRN {rrn}  terminal {tid}  merchant {mid}  {kind}  {code} {amount}"
        out.append(_clip(head, TEXT_COLUMNS))
        out += _wrapped("what happened", happened, 6)
        out += _wrapped("resolution", resolution, 6)
    return out


def _text_head(report: DayReport, view: _View) -> list[str]:
    code = view.code
    out = [f"CARDTALLY DAY END  business day {report.business_day}", ""]
    out += [
        _clip(f"  {label:<14}{value}", TEXT_COLUMNS)
        for label, value in (
            ("Window", report.window),
            ("State", report.state),
            ("Currency", f"{code} ({report.currency}); table amounts in {code}"),
        )
    ]
    if view.provisional:
        out.append("  PROVISIONAL: the day end has not closed; figures may still change.")
    out += _section("Headline")
    fig = max(len(v) for _, v, _ in view.headline)
    for label, value, detail in view.headline:
        out.append(_clip(f"  {label:<18}{value:>{fig}}  {detail}", TEXT_COLUMNS))
    return out


def _text_traffic(view: _View) -> list[str]:
    out = _section("Volume by hour")
    busiest = max((n for _, n, _ in view.hours), default=0)
    if busiest == 0:
        out.append("  No transactions in the window.")
    else:
        count_w = max(len(_count(n)) for _, n, _ in view.hours)
        for label, n, money in view.hours:
            if n:
                bar = "#" * max(1, round(40 * n / busiest))
                out.append(f"  {label}  {bar:<40}  {_count(n):>{count_w}}  {money}")
        out.append("  (hours without transactions are left out)")

    out += _section("Switch outcomes")
    if view.outcomes:
        out += _table(
            ("Outcome", "Count", "Share"),
            [(name, _count(n), share) for name, n, share in view.outcomes],
            "lrr",
        )
    else:
        out.append("  No transactions at the switch.")

    out += _section("Reconciliation classes")
    if view.classes:
        out += _table(
            ("Class", "Count", f"Amount {view.code}", "Meaning"),
            [(c.cells[0], c.cells[2], c.cells[3], c.cells[1]) for c in view.classes],
            "lrrl",
            flex=3,
        )
        flagged = [c.cells[0] for c in view.classes if c.flag]
        if flagged:
            out.append(f"  Exceptions for operations in: {', '.join(flagged)}")
    else:
        out.append("  Nothing to reconcile.")
    return out


def _text_incidents(view: _View) -> list[str]:
    out = _section("Interruptions", len(view.interruptions))
    out += _incidents(view.interruptions, "None: every transaction finished cleanly.", view.code)
    if view.resolutions:
        out.append("")
        out += _table(
            ("How it was resolved", "Count", "Amount"),
            [(res, _count(n), money) for res, n, money in view.resolutions],
            "lrr",
            flex=0,
        )
    out += _section("Exceptions for operations", len(view.exceptions))
    out += _incidents(view.exceptions, "None.", view.code)
    return out


def _text_money(view: _View) -> list[str]:
    code = view.code
    out = _section("Clearing files", len(view.files))
    if view.files:
        out += _table(
            ("Link", "Records", f"Debits {code}", f"Credits {code}", "State", "File"),
            [f.cells for f in view.files],
            "lrrrll",
            flex=5,
            clip_left=True,
        )
    else:
        out.append("  No clearing files.")

    out += _section("Settlement per merchant", len(view.merchants))
    if view.merchants:
        # Plan and rate in one column, and no agent column on a day without agents: room for
        # the names (the HTML has them all).
        agents = any(m.cells[4] != "-" for m in view.merchants)
        rows = [
            (mid, name, f"{plan} {rate}", *((agent,) if agents else ()), cycle, pay, status)
            for mid, name, plan, rate, agent, cycle, pay, status in (
                m.cells for m in view.merchants
            )
        ]
        headers = ("Merchant", "Name", "Plan", *(("Agent",) if agents else ()), "Cycle")
        out += _table(
            (*headers, "Pay day", "Status"), rows, "l" * len(rows[0]), flex=1, flex_min=12
        )
        out.append("")
        out += _table(
            ("Merchant", "Sales", "Amount", "Refunds", "Amount", "MDR", "Agent", "Net"),
            [a.cells for a in view.amounts],
            "lrrrrrrr",
            footer=view.amount_totals,
        )
        owing = [a.cells[0] for a in view.amounts if a.flag]
        if owing:
            note = "Negative net (refunds exceed sales less MDR), netted against later payouts"
            out.append(_clip(f"  {note}: {', '.join(owing)}", TEXT_COLUMNS))
        out.append(f"  Amounts in {code}. MDR on sales; Agent is the agents' share of the MDR.")
    else:
        out.append("  No merchant had business to settle.")

    out += _section("Ledger checks", len(view.ledgers))
    if view.ledgers:
        out += _table(
            ("Ledger", "Result", "Detail"), [r.cells for r in view.ledgers], "lll", flex=2
        )
    else:
        out.append("  No ledger checked.")
    return out


def render_text(report: DayReport) -> str:
    """The day end as a terminal summary: plain text, at most 100 columns a line."""
    view = _view(report)
    lines = [
        *_text_head(report, view),
        *_text_traffic(view),
        *_text_incidents(view),
        *_text_money(view),
    ]
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    tip: str  # the <title>: a tooltip


@dataclass(frozen=True, slots=True)
class _Text:
    x: float
    y: float
    text: str
    anchor: str  # start | middle | end
    css: str = ""


@dataclass(frozen=True, slots=True)
class _Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class _Chart:
    label: str
    width: int
    height: int
    bars: tuple[_Bar, ...]
    texts: tuple[_Text, ...]
    lines: tuple[_Line, ...]


_CHART_W: Final = 760


def _px(value: float) -> float:
    return round(value, 1)


def _hour_chart(hours: Sequence[tuple[str, int, str]]) -> _Chart:
    """Vertical bars of the count per hour, the amount in each bar's tooltip."""
    left, right, top, bottom, height = 48, 8, 22, 30, 230
    plot_w, plot_h = _CHART_W - left - right, height - top - bottom
    slot = plot_w / max(1, len(hours))
    busiest = max((n for _, n, _ in hours), default=0)
    base = top + plot_h
    bars, texts = [], []
    for i, (label, n, money) in enumerate(hours):
        x = left + i * slot
        if n:
            h = max(1.0, plot_h * n / busiest)
            until = f"{(int(label[:2]) + 1) % HOURS:02d}:00"
            tip = f"{label} to {until}: {_plural(n, 'transaction')}, {money}"
            bars.append(
                _Bar(_px(x + slot * 0.15), _px(base - h), _px(slot * 0.7), _px(h), "bar", tip)
            )
            texts.append(_Text(_px(x + slot / 2), _px(base - h - 4), _count(n), "middle", "axis"))
        texts.append(_Text(_px(x + slot / 2), base + 16, label[:2], "middle", "axis"))
    texts.append(_Text(left - 6, base + 4, "0", "end", "axis"))
    if busiest:
        texts.append(_Text(left - 6, top + 4, _count(busiest), "end", "axis"))
    else:
        texts.append(
            _Text(
                left + plot_w / 2,
                top + plot_h / 2,
                "No transactions in the window",
                "middle",
                "empty",
            )
        )
    lines = (_Line(left, base, left + plot_w, base), _Line(left, top, left, base))
    return _Chart("Transactions by hour", _CHART_W, height, tuple(bars), tuple(texts), lines)


def _hbar_chart(label: str, items: Sequence[tuple[str, int, str]], empty: str) -> _Chart:
    """Horizontal bars, one per item (name, value, shown value), around a zero line.

    Values may be negative (a merchant's net): negative bars grow left of the zero line.
    """
    name_w, value_w, row_h, top = 250, 130, 24, 8
    plot_l, plot_w = name_w + 10, _CHART_W - name_w - value_w - 20
    height = top * 2 + row_h * max(1, len(items))
    high = max((v for _, v, _ in items), default=0)
    low = min((v for _, v, _ in items), default=0)
    span = max(high, 0) - min(low, 0)
    zero = plot_l + (plot_w * -min(low, 0) / span if span else 0)
    bars, texts = [], []
    for i, (name, value, shown) in enumerate(items):
        y = top + i * row_h
        w = plot_w * abs(value) / span if span else 0
        x = zero if value >= 0 else zero - w
        css = "neg" if value < 0 else "bar"
        bars.append(
            _Bar(
                _px(x),
                y + 4,
                _px(max(w, 1.0 if value else 0.0)),
                row_h - 8,
                css,
                f"{name}: {shown}",
            )
        )
        texts.append(_Text(name_w, y + row_h / 2 + 4, _clip(name, 36), "end"))
        texts.append(_Text(_CHART_W - 8, y + row_h / 2 + 4, shown, "end", "value"))
    if not items:
        texts.append(_Text(_CHART_W / 2, top + row_h / 2 + 4, empty, "middle", "empty"))
    lines = (_Line(_px(zero), top, _px(zero), height - top),) if items else ()
    return _Chart(label, _CHART_W, height, tuple(bars), tuple(texts), lines)


_TEMPLATE: Final = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>Day end {{ r.business_day }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 980px;
  color: #1d2733; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #c9d2dc; }
.meta { color: #4a5866; margin: 0; }
.banner { background: #fff4d6; border: 1px solid #e0b84c; padding: 8px 12px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; }
.card { border: 1px solid #d5dde6; border-radius: 6px; padding: 8px 10px; }
.card .figure { font-size: 20px; font-weight: 600; }
.card .label, .card .detail { font-size: 12px; color: #4a5866; }
table { border-collapse: collapse; margin: 8px 0; width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e8ee; text-align: left;
  vertical-align: top; }
th { background: #f3f6f9; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flag td { background: #fdecea; }
tfoot td { font-weight: 600; }
.none { color: #4a5866; font-style: italic; }
svg { max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg .bar { fill: #3b7dd8; }
svg .neg { fill: #d2453a; }
svg .axis { fill: #4a5866; }
svg .value { font-variant-numeric: tabular-nums; }
svg .empty { fill: #4a5866; font-size: 13px; }
svg line { stroke: #8a96a3; stroke-width: 1; }
</style>
</head>
<body>
{% macro chart(c) %}
<svg xmlns="http://www.w3.org/2000/svg" width="{{ c.width }}" height="{{ c.height }}" \
viewBox="0 0 {{ c.width }} {{ c.height }}" role="img" aria-label="{{ c.label }}">
<title>{{ c.label }}</title>
{% for l in c.lines %}
<line x1="{{ l.x1 }}" y1="{{ l.y1 }}" x2="{{ l.x2 }}" y2="{{ l.y2 }}"/>
{% endfor %}
{% for b in c.bars %}
<rect class="{{ b.css }}" x="{{ b.x }}" y="{{ b.y }}" width="{{ b.width }}" \
height="{{ b.height }}"><title>{{ b.tip }}</title></rect>
{% endfor %}
{% for t in c.texts %}
<text class="{{ t.css }}" x="{{ t.x }}" y="{{ t.y }}" text-anchor="{{ t.anchor }}">\
{{ t.text }}</text>
{% endfor %}
</svg>
{% endmacro %}
{% macro incidents(rows, empty_text) %}
{% if rows %}
<table>
<thead><tr><th>RRN</th><th>Terminal</th><th>Merchant</th><th>Kind</th>\
<th class="num">Amount {{ v.code }}</th><th>What happened</th><th>Resolution</th></tr></thead>
<tbody>
{% for row in rows %}
<tr>{% for cell in row.cells %}<td{% if loop.index == 5 %} class="num"{% endif %}>\
{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="none">{{ empty_text }}</p>
{% endif %}
{% endmacro %}
<h1>Day end, business day {{ r.business_day }}</h1>
<p class="meta">Window {{ r.window }} &#183; state: {{ r.state }} &#183; \
amounts in {{ v.code }} ({{ r.currency }})</p>
{% if v.provisional %}
<p class="banner">Provisional: the day end has not closed; figures may still change.</p>
{% endif %}

<h2>Headline</h2>
<div class="cards">
{% for label, figure, detail in v.headline %}
<div class="card"><div class="label">{{ label }}</div><div class="figure">{{ figure }}</div>\
<div class="detail">{{ detail }}</div></div>
{% endfor %}
</div>

<h2>Volume by hour</h2>
{{ chart(hour_chart) }}

<h2>Switch outcomes</h2>
{{ chart(outcome_chart) }}
{% if v.outcomes %}
<table>
<thead><tr><th>Outcome</th><th class="num">Count</th><th class="num">Share</th></tr></thead>
<tbody>
{% for name, n, share in v.outcomes %}
<tr><td>{{ name }}</td><td class="num">{{ n }}</td><td class="num">{{ share }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}

<h2>Reconciliation classes</h2>
{% if v.classes %}
<table>
<thead><tr><th>Class</th><th>Meaning</th><th class="num">Count</th>\
<th class="num">Amount {{ v.code }}</th></tr></thead>
<tbody>
{% for c in v.classes %}
<tr{% if c.flag %} class="flag"{% endif %}><td>{{ c.cells[0] }}</td><td>{{ c.cells[1] }}</td>\
<td class="num">{{ c.cells[2] }}</td><td class="num">{{ c.cells[3] }}</td></tr>
{% endfor %}
</tbody>
</table>
<p class="meta">Highlighted: exceptions for operations, which nothing automatic repairs.</p>
{% else %}
<p class="none">Nothing to reconcile.</p>
{% endif %}

<h2>Interruptions ({{ v.interruptions|length }})</h2>
{{ chart(resolution_chart) }}
{{ incidents(v.interruptions, "None: every transaction finished cleanly.") }}

<h2>Exceptions for operations ({{ v.exceptions|length }})</h2>
{{ incidents(v.exceptions, "None.") }}

<h2>Clearing files ({{ v.files|length }})</h2>
{% if v.files %}
<table>
<thead><tr><th>Link</th><th class="num">Records</th><th class="num">Debits {{ v.code }}</th>\
<th class="num">Credits {{ v.code }}</th><th>State</th><th>File</th></tr></thead>
<tbody>
{% for f in v.files %}
<tr>{% for cell in f.cells %}<td{% if 2 <= loop.index <= 4 %} class="num"{% endif %}>\
{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="none">No clearing files.</p>
{% endif %}

<h2>Settlement per merchant ({{ v.merchants|length }})</h2>
{{ chart(net_chart) }}
{% if v.merchants %}
<table>
<thead><tr><th>Merchant</th><th>Name</th><th>Plan</th><th>MDR</th><th>Agent</th>\
<th>Cycle</th><th>Pay day</th><th>Status</th></tr></thead>
<tbody>
{% for m in v.merchants %}
<tr>{% for cell in m.cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
<table>
<thead><tr><th>Merchant</th><th class="num">Sales</th><th class="num">Amount</th>\
<th class="num">Refunds</th><th class="num">Amount</th><th class="num">MDR</th>\
<th class="num">Agent share</th><th class="num">Net</th></tr></thead>
<tbody>
{% for a in v.amounts %}
<tr{% if a.flag %} class="flag"{% endif %}>{% for cell in a.cells %}\
<td{% if not loop.first %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
<tfoot><tr>{% for cell in v.amount_totals %}\
<td{% if not loop.first %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr></tfoot>
</table>
<p class="meta">Amounts in {{ v.code }}. The MDR is charged on the day's sales, rounded once \
per merchant; the agent share is part of it. A negative net (highlighted) is owed by the \
merchant and netted against later payouts.</p>
{% else %}
<p class="none">No merchant had business to settle.</p>
{% endif %}

<h2>Ledger checks ({{ v.ledgers|length }})</h2>
{% if v.ledgers %}
<table>
<thead><tr><th>Ledger</th><th>Result</th><th>Detail</th></tr></thead>
<tbody>
{% for l in v.ledgers %}
<tr{% if l.flag %} class="flag"{% endif %}>{% for cell in l.cells %}<td>{{ cell }}</td>\
{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="none">No ledger checked.</p>
{% endif %}
</body>
</html>
"""


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.from_string(_TEMPLATE)


def render_html(report: DayReport) -> str:
    """The day end as one self-contained HTML file (also well-formed XML), charts inline SVG."""
    view = _view(report)
    return _template().render(
        r=report,
        v=view,
        hour_chart=_hour_chart(view.hours),
        outcome_chart=_hbar_chart(
            "Switch outcomes",
            [(name, n, f"{_count(n)} ({share})") for name, n, share in view.outcomes],
            "No transactions at the switch",
        ),
        resolution_chart=_hbar_chart(
            "Interruptions by resolution",
            [(res, n, f"{_count(n)} ({money})") for res, n, money in view.resolutions],
            "No interruptions",
        ),
        net_chart=_hbar_chart(
            "Net settlement per merchant", view.nets, "No merchant had business to settle"
        ),
    )
