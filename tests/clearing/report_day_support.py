"""A real business day in one process, for the report tests: traffic, day end, HTML report.

The real cores run on the SQLite databases of a fresh home: a terminal's request goes through
``SwitchCore``, the forward through ``IssuerCore`` and the answer back, each step in its own
store transaction, so the databases hold what a running switch and issuer leave. The clock is
the test's: the swipes land in several hours of the business day (a real network would put
them all in the minute the test runs). The real day end (:func:`run_day`) then closes the day,
and ``cardtally dayend report --html`` (the Typer app, in process) writes the report from the
record.

The day (:func:`build_report_day`), window 2026-11-20 23:00 to 2026-11-21 23:00 CST:

- :data:`CAFE` (standard plan, T+1): sales in four hours, one declined (over the balance),
  one voided, one partly refunded, one whose answer was lost and whose reversal advice got
  through (reversed by advice), and one whose answer was lost with the advice still queued
  when the day closed (a one-sided debit the day end refunds, with a notice);
- :data:`CLUB` (warehouse plan, D0, signed up by an agent): a sale refunded in full, so its
  net is the MDR it owes: negative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, TypeVar

from cardtally.clearing._calendar import BusinessDay, business_day
from cardtally.clearing._database import close_dayend, open_dayend
from cardtally.clearing._dayend import Dayend, run_day
from cardtally.config import load_config
from cardtally.issuer import CardLimits, IssuerCore, IssuerPolicy, NewCard, SqlIssuerStore, add_card
from cardtally.security import DataKeys, IssuerKeys, decode_signon_keys, generate_master_key
from cardtally.storage import transaction
from cardtally.switch import (
    AdviceAcked,
    Forward,
    SettlementCycle,
    SqlSwitchStore,
    SwitchCore,
    SwitchIdentity,
    SwitchPolicy,
    TerminalAnswer,
)
from cardtally.switch._batch import totals_of
from cardtally.switch._registry import add_issuer_link, add_merchant, add_terminal
from cardtally.switch._store import RegistryCache
from cardtally.terminal import TerminalIdentity, refund, settlement, sign_on, void
from cardtally.terminal import sale as sale_request
from cardtally.wire import Message, encode_message
from tests.switch.support import (
    ACQUIRER,
    CARD,
    LINK,
    MERCHANT,
    OTHER_TERMINAL,
    TERMINAL,
    TIMEOUT_MS,
    Device,
    decoded,
)
from tests.terminal.tcp_support import cardtally_cli

T = TypeVar("T")

CUTOFF_MINUTES: Final = 23 * 60  # the home's default cutoff, 23:00 CST
DAY: Final = business_day(date(2026, 11, 21), CUTOFF_MINUTES)
SETUP_MS: Final = DAY.start_ms - 86_400_000
#: The day end runs ten minutes after the cutoff, as an operator would.
DAYEND_MS: Final = DAY.end_ms + 10 * 60_000
CAFE: Final = (MERCHANT, "CORNER CAFE & BAKERY")
CLUB: Final = ("898310048160002", "BOOK CLUB")
AGENT: Final = "agent-7"
OPENING_BALANCE: Final = 1_000_000  # CNY 10000.00 on the test card


@dataclass(frozen=True, slots=True)
class ReportDay:
    """The closed day: its home (the databases are closed) and the HTML report it wrote."""

    home: Path
    day: BusinessDay
    html: Path
    #: The hours (CST) the swipes happened in, in window order.
    hours: tuple[int, ...]
    #: The terminal summary ``dayend report`` printed.
    summary: str


@dataclass
class _Rig:
    dayend: Dayend
    data_keys: DataKeys
    switch_core: SwitchCore
    issuer_core: IssuerCore
    devices: dict[str, Device]
    now_ms: int = 0
    cache: RegistryCache = field(default_factory=RegistryCache)
    hours: list[int] = field(default_factory=list)

    def at(self, hour: int, minute: int = 0) -> None:
        """Move the clock to ``hour:minute`` CST within the day's window (forward only)."""
        offset = (hour - CUTOFF_MINUTES // 60) % 24  # the window starts at the cutoff
        moment = DAY.start_ms + offset * 3_600_000 + minute * 60_000
        assert moment >= self.now_ms, "the clock only moves forward"
        self.now_ms = moment
        if hour not in self.hours:
            self.hours.append(hour)

    def tick(self) -> int:
        self.now_ms += 1_000
        return self.now_ms

    def switch(self, fn: Callable[[SqlSwitchStore], T]) -> T:
        with transaction(self.dayend.switch) as conn:
            return fn(SqlSwitchStore(conn, self.data_keys, self.cache))

    def _request(self, message: Message, device: Device) -> Any:
        raw, now = device.raw(message), self.tick()
        return self.switch(lambda s: self.switch_core.terminal_request(raw, now, s))

    def _to_issuer(self, body: bytes) -> bytes:
        request, now = decoded(body), self.tick()
        with transaction(self.dayend.issuer) as conn:
            response = self.issuer_core.handle(request, now, SqlIssuerStore(conn)).response
        assert response is not None
        return encode_message(response)

    def _exchange(self, body: bytes) -> object:
        answer, now = self._to_issuer(body), self.tick()
        return self.switch(lambda s: self.switch_core.issuer_message(answer, now, s))

    def sign_on_all(self) -> None:
        for device in self.devices.values():
            answer = self._request(sign_on(device.who, device.next_stan(), device.batch_no), device)
            field62 = bytes.fromhex(decoded(answer.body).fields[62])
            device.keys = decode_signon_keys(device.master_key, field62)

    def _money(self, message: Message, device: Device, *, lose_answer: bool) -> Message:
        forward = self._request(message, device)
        assert isinstance(forward, Forward), forward
        answer: object
        if lose_answer:  # the issuer answers, the answer never reaches the switch
            self._to_issuer(forward.body)
            late = max(self.now_ms, forward.deadline_ms)
            self.now_ms = late
            answer = self.switch(lambda s: self.switch_core.timed_out(forward.txn_id, late, s))
        else:
            answer = self._exchange(forward.body)
        assert isinstance(answer, TerminalAnswer), answer
        return decoded(answer.body)

    def sale(self, tid: str, minor: int, *, lose_answer: bool = False) -> tuple[Message, Message]:
        device = self.devices[tid]
        message = sale_request(
            device.who, device.next_stan(), device.batch_no, card=CARD, amount_minor=minor
        )
        return message, self._money(message, device, lose_answer=lose_answer)

    def void(self, tid: str, original: tuple[Message, Message]) -> Message:
        device = self.devices[tid]
        message = void(
            device.who,
            device.next_stan(),
            device.batch_no,
            card=CARD,
            original=original[0],
            original_answer=original[1],
        )
        return self._money(message, device, lose_answer=False)

    def refund(self, tid: str, original: tuple[Message, Message], minor: int) -> Message:
        device = self.devices[tid]
        message = refund(
            device.who,
            device.next_stan(),
            device.batch_no,
            card=CARD,
            original_rrn=original[1].fields[37],
            amount_minor=minor,
        )
        return self._money(message, device, lose_answer=False)

    def pump_advices(self) -> int:
        """Deliver the queued reversal advices to the issuer and their answers back."""
        now = self.tick()
        sends = self.switch(lambda s: self.switch_core.advices_due(now, s, frozenset({LINK})))
        for send in sends:
            assert isinstance(self._exchange(send.body), AdviceAcked)
        return len(sends)

    def settle(self, tid: str) -> str:
        """Close the terminal's batch with the switch's own totals: balanced."""
        device, batch_no = self.devices[tid], self.devices[tid].batch_no
        totals = self.switch(lambda s: totals_of(s.batch_txns(tid, batch_no)))
        message = settlement(device.who, device.next_stan(), batch_no, totals.field48("0"))
        self._request(message, device)
        device.batch_no += 1
        closed = self.switch(lambda s: s.batch(tid, batch_no))
        assert closed is not None
        return str(closed.result)


def _open(home: Path) -> _Rig:
    dayend = open_dayend(load_config(home), SETUP_MS)
    keys = IssuerKeys(pvk=generate_master_key(), zpk=generate_master_key())
    data_keys = DataKeys(b"e" * 32, b"f" * 32)
    policy = SwitchPolicy(SwitchIdentity(ACQUIRER, ACQUIRER, "156"))
    masters: dict[str, bytes] = {}
    owners = {TERMINAL: CAFE[0], OTHER_TERMINAL: CLUB[0]}
    with transaction(dayend.switch) as conn:
        add_merchant(conn, merchant_id=CAFE[0], name=CAFE[1], mcc="5812", at_ms=SETUP_MS)
        add_merchant(
            conn,
            merchant_id=CLUB[0],
            name=CLUB[1],
            mcc="5942",
            fee_plan="warehouse",
            agent=AGENT,
            settlement_cycle=SettlementCycle.D0,
            at_ms=SETUP_MS,
        )
        for tid, mid in owners.items():
            _, masters[tid] = add_terminal(
                conn, data_keys, terminal_id=tid, merchant_id=mid, at_ms=SETUP_MS
            )
        add_issuer_link(
            conn,
            link_id=LINK,
            host="127.0.0.1",
            port=9583,  # never connected: the rig carries the messages itself
            timeout_ms=TIMEOUT_MS,
            bins=["622588"],
            at_ms=SETUP_MS,
        )
    limits = CardLimits(
        no_pin_limit_minor=100_000, per_txn_limit_minor=5_000_000, daily_limit_minor=20_000_000
    )
    assert CARD.expiry is not None
    card = NewCard(CARD.pan, CARD.expiry, "156", OPENING_BALANCE, 0, None, limits)
    with transaction(dayend.issuer) as conn:
        add_card(conn, data_keys, keys, card, SETUP_MS)
    devices = {tid: Device(TerminalIdentity(tid, mid), masters[tid]) for tid, mid in owners.items()}
    return _Rig(
        dayend,
        data_keys,
        SwitchCore(keys.zpk, policy),
        IssuerCore(keys, data_keys, IssuerPolicy()),
        devices,
        now_ms=DAY.start_ms,
    )


def _traffic(rig: _Rig) -> None:
    rig.at(23, 20)
    rig.sign_on_all()
    rig.sale(TERMINAL, 1_200)
    rig.at(9, 5)
    rig.sale(TERMINAL, 4_500)
    rig.sale(TERMINAL, 3_800)
    declined = rig.sale(TERMINAL, 2_000_000)  # over the balance
    assert declined[1].fields[39] != "00", declined[1]
    voided = rig.sale(TERMINAL, 990)
    assert rig.void(TERMINAL, voided).fields[39] == "00"
    rig.at(12, 10)
    for minor in (8_800, 2_350, 1_500, 6_000, 980):
        rig.sale(TERMINAL, minor)
    refunded = rig.sale(TERMINAL, 5_600)
    rig.sale(TERMINAL, 1_234, lose_answer=True)  # answer lost ...
    assert rig.pump_advices() == 1  # ... and reversed at the issuer by advice
    club = rig.sale(OTHER_TERMINAL, 2_500)
    rig.at(18, 40)
    rig.sale(TERMINAL, 7_700)
    assert rig.refund(TERMINAL, refunded, 2_000).fields[39] == "00"
    assert rig.refund(OTHER_TERMINAL, club, 2_500).fields[39] == "00"
    rig.sale(TERMINAL, 4_200, lose_answer=True)  # its advice is still queued at the day end
    assert rig.settle(TERMINAL) == "balanced"
    assert rig.settle(OTHER_TERMINAL) == "balanced"


def build_report_day(home: Path) -> ReportDay:
    """Build the day in ``home`` (see the module docstring), close it with the real day end,
    and write its HTML report with ``cardtally dayend report --html``."""
    home.mkdir(parents=True, exist_ok=True)
    rig = _open(home)
    try:
        _traffic(rig)
        run_day(rig.dayend, DAY.day, DAYEND_MS)
    finally:
        close_dayend(rig.dayend)
    html = home / "report" / "dayend-report.html"
    done = cardtally_cli(home, "dayend", "report", "--date", DAY.text, "--html", str(html))
    assert done.exit_code == 0, done
    assert html.is_file(), done
    return ReportDay(home, DAY, html, tuple(rig.hours), done.stdout)
