"""SimDayEnd: the real matcher and the real refunds, fed from the simulator's memory stores.

Traffic is made by the real cores: a terminal's requests go through ``SwitchCore`` and the
forwards through ``IssuerCore``, every step in one store transaction, so the stores hold what
a real run leaves. The stories: a matched sale cleared for its merchant; an approved debit whose
answer was lost, refunded once with a notice; a batch not closed, carried to the next day.
The last test drives the same traffic into SQLite databases and into memory stores, step by
step, and checks that the SQL extract and the memory extract fill identical DuckDB tables, and
that the real day end (``run_day``) and SimDayEnd then agree on every item, refund and net.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import duckdb
import pytest
import sqlalchemy as sa

from cardtally.clearing._calendar import BusinessDay, business_day
from cardtally.clearing._database import close_dayend, open_dayend
from cardtally.clearing._dayend import Dayend, _day_before, run_day
from cardtally.clearing._extract import claimed_issuer_ids, load_issuer_leg, load_switch_leg
from cardtally.clearing._match import create_inputs
from cardtally.clearing._schema import action_table, item_table, statement_table
from cardtally.clearing._tables import ReconClass
from cardtally.config import load_config
from cardtally.issuer import (
    CardLimits,
    IssuerCore,
    IssuerPolicy,
    IssuerStore,
    NewCard,
    SqlIssuerStore,
    add_card,
)
from cardtally.notices import NoticeKind
from cardtally.security import (
    DataKeys,
    IssuerKeys,
    MacAlgorithm,
    decode_signon_keys,
    generate_master_key,
    generate_working_keys,
    kcv_hex,
)
from cardtally.sim._dayend import DEFAULT_GRACE_MS, DayEndRefusedError, SimDayEnd
from cardtally.sim._issuer_store import MemoryIssuerStore
from cardtally.sim._switch_store import MemorySwitchStore
from cardtally.sim._undo import CommitFailedError, CommitFault, CrashError
from cardtally.storage import transaction
from cardtally.switch import (
    AdviceAcked,
    Answer,
    Forward,
    IssuerRoute,
    Merchant,
    SettlementCycle,
    SqlSwitchStore,
    SwitchCore,
    SwitchIdentity,
    SwitchPolicy,
    SwitchStore,
    Terminal,
    TerminalAnswer,
    TerminalStatus,
    TxnState,
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
    upload_closing,
    upload_record,
)

T = TypeVar("T")

CUTOFF_MINUTES: Final = 23 * 60
DAY1: Final = business_day(date(2026, 11, 21), CUTOFF_MINUTES)
DAY2: Final = DAY1.next(CUTOFF_MINUTES)
SETUP_MS: Final = DAY1.start_ms - 86_400_000
#: The day end runs after the cutoff plus the grace, as an operator would.
AFTER_CUTOFF_MS: Final = 10 * 60_000
OTHER_MERCHANT: Final = "898310048160002"
#: One terminal per merchant: the per-merchant net shows both.
MERCHANT_OF: Final = {TERMINAL: MERCHANT, OTHER_TERMINAL: OTHER_MERCHANT}
OPENING_BALANCE: Final = 1_000_000
#: The same working keys at every sign-on, on both stacks, so their answers compare equal.
WORKING_KEYS: Final = generate_working_keys()
INPUT_TABLES: Final = ("sw_txn", "sw_batch", "sw_upload", "iss_txn")


# --- the two stacks a step can run on --------------------------------------------------------


class Stack(Protocol):
    def on_switch(self, fn: Callable[[SwitchStore], T]) -> T: ...
    def on_issuer(self, fn: Callable[[IssuerStore], T]) -> T: ...


@dataclass
class MemoryStack:
    switch: MemorySwitchStore
    issuer: MemoryIssuerStore

    def on_switch(self, fn: Callable[[SwitchStore], T]) -> T:
        with self.switch.log.transaction():
            return fn(self.switch)

    def on_issuer(self, fn: Callable[[IssuerStore], T]) -> T:
        with self.issuer.log.transaction():
            return fn(self.issuer)


@dataclass
class SqlStack:
    dayend: Dayend
    data_keys: DataKeys
    cache: RegistryCache = field(default_factory=RegistryCache)

    def on_switch(self, fn: Callable[[SwitchStore], T]) -> T:
        with transaction(self.dayend.switch) as conn:
            return fn(SqlSwitchStore(conn, self.data_keys, self.cache))

    def on_issuer(self, fn: Callable[[IssuerStore], T]) -> T:
        with transaction(self.dayend.issuer) as conn:
            return fn(SqlIssuerStore(conn))


@dataclass
class Net:
    """A terminal per merchant, the switch and the issuer; every step runs on every stack, and
    the stacks must answer alike."""

    stacks: list[Stack]
    memory: MemoryStack
    switch_core: SwitchCore
    issuer_core: IssuerCore
    devices: dict[str, Device]
    now_ms: int = 0

    def tick(self) -> int:
        self.now_ms += 1_000
        return self.now_ms

    def _same(self, results: list[T]) -> T:
        assert all(r == results[0] for r in results), results
        return results[0]

    def switch(self, fn: Callable[[SwitchStore], T]) -> T:
        return self._same([stack.on_switch(fn) for stack in self.stacks])

    def issuer(self, fn: Callable[[IssuerStore], T]) -> T:
        return self._same([stack.on_issuer(fn) for stack in self.stacks])

    def terminal_request(self, message: Message, device: Device) -> Any:
        raw, now = device.raw(message), self.tick()
        return self.switch(lambda s: self.switch_core.terminal_request(raw, now, s))

    def sign_on_all(self) -> None:
        for device in self.devices.values():
            answer = self.terminal_request(
                sign_on(device.who, device.next_stan(), device.batch_no), device
            )
            response = decoded(answer.body)
            device.keys = decode_signon_keys(device.master_key, bytes.fromhex(response.fields[62]))

    def forwarded(self, message: Message, device: Device, *, lose_answer: bool = False) -> Message:
        """Send a money request: the issuer answers it; ``lose_answer`` loses that answer and
        times the request out at the switch instead (its reversal advice stays queued)."""
        forward = self.terminal_request(message, device)
        assert isinstance(forward, Forward), forward
        answer: object
        if lose_answer:
            self._to_issuer(forward.body)
            late = forward.deadline_ms
            self.now_ms = max(self.now_ms, late)
            answer = self.switch(lambda s: self.switch_core.timed_out(forward.txn_id, late, s))
        else:
            answer = self._exchange(forward.body)
        assert isinstance(answer, TerminalAnswer), answer
        return decoded(answer.body)

    def _to_issuer(self, body: bytes) -> bytes:
        """The issuer handles ``body``; its answer, encoded."""
        request, now = decoded(body), self.tick()
        response = self.issuer(lambda s: self.issuer_core.handle(request, now, s).response)
        assert response is not None
        return encode_message(response)

    def _exchange(self, body: bytes) -> object:
        """``body`` to the issuer and its answer back to the switch: what the switch did."""
        answer, now = self._to_issuer(body), self.tick()
        return self.switch(lambda s: self.switch_core.issuer_message(answer, now, s))

    def pump_advices(self) -> int:
        """Deliver the queued reversal advices to the issuer and their answers back."""
        now = self.tick()
        sends = self.switch(lambda s: self.switch_core.advices_due(now, s, frozenset({LINK})))
        for send in sends:
            acked = self._exchange(send.body)
            assert isinstance(acked, AdviceAcked), acked
        return len(sends)

    def sale(
        self,
        tid: str,
        amount_minor: int,
        *,
        lose_answer: bool = False,
        batch_no: int | None = None,
    ) -> tuple[Message, Message]:
        """A sale in the terminal's batch (or ``batch_no``: a terminal behind the switch)."""
        device = self.devices[tid]
        batch = device.batch_no if batch_no is None else batch_no
        message = sale_request(
            device.who, device.next_stan(), batch, card=CARD, amount_minor=amount_minor
        )
        return message, self.forwarded(message, device, lose_answer=lose_answer)

    def void(self, tid: str, original: tuple[Message, Message]) -> tuple[Message, Message]:
        device = self.devices[tid]
        message = void(
            device.who,
            device.next_stan(),
            device.batch_no,
            card=CARD,
            original=original[0],
            original_answer=original[1],
        )
        return message, self.forwarded(message, device)

    def refund(
        self, tid: str, original: tuple[Message, Message], amount_minor: int
    ) -> tuple[Message, Message]:
        device = self.devices[tid]
        message = refund(
            device.who,
            device.next_stan(),
            device.batch_no,
            card=CARD,
            original_rrn=original[1].fields[37],
            amount_minor=amount_minor,
        )
        return message, self.forwarded(message, device)

    def settle(self, tid: str, receipted: list[tuple[Message, Message]] | None = None) -> str:
        """Close the terminal's batch: balanced, or (``receipted`` given) with totals that
        disagree and an upload of just the receipted transactions. The switch's result."""
        device, batch_no = self.devices[tid], self.devices[tid].batch_no
        totals = self.switch(lambda s: totals_of(s.batch_txns(tid, batch_no)))
        if receipted is not None:
            totals = dataclasses.replace(totals, debit_minor=totals.debit_minor + 1)
        message = settlement(device.who, device.next_stan(), batch_no, totals.field48("0"))
        assert isinstance(self.terminal_request(message, device), Answer)
        for request, answer in receipted or []:
            record = upload_record(device.who, batch_no, pan=CARD.pan, txn=request, answer=answer)
            assert self.terminal_request(record, device).code == "00"
        if receipted is not None:
            closing = upload_closing(device.who, device.next_stan(), batch_no, len(receipted))
            self.terminal_request(closing, device)
        device.batch_no += 1
        closed = self.switch(lambda s: s.batch(tid, batch_no))
        assert closed is not None
        return closed.result

    def balance(self) -> int:
        card = self.memory.issuer.all_cards()[0]
        account = self.memory.issuer.ledger.account(card.account_id)
        assert account is not None
        return account.balance_minor


# --- building the network --------------------------------------------------------------------


def _cores() -> tuple[SwitchCore, IssuerCore, IssuerKeys, DataKeys]:
    identity = SwitchIdentity(ACQUIRER, ACQUIRER, "156")
    policy = SwitchPolicy(identity, new_working_keys=lambda: WORKING_KEYS)
    keys = IssuerKeys(pvk=generate_master_key(), zpk=generate_master_key())
    data_keys = DataKeys(b"e" * 32, b"f" * 32)
    switch_core = SwitchCore(keys.zpk, policy)
    return switch_core, IssuerCore(keys, data_keys, IssuerPolicy()), keys, data_keys


def _new_card() -> NewCard:
    limits = CardLimits(
        no_pin_limit_minor=100_000, per_txn_limit_minor=5_000_000, daily_limit_minor=20_000_000
    )
    assert CARD.expiry is not None
    return NewCard(CARD.pan, CARD.expiry, "156", OPENING_BALANCE, 0, None, limits)


def _memory_stack(masters: dict[str, bytes], keys: IssuerKeys, data_keys: DataKeys) -> MemoryStack:
    switch = MemorySwitchStore(data_keys=data_keys)
    for mid in MERCHANT_OF.values():
        merchant = Merchant(
            merchant_id=mid,
            name=f"SHOP {mid[-1]}",
            mcc="5812",
            city="",
            fee_plan="standard",
            agent=None,
            settlement_cycle=SettlementCycle.T1,
            settlement_account=f"merchant:{mid}",
            created_at_ms=SETUP_MS,
        )
        switch.add_merchant(merchant)
    for tid, master in masters.items():
        terminal = Terminal(
            terminal_id=tid,
            merchant_id=MERCHANT_OF[tid],
            mac_algorithm=MacAlgorithm.X9_19,
            mac_required=True,
            status=TerminalStatus.ACTIVE,
            batch_no=1,
            master_key_kcv=kcv_hex(master),
            signed_on_at_ms=None,
            created_at_ms=SETUP_MS,
        )
        switch.add_terminal(terminal, master)
    switch.add_route(IssuerRoute(LINK, "127.0.0.1", 9583, TIMEOUT_MS, ("622588",)))
    issuer = MemoryIssuerStore()
    issuer.issue_card(_new_card(), data_keys, keys, SETUP_MS)
    return MemoryStack(switch, issuer)


def _net(stacks: list[Stack], memory: MemoryStack, cores: tuple[Any, ...], masters: Any) -> Net:
    switch_core, issuer_core = cores[0], cores[1]
    devices = {
        tid: Device(TerminalIdentity(tid, MERCHANT_OF[tid]), master)
        for tid, master in masters.items()
    }
    net = Net(stacks, memory, switch_core, issuer_core, devices, DAY1.end_ms - 7_200_000)
    net.sign_on_all()
    return net


def memory_net() -> Net:
    cores = _cores()
    masters = {tid: generate_master_key() for tid in MERCHANT_OF}
    memory = _memory_stack(masters, cores[2], cores[3])
    return _net([memory], memory, cores, masters)


@pytest.fixture
def net() -> Net:
    return memory_net()


def _run(dayend: SimDayEnd, day: BusinessDay) -> Any:
    return dayend.run(day, day.end_ms + AFTER_CUTOFF_MS)


def _by_txn(result: Any) -> dict[int | None, Any]:
    return {item.switch_txn_id: item for item in result.items}


def _rrn_id(answer: Message) -> int:
    return int(answer.fields[37])


# --- the stories ------------------------------------------------------------------------------


def test_a_matched_sale_is_cleared_and_counted_for_its_merchant(net: Net) -> None:
    sale = net.sale(TERMINAL, 10_000)
    other = net.sale(OTHER_TERMINAL, 2_500)
    back = net.refund(OTHER_TERMINAL, other, 1_000)
    assert net.settle(TERMINAL) == "balanced"
    assert net.settle(OTHER_TERMINAL) == "balanced"

    result = _run(SimDayEnd(net.memory.switch, net.memory.issuer), DAY1)

    assert result.day == "2026-11-21"
    assert result.counts == {c.value: 3 if c is ReconClass.MATCHED else 0 for c in ReconClass}
    item = _by_txn(result)[_rrn_id(sale[1])]
    assert (item.klass, item.cleared, item.cleared_as) == (ReconClass.MATCHED, True, "debit")
    assert (item.merchant_id, item.terminal_id, item.amount_minor) == (MERCHANT, TERMINAL, 10_000)
    assert item.rrn == sale[1].fields[37] and item.stan == sale[0].fields[11]
    assert item.reason == "switch and issuer agree; terminal batch balanced"
    assert _by_txn(result)[_rrn_id(back[1])].cleared_as == "credit"
    assert result.cleared_by_merchant == {MERCHANT: 10_000, OTHER_MERCHANT: 2_500 - 1_000}
    assert result.refunds == ()


def test_an_approved_debit_whose_answer_was_lost_is_refunded_once_with_a_notice(
    net: Net,
) -> None:
    kept = net.sale(TERMINAL, 10_000)
    lost = net.sale(TERMINAL, 4_200, lose_answer=True)
    assert lost[1].fields[39] != "00"  # the terminal printed no receipt
    assert net.memory.switch.txn(_rrn_id(lost[1])) is not None
    assert net.settle(TERMINAL) == "balanced"
    charged = net.balance()
    assert charged == OPENING_BALANCE - 10_000 - 4_200
    dayend = SimDayEnd(net.memory.switch, net.memory.issuer)

    first = _run(dayend, DAY1)

    item = _by_txn(first)[_rrn_id(lost[1])]
    assert item.klass is ReconClass.ONE_SIDED_DEBIT and not item.cleared
    assert item.issuer_txn_id is not None
    assert first.counts["one_sided_debit"] == 1 and first.counts["matched"] == 1
    assert [(r.result, r.amount_minor) for r in first.refunds] == [("refunded", 4_200)]
    assert first.refunds[0].record_id == f"dayend:2026-11-21:refund:{item.issuer_txn_id}"
    assert first.cleared_by_merchant == {MERCHANT: 10_000}
    assert net.balance() == charged + 4_200
    refunds = [n for n in net.memory.issuer.notices() if n.kind is NoticeKind.REFUND]
    assert [(n.id, n.amount.minor) for n in refunds] == [(first.refunds[0].notice_id, 4_200)]

    # The same day again changes nothing; the next day does not see the debit again.
    assert _run(dayend, DAY1) == first
    assert dayend.result("2026-11-21") == first and dayend.result("2026-11-22") is None
    second = _run(dayend, DAY2)
    assert second.refunds == () and second.items == ()
    assert net.balance() == charged + 4_200
    assert len([n for n in net.memory.issuer.notices() if n.kind is NoticeKind.REFUND]) == 1
    assert kept[1].fields[39] == "00"


def test_a_batch_not_closed_awaits_and_clears_the_day_after_it_closes(net: Net) -> None:
    sale = net.sale(TERMINAL, 8_800)
    dayend = SimDayEnd(net.memory.switch, net.memory.issuer)

    first = _run(dayend, DAY1)

    item = _by_txn(first)[_rrn_id(sale[1])]
    assert item.klass is ReconClass.AWAITING_BATCH and not item.cleared
    assert item.reason == "terminal batch 000001 not settled yet"
    assert first.cleared_by_merchant == {} and first.refunds == ()

    net.now_ms = DAY2.start_ms + 3_600_000
    assert net.settle(TERMINAL) == "balanced"
    second = _run(dayend, DAY2)

    assert [(i.switch_txn_id, i.klass, i.cleared_as) for i in second.items] == [
        (_rrn_id(sale[1]), ReconClass.MATCHED, "debit")
    ]
    assert second.cleared_by_merchant == {MERCHANT: 8_800}


def test_a_batch_upload_without_a_receipt_is_a_one_sided_debit(net: Net) -> None:
    printed = net.sale(OTHER_TERMINAL, 3_000)
    unprinted = net.sale(OTHER_TERMINAL, 7_000)
    assert net.settle(OTHER_TERMINAL, receipted=[printed]) == "not_balanced"

    result = _run(SimDayEnd(net.memory.switch, net.memory.issuer), DAY1)

    verdicts = {k: (i.klass, i.cleared_as) for k, i in _by_txn(result).items()}
    assert verdicts == {
        _rrn_id(printed[1]): (ReconClass.MATCHED, "debit"),
        _rrn_id(unprinted[1]): (ReconClass.ONE_SIDED_DEBIT, None),
    }
    assert [r.amount_minor for r in result.refunds] == [7_000]
    assert result.cleared_by_merchant == {OTHER_MERCHANT: 3_000}


def test_a_refund_that_did_not_commit_is_made_by_the_next_run(net: Net) -> None:
    net.sale(TERMINAL, 1_500, lose_answer=True)
    net.sale(TERMINAL, 2_500, lose_answer=True)
    dayend = SimDayEnd(net.memory.switch, net.memory.issuer)
    log = net.memory.issuer.log
    faults = iter([CommitFault.NONE, CommitFault.FAIL])
    log.commit_fault = lambda: next(faults, CommitFault.NONE)
    before = net.balance()

    with pytest.raises(CommitFailedError):
        _run(dayend, DAY1)
    assert net.balance() == before + 1_500  # the first refund committed, the second did not

    # A crash just after the commit: the retry finds the refund by its id, made once.
    log.commit_fault = lambda: CommitFault.CRASH_AFTER
    with pytest.raises(CrashError):
        _run(dayend, DAY1)
    log.commit_fault = None
    result = _run(dayend, DAY1)

    assert [(r.amount_minor, r.why) for r in result.refunds] == [
        (1_500, "one-sided debit refunded"),
        (2_500, "already refunded"),
    ]
    assert net.balance() == before + 4_000
    assert len([n for n in net.memory.issuer.notices() if n.kind is NoticeKind.REFUND]) == 2


def test_the_day_end_refuses_what_the_real_one_refuses(net: Net) -> None:
    device = net.devices[TERMINAL]
    waiting = sale_request(device.who, device.next_stan(), 1, card=CARD, amount_minor=500)
    forward = net.terminal_request(waiting, device)
    assert isinstance(forward, Forward)
    dayend = SimDayEnd(net.memory.switch, net.memory.issuer)

    with pytest.raises(DayEndRefusedError, match="still open"):
        dayend.run(DAY1, DAY1.end_ms - 1)
    with pytest.raises(DayEndRefusedError, match="still waiting on the issuer"):
        _run(dayend, DAY1)
    net.switch(lambda s: net.switch_core.timed_out(forward.txn_id, forward.deadline_ms, s))
    _run(dayend, DAY1)
    with pytest.raises(DayEndRefusedError, match="days close in order"):
        _run(dayend, DAY2.next(CUTOFF_MINUTES))


def test_the_grace_default_is_the_configs() -> None:
    assert load_config(Path("/nonexistent-home")).dayend.grace_ms == DEFAULT_GRACE_MS


# --- the same traffic through SQL and through memory -----------------------------------------


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[tuple[Net, Dayend]]:
    """The network twice: SQLite databases a real day end runs on, and memory stores."""
    config = load_config(tmp_path)
    dayend = open_dayend(config, SETUP_MS)
    cores = _cores()
    keys, data_keys = cores[2], cores[3]
    masters: dict[str, bytes] = {}
    with transaction(dayend.switch) as conn:
        for tid, mid in MERCHANT_OF.items():
            add_merchant(conn, merchant_id=mid, name=f"SHOP {mid[-1]}", mcc="5812", at_ms=SETUP_MS)
            _, masters[tid] = add_terminal(
                conn, data_keys, terminal_id=tid, merchant_id=mid, at_ms=SETUP_MS
            )
        add_issuer_link(
            conn,
            link_id=LINK,
            host="127.0.0.1",
            port=9583,
            timeout_ms=TIMEOUT_MS,
            bins=["622588"],
            at_ms=SETUP_MS,
        )
    with transaction(dayend.issuer) as conn:
        add_card(conn, data_keys, keys, _new_card(), SETUP_MS)
    memory = _memory_stack(masters, keys, data_keys)
    yield _net([SqlStack(dayend, data_keys), memory], memory, cores, masters), dayend
    close_dayend(dayend)


def _sql_inputs(dayend: Dayend, day: BusinessDay) -> tuple[duckdb.DuckDBPyConnection, Any]:
    """The input tables as the real day end's match step fills them from the databases."""
    con = duckdb.connect()
    create_inputs(con)
    with transaction(dayend.switch) as conn:
        leg = load_switch_leg(
            con, conn, day, day.previous(CUTOFF_MINUTES).text, dayend.config.currency
        )
        claimed = claimed_issuer_ids(conn, _day_before(leg.earliest_ms, dayend))
    grace = dayend.config.dayend.grace_ms
    with transaction(dayend.issuer) as conn:
        load_issuer_leg(con, conn, leg.earliest_ms - grace, day.end_ms + grace, claimed)
    return con, leg.batches


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in INPUT_TABLES}


def _same_inputs(dayend: Dayend, sim: SimDayEnd, day: BusinessDay) -> dict[str, list[Any]]:
    sql_con, sql_batches = _sql_inputs(dayend, day)
    memory_con = duckdb.connect()
    try:
        create_inputs(memory_con)
        memory_batches = sim.load_inputs(memory_con, day)
        tables = _tables(sql_con)
        assert _tables(memory_con) == tables
        assert memory_batches == sql_batches
    finally:
        sql_con.close()
        memory_con.close()
    return tables


def _real_day(dayend: Dayend, day: BusinessDay) -> dict[str, Any]:
    """Run the real day end on the databases; what it stored, as SimDayEnd reports it."""
    run_day(dayend, day.day, day.end_ms + AFTER_CUTOFF_MS)
    columns = [c for c in item_table.columns if c.name != "day"]
    a, s = action_table, statement_table
    with transaction(dayend.switch) as conn:
        items = conn.execute(
            sa.select(*columns).where(item_table.c.day == day.text).order_by("item_no")
        ).all()
        refunds = conn.execute(
            sa.select(a.c.result, a.c.amount_minor, a.c.reference, a.c.notice_id)
            .where(a.c.day == day.text)
            .order_by(a.c.item_no)
        ).all()
        nets = conn.execute(
            sa.select(s.c.merchant_id, s.c.sales_minor - s.c.refunds_minor)
            .where(s.c.day == day.text)
            .order_by(s.c.merchant_id)
        ).all()
    return {
        "items": [tuple(row) for row in items],
        "refunds": [tuple(row) for row in refunds],
        "nets": dict(nets),
    }


def _sim_day(sim: SimDayEnd, day: BusinessDay) -> dict[str, Any]:
    result = _run(sim, day)
    return {
        "items": [dataclasses.astuple(item) for item in result.items],
        "refunds": [(r.result, r.amount_minor, r.record_id, r.notice_id) for r in result.refunds],
        "nets": result.cleared_by_merchant,
    }


def _first_day_traffic(net: Net) -> dict[str, tuple[Message, Message]]:
    done = {
        "kept": net.sale(TERMINAL, 10_000),
        "voided": net.sale(TERMINAL, 5_000),
        "declined": net.sale(TERMINAL, 2_000_000),  # over the balance
        "refunded": net.sale(TERMINAL, 30_000),
        "undone": net.sale(TERMINAL, 1_234, lose_answer=True),
    }
    assert net.pump_advices() == 1  # the issuer reverses the undone sale
    done["lost"] = net.sale(TERMINAL, 4_200, lose_answer=True)  # its advice stays queued
    assert done["declined"][1].fields[39] != "00"
    done["void"] = net.void(TERMINAL, done["voided"])
    done["refund"] = net.refund(TERMINAL, done["refunded"], 2_000)
    assert net.settle(TERMINAL) == "balanced"
    done["waits"] = net.sale(TERMINAL, 6_600)  # batch 2, not closed today
    done["printed"] = net.sale(OTHER_TERMINAL, 3_000)
    done["unprinted"] = net.sale(OTHER_TERMINAL, 7_000)
    assert net.settle(OTHER_TERMINAL, receipted=[done["printed"]]) == "not_balanced"
    done["next_batch"] = net.sale(OTHER_TERMINAL, 1_100)  # batch 2, not closed today
    return done


def test_sql_and_memory_extracts_fill_the_same_tables_and_the_day_ends_agree(
    twin: tuple[Net, Dayend],
) -> None:
    net, dayend = twin
    sim = SimDayEnd(net.memory.switch, net.memory.issuer, currency=dayend.config.currency)
    assert dayend.config.dayend.grace_ms == DEFAULT_GRACE_MS
    done = _first_day_traffic(net)

    tables = _same_inputs(dayend, sim, DAY1)
    assert {t: len(rows) for t, rows in tables.items()} == {
        "sw_txn": 12,
        "sw_batch": 2,
        "sw_upload": 1,
        "iss_txn": 11,  # every approved money posting, the lost and the undone debits included
    }
    undone = [row[0] for row in tables["iss_txn"] if not row[9]]
    reversed_txn = net.memory.switch.txn(_rrn_id(done["undone"][1]))
    assert reversed_txn is not None and reversed_txn.state is TxnState.REVERSED
    assert undone == [
        f"0200|{ACQUIRER}|{TERMINAL}|{MERCHANT}|{reversed_txn.issuer_stan}|"
        f"{reversed_txn.transmitted}"
    ]
    real, simulated = _real_day(dayend, DAY1), _sim_day(sim, DAY1)
    assert simulated == real
    classes = {row[3]: row[1] for row in real["items"]}
    assert classes[_rrn_id(done["lost"][1])] == "one_sided_debit"
    assert classes[_rrn_id(done["unprinted"][1])] == "one_sided_debit"
    assert classes[_rrn_id(done["waits"][1])] == "awaiting_batch"
    assert classes[_rrn_id(done["undone"][1])] == "unsuccessful"
    assert len(real["refunds"]) == 2

    # The next day: what waited is carried; the claimed batches and postings stay out.
    net.now_ms = DAY2.start_ms + 3_600_000
    net.sale(TERMINAL, 900)
    assert net.settle(TERMINAL) == "balanced"
    net.sale(OTHER_TERMINAL, 1_300)
    stale = net.sale(OTHER_TERMINAL, 500, batch_no=1)  # into the batch closed yesterday
    tables = _same_inputs(dayend, sim, DAY2)
    carried = [row for row in tables["sw_txn"] if row[-1]]
    assert [row[0] for row in carried] == [
        _rrn_id(done["waits"][1]),
        _rrn_id(done["next_batch"][1]),
    ]
    assert [(b[0], b[1], b[-1]) for b in tables["sw_batch"]] == [
        (TERMINAL, 2, False),
        (OTHER_TERMINAL, 1, True),  # claimed by day 1, loaded again for the stale sale
    ]
    real, simulated = _real_day(dayend, DAY2), _sim_day(sim, DAY2)
    assert simulated == real
    assert [r[1] for r in real["refunds"]] == [500]  # never receipted: not in the upload
    assert {row[3]: row[1] for row in real["items"]}[_rrn_id(stale[1])] == "one_sided_debit"
    assert real["nets"] == {MERCHANT: 6_600 + 900}
    lost = net.memory.switch.txn(_rrn_id(done["lost"][1]))
    assert lost is not None and lost.state is TxnState.TIMED_OUT
