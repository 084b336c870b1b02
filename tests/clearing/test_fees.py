"""Merchant fees: rates as percent strings, MDR rounding, the agent split, the statement."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardtally.clearing._fees import (
    PPM_MAX,
    STATEMENT_COLUMNS,
    FeeError,
    FeePlan,
    FeeSchedule,
    MerchantDay,
    Statement,
    fee_minor,
    format_rate,
    parse_rate_percent,
    render_statement,
    statement,
)

SCHEDULE = FeeSchedule.from_percent({"standard": "0.60", "warehouse": "0.38"}, "0.08")


def day(**changes: object) -> MerchantDay:
    base = MerchantDay(
        merchant_id="898440358120001",
        name="CLUB SUPERMARKET",
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


# --- rates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ppm"),
    [
        ("0.60", 6000),
        ("0.6", 6000),
        ("0.38", 3800),
        ("0.08", 800),
        ("0.0825", 825),
        ("0.0001", 1),
        ("0", 0),
        ("0.0000", 0),
        ("2", 20000),
        ("007.5", 75000),
        ("100", PPM_MAX),
        ("100.0000", PPM_MAX),
    ],
)
def test_parse_rate_percent(text: str, ppm: int) -> None:
    assert parse_rate_percent(text) == ppm


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "",
        "-0.60",
        "+0.60",
        "1e-3",
        "0.00001",  # more than 4 decimals
        "100.0001",
        "101",
        "1000",
        ".60",
        "60.",
        " 0.60",
        "0.60\n",
        "0,60",
        "0.60%",
        "\u0660.\u0666",  # Arabic-Indic digits: \d would take them
        "nan",
        "inf",
    ],
)
def test_parse_rate_refuses_with_the_text(text: str) -> None:
    with pytest.raises(FeeError) as exc:
        parse_rate_percent(text)
    assert repr(text) in str(exc.value)


def test_parse_rate_messages() -> None:
    with pytest.raises(FeeError, match=r"rate '101' is above 100%"):
        parse_rate_percent("101")
    with pytest.raises(FeeError, match=r"'0\.60%' \(write it without the %\)"):
        parse_rate_percent("0.60%")
    with pytest.raises(FeeError, match=r"at most 4 decimals"):
        parse_rate_percent("0.00001")


@pytest.mark.parametrize("value", [0.6, 1, None, b"0.60"])
def test_parse_rate_refuses_non_strings(value: object) -> None:
    with pytest.raises(FeeError, match=r"percent string such as \"0\.60\", not"):
        parse_rate_percent(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ppm", "text"),
    [
        (6000, "0.60%"),
        (3800, "0.38%"),
        (800, "0.08%"),
        (825, "0.0825%"),
        (80, "0.008%"),
        (1, "0.0001%"),
        (0, "0.00%"),
        (10000, "1.00%"),
        (6500, "0.65%"),
        (PPM_MAX, "100.00%"),
    ],
)
def test_format_rate(ppm: int, text: str) -> None:
    assert format_rate(ppm) == text


@pytest.mark.parametrize("ppm", [-1, PPM_MAX + 1, True, 0.6])
def test_format_rate_refuses(ppm: object) -> None:
    with pytest.raises(FeeError, match="rate must be an int of ppm from 0 to 1000000"):
        format_rate(ppm)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=PPM_MAX))
def test_rate_round_trip(ppm: int) -> None:
    text = format_rate(ppm)
    assert text.endswith("%")
    assert 2 <= len(text.split(".")[1]) - 1 <= 4
    assert parse_rate_percent(text[:-1]) == ppm


@given(
    st.integers(min_value=0, max_value=99),
    st.text(alphabet="0123456789", min_size=1, max_size=4),
)
def test_rate_text_round_trip(units: int, decimals: str) -> None:
    text = f"{units}.{decimals}"
    shown = format_rate(parse_rate_percent(text))[:-1]
    assert parse_rate_percent(shown) == parse_rate_percent(text)
    # The same number, written with 2 to 4 decimals.
    assert shown.rstrip("0") == text.rstrip("0") or shown == f"{units}.{decimals.ljust(2, '0')}"


# --- fee arithmetic --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "rate", "fee", "why"),
    [
        (12345, 6000, 74, "0.60% of 123.45 = 74.07 fen"),
        (12350, 6000, 74, "0.60% of 123.50 = 74.1 fen"),
        (12500, 6000, 75, "0.60% of 125.00 = 75 fen exactly"),
        (125, 6000, 1, "0.60% of 1.25 = 0.75 fen, up"),
        (25, 20000, 1, "2% of 25 fen = 0.5 fen: half up"),
        (24, 20000, 0, "2% of 24 fen = 0.48 fen: down"),
        (75, 20000, 2, "2% of 75 fen = 1.5 fen: half up"),
        (12345, 3800, 47, "0.38% of 123.45 = 46.911 fen"),
        (1234560, 3800, 4691, "0.38% of 12345.60 = 4691.328 fen"),
        (12345, 800, 10, "0.08% of 123.45 = 9.876 fen"),
        (1234560, 800, 988, "0.08% of 12345.60 = 987.648 fen"),
        (625, 800, 1, "0.08% of 6.25 = 0.5 fen: half up"),
        (624, 800, 0, "0.08% of 6.24 = 0.4992 fen: down"),
        (0, 6000, 0, "no sales, no fee"),
        (12345, 0, 0, "a zero rate"),
        (12345, PPM_MAX, 12345, "100%"),
        (10**15, 6000, 6 * 10**12, "no float: exact at any size"),
        (10**18 + 1, 1, 10**12, "1 ppm of a huge base"),
    ],
)
def test_fee_worked_examples(base: int, rate: int, fee: int, why: str) -> None:
    assert fee_minor(base, rate) == fee, why


def test_rounding_once_per_day_not_per_transaction() -> None:
    # The drift the statement docstring describes: a hundred CNY 1.25 sales at 0.60%.
    per_transaction = sum(fee_minor(125, 6000) for _ in range(100))
    assert per_transaction == 100
    assert fee_minor(100 * 125, 6000) == 75


@pytest.mark.parametrize(
    ("base", "rate", "message"),
    [
        (-1, 6000, "the fee base must be >= 0 minor units, got -1"),
        (1.5, 6000, "the fee base must be an int of minor units, not 1.5"),
        (True, 6000, "the fee base must be an int of minor units, not True"),
        (100, -1, "rate must be an int of ppm from 0 to 1000000 (100%), got -1"),
        (100, PPM_MAX + 1, "got 1000001"),
        (100, 0.6, "got 0.6"),
    ],
)
def test_fee_refuses(base: object, rate: object, message: str) -> None:
    with pytest.raises(FeeError) as exc:
        fee_minor(base, rate)  # type: ignore[arg-type]
    assert message in str(exc.value)


BASES = st.integers(min_value=0, max_value=10**15)
RATES = st.integers(min_value=0, max_value=PPM_MAX)


@given(BASES, BASES, RATES)
def test_fee_monotone_in_base(a: int, b: int, rate: int) -> None:
    low, high = sorted((a, b))
    assert fee_minor(low, rate) <= fee_minor(high, rate)


@given(BASES, RATES, RATES)
def test_fee_monotone_in_rate(base: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert fee_minor(base, low) <= fee_minor(base, high)


@given(BASES, RATES)
def test_fee_within_base_and_half_a_unit_of_exact(base: int, rate: int) -> None:
    fee = fee_minor(base, rate)
    assert 0 <= fee <= base
    # |fee - base * rate / 1e6| <= 1/2, and exactly 1/2 only rounds up; in integers.
    error = fee * PPM_MAX - base * rate
    assert -PPM_MAX < 2 * error <= PPM_MAX


# --- plans and schedules ---------------------------------------------------------------------


def test_schedule_from_percent() -> None:
    assert SCHEDULE.plan("standard") == FeePlan("standard", 6000)
    assert SCHEDULE.plan("warehouse").rate_ppm == 3800
    assert SCHEDULE.agent_share_ppm == 800
    assert list(SCHEDULE.plans) == ["standard", "warehouse"]


def test_undefined_plan_names_the_defined_ones() -> None:
    with pytest.raises(FeeError) as exc:
        SCHEDULE.plan("gold")
    assert str(exc.value) == "fee plan 'gold' is not defined (defined: standard, warehouse)"


def test_schedule_plans_are_read_only() -> None:
    plans = {"standard": FeePlan("standard", 6000)}
    schedule = FeeSchedule(plans, 800)
    plans["gold"] = FeePlan("gold", 9000)
    with pytest.raises(FeeError):
        schedule.plan("gold")
    with pytest.raises(TypeError):
        schedule.plans["gold"] = FeePlan("gold", 9000)  # type: ignore[index]


@pytest.mark.parametrize(
    ("plans", "agent", "message"),
    [
        (
            {"standard": FeePlan("standard", 6000), "cheap": FeePlan("cheap", 500)},
            800,
            "agent share 0.08% exceeds the 0.05% MDR of fee plan 'cheap' it is paid out of",
        ),
        ({}, 0, "a fee schedule needs at least one fee plan"),
        (
            {"gold": FeePlan("standard", 6000)},
            0,
            "fee plan 'standard' is filed under another name, 'gold'",
        ),
        ({"standard": 6000}, 0, "fee plan 'standard' must be a FeePlan, not int"),
        ({"standard": FeePlan("standard", 6000)}, -1, "agent share must be an int of ppm"),
    ],
)
def test_schedule_refuses(plans: dict[str, FeePlan], agent: int, message: str) -> None:
    with pytest.raises(FeeError) as exc:
        FeeSchedule(plans, agent)
    assert message in str(exc.value)


def test_agent_share_equal_to_the_rate_is_allowed() -> None:
    schedule = FeeSchedule({"thin": FeePlan("thin", 800)}, 800)
    st_ = statement(day(fee_plan="thin"), schedule)
    assert st_.acquirer_fee_minor == 0
    assert st_.agent_minor == st_.fee_minor


def test_schedule_from_percent_names_the_bad_entry() -> None:
    with pytest.raises(FeeError, match=r"^fee plan 'standard': not a percent rate: '0\.6x'"):
        FeeSchedule.from_percent({"standard": "0.6x"}, "0.08")
    with pytest.raises(FeeError, match=r"^agent share: not a percent rate: '8bp'"):
        FeeSchedule.from_percent({"standard": "0.60"}, "8bp")


@pytest.mark.parametrize(
    ("name", "rate", "message"),
    [
        ("", 6000, "fee plan name must be 1-32 letters"),
        ("gold plan", 6000, "got 'gold plan'"),
        ("gold", PPM_MAX + 1, "fee plan 'gold' rate must be an int of ppm"),
        ("gold", True, "fee plan 'gold' rate must be an int of ppm"),
    ],
)
def test_plan_refuses(name: str, rate: int, message: str) -> None:
    with pytest.raises(FeeError) as exc:
        FeePlan(name, rate)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cycle": "t2"}, "merchant 898440358120001: settlement cycle must be 'd0' or 't1'"),
        ({"currency": "000"}, "unknown ISO 4217 numeric currency code '000'"),
        ({"sales_minor": -1}, "sales_minor must be an int >= 0, got -1"),
        ({"refunds_count": -1}, "refunds_count must be an int >= 0, got -1"),
        ({"sales_minor": 1.5}, "sales_minor must be an int >= 0, got 1.5"),
        ({"sales_count": 0}, "sales_minor is 1234560 with no sales counted"),
        ({"refunds_count": 0}, "refunds_minor is 120000 with no refunds counted"),
    ],
)
def test_merchant_day_refuses(changes: dict[str, object], message: str) -> None:
    with pytest.raises(FeeError) as exc:
        day(**changes)
    assert message in str(exc.value)


# --- the statement ---------------------------------------------------------------------------


def test_statement_with_agent() -> None:
    st_ = statement(day(), SCHEDULE)
    assert (st_.rate_ppm, st_.agent_ppm) == (3800, 800)
    assert st_.fee_minor == 4691  # 0.38% of 12345.60 = 46.91328
    assert st_.agent_minor == 988  # 0.08% of 12345.60 = 9.87648
    assert st_.acquirer_fee_minor == 3703
    assert st_.net_minor == 1234560 - 120000 - 4691 == 1109869
    assert st_.day == day()
    assert st_.merchant_id == "898440358120001"


def test_statement_without_agent() -> None:
    st_ = statement(day(agent=None, fee_plan="standard"), SCHEDULE)
    assert (st_.rate_ppm, st_.agent_ppm, st_.agent_minor) == (6000, 0, 0)
    assert st_.fee_minor == st_.acquirer_fee_minor == 7407  # 0.60% of 12345.60 = 74.0736


def test_refunds_do_not_return_the_mdr() -> None:
    with_refunds = statement(day(), SCHEDULE)
    without = statement(day(refunds_count=0, refunds_minor=0), SCHEDULE)
    assert with_refunds.fee_minor == without.fee_minor
    assert without.net_minor - with_refunds.net_minor == 120000


def test_negative_net_when_refunds_exceed_sales() -> None:
    st_ = statement(
        day(sales_count=1, sales_minor=1000, refunds_count=1, refunds_minor=5000), SCHEDULE
    )
    assert st_.fee_minor == 4  # 0.38% of 10.00 = 3.8 fen
    assert st_.net_minor == 1000 - 5000 - 4 == -4004


def test_a_day_of_refunds_only() -> None:
    st_ = statement(day(sales_count=0, sales_minor=0), SCHEDULE)
    assert (st_.fee_minor, st_.agent_minor, st_.net_minor) == (0, 0, -120000)


def test_unknown_plan_is_refused_by_statement() -> None:
    with pytest.raises(FeeError, match="fee plan 'gold' is not defined"):
        statement(day(fee_plan="gold"), SCHEDULE)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"agent_minor": 989}, "agent 989 + acquirer 3703 != MDR 4691"),
        ({"net_minor": 0}, "net 0 != sales 1234560 - refunds 120000 - MDR 4691"),
        ({"agent": None}, "has no agent but an agent share of 800"),
        ({"cycle": "weekly"}, "settlement cycle must be 'd0' or 't1'"),
        ({"fee_minor": 1.5}, "fee_minor must be an int"),
    ],
)
def test_statement_figures_must_hang_together(changes: dict[str, object], message: str) -> None:
    with pytest.raises(FeeError) as exc:
        replace(statement(day(), SCHEDULE), **changes)  # type: ignore[arg-type]
    assert message in str(exc.value)


DAYS = st.builds(
    MerchantDay,
    merchant_id=st.just("M001"),
    name=st.just("SHOP"),
    fee_plan=st.sampled_from(["standard", "warehouse", "thin"]),
    agent=st.none() | st.just("agent-1"),
    cycle=st.sampled_from(["d0", "t1"]),
    currency=st.sampled_from(["156", "392", "840"]),
    sales_count=st.integers(min_value=1, max_value=10**6),
    sales_minor=st.integers(min_value=0, max_value=10**15),
    refunds_count=st.integers(min_value=1, max_value=10**6),
    refunds_minor=st.integers(min_value=0, max_value=10**15),
)


@given(
    DAYS,
    st.integers(min_value=0, max_value=PPM_MAX),
    st.integers(min_value=0, max_value=PPM_MAX),
)
def test_statement_properties(d: MerchantDay, rate_a: int, rate_b: int) -> None:
    agent_share, thin = sorted((rate_a, rate_b))
    schedule = FeeSchedule(
        {
            "standard": FeePlan("standard", max(6000, agent_share)),
            "warehouse": FeePlan("warehouse", max(3800, agent_share)),
            "thin": FeePlan("thin", thin),
        },
        agent_share,
    )
    s = statement(d, schedule)
    assert s.acquirer_fee_minor + s.agent_minor == s.fee_minor
    assert 0 <= s.agent_minor <= s.fee_minor <= d.sales_minor
    assert s.acquirer_fee_minor >= 0
    assert s.net_minor == d.sales_minor - d.refunds_minor - s.fee_minor
    assert s.fee_minor == fee_minor(d.sales_minor, schedule.plan(d.fee_plan).rate_ppm)
    assert s.agent_minor == (0 if d.agent is None else fee_minor(d.sales_minor, agent_share))
    assert s.day == d


# --- the printed statement -------------------------------------------------------------------


def test_render_statement_with_agent_to_be_paid() -> None:
    text = render_statement(
        statement(day(), SCHEDULE), business_day="2026-11-21", pay_day="2026-11-23", paid=False
    )
    for figure in [
        "MERCHANT SETTLEMENT STATEMENT",
        "898440358120001",
        "CLUB SUPERMARKET",
        "2026-11-21",
        "warehouse, MDR 0.38% of sales",
        "agent-7, 0.08% of sales out of the MDR",
        "T+1",
        "CNY 12345.60",
        "CNY -1200.00",
        "MDR 0.38% on sales",
        "CNY -46.91",
        "of which agent share 0.08%: CNY 9.88",
        "NET SETTLEMENT",
        "CNY 11098.69",
        "2026-11-23",
        "TO BE PAID",
    ]:
        assert figure in text, figure
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= STATEMENT_COLUMNS
    sales = next(line for line in lines if line.startswith("Sales"))
    assert sales.split()[1] == "12"
    assert "owed by the" not in text


def test_render_statement_d0_paid_negative_net_without_agent() -> None:
    st_ = statement(
        day(
            agent=None,
            fee_plan="standard",
            cycle="d0",
            sales_count=1,
            sales_minor=1000,
            refunds_count=1,
            refunds_minor=5000,
        ),
        SCHEDULE,
    )
    text = render_statement(st_, business_day="2026-11-21", pay_day="2026-11-21", paid=True)
    assert "D0" in text
    assert "Status            PAID" in text
    assert "TO BE PAID" not in text
    assert "agent" not in text.lower()
    assert "CNY -40.06" in text
    assert "CNY 40.06 is owed by the" in text


def test_render_statement_in_yen_and_long_names() -> None:
    st_ = statement(
        day(currency="392", name="X" * 40, agent="a" * 32, fee_plan="standard"), SCHEDULE
    )
    text = render_statement(st_, business_day="2026-11-21", pay_day="2026-11-24", paid=False)
    assert "JPY 1234560" in text
    assert "X" * 40 in text
    assert max(len(line) for line in text.splitlines()) <= STATEMENT_COLUMNS


@pytest.mark.parametrize(
    ("cycle", "business", "pay", "message"),
    [
        ("d0", "2026-11-21", "2026-11-23", "settles D0: pay day 2026-11-23 must be the business"),
        ("t1", "2026-11-21", "2026-11-21", "settles T+1: pay day 2026-11-21 must be after the"),
        ("t1", "2026-11-21", "2026-11-20", "must be after the business day 2026-11-21"),
        ("t1", "2026-13-01", "2026-11-22", "business day must be a date YYYY-MM-DD, got '2026-13"),
        ("t1", "2026-11-21", "22/11/2026", "pay day must be a date YYYY-MM-DD, got '22/11/2026'"),
        ("t1", "2026-11-21", "20261122", "pay day must be a date YYYY-MM-DD"),
    ],
)
def test_render_statement_checks_the_days(
    cycle: str, business: str, pay: str, message: str
) -> None:
    st_ = statement(day(cycle=cycle), SCHEDULE)
    with pytest.raises(FeeError) as exc:
        render_statement(st_, business_day=business, pay_day=pay, paid=False)
    assert message in str(exc.value)


def test_statement_is_frozen() -> None:
    st_ = statement(day(), SCHEDULE)
    with pytest.raises(AttributeError):
        st_.net_minor = 0  # type: ignore[misc]
    assert isinstance(st_, Statement)
