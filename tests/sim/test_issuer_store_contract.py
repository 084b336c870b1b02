"""The memory issuer store against the SQL one: same core, same requests, same everything.

Each request goes to the real :class:`IssuerCore` twice, once over ``SqlIssuerStore`` on a
fresh SQLite database and once over ``MemoryIssuerStore``; the two outcomes must be equal,
and so must the final state: cards, stored answers, transaction records, the ledger,
notices and events. The memory store's own promises (rollback restores everything, keys
refuse duplicates) are tested at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from cardtally.clearing._issuer_leg import Refunded, refund_one_sided
from cardtally.issuer import (
    Card,
    CardLimits,
    IssuerStore,
    NewCard,
    Outcome,
    SqlIssuerStore,
    StoredResponse,
    TxnKind,
    TxnRecord,
    add_card,
    request_key,
)
from cardtally.issuer._schema import card_table, request_table, txn_table
from cardtally.issuer._store import card_from_row, txn_from_row
from cardtally.ledger import (
    Account,
    AccountSpec,
    Ledger,
    MemoryLedgerStore,
    Transfer,
    TransferKind,
    TransferSpec,
    VerifyReport,
    ledger_transfer_table,
    verify_report,
)
from cardtally.money import Money
from cardtally.notices import Notice, NoticeError, NoticeKind, NoticeOutbox
from cardtally.security import pan_fingerprint
from cardtally.sim._issuer_store import EventRow, MemoryIssuerStore
from cardtally.sim._ledger_store import UndoableLedgerStore
from cardtally.sim._undo import CommitFailedError, CommitFault, UndoLog
from cardtally.storage import events, sqlite_url, transaction
from cardtally.wire import Message, Pan
from tests.issuer.bank import DEFAULT_LIMITS, NOON, Bank, open_bank
from tests.issuer.messages import (
    CREDIT_PAN,
    DEBIT_PAN,
    EXPIRY,
    PIN,
    balance_inquiry,
    completion,
    pan,
    preauth,
    refund,
    reversal,
    sale,
    void,
)

DAY_MS: Final = 86_400_000
EMPTY_PAN: Final = pan("622588000000333")
LIMITED_PAN: Final = pan("622588000000555")
EXPIRED_PAN: Final = pan("622588000000777")
BUSINESS_DAY: Final = "2026-11-21"
_ROWID: Final[sa.ColumnClause[Any]] = sa.literal_column("rowid")  # SQLite's insertion order


# --- the two stores side by side ---------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """Everything either store keeps, read through each store's own means."""

    cards: list[Card]
    responses: list[StoredResponse]
    txns: list[TxnRecord]
    accounts: list[Account]
    transfers: list[Transfer]
    audit: VerifyReport
    notices: list[Notice]
    events: list[EventRow]


@dataclass
class Twin:
    """One issuer core over two stores: ``bank`` (SQL) and ``memory``."""

    bank: Bank
    memory: MemoryIssuerStore

    def add(self, card_pan: str, **kwargs: Any) -> None:
        new = _new_card(card_pan, **kwargs)
        with transaction(self.bank.engine) as conn:
            issued = add_card(conn, self.bank.data_keys, self.bank.keys, new, NOON)
        assert self.memory.issue_card(new, self.bank.data_keys, self.bank.keys, NOON) == issued

    def run(self, message: Message, now_ms: int = NOON) -> Outcome:
        expected = self.bank.run(message, now_ms)
        with self.memory.log.transaction():
            got = self.bank.core.handle(message, now_ms, self.memory)
        assert got == expected
        return expected

    def tick(self, now_ms: int) -> list[Transfer]:
        with transaction(self.bank.engine) as conn:
            expected = self.bank.core.tick(now_ms, SqlIssuerStore(conn))
        with self.memory.log.transaction():
            assert self.bank.core.tick(now_ms, self.memory) == expected
        return expected

    def on_both(self, step: Callable[[IssuerStore], object]) -> object:
        """Run ``step`` on each store in its own transaction; the results must be equal."""
        with transaction(self.bank.engine) as conn:
            expected = step(SqlIssuerStore(conn))
        with self.memory.log.transaction():
            assert step(self.memory) == expected
        return expected

    def refund_one_sided(
        self, original_id: str, business_day: str = BUSINESS_DAY, now_ms: int = NOON + 1
    ) -> Refunded:
        done = self.on_both(lambda s: refund_one_sided(s, original_id, business_day, now_ms))
        assert isinstance(done, Refunded)
        return done

    def assert_same_state(self) -> State:
        with transaction(self.bank.engine) as conn:
            expected = _sql_state(conn)
        got = _memory_state(self.memory)
        for name in (f.name for f in dataclasses.fields(State)):
            assert getattr(got, name) == getattr(expected, name), name
        assert got.audit.healthy, got.audit.violations
        return got


def _new_card(
    card_pan: str,
    *,
    balance_minor: int = 0,
    credit_minor: int = 0,
    pin: str | None = PIN,
    expiry: str = EXPIRY,
    limits: CardLimits = DEFAULT_LIMITS,
) -> NewCard:
    # The arguments and defaults of tests.issuer.bank.Bank.add, which keeps its NewCard.
    return NewCard(Pan(card_pan), expiry, "156", balance_minor, credit_minor, pin, limits)


def _sql_state(conn: Connection) -> State:
    store = SqlIssuerStore(conn)
    cards = conn.execute(sa.select(card_table).order_by(card_table.c.id)).mappings()
    keys = conn.execute(sa.select(request_table.c.key).order_by(_ROWID)).scalars()
    txns = conn.execute(sa.select(txn_table).order_by(_ROWID)).mappings()
    transfer_ids = conn.execute(sa.select(ledger_transfer_table.c.id).order_by(_ROWID)).scalars()
    by_id = {t.id: t for t in store.ledger.all_transfers()}
    return State(
        cards=[card_from_row(row) for row in cards],
        responses=[r for key in keys if (r := store.response_for(key)) is not None],
        txns=[txn_from_row(row) for row in txns],
        accounts=list(store.ledger.all_accounts()),
        transfers=[by_id[transfer_id] for transfer_id in transfer_ids],
        audit=verify_report(store.ledger),
        notices=list(reversed(NoticeOutbox(conn).recent(1_000))),
        events=[(e.at_ms, e.kind, e.txn_key, dict(e.detail)) for e in events(conn)],
    )


def _memory_state(memory: MemoryIssuerStore) -> State:
    return State(
        cards=sorted(memory.all_cards(), key=lambda c: c.id),
        responses=memory.all_responses(),
        txns=memory.all_txns(),
        accounts=list(memory.ledger.all_accounts()),
        transfers=memory.ledger.transfers_since(0),
        audit=verify_report(memory.ledger),
        notices=memory.notices(),
        events=memory.events(),
    )


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Twin]:
    bank = open_bank(sqlite_url(tmp_path / "issuer.sqlite3"))
    paired = Twin(bank, MemoryIssuerStore())
    # The cards open_bank issued, issued again in memory with the same keys.
    for card_pan, kwargs in (
        (DEBIT_PAN, {"balance_minor": 100_000}),
        (CREDIT_PAN, {"credit_minor": 200_000, "pin": None}),
    ):
        paired.memory.issue_card(_new_card(card_pan, **kwargs), bank.data_keys, bank.keys, NOON)
    paired.assert_same_state()
    yield paired
    bank.engine.dispose()


def _pin(twin: Twin, pin: str = PIN) -> dict[str, Any]:
    return {"pin": pin, "zpk": twin.bank.keys.zpk}


def _approved(outcome: Outcome) -> str:
    """The auth code of an approved outcome."""
    assert outcome.response is not None and outcome.response_code == "00", outcome.reason
    return outcome.response.fields.get(38, "")


def _available(twin: Twin, card_pan: str) -> int:
    card = twin.memory.card_by_fingerprint(pan_fingerprint(twin.bank.data_keys, Pan(card_pan)))
    assert card is not None
    return Ledger(twin.memory.ledger).account(card.account_id).available_minor


# --- the same answers and the same state -------------------------------------------------------


def test_a_sale_is_approved_alike(twin: Twin) -> None:
    outcome = twin.run(sale(DEBIT_PAN, 12_345, 1))
    assert outcome.result == "approved"
    state = twin.assert_same_state()
    assert [n.kind for n in state.notices] == [NoticeKind.DEBIT]
    assert [t.kind for t in state.txns] == [TxnKind.SALE]


def test_an_empty_account_is_declined_for_funds_alike(twin: Twin) -> None:
    twin.add(EMPTY_PAN)
    assert twin.run(sale(EMPTY_PAN, 100, 1)).response_code == "51"
    assert twin.assert_same_state().notices == []


def test_wrong_pins_are_counted_alike(twin: Twin) -> None:
    codes = [
        twin.run(sale(DEBIT_PAN, 100, n, **_pin(twin, "000000"))).response_code for n in (1, 2, 3)
    ]
    assert codes == ["55", "55", "75"]
    assert twin.run(sale(DEBIT_PAN, 100, 4, **_pin(twin))).response_code == "75"
    state = twin.assert_same_state()
    assert {c.pan_masked[-4:]: c.pin_tries for c in state.cards}[DEBIT_PAN[-4:]] == 3
    assert [e[1] for e in state.events].count("issuer.pin_tries") == 3


def test_a_right_pin_clears_the_count_alike(twin: Twin) -> None:
    twin.run(sale(DEBIT_PAN, 100, 1, **_pin(twin, "000000")))
    _approved(twin.run(sale(DEBIT_PAN, 100, 2, **_pin(twin))))
    assert all(c.pin_tries == 0 for c in twin.assert_same_state().cards)


def test_an_expired_card_is_declined_alike(twin: Twin) -> None:
    twin.add(EXPIRED_PAN, balance_minor=10_000, expiry="2610")
    assert twin.run(sale(EXPIRED_PAN, 100, 1, expiry="2610")).response_code == "54"
    twin.assert_same_state()


def test_a_repeat_gets_the_stored_answer_alike(twin: Twin) -> None:
    first = twin.run(sale(DEBIT_PAN, 5_000, 1))
    again = twin.run(sale(DEBIT_PAN, 5_000, 1))
    assert again.result == "duplicate"
    assert again.response == first.response
    assert len(twin.assert_same_state().transfers) == 2  # the opening balance and the sale


def test_the_same_key_with_other_content_is_refused_alike(twin: Twin) -> None:
    twin.run(sale(DEBIT_PAN, 5_000, 1))
    assert twin.run(sale(DEBIT_PAN, 6_000, 1)).response_code == "94"
    assert len(twin.assert_same_state().responses) == 1


def test_a_reversed_sale_gives_the_money_back_alike(twin: Twin) -> None:
    original = sale(DEBIT_PAN, 10_000, 1)
    _approved(twin.run(original))
    assert twin.run(reversal(original)).response_code == "00"
    assert twin.run(reversal(original, mti="0401")).result == "duplicate"
    advice = twin.run(reversal(original, mti="0420", transmitted="1121104000"))
    assert advice.response_code == "00"
    state = twin.assert_same_state()
    assert [n.kind for n in state.notices] == [NoticeKind.DEBIT, NoticeKind.REFUND]
    assert _available(twin, DEBIT_PAN) == 100_000


def test_a_void_returns_the_money_once_alike(twin: Twin) -> None:
    original = sale(DEBIT_PAN, 10_000, 1)
    auth = _approved(twin.run(original))
    assert twin.run(void(DEBIT_PAN, original, auth, 2)).response_code == "00"
    assert twin.run(void(DEBIT_PAN, original, auth, 3)).response_code == "12"
    assert twin.run(reversal(void(DEBIT_PAN, original, auth, 2))).response_code == "00"
    assert twin.run(void(DEBIT_PAN, original, auth, 4)).response_code == "00"
    twin.assert_same_state()


def test_refunds_up_to_the_original_alike(twin: Twin) -> None:
    original = sale(DEBIT_PAN, 10_000, 1)
    _approved(twin.run(original))
    later = NOON + 3 * DAY_MS
    assert twin.run(refund(DEBIT_PAN, original, 4_000, 2), later).response_code == "00"
    assert twin.run(refund(DEBIT_PAN, original, 6_001, 3), later).response_code == "13"
    assert twin.run(refund(DEBIT_PAN, original, 6_000, 4), later).response_code == "00"
    assert twin.run(reversal(original), later).response_code == "00"  # nothing left to undo
    assert [n.reason for n in twin.assert_same_state().notices] == ["sale", "refund", "refund"]


def test_a_hold_and_its_completion_alike(twin: Twin) -> None:
    auth = _approved(twin.run(preauth(DEBIT_PAN, 30_000, 1)))
    assert twin.run(completion(DEBIT_PAN, 30_001, auth, 2)).response_code == "13"
    assert twin.run(completion(DEBIT_PAN, 25_000, auth, 3)).response_code == "00"
    assert twin.run(completion(DEBIT_PAN, 1_000, auth, 4)).response_code == "12"
    assert twin.run(completion(DEBIT_PAN, 1_000, "000000", 5)).response_code == "25"
    kinds = [t.kind for t in twin.assert_same_state().transfers]
    assert kinds[-2:] == [TransferKind.PENDING, TransferKind.POST]


def test_holds_lapse_and_are_reversed_alike(twin: Twin) -> None:
    lapsing = preauth(DEBIT_PAN, 30_000, 1)
    auth = _approved(twin.run(lapsing))
    reversed_hold = preauth(CREDIT_PAN, 20_000, 2)
    _approved(twin.run(reversed_hold))
    assert twin.run(reversal(reversed_hold)).response_code == "00"
    assert twin.tick(NOON + DAY_MS) == []
    after = NOON + 31 * DAY_MS
    assert [t.pending_id for t in twin.tick(after)] == [request_key(lapsing)]
    assert twin.run(completion(DEBIT_PAN, 30_000, auth, 3), after).response_code == "12"
    twin.assert_same_state()


def test_a_balance_inquiry_alike(twin: Twin) -> None:
    twin.run(sale(DEBIT_PAN, 2_345, 1))
    outcome = twin.run(balance_inquiry(DEBIT_PAN, 2, pin=PIN, zpk=twin.bank.keys.zpk))
    assert outcome.response is not None
    assert outcome.response.fields[54] == "1002156C000000097655"
    twin.assert_same_state()


def test_the_daily_limit_leaves_out_reversed_sales_alike(twin: Twin) -> None:
    twin.add(LIMITED_PAN, balance_minor=1_000_000, limits=CardLimits(100_000, 30_000, 50_000))
    assert twin.run(sale(LIMITED_PAN, 30_001, 1)).response_code == "61"
    assert twin.run(sale(LIMITED_PAN, 30_000, 2)).response_code == "00"
    assert twin.run(sale(LIMITED_PAN, 20_001, 3)).response_code == "61"
    assert twin.run(sale(LIMITED_PAN, 20_000, 4)).response_code == "00"
    assert twin.run(sale(LIMITED_PAN, 1, 6)).response_code == "61"
    assert twin.run(reversal(sale(LIMITED_PAN, 20_000, 4))).response_code == "00"
    assert twin.run(sale(LIMITED_PAN, 20_000, 7)).response_code == "00"
    assert twin.run(sale(LIMITED_PAN, 20_000, 5), NOON + DAY_MS).response_code == "00"
    card_id = twin.memory.all_cards()[-1].id
    for day in ("20261121", "20261122", "20261123"):
        for kinds in ((TxnKind.SALE, TxnKind.PREAUTH), (TxnKind.REVERSAL,), ()):
            twin.on_both(_spent(card_id, day, kinds))
    twin.assert_same_state()


def _spent(card_id: str, day: str, kinds: tuple[TxnKind, ...]) -> Callable[[IssuerStore], int]:
    return lambda store: store.spent_on(card_id, day, kinds)


def test_refund_one_sided_alike(twin: Twin) -> None:
    kept, part_refunded, reversed_sale = (sale(DEBIT_PAN, 1_000 * n, n) for n in (1, 2, 3))
    for message in (kept, part_refunded, reversed_sale):
        _approved(twin.run(message))
    twin.run(refund(DEBIT_PAN, part_refunded, 500, 4))
    twin.run(reversal(reversed_sale))
    assert twin.refund_one_sided(request_key(kept)).amount_minor == 1_000
    assert twin.refund_one_sided(request_key(kept)).why == "already refunded"
    assert twin.refund_one_sided(request_key(part_refunded)).amount_minor == 1_500
    assert twin.refund_one_sided(request_key(reversed_sale)).result == "nothing"
    assert twin.refund_one_sided("no-such-txn").result == "nothing"
    assert [n.reason for n in twin.assert_same_state().notices][-2:] == ["day-end refund"] * 2


def test_every_lookup_lists_equal_times_as_sqlite_does(twin: Twin) -> None:
    # All at NOON, so every list below is a tie the store must break like SQLite.
    first, second = (sale(DEBIT_PAN, 1_000, n, rrn="000000000077") for n in (1, 2))
    auth = _approved(twin.run(first))
    _approved(twin.run(second))
    twin.run(void(DEBIT_PAN, first, auth, 3))  # by RRN: the first written of the two
    twin.run(reversal(first))
    twin.run(reversal(first, mti="0420", transmitted="1121104000"))
    # A day-end record of an earlier business day, written at the same time as the rest.
    twin.refund_one_sided(request_key(second), "2026-11-20", NOON)
    twin.assert_same_state()
    for question in _lookups(twin.memory.all_txns()):
        twin.on_both(question)


def _lookups(txns: list[TxnRecord]) -> Iterator[Callable[[IssuerStore], object]]:
    for txn in txns:
        yield from _lookups_of(txn)


def _lookups_of(t: TxnRecord) -> list[Callable[[IssuerStore], object]]:
    """Every question the core asks whose answer ``t`` could be part of."""
    key = (t.acquirer_id, t.terminal_id, t.merchant_id, t.stan)
    questions: list[Callable[[IssuerStore], object]] = [
        lambda s: s.followers(t.id),
        lambda s: s.txn(t.id),
        lambda s: s.txns_by_acquirer_key(*key),
    ]
    card = t.card_id
    if card is not None:
        questions += [
            lambda s: s.txns_by_reference(card),
            lambda s: s.txns_by_reference(card, rrn=t.rrn),
            lambda s: s.txns_by_reference(card, auth_code=t.auth_code),
            lambda s: s.txns_by_reference(card, rrn=t.rrn, auth_code=t.auth_code),
        ]
    return questions


def test_notices_again_are_ignored_and_changed_ones_refused_alike(twin: Twin) -> None:
    notice = Notice(
        id="notice:test",
        at_ms=NOON,
        kind=NoticeKind.DEBIT,
        card_tail=DEBIT_PAN[-4:],
        merchant_name="SHOP",
        amount=Money(100, "156"),
        available=Money(900, "156"),
        reference="",
    )
    twin.on_both(lambda s: s.add_notice(notice))
    twin.on_both(lambda s: s.add_notice(notice))
    changed = dataclasses.replace(notice, amount=Money(101, "156"))
    for store in _each_store(twin):
        with store as opened, pytest.raises(NoticeError):
            opened.add_notice(changed)
    assert len(twin.assert_same_state().notices) == 1


class _Opened:
    """One store in a transaction that is rolled back at the end, whatever happened."""

    def __init__(self, twin: Twin, memory: bool) -> None:
        self._twin, self._memory = twin, memory
        self._conn: Connection | None = None

    def __enter__(self) -> IssuerStore:
        if self._memory:
            self._twin.memory.log.begin()
            return self._twin.memory
        self._conn = self._twin.bank.engine.connect()
        self._conn.begin()
        return SqlIssuerStore(self._conn)

    def __exit__(self, *exc: object) -> None:
        if self._conn is None:
            self._twin.memory.log.rollback()
            return
        self._conn.rollback()
        self._conn.close()


def _each_store(twin: Twin) -> tuple[_Opened, _Opened]:
    return _Opened(twin, memory=False), _Opened(twin, memory=True)


def test_a_record_naming_no_card_is_refused_by_both(twin: Twin) -> None:
    _approved(twin.run(sale(DEBIT_PAN, 100, 1)))
    orphan = dataclasses.replace(twin.memory.all_txns()[0], id="other", card_id="card-none")
    sql, memory = _each_store(twin)
    with sql as store, pytest.raises(IntegrityError):
        store.record_txn(orphan)
    with memory as store, pytest.raises(KeyError):
        store.record_txn(orphan)
    twin.assert_same_state()


# --- the memory store's own promises -----------------------------------------------------------

#: One core step each, run after a committed sale (stan 1, amount 10.00) and hold (stan 2).
_STEPS: Final[dict[str, Callable[[Twin], Message | int]]] = {
    "sale": lambda t: sale(DEBIT_PAN, 5_000, 10),
    "wrong-pin": lambda t: sale(DEBIT_PAN, 5_000, 10, **_pin(t, "000000")),
    "funds": lambda t: sale(DEBIT_PAN, 100_000, 10, **_pin(t)),
    "repeat": lambda t: sale(DEBIT_PAN, 1_000, 1),
    "completion": lambda t: completion(DEBIT_PAN, 2_000, t.memory.all_txns()[1].auth_code, 10),
    "reversal": lambda t: reversal(sale(DEBIT_PAN, 1_000, 1)),
    "hold-reversal": lambda t: reversal(preauth(DEBIT_PAN, 3_000, 2)),
    "void": lambda t: void(
        DEBIT_PAN, sale(DEBIT_PAN, 1_000, 1), t.memory.all_txns()[0].auth_code, 10
    ),
    "refund": lambda t: refund(DEBIT_PAN, sale(DEBIT_PAN, 1_000, 1), 400, 10),
    "tick": lambda t: NOON + 31 * DAY_MS,
}


@pytest.mark.parametrize("step", list(_STEPS))
def test_a_rolled_back_step_leaves_no_trace(twin: Twin, step: str) -> None:
    _approved(twin.run(sale(DEBIT_PAN, 1_000, 1)))
    _approved(twin.run(preauth(DEBIT_PAN, 3_000, 2)))
    before = twin.memory.snapshot()
    what = _STEPS[step](twin)
    twin.memory.log.begin()
    if isinstance(what, int):
        assert twin.bank.core.tick(what, twin.memory)
    else:
        twin.bank.core.handle(what, NOON, twin.memory)
    changed = twin.memory.snapshot() != before
    twin.memory.log.rollback()
    assert twin.memory.snapshot() == before
    assert changed or step == "repeat"
    # And the step, run again for real, answers as the database that never saw it does.
    if isinstance(what, int):
        twin.tick(what)
    else:
        twin.run(what)
    twin.assert_same_state()


def test_a_rolled_back_day_end_refund_and_card_leave_no_trace(twin: Twin) -> None:
    original = sale(DEBIT_PAN, 1_000, 1)
    _approved(twin.run(original))
    before = twin.memory.snapshot()
    twin.memory.log.commit_fault = lambda: CommitFault.FAIL
    with pytest.raises(CommitFailedError), twin.memory.log.transaction():
        done = refund_one_sided(twin.memory, request_key(original), BUSINESS_DAY, NOON)
        assert done.result == "refunded"
        new = _new_card(EMPTY_PAN, balance_minor=5)
        twin.memory.issue_card(new, twin.bank.data_keys, twin.bank.keys, NOON)
        assert twin.memory.snapshot() != before
    twin.memory.log.commit_fault = None
    assert twin.memory.snapshot() == before
    twin.refund_one_sided(request_key(original))
    twin.assert_same_state()


def test_duplicate_keys_are_refused_and_change_nothing(twin: Twin) -> None:
    _approved(twin.run(sale(DEBIT_PAN, 1_000, 1)))
    memory = twin.memory
    txn, response = memory.all_txns()[0], memory.all_responses()[0]
    transfer = memory.ledger.transfers_since(0)[-1]
    account = next(memory.ledger.all_accounts())
    before = memory.snapshot()
    memory.log.begin()
    refusals: list[Callable[[], None]] = [
        lambda: memory.record_txn(txn),
        lambda: memory.record_txn(dataclasses.replace(txn, id="x", original_id="none")),
        lambda: memory.save_response(response),
        lambda: memory.ledger.insert_transfer(transfer),
        lambda: memory.ledger.insert_account(account),
    ]
    for refused in refusals:
        with pytest.raises(KeyError):
            refused()
        assert memory.snapshot() == before
    memory.log.rollback()
    assert memory.snapshot() == before


def test_a_hold_is_resolved_once_and_the_written_order_undoes(twin: Twin) -> None:
    ledger = twin.memory.ledger
    _approved(twin.run(preauth(DEBIT_PAN, 3_000, 1)))
    hold = ledger.transfers_since(ledger.transfer_count() - 1)[0]
    count = ledger.transfer_count()
    twin.memory.log.begin()
    post = Transfer.of(
        TransferSpec(
            "post",
            hold.debit_account_id,
            hold.credit_account_id,
            1,
            hold.currency,
            kind=TransferKind.POST,
            pending_id=hold.id,
        ),
        NOON,
    )
    ledger.insert_transfer(post)
    assert ledger.transfers_since(count) == [post]
    assert ledger.expired_pending(NOON + 31 * DAY_MS, 10) == []
    with pytest.raises(KeyError):
        ledger.insert_transfer(dataclasses.replace(post, id="again"))
    twin.memory.log.rollback()
    assert ledger.transfer_count() == count
    assert ledger.expired_pending(NOON + 31 * DAY_MS, 10) == [hold]
    with pytest.raises(ValueError):
        ledger.transfers_since(-1)


def test_the_undoable_ledger_expires_holds_as_the_memory_store_does() -> None:
    plain, undoable = MemoryLedgerStore(), UndoableLedgerStore(UndoLog())
    for store in (plain, undoable):
        ledger = Ledger(store)
        _expiry_story(ledger)
    for now in (NOON, NOON + 5, NOON + 10, NOON + 100):
        for limit in (1, 2, 10):
            assert undoable.expired_pending(now, limit) == plain.expired_pending(now, limit)
    assert list(undoable.all_transfers()) == list(plain.all_transfers())


def _expiry_story(ledger: Ledger) -> None:
    ledger.open_account(AccountSpec("a", "156", None), NOON)
    ledger.open_account(AccountSpec("b", "156", None), NOON)
    for n, expires in enumerate((NOON + 10, NOON + 5, NOON + 10, NOON + 50)):
        hold = TransferSpec(
            f"h{n}", "a", "b", 10, "156", kind=TransferKind.PENDING, expires_at_ms=expires
        )
        ledger.transfer(hold, NOON)
    ledger.transfer(
        TransferSpec("p", "a", "b", 10, "156", kind=TransferKind.POST, pending_id="h2"), NOON
    )
    ledger.expire_holds(NOON + 5)
