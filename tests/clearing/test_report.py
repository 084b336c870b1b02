"""The day-end report: the terminal summary and the self-contained HTML file."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtally.clearing._fees import FeeSchedule, MerchantDay, statement
from cardtally.clearing._report import (
    TEXT_COLUMNS,
    ClassCount,
    DayReport,
    FileLine,
    HourVolume,
    Interruption,
    ReportError,
    render_html,
    render_text,
)

SVG = "{http://www.w3.org/2000/svg}"
SCHEDULE = FeeSchedule.from_percent({"standard": "0.60", "warehouse": "0.38"}, "0.08")
NASTY = "CLUB <SUPER> & \"CO\" 'X'"


def merchant(mid: str, name: str, **changes: object) -> MerchantDay:
    base = MerchantDay(
        merchant_id=mid,
        name=name,
        fee_plan="warehouse",
        agent="agent-7",
        cycle="t1",
        currency="156",
        sales_count=12,
        sales_minor=1234560,
        refunds_count=2,
        refunds_minor=120000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def small_day() -> DayReport:
    club = statement(merchant("898440358120001", NASTY), SCHEDULE)
    shop = statement(
        merchant(
            "M002",
            "SMALL SHOP",
            fee_plan="standard",
            agent=None,
            cycle="d0",
            sales_count=1,
            sales_minor=1000,
            refunds_count=1,
            refunds_minor=5000,
        ),
        SCHEDULE,
    )
    return DayReport(
        business_day="2026-11-21",
        window="2026-11-20 23:00 to 2026-11-21 23:00 CST",
        state="closed",
        currency="156",
        hourly=(
            HourVolume(9, 5, 52000),
            HourVolume(12, 9, 1100000),
            HourVolume(23, 1, 1000),
            HourVolume(18, 3, 92560),
        ),
        outcomes=(("approved", 15), ("declined", 1), ("timed_out", 1), ("reversed", 1)),
        classes=(
            ClassCount("matched", 13, 1235560),
            ClassCount("one_sided_debit", 1, 2500),
            ClassCount("unsuccessful", 3, 8000),
            ClassCount("amount_mismatch", 1, 700),
        ),
        interruptions=(
            Interruption(
                "000000000042",
                "T0000001",
                "898440358120001",
                "sale",
                2500,
                "timed out at the switch (98)",
                "refunded at day end (notice sent)",
            ),
            Interruption(
                "000000000051",
                "T0000002",
                "M002",
                "sale",
                3000,
                "terminal lost the answer; reversal sent",
                "reversed by advice",
            ),
        ),
        exceptions=(
            Interruption(
                "000000000077",
                "T0000002",
                "M002",
                "sale",
                700,
                "amount differs: switch 7.00, issuer 70.00",
                "exception for operations",
            ),
        ),
        files=(
            FileLine(
                "issuer-a",
                "/srv/ct/clearing/2026-11-21/issuer-a.parquet",
                14,
                1246560,
                120000,
                "accepted",
            ),
        ),
        statements=((club, "2026-11-23", False), (shop, "2026-11-21", True)),
        ledger_checks=(
            ("switch", True, "debits = credits = CNY 12466.60"),
            ("issuer", False, "off by CNY 0.01"),
        ),
    )


def empty_day(state: str = "closed") -> DayReport:
    return DayReport(
        business_day="2026-11-22",
        window="2026-11-21 23:00 to 2026-11-22 23:00 CST",
        state=state,
        currency="156",
        hourly=(),
        outcomes=(),
        classes=(),
        interruptions=(),
        exceptions=(),
        files=(),
        statements=(),
        ledger_checks=(),
    )


def assert_narrow(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > TEXT_COLUMNS]
    assert not wide, wide


# --- text ------------------------------------------------------------------------------------


def test_text_has_the_figures() -> None:
    text = render_text(small_day())
    for figure in [
        "business day 2026-11-21",
        "2026-11-20 23:00 to 2026-11-21 23:00 CST",
        "CNY 12455.60",  # the hours' amounts
        "CNY 12355.60",  # matched
        "approved      15  83.3%",
        "timed_out",
        "one_sided_debit",
        "refunded at day end",
        "Exceptions for operations in: amount_mismatch",
        "RRN 000000000042",
        "timed out at the switch (98)",
        "refunded at day end (notice sent)      1  CNY 25.00",
        "reversed by advice                     1  CNY 30.00",
        "RRN 000000000077",
        "amount differs: switch 7.00, issuer 70.00",
        "/srv/ct/clearing/2026-11-21/issuer-a.parquet",
        "12465.60",
        "CLUB <SUPER> &",  # plain text: no escaping (the name is clipped to fit)
        "TO BE PAID",
        "PAID",
        "agent-7 0.08%",
        "11098.69",
        "-40.06",
        "46.97",  # total MDR
        "Net to merchants",
        "CNY 11058.63",
        "NOT BALANCED",
        "off by CNY 0.01",
    ]:
        assert figure in text, figure
    assert "PROVISIONAL" not in text
    assert_narrow(text)


def test_text_hours_run_in_window_order() -> None:
    text = render_text(small_day())
    hours = re.findall(r"^  (\d\d):00  #", text, re.MULTILINE)
    assert hours == ["23", "09", "12", "18"]


def test_text_settlement_totals_add_up() -> None:
    text = render_text(small_day())
    total = next(line for line in text.splitlines() if line.startswith("  Total"))
    assert total.split() == ["Total", "13", "12355.60", "3", "1250.00", "46.97", "9.88", "11058.63"]


def test_text_of_an_empty_day() -> None:
    text = render_text(empty_day(state="running (step match)"))
    for phrase in [
        "PROVISIONAL",
        "running (step match)",
        "No transactions in the window.",
        "No transactions at the switch.",
        "Nothing to reconcile.",
        "None: every transaction finished cleanly.",
        "No clearing files.",
        "No merchant had business to settle.",
        "No ledger checked.",
        "not checked",
    ]:
        assert phrase in text, phrase
    assert_narrow(text)


def test_text_stays_narrow_with_long_fields() -> None:
    long = statement(
        merchant("A" * 15, "N" * 40, fee_plan="p" * 32, agent="a" * 32),
        FeeSchedule.from_percent({"p" * 32: "0.0825"}, "0.0001"),
    )
    report = replace(
        small_day(),
        window="W" * 150,
        files=(FileLine("l" * 64, "/very/" * 30 + "file.parquet", 10**9, 10**15, 10**15, "x"),),
        statements=((long, "2026-11-23", False),),
        ledger_checks=(("ledger", True, "detail " * 30),),
        interruptions=(
            Interruption("1" * 12, "T" * 8, "M" * 15, "completion", 10**15, "h " * 80, "r " * 80),
        ),
    )
    text = render_text(report)
    assert_narrow(text)
    assert "file.parquet" in text  # clipped from the left: the file name stays


NAMES = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(NAMES, st.integers(0, 10**13), st.integers(0, 10**13)), min_size=0, max_size=5
    ),
    st.lists(st.tuples(st.integers(0, 23), st.integers(0, 10**7)), max_size=30),
)
def test_text_is_always_narrow_and_html_well_formed(
    merchants: list[tuple[str, int, int]], hours: list[tuple[int, int]]
) -> None:
    statements = tuple(
        (
            statement(
                merchant(
                    f"M{i:03d}",
                    name,
                    sales_count=1 if sales else 0,
                    sales_minor=sales,
                    refunds_count=1 if refunds else 0,
                    refunds_minor=refunds,
                ),
                SCHEDULE,
            ),
            "2026-11-23",
            bool(i % 2),
        )
        for i, (name, sales, refunds) in enumerate(merchants)
    )
    hourly = tuple(HourVolume(h, n, n * 100) for h, n in dict(hours).items())
    report = replace(small_day(), statements=statements, hourly=hourly)
    assert_narrow(render_text(report))
    page = render_html(report)
    root = ET.fromstring(page)
    for st_, _, _ in statements:
        assert st_.name in "".join(root.itertext())


# --- HTML ------------------------------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"}


class TagBalance(HTMLParser):
    """Checks every element is closed, in order, as html.parser reads the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(page: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def test_html_is_well_formed_and_self_contained() -> None:
    page = render_html(small_day())
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse_html(page)
    assert parsed.tags.count("svg") == 4
    root = ET.fromstring(page)  # the whole page is well-formed XML too
    assert root.tag == "html"
    svgs = root.findall(f".//{SVG}svg")
    assert [s.get("aria-label") for s in svgs] == [
        "Transactions by hour",
        "Switch outcomes",
        "Interruptions by resolution",
        "Net settlement per merchant",
    ]
    for svg in svgs:
        ET.fromstring(ET.tostring(svg))  # each chart stands alone as SVG
        for rect in svg.iter(f"{SVG}rect"):
            assert rect.find(f"{SVG}title") is not None
            assert float(rect.get("width", "-1")) >= 0
            assert float(rect.get("height", "-1")) >= 0
    # No script, no external asset of any kind.
    assert "<script" not in page
    for element in root.iter():
        for attribute in ("src", "href", "{http://www.w3.org/1999/xlink}href"):
            assert element.get(attribute) is None
    assert "url(" not in page
    assert "@import" not in page


def test_html_escapes_merchant_names() -> None:
    page = render_html(small_day())
    assert "<SUPER>" not in page
    assert "CLUB &lt;SUPER&gt; &amp; &#34;CO&#34; &#39;X&#39;" in page
    root = ET.fromstring(page)
    assert NASTY in "".join(root.itertext())
    assert NASTY in "".join(parse_html(page).text)


def test_html_charts_carry_the_figures() -> None:
    root = ET.fromstring(render_html(small_day()))
    hours, outcomes, resolutions, nets = root.findall(f".//{SVG}svg")
    tips = [t.text for t in hours.iter(f"{SVG}title")]
    assert "12:00 to 13:00: 9 transactions, CNY 11000.00" in tips
    assert "23:00 to 00:00: 1 transaction, CNY 10.00" in tips
    ticks = [t.text for t in hours.iter(f"{SVG}text") if t.get("y") == "216"]
    assert ticks == [f"{(23 + i) % 24:02d}" for i in range(24)]  # the window's order
    assert [t.text for t in outcomes.iter(f"{SVG}text")][:2] == ["approved", "15 (83.3%)"]
    res_tips = [t.text for t in resolutions.iter(f"{SVG}title")]
    assert "refunded at day end (notice sent): 1 (CNY 25.00)" in res_tips
    bars = {
        (r.find(f"{SVG}title").text or ""): r.get("class")  # type: ignore[union-attr]
        for r in nets.iter(f"{SVG}rect")
    }
    assert bars[f"898440358120001 {NASTY}: CNY 11098.69"] == "bar"
    assert bars["M002 SMALL SHOP: CNY -40.06"] == "neg"


def test_html_tables_and_flags() -> None:
    page = render_html(small_day())
    text = "".join(ET.fromstring(page).itertext())
    for figure in [
        "000000000042",
        "refunded at day end (notice sent)",
        "exception for operations",
        "issuer-a.parquet",
        "TO BE PAID",
        "11058.63",
        "NOT BALANCED",
        "agent-7 0.08%",
    ]:
        assert figure in text, figure
    assert page.count('class="flag"') == 3  # amount_mismatch, M002's net, the issuer ledger
    assert "Provisional" not in page


def test_html_of_an_empty_day() -> None:
    page = render_html(empty_day(state="running (step extract)"))
    parse_html(page)
    root = ET.fromstring(page)
    text = "".join(root.itertext())
    for phrase in [
        "No transactions in the window",
        "No transactions at the switch",
        "No interruptions",
        "No merchant had business to settle",
        "Provisional",
        "running (step extract)",
    ]:
        assert phrase in text, phrase
    assert len(root.findall(f".//{SVG}svg")) == 4
    assert not list(root.iter(f"{SVG}rect"))


# --- the contract ----------------------------------------------------------------------------


def test_report_refuses_inconsistent_data() -> None:
    with pytest.raises(ReportError, match=r"hourly lists hour\(s\) \[9\] more than once"):
        replace(small_day(), hourly=(HourVolume(9, 1, 1), HourVolume(9, 2, 2)))
    with pytest.raises(ReportError, match="statement is in currency 156, the report in 840"):
        replace(small_day(), currency="840")
    with pytest.raises(ReportError, match="business day must be YYYY-MM-DD, got '21/11/2026'"):
        replace(small_day(), business_day="21/11/2026")
    with pytest.raises(ReportError, match="unknown ISO 4217 numeric currency code '999'"):
        replace(empty_day(), currency="999")
    with pytest.raises(ReportError, match=r"hour must be 0\.\.23, got 24"):
        HourVolume(24, 0, 0)
    with pytest.raises(ReportError, match="hour 3: count must be >= 0, got -1"):
        HourVolume(3, -1, 0)


def test_window_without_a_start_hour_runs_from_midnight() -> None:
    report = replace(small_day(), window="the whole day")
    hours = re.findall(r"^  (\d\d):00  #", render_text(report), re.MULTILINE)
    assert hours == ["09", "12", "18", "23"]
