"""Merchant fees and the settlement statement: what day end pays each merchant.

The merchant discount rate (MDR) of a merchant's fee plan is a share of its sales the acquirer
keeps, e.g. 0.60% on the ``standard`` plan. A merchant signed up through an agent gives the
agent a share of the MDR (e.g. 0.08% of sales, taken out of the 0.60%: the acquirer keeps
0.52%); the merchant pays the same either way.

Rates are written as percent strings (``"0.60"``) and held as integer parts per million of the
base (ppm: 0.60% = 6000 ppm), so every figure here is integer arithmetic: no float ever comes
near money.

The rules, applied once per merchant per business day (:func:`statement`):

* the MDR is charged on the day's cleared sales, **not** on sales net of refunds: a refund gives
  the cardholder the money back but does not give the merchant the MDR back. This is our choice
  (many acquirers do the same; some refund the MDR pro rata) and it keeps a day's fee a function
  of that day's sales alone, even when the refund is for a sale of an earlier day;
* ``fee = round_half_up(sales * rate)``; ``agent = round_half_up(sales * agent_share)`` when the
  merchant has an agent, else 0; ``acquirer = fee - agent``, so the split always adds up to the
  fee exactly, to the fen;
* ``net = sales - refunds - fee``. It is negative when the refunds (cross-day voids included)
  outweigh the day's sales: the merchant then owes that amount, and it is netted against its
  later payouts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Final

from cardtally.money import Money, MoneyError, currency_exponent

#: A rate is held as parts per million of the base: 1% = 10_000 ppm, 100% = 1_000_000 ppm.
PPM_PER_PERCENT: Final = 10_000
PPM_MAX: Final = 100 * PPM_PER_PERCENT
#: The most decimals a percent rate may have: 0.0001% = 1 ppm, the unit rates are held in.
RATE_DECIMALS_MAX: Final = 4
#: Settlement cycles, as the switch's registry stores them (``switch.SettlementCycle``).
CYCLE_D0: Final = "d0"  # paid at the day end of the business day itself
CYCLE_T1: Final = "t1"  # paid at the day end of the next business day
CYCLES: Final = (CYCLE_D0, CYCLE_T1)
#: A statement is printed in at most this many columns.
STATEMENT_COLUMNS: Final = 80

# ASCII digits only (``\d`` would take any Unicode digit), at most 3 before the point.
_RATE: Final = re.compile(r"(?P<int>[0-9]{1,3})(?:\.(?P<frac>[0-9]{1,4}))?", re.ASCII)
_PLAN_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,32}", re.ASCII)
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class FeeError(ValueError):
    """A rate, fee plan or merchant day that cannot be charged."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_rate_percent(text: str) -> int:
    """A percent rate written as text, in ppm: ``"0.60"`` -> 6000, ``"0.0825"`` -> 825.

    Accepts 0 to 100 with at most 4 decimals (ASCII digits, no sign, no exponent, no ``%``).
    Anything else is refused with a :class:`FeeError` naming the text; a float is refused even
    when its value would do, because a rate that went through a float is no longer the rate the
    contract says.

    >>> parse_rate_percent("0.60"), parse_rate_percent("2"), parse_rate_percent("100.0000")
    (6000, 20000, 1000000)
    """
    if not isinstance(text, str):
        raise FeeError(
            f'a rate must be written as a percent string such as "0.60", '
            f"not {type(text).__name__} {text!r}"
        )
    match = _RATE.fullmatch(text)
    if match is None:
        hint = " (write it without the %)" if text.strip().endswith("%") else ""
        raise FeeError(
            f"not a percent rate: {text!r}{hint}; expected 0 to 100 with at most "
            f'{RATE_DECIMALS_MAX} decimals, e.g. "0.60" or "0.0825"'
        )
    frac = match["frac"] or ""
    ppm = int(match["int"]) * PPM_PER_PERCENT + int(frac.ljust(RATE_DECIMALS_MAX, "0"))
    if ppm > PPM_MAX:
        raise FeeError(f"rate {text!r} is above 100%")
    return ppm


def format_rate(ppm: int) -> str:
    """A rate in ppm as a percent with 2 to 4 decimals: 6000 -> ``"0.60%"``, 825 -> ``"0.0825%"``.

    The inverse of :func:`parse_rate_percent` (without the ``%``).
    """
    _check_ppm("rate", ppm)
    units, frac = divmod(ppm, PPM_PER_PERCENT)
    decimals = f"{frac:0{RATE_DECIMALS_MAX}d}".rstrip("0").ljust(2, "0")
    return f"{units}.{decimals}%"


def fee_minor(base_minor: int, rate_ppm: int) -> int:
    """``rate_ppm`` of ``base_minor``, rounded half up to the minor unit, in integers only.

    >>> fee_minor(12345, 6000)  # 0.60% of CNY 123.45 = 74.07 fen
    74
    >>> fee_minor(25, 20000)  # 2% of 25 fen = 0.5 fen, half up
    1
    """
    if not _is_int(base_minor):
        raise FeeError(f"the fee base must be an int of minor units, not {base_minor!r}")
    if base_minor < 0:
        raise FeeError(f"the fee base must be >= 0 minor units, got {base_minor}")
    _check_ppm("rate", rate_ppm)
    return (base_minor * rate_ppm + PPM_MAX // 2) // PPM_MAX


def _check_ppm(what: str, ppm: int) -> None:
    if not _is_int(ppm) or not 0 <= ppm <= PPM_MAX:
        raise FeeError(f"{what} must be an int of ppm from 0 to {PPM_MAX} (100%), got {ppm!r}")


@dataclass(frozen=True, slots=True)
class FeePlan:
    """A named merchant discount rate, e.g. ``FeePlan("standard", 6000)`` for 0.60%."""

    name: str
    rate_ppm: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PLAN_NAME.fullmatch(self.name):
            raise FeeError(
                f"fee plan name must be 1-32 letters, digits, '.', '_' or '-', got {self.name!r}"
            )
        _check_ppm(f"fee plan {self.name!r} rate", self.rate_ppm)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The fee plans merchants can be on, and the agents' share of sales (out of the MDR).

    ``plans`` is copied into a read-only mapping keyed by plan name. The agent share must not
    exceed any plan's rate: an agent cannot earn more than the MDR it is paid out of.
    """

    plans: Mapping[str, FeePlan]
    agent_share_ppm: int

    def __post_init__(self) -> None:
        plans = dict(self.plans)
        if not plans:
            raise FeeError("a fee schedule needs at least one fee plan")
        for key, plan in plans.items():
            if not isinstance(plan, FeePlan):
                raise FeeError(f"fee plan {key!r} must be a FeePlan, not {type(plan).__name__}")
            if key != plan.name:
                raise FeeError(f"fee plan {plan.name!r} is filed under another name, {key!r}")
        _check_ppm("agent share", self.agent_share_ppm)
        for plan in plans.values():
            if self.agent_share_ppm > plan.rate_ppm:
                raise FeeError(
                    f"agent share {format_rate(self.agent_share_ppm)} exceeds the "
                    f"{format_rate(plan.rate_ppm)} MDR of fee plan {plan.name!r} "
                    f"it is paid out of"
                )
        object.__setattr__(self, "plans", MappingProxyType(dict(sorted(plans.items()))))

    @classmethod
    def from_percent(cls, rates: Mapping[str, str], agent_share: str) -> FeeSchedule:
        """A schedule from the config's percent strings: ``{"standard": "0.60"}``, ``"0.08"``."""
        plans = {}
        for name, text in rates.items():
            try:
                plans[name] = FeePlan(name, parse_rate_percent(text))
            except FeeError as exc:
                raise FeeError(f"fee plan {name!r}: {exc}") from None
        try:
            agent_ppm = parse_rate_percent(agent_share)
        except FeeError as exc:
            raise FeeError(f"agent share: {exc}") from None
        return cls(plans, agent_ppm)

    def plan(self, name: str) -> FeePlan:
        try:
            return self.plans[name]
        except KeyError:
            defined = ", ".join(self.plans)
            raise FeeError(f"fee plan {name!r} is not defined (defined: {defined})") from None


@dataclass(frozen=True, slots=True)
class MerchantDay:
    """One merchant's cleared business on one business day, in minor units of ``currency``.

    ``refunds_*`` are the money given back to cardholders that day: refunds, and voids of sales
    of earlier days (a same-day void cancels its sale, which is then not in ``sales_*``).
    """

    merchant_id: str
    name: str
    fee_plan: str
    agent: str | None
    cycle: str  # 'd0' | 't1' (switch.SettlementCycle values)
    currency: str  # ISO 4217 numeric, e.g. "156"
    sales_count: int
    sales_minor: int
    refunds_count: int
    refunds_minor: int

    def __post_init__(self) -> None:
        _check_merchant_day(self)


def _check_merchant_day(day: MerchantDay | Statement) -> None:
    mid = day.merchant_id
    if day.cycle not in CYCLES:
        raise FeeError(f"merchant {mid}: settlement cycle must be 'd0' or 't1', got {day.cycle!r}")
    try:
        currency_exponent(day.currency)
    except MoneyError as exc:
        raise FeeError(f"merchant {mid}: {exc}") from None
    for what in ("sales_count", "sales_minor", "refunds_count", "refunds_minor"):
        value = getattr(day, what)
        if not _is_int(value) or value < 0:
            raise FeeError(f"merchant {mid}: {what} must be an int >= 0, got {value!r}")
    for kind in ("sales", "refunds"):
        minor = getattr(day, f"{kind}_minor")
        if getattr(day, f"{kind}_count") == 0 and minor != 0:
            raise FeeError(f"merchant {mid}: {kind}_minor is {minor} with no {kind} counted")


@dataclass(frozen=True, slots=True)
class Statement:
    """What one merchant is charged and paid for one business day; see :func:`statement`.

    The merchant day's fields, then the charges. The figures are checked to hang together
    (``fee = agent + acquirer``, ``net = sales - refunds - fee``), so a statement read back
    from storage is as trustworthy as one just computed.
    """

    merchant_id: str
    name: str
    fee_plan: str
    agent: str | None
    cycle: str  # 'd0' | 't1'
    currency: str
    sales_count: int
    sales_minor: int
    refunds_count: int
    refunds_minor: int
    rate_ppm: int
    agent_ppm: int  # 0 when the merchant has no agent
    fee_minor: int  # the MDR charged: agent_minor + acquirer_fee_minor
    agent_minor: int
    acquirer_fee_minor: int
    net_minor: int  # sales - refunds - fee; negative: the merchant owes it

    def __post_init__(self) -> None:
        _check_merchant_day(self)
        mid = self.merchant_id
        _check_ppm(f"merchant {mid}: rate", self.rate_ppm)
        _check_ppm(f"merchant {mid}: agent share", self.agent_ppm)
        if self.agent is None and self.agent_ppm != 0:
            raise FeeError(f"merchant {mid} has no agent but an agent share of {self.agent_ppm}")
        for what in ("fee_minor", "agent_minor", "acquirer_fee_minor", "net_minor"):
            if not _is_int(getattr(self, what)):
                raise FeeError(
                    f"merchant {mid}: {what} must be an int, got {getattr(self, what)!r}"
                )
        if self.agent_minor + self.acquirer_fee_minor != self.fee_minor:
            raise FeeError(
                f"merchant {mid}: agent {self.agent_minor} + acquirer {self.acquirer_fee_minor} "
                f"!= MDR {self.fee_minor}"
            )
        if self.sales_minor - self.refunds_minor - self.fee_minor != self.net_minor:
            raise FeeError(
                f"merchant {mid}: net {self.net_minor} != sales {self.sales_minor} - refunds "
                f"{self.refunds_minor} - MDR {self.fee_minor}"
            )

    @property
    def day(self) -> MerchantDay:
        """The merchant day this statement charges."""
        return MerchantDay(
            merchant_id=self.merchant_id,
            name=self.name,
            fee_plan=self.fee_plan,
            agent=self.agent,
            cycle=self.cycle,
            currency=self.currency,
            sales_count=self.sales_count,
            sales_minor=self.sales_minor,
            refunds_count=self.refunds_count,
            refunds_minor=self.refunds_minor,
        )

    def money(self, minor: int) -> Money:
        return Money(minor, self.currency)


def statement(day: MerchantDay, schedule: FeeSchedule) -> Statement:
    """Charge a merchant's business day under ``schedule``; see the module docstring.

    The MDR is rounded once, on the day's total sales, not per transaction. Rounding each sale
    drifts: at 0.60%, a CNY 1.25 sale owes 0.75 fen, which rounds half up to 1 fen, so a hundred
    of them would be charged 100 fen instead of the 75 fen that 0.60% of CNY 125.00 is, a third
    too much; the drift always runs the same way for same-sized tickets and grows with the
    count. Rounding the total keeps each merchant within half a fen of the contract rate per
    day, and lets the merchant check the statement from its own figures: sales times rate.
    The agent share is rounded the same way, on the same base, so the split is as checkable.
    """
    plan = schedule.plan(day.fee_plan)
    agent_ppm = schedule.agent_share_ppm if day.agent is not None else 0
    fee = fee_minor(day.sales_minor, plan.rate_ppm)
    agent = fee_minor(day.sales_minor, agent_ppm)
    return Statement(
        merchant_id=day.merchant_id,
        name=day.name,
        fee_plan=day.fee_plan,
        agent=day.agent,
        cycle=day.cycle,
        currency=day.currency,
        sales_count=day.sales_count,
        sales_minor=day.sales_minor,
        refunds_count=day.refunds_count,
        refunds_minor=day.refunds_minor,
        rate_ppm=plan.rate_ppm,
        agent_ppm=agent_ppm,
        fee_minor=fee,
        agent_minor=agent,
        acquirer_fee_minor=fee - agent,
        net_minor=day.sales_minor - day.refunds_minor - fee,
    )


# --- the printed statement -----------------------------------------------------------------

_LABEL: Final = 18  # width of the label column of the header block
_AMOUNT: Final = 24  # width of the amount column, right-aligned at column 80
_COUNT: Final = 8


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def pair(self, label: str, value: str) -> None:
        room = STATEMENT_COLUMNS - _LABEL
        self.lines.append(f"{label:<{_LABEL}}{_clip(value, room)}".rstrip())

    def amount(self, label: str, count: str, money: Money) -> None:
        figures = f"{count:>{_COUNT}}{money!s:>{_AMOUNT}}"
        room = STATEMENT_COLUMNS - len(figures)
        self.lines.append(f"{_clip(label, room):<{room}}{figures}")

    def rule(self, char: str = "-") -> None:
        self.lines.append(char * STATEMENT_COLUMNS)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_day(what: str, text: str) -> date:
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        raise FeeError(f"{what} must be a date YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FeeError(f"{what} must be a date YYYY-MM-DD, got {text!r}") from None


def render_statement(st: Statement, *, business_day: str, pay_day: str, paid: bool) -> str:
    """The merchant's settlement statement for one business day, as plain text (<= 80 columns).

    ``pay_day`` is the business day whose day end pays the net: the business day itself for a
    D0 merchant, a later one for T+1 (the next business day, which skips holidays, so it is not
    computed here). ``paid`` says whether that payout has been made.
    """
    business = _check_day("business day", business_day)
    pays = _check_day("pay day", pay_day)
    if st.cycle == CYCLE_D0 and pays != business:
        raise FeeError(
            f"merchant {st.merchant_id} settles D0: pay day {pay_day} must be the business "
            f"day {business_day}"
        )
    if st.cycle == CYCLE_T1 and pays <= business:
        raise FeeError(
            f"merchant {st.merchant_id} settles T+1: pay day {pay_day} must be after the "
            f"business day {business_day}"
        )
    cycle = "D0 (paid at the day end of the business day)"
    if st.cycle == CYCLE_T1:
        cycle = "T+1 (paid at the day end of the next business day)"
    out = _Lines()
    out.lines.append("MERCHANT SETTLEMENT STATEMENT".center(STATEMENT_COLUMNS).rstrip())
    out.rule("=")
    out.pair("Merchant ID", st.merchant_id)
    out.pair("Merchant name", st.name)
    out.pair("Business day", business_day)
    out.pair("Fee plan", f"{st.fee_plan}, MDR {format_rate(st.rate_ppm)} of sales")
    if st.agent is not None:
        out.pair("Agent", f"{st.agent}, {format_rate(st.agent_ppm)} of sales out of the MDR")
    out.pair("Settlement cycle", cycle)
    out.pair("Currency", f"{Money.code_of(st.currency)} ({st.currency})")
    out.rule()
    out.lines.append(
        f"{'':<{STATEMENT_COLUMNS - _COUNT - _AMOUNT}}{'Count':>{_COUNT}}{'Amount':>{_AMOUNT}}"
    )
    out.amount("Sales", str(st.sales_count), st.money(st.sales_minor))
    out.amount(
        "Refunds and voids of earlier sales", str(st.refunds_count), st.money(-st.refunds_minor)
    )
    out.amount(f"MDR {format_rate(st.rate_ppm)} on sales", "", st.money(-st.fee_minor))
    if st.agent is not None:
        # Not in the amount column: it is part of the MDR above, not another deduction.
        share = st.money(st.agent_minor)
        out.lines.append(f"  of which agent share {format_rate(st.agent_ppm)}: {share}")
    out.rule()
    out.amount("NET SETTLEMENT", "", st.money(st.net_minor))
    out.rule("=")
    status = "PAID" if paid else "TO BE PAID"
    out.pair("Pay day", pay_day)
    out.pair("Status", status)
    if st.net_minor < 0:
        owed = st.money(-st.net_minor)
        out.lines.append(f"Refunds exceed the day's sales less MDR: {owed} is owed by the")
        out.lines.append("merchant and is netted against its next payouts.")
    out.lines.append("The MDR is charged on sales; refunds do not return it.")
    return "\n".join(out.lines) + "\n"
