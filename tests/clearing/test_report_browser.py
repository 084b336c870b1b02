"""The day-end HTML report in a real browser: headless Chromium lays out and paints every chart.

The report comes from a real day end (``report_day_support``: the real cores on SQLite, swipes
in four hours, approvals, a decline, a void, refunds, a reversal by advice and a one-sided
debit refunded at the day end, two merchants, one with a negative net), written by
``cardtally dayend report --html``. Chromium (Debian's ``chromium`` package, driven over the
DevTools protocol by ``headless``) opens the file, and :func:`look` checks what it drew:

- the four charts, in order, each laid out with a non-zero size and shown;
- in each chart every mark (rect, path, circle, ...) drawn with a non-empty box, painted (a
  fill, visible, not transparent), inside its chart, and as many as the page's SVG holds;
- no error from the page: no exception, no ``console.error``, no resource that failed;
- a PNG screenshot of the whole page (kept in the test's tmp_path) of the page's size, with
  ink where each chart and each of its marks is, read back through a canvas.

The tests after that feed the same :func:`look` broken variants of the report (a chart of
zero width, no bars, an empty bar, unpainted or white bars, a chart missing, a script error, a
missing asset) and assert it reports each: the check can fail.

Without Chromium at /usr/bin/chromium the tests are skipped, unless ``CI=true``: then they
fail (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.clearing._report import render_html
from tests.clearing.headless import CHROMIUM, Chromium, Page
from tests.clearing.report_day_support import CAFE, CLUB, ReportDay, build_report_day
from tests.clearing.test_report import empty_day
from tests.conftest import in_ci

SVG: Final = "{http://www.w3.org/2000/svg}"
#: The report's charts, in page order (cardtally.clearing._report).
CHART_LABELS: Final = (
    "Transactions by hour",
    "Switch outcomes",
    "Interruptions by resolution",
    "Net settlement per merchant",
)
VIEWPORT: Final = (1000, 900)
#: A pixel is ink when its R+G+B differ from the white page by more than this.
INK_DISTANCE: Final = 60
#: Painted marks are solid: at least this share of their pixels must be ink.
SOLID_SHARE: Final = 0.5
BAR_BLUE: Final = "rgb(59, 125, 216)"  # svg .bar
NEG_RED: Final = "rgb(210, 69, 58)"  # svg .neg

# Every top-level <svg> of the page with its marks, as laid out: page coordinates, CSS px.
_MEASURE: Final = """
(() => {
  const MARKS = 'rect, path, circle, ellipse, polygon, polyline';
  const box = (r) => ({x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height});
  const shown = (el) => {
    const s = getComputedStyle(el);
    return s.display !== 'none' && s.visibility === 'visible' && Number(s.opacity) > 0;
  };
  return [...document.querySelectorAll('svg')]
    .filter((svg) => !svg.parentElement.closest('svg'))
    .map((svg) => ({
      label: svg.getAttribute('aria-label') || '',
      box: box(svg.getBoundingClientRect()),
      shown: shown(svg),
      marks: [...svg.querySelectorAll(MARKS)]
        .filter((m) => !m.closest('defs, clipPath, mask, pattern, marker, symbol'))
        .map((m) => {
          const bbox = m.getBBox();
          const style = getComputedStyle(m);
          return {
            tag: m.tagName,
            css: m.getAttribute('class') || '',
            title: m.querySelector('title')?.textContent ?? '',
            box: box(m.getBoundingClientRect()),
            bbox: {x: bbox.x, y: bbox.y, width: bbox.width, height: bbox.height},
            fill: style.fill,
            fillOpacity: Number(style.fillOpacity),
            shown: shown(m),
          };
        }),
    }));
})()
"""

# [ink pixels, pixels] of the screenshot in each box (widened to whole pixels): the PNG decoded
# by the browser into a canvas.
_INK: Final = """
(async (png, boxes, distance) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + png;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const g = canvas.getContext('2d', {willReadFrequently: true});
  g.drawImage(img, 0, 0);
  return boxes.map((b) => {
    const x = Math.max(0, Math.floor(b.x)), y = Math.max(0, Math.floor(b.y));
    const w = Math.min(canvas.width, Math.ceil(b.x + b.width)) - x;
    const h = Math.min(canvas.height, Math.ceil(b.y + b.height)) - y;
    if (w <= 0 || h <= 0) return [0, 0];
    const d = g.getImageData(x, y, w, h).data;
    let ink = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (765 - d[i] - d[i + 1] - d[i + 2] > distance) ink++;
    }
    return [ink, w * h];
  });
})
"""


# --- what the browser drew -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @classmethod
    def of(cls, raw: dict[str, float]) -> Box:
        return cls(raw["x"], raw["y"], raw["width"], raw["height"])

    @property
    def empty(self) -> bool:
        return not (self.width > 0 and self.height > 0)

    def holds(self, other: Box, slack: float = 0.5) -> bool:
        return (
            other.x >= self.x - slack
            and other.y >= self.y - slack
            and other.x + other.width <= self.x + self.width + slack
            and other.y + other.height <= self.y + self.height + slack
        )

    def raw(self) -> dict[str, float]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


@dataclass(frozen=True, slots=True)
class Mark:
    tag: str
    css: str
    title: str
    box: Box  # getBoundingClientRect, in the page
    bbox: Box  # getBBox, in the chart's own units
    fill: str
    painted: bool

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Mark:
        painted = (
            raw["shown"]
            and raw["fill"] not in {"none", "transparent", "rgba(0, 0, 0, 0)"}
            and raw["fillOpacity"] > 0
        )
        return cls(
            raw["tag"],
            raw["css"],
            raw["title"],
            Box.of(raw["box"]),
            Box.of(raw["bbox"]),
            raw["fill"],
            painted,
        )

    @property
    def name(self) -> str:
        return f"{self.tag} {self.title!r}"


@dataclass(frozen=True, slots=True)
class Chart:
    label: str
    box: Box
    shown: bool
    marks: tuple[Mark, ...]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Chart:
        marks = tuple(Mark.of(m) for m in raw["marks"])
        return cls(raw["label"], Box.of(raw["box"]), raw["shown"], marks)


@dataclass(frozen=True, slots=True)
class Seen:
    """What :func:`look` found: the charts, the page's text and errors, and every problem."""

    charts: dict[str, Chart]
    text: str
    errors: list[str]
    screenshot: Path
    problems: list[str]


def marks_in_source(html: str) -> dict[str, int]:
    """How many marks each chart's SVG holds in the file (the report is well-formed XML)."""
    root = ET.fromstring(html)
    kinds = ("rect", "path", "circle", "ellipse", "polygon", "polyline")
    return {
        svg.get("aria-label", ""): sum(len(list(svg.iter(f"{SVG}{k}"))) for k in kinds)
        for svg in root.iter(f"{SVG}svg")
    }


def chart_problems(
    charts: list[Chart], in_source: dict[str, int], want_marks: tuple[str, ...]
) -> list[str]:
    """Layout problems: a chart missing, of zero size or hidden; a chart of ``want_marks``
    without marks; a mark with an empty box, unpainted, outside its chart; marks lost."""
    problems = []
    labels = tuple(c.label for c in charts)
    if labels != CHART_LABELS:
        problems.append(f"charts are {labels}, expected {CHART_LABELS}")
    for chart in charts:
        name, box = chart.label, chart.box
        if box.empty:
            problems.append(f"{name}: laid out {box.width:g} x {box.height:g} px")
        if not chart.shown:
            problems.append(f"{name}: not shown")
        if name in want_marks and not chart.marks:
            problems.append(f"{name}: no marks drawn")
        if len(chart.marks) != in_source.get(name, 0):
            problems.append(
                f"{name}: {len(chart.marks)} marks drawn, {in_source.get(name, 0)} in the SVG"
            )
        for mark in chart.marks:
            if mark.box.empty or mark.bbox.empty:
                problems.append(
                    f"{name}: {mark.name} has an empty box "
                    f"{mark.box.width:g} x {mark.box.height:g} px"
                )
            elif not box.holds(mark.box):
                problems.append(f"{name}: {mark.name} lies outside its chart")
            if not mark.painted:
                problems.append(f"{name}: {mark.name} is not painted (fill {mark.fill})")
    return problems


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert png[12:16] == b"IHDR", "a PNG starts with its IHDR chunk"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def screenshot_problems(page: Page, png: bytes, charts: list[Chart]) -> list[str]:
    """The screenshot must be the whole page, with ink in each chart; marks are solid, so at
    least :data:`SOLID_SHARE` of the pixels of each mark's box are ink, and of its chart."""
    problems = []
    size = png_size(png)
    page_size = tuple(
        page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
    )
    if size != page_size:
        problems.append(f"screenshot is {size}, the page {page_size}")
    boxes = [c.box for c in charts] + [m.box for c in charts for m in c.marks]
    encoded = base64.b64encode(png).decode("ascii")
    args = ", ".join(json.dumps(a) for a in (encoded, [b.raw() for b in boxes], INK_DISTANCE))
    counted = iter(page.evaluate(f"({_INK.strip()})({args})"))
    per_chart = [next(counted) for _ in charts]
    for chart, (chart_ink, _) in zip(charts, per_chart, strict=True):
        if chart_ink == 0:
            problems.append(f"{chart.label}: blank in the screenshot")
        marks_area = 0
        for mark in chart.marks:
            ink, area = next(counted)
            marks_area += area
            if ink < SOLID_SHARE * area:
                problems.append(
                    f"{chart.label}: {mark.name}: {ink} of {area} pixels inked in the screenshot"
                )
        if chart_ink < SOLID_SHARE * marks_area:
            problems.append(
                f"{chart.label}: {chart_ink} ink pixels in the screenshot, "
                f"its marks cover {marks_area}"
            )
    return problems


def look(
    page: Page, html: Path, screenshot: Path, want_marks: tuple[str, ...] = CHART_LABELS
) -> Seen:
    """Open ``html`` in the browser, measure its charts, read its errors, screenshot it."""
    page.navigate(html.as_uri())
    charts = [Chart.of(raw) for raw in page.evaluate(_MEASURE)]
    text = page.evaluate("document.body.innerText")
    source = html.read_text(encoding="utf-8")
    problems = chart_problems(charts, marks_in_source(source), want_marks)
    png = page.screenshot(screenshot)
    problems += screenshot_problems(page, png, charts)
    errors = page.errors()
    problems += [f"page error: {e}" for e in errors]
    return Seen({c.label: c for c in charts}, text, errors, screenshot, problems)


# --- fixtures --------------------------------------------------------------------------------


def chromium_or_skip(executable: Path = CHROMIUM) -> Path:
    """The browser; if it is missing, fail with ``CI=true`` (CI installs it), else skip."""
    if os.access(executable, os.X_OK):
        return executable
    reason = f"{executable} not found: install Debian's chromium package (apt-get install chromium)"
    if in_ci():
        pytest.fail(f"CI=true and {reason}; .ci/run installs it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    executable = chromium_or_skip()
    with Chromium(executable, tmp_path_factory.mktemp("chromium")) as browser:
        yield browser.new_page(*VIEWPORT)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> ReportDay:
    return build_report_day(tmp_path_factory.mktemp("home"))


# --- the real day's report -------------------------------------------------------------------


def test_real_day_report_draws_every_chart(page: Page, day: ReportDay, tmp_path: Path) -> None:
    seen = look(page, day.html, tmp_path / "dayend-report.png")
    assert seen.problems == []
    assert seen.errors == []
    assert tuple(seen.charts) == CHART_LABELS
    assert seen.screenshot.stat().st_size > 0

    # Bars in the hours the swipes happened, in window order (from 23:00), left to right,
    # and as tall as their counts.
    hours = seen.charts["Transactions by hour"].marks
    assert [m.title[:2] for m in hours] == [f"{h:02d}" for h in day.hours]
    assert [m.box.x for m in hours] == sorted(m.box.x for m in hours)
    counts = [int(re.findall(r": (\d+) transactions?,", m.title)[0]) for m in hours]
    per_txn = max(m.box.height for m in hours) / max(counts)
    for mark, count in zip(hours, counts, strict=True):
        assert mark.box.height == pytest.approx(count * per_txn, abs=1.0), mark
    assert counts == [1, 5, 8, 4]

    outcomes = [m.title.split(":")[0] for m in seen.charts["Switch outcomes"].marks]
    assert outcomes == ["approved", "declined", "reversed", "timed_out"]
    resolutions = [m.title for m in seen.charts["Interruptions by resolution"].marks]
    assert resolutions == [
        "reversed at the issuer: nothing taken: 1 (CNY 12.34)",
        "refunded at day end (notice sent): 1 (CNY 42.00)",
    ]

    # The café's net grows right of the zero line in blue, the club's negative net left in red.
    cafe, club = seen.charts["Net settlement per merchant"].marks
    assert (cafe.title, cafe.css, cafe.fill) == (
        f"{CAFE[0]} {CAFE[1]}: CNY 401.75",
        "bar",
        BAR_BLUE,
    )
    assert (club.title, club.css, club.fill) == (f"{CLUB[0]} {CLUB[1]}: CNY -0.10", "neg", NEG_RED)
    assert club.box.x + club.box.width == pytest.approx(cafe.box.x, abs=1.0)

    for figure in [
        "Day end, business day 2026-11-21",
        "Window 2026-11-20 23:00 to 2026-11-21 23:00 CST",
        "state: closed",
        CAFE[1],
        CLUB[1],
        "agent-7 0.08%",
        "CNY 401.65",  # net to merchants
        "CNY 20568.44 received at the switch",
        "refunded at day end (notice sent)",
        "reversed at the issuer: nothing taken",
        "issuer_a.parquet",
        "TO BE PAID",
    ]:
        assert figure in seen.text, figure
    assert "Provisional" not in seen.text
    # The terminal summary the same command printed tells the same day.
    assert "Net to merchants  CNY 401.65" in day.summary


# --- the check can fail ----------------------------------------------------------------------


def _first_svg(html: str, label: str) -> re.Match[str]:
    found = re.search(rf'<svg [^>]*aria-label="{label}">.*?</svg>', html, re.DOTALL)
    assert found, label
    return found


def _zero_width(html: str) -> str:
    svg = _first_svg(html, "Transactions by hour")
    broken = re.sub(r' width="\d+"', ' width="0"', svg[0], count=1)
    return html[: svg.start()] + broken + html[svg.end() :]


def _no_marks(html: str) -> str:
    svg = _first_svg(html, "Transactions by hour")
    broken = re.sub(r"<rect .*?</rect>\n?", "", svg[0], flags=re.DOTALL)
    return html[: svg.start()] + broken + html[svg.end() :]


def _empty_mark(html: str) -> str:
    svg = _first_svg(html, "Switch outcomes")
    broken = re.sub(r'(<rect [^>]*?) width="[\d.]+"', r'\1 width="0"', svg[0], count=1)
    return html[: svg.start()] + broken + html[svg.end() :]


def _style(css: str) -> Callable[[str], str]:
    return lambda html: html.replace("</style>", f"{css}\n</style>", 1)


def _chart_missing(html: str) -> str:
    svg = _first_svg(html, "Switch outcomes")
    return html[: svg.start()] + html[svg.end() :]


def _before_body_end(markup: str) -> Callable[[str], str]:
    return lambda html: html.replace("</body>", f"{markup}\n</body>", 1)


BROKEN: Final = {
    "chart of zero width": (_zero_width, "Transactions by hour: laid out 0 x 0 px"),
    "no bars": (_no_marks, "Transactions by hour: no marks drawn"),
    "a bar of zero width": (
        _empty_mark,
        "Switch outcomes: rect 'approved: 15 (83.3%)' has an empty box",
    ),
    "bars without fill": (_style("svg .bar { fill: none; }"), "is not painted (fill none)"),
    "bars hidden": (_style("svg rect { visibility: hidden; }"), "is not painted"),
    # Painted, but white on white: only the screenshot shows that nothing is there.
    "bars white": (_style("svg .bar { fill: #fff; }"), "pixels inked in the screenshot"),
    "a chart missing": (_chart_missing, "charts are ('Transactions by hour', 'Interruptions"),
    "a script error": (_before_body_end("<script>throw new Error('boom')</script>"), "boom"),
    "a missing asset": (_before_body_end('<img src="missing.png" alt=""/>'), "ERR_FILE_NOT_FOUND"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_check_reports_a_broken_report(
    page: Page, day: ReportDay, tmp_path: Path, case: str
) -> None:
    breaker, expected = BROKEN[case]
    original = day.html.read_text(encoding="utf-8")
    broken = breaker(original)
    assert broken != original, "the breaker changed nothing"
    html = tmp_path / "broken.html"
    html.write_text(broken, encoding="utf-8")
    problems = look(page, html, tmp_path / "broken.png").problems
    assert any(expected in p for p in problems), problems


def test_an_empty_day_has_charts_without_marks(page: Page, tmp_path: Path) -> None:
    """A day without traffic: four charts laid out with their "nothing" text, no marks."""
    html = tmp_path / "empty.html"
    html.write_text(render_html(empty_day()), encoding="utf-8")
    seen = look(page, html, tmp_path / "empty.png", want_marks=())
    assert seen.problems == []
    assert all(not c.marks for c in seen.charts.values())
    assert "No transactions in the window" in seen.text
    # The same page, required to have marks, is reported.
    assert look(page, html, tmp_path / "again.png").problems == [
        f"{label}: no marks drawn" for label in CHART_LABELS
    ]


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true and .*no-chromium not found"):
        chromium_or_skip(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install Debian's chromium package"):
        chromium_or_skip(missing)
