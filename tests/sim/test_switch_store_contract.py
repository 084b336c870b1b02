"""MemorySwitchStore against SqlSwitchStore: the same calls give the same answers.

Every step runs twice, once on a SQLite switch database and once on the memory store, and the
two results must be equal; the core itself is driven through the same scenarios, with the
working keys of a sign-on made deterministic so that answers compare byte for byte. Then the
memory store's own promises: a rollback restores exactly what was there, and a write the
schema would refuse is refused (``KeyError`` for keys, ``ValueError`` for CHECKs) with nothing
changed.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cardtally.security import (
    DataKeys,
    MacAlgorithm,
    WorkingKeys,
    decode_signon_keys,
    generate_master_key,
)
from cardtally.sim._switch_store import MemorySwitchStore
from cardtally.sim._undo import CommitFailedError, CommitFault
from cardtally.storage import events, sqlite_url, transaction
from cardtally.switch import (
    AdviceAcked,
    AdviceSend,
    Answer,
    Forward,
    Ignored,
    IssuerRoute,
    Join,
    Merchant,
    SettlementCycle,
    SwitchCore,
    SwitchIdentity,
    SwitchPolicy,
    SwitchStore,
    Terminal,
    TerminalAnswer,
    TerminalStatus,
    TxnKind,
    TxnState,
)
from cardtally.switch._database import open_switch_database
from cardtally.switch._registry import (
    add_issuer_link,
    add_merchant,
    add_terminal,
    list_issuer_links,
    list_merchants,
    list_terminals,
)
from cardtally.switch._schema import (
    advice_table,
    batch_table,
    request_table,
    response_table,
    txn_table,
    upload_table,
)
from cardtally.switch._store import (
    BatchRecord,
    Forwarding,
    NewTxn,
    RegistryCache,
    SqlSwitchStore,
    StoredRequest,
    _advice,
    _fields_of,
    _txn,
)
from cardtally.terminal import (
    Card,
    TerminalIdentity,
    reversal_of,
    sale,
    settlement,
    sign_on,
    void,
)
from cardtally.wire import Message, Pan
from tests.switch.support import (
    ACQUIRER,
    CARD,
    LINK,
    MERCHANT,
    NO_ROUTE_CARD,
    NOW_MS,
    OTHER_TERMINAL,
    TERMINAL,
    TIMEOUT_MS,
    Device,
    decoded,
    issuer_answer,
    pan,
    upload_closing,
    upload_record,
)

T = TypeVar("T")

#: A second issuer with a longer BIN inside the first one's: routing takes the longest prefix.
LINK_B: Final = "issuer_b"
BIN_B: Final = "62258899"
CARD_B: Final = Card(pan("622588990000001"), expiry="2812")
LINKS: Final = (LINK, LINK_B)
LATER: Final = NOW_MS + TIMEOUT_MS
BACKOFF_MIN_MS: Final = 1000


class _RollbackError(Exception):
    """Raised inside a SQL transaction to roll it back, as a failed step would."""


@dataclass
class _Steps:
    """The twin's step counter, and the sign-on keys it makes deterministic."""

    count: int = 0

    def working_keys(self) -> WorkingKeys:
        """New keys at every step, the same on both stores within a step."""
        seed = f"{self.count}".encode()
        return WorkingKeys(
            pin_key=hashlib.sha256(b"pin" + seed).digest()[:16],
            mac_key=hashlib.sha256(b"mac" + seed).digest()[:16],
        )


@dataclass
class Twin:
    """One switch registry in SQLite and in memory; every step runs on both."""

    engine: Engine
    data_keys: DataKeys
    core: SwitchCore
    memory: MemorySwitchStore
    steps: _Steps
    devices: dict[str, Device] = field(default_factory=dict)
    cache: RegistryCache = field(default_factory=RegistryCache)  # shared, as the service does
    setup_event_id: int = 0

    def run(self, fn: Callable[[SwitchStore], T], *, commit: bool = True) -> tuple[T, T]:
        """``fn`` in one transaction on each store (rolled back unless ``commit``)."""
        self.steps.count += 1
        got: list[T] = []
        try:
            with transaction(self.engine) as conn:
                got.append(fn(SqlSwitchStore(conn, self.data_keys, self.cache)))
                if not commit:
                    raise _RollbackError
        except _RollbackError:
            pass
        if commit:
            with self.memory.log.transaction():
                got.append(fn(self.memory))
        else:
            self.memory.log.begin()
            try:
                got.append(fn(self.memory))
            finally:
                self.memory.log.rollback()
        return got[0], got[1]

    def same(self, fn: Callable[[SwitchStore], T], *, commit: bool = True) -> T:
        sql, memory = self.run(fn, commit=commit)
        assert sql == memory
        return sql

    def terminal(self, raw: bytes, now_ms: int = NOW_MS, *, commit: bool = True) -> Any:
        return self.same(lambda s: self.core.terminal_request(raw, now_ms, s), commit=commit)

    def issuer(self, raw: bytes, now_ms: int = NOW_MS, *, commit: bool = True) -> Any:
        return self.same(lambda s: self.core.issuer_message(raw, now_ms, s), commit=commit)

    def sign_on(self, device: Device, now_ms: int = NOW_MS, *, commit: bool = True) -> Message:
        message = sign_on(device.who, device.next_stan(), device.batch_no)
        response = decoded(self.terminal(device.raw(message), now_ms, commit=commit).body)
        if commit:
            keys = bytes.fromhex(response.fields[62])
            device.keys = decode_signon_keys(device.master_key, keys)
        return response


def _register(conn: sa.Connection, data_keys: DataKeys) -> dict[str, bytes]:
    add_merchant(conn, merchant_id=MERCHANT, name="COFFEE SHOP", mcc="5812", at_ms=NOW_MS)
    for link_id, port, bins in ((LINK, 9583, ["622588", "622700"]), (LINK_B, 9584, [BIN_B])):
        add_issuer_link(
            conn,
            link_id=link_id,
            host="127.0.0.1",
            port=port,
            timeout_ms=TIMEOUT_MS,
            bins=bins,
            at_ms=NOW_MS,
        )
    masters = {}
    for tid in (TERMINAL, OTHER_TERMINAL):
        _, masters[tid] = add_terminal(
            conn, data_keys, terminal_id=tid, merchant_id=MERCHANT, at_ms=NOW_MS
        )
    return masters


def _copy_registry(
    conn: sa.Connection, memory: MemorySwitchStore, masters: dict[str, bytes]
) -> None:
    for merchant in list_merchants(conn):
        memory.add_merchant(merchant)
    for terminal in list_terminals(conn):
        memory.add_terminal(terminal, masters[terminal.terminal_id])
    for route in list_issuer_links(conn):
        memory.add_route(route)


def build_twin(path: Path) -> Twin:
    engine = open_switch_database(sqlite_url(path), NOW_MS)
    data_keys = DataKeys(secrets.token_bytes(32), secrets.token_bytes(32))
    steps = _Steps()
    policy = SwitchPolicy(
        SwitchIdentity(ACQUIRER, ACQUIRER, "156"),
        advice_backoff_min_ms=BACKOFF_MIN_MS,
        new_working_keys=steps.working_keys,
    )
    core = SwitchCore(generate_master_key(), policy)
    twin = Twin(engine, data_keys, core, MemorySwitchStore(data_keys=data_keys), steps)
    with transaction(engine) as conn:
        masters = _register(conn, data_keys)
        _copy_registry(conn, twin.memory, masters)
        twin.setup_event_id = max((e.id for e in events(conn, limit=10_000)), default=0)
    for tid, master in masters.items():
        twin.devices[tid] = Device(TerminalIdentity(tid, MERCHANT), master)
    return twin


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Twin]:
    opened = build_twin(tmp_path / "switch.sqlite3")
    yield opened
    opened.engine.dispose()


@pytest.fixture
def device(twin: Twin) -> Device:
    signed = twin.devices[TERMINAL]
    twin.sign_on(signed)
    return signed


# -- what each store holds -----------------------------------------------------------------------


def _registry_view(store: SwitchStore) -> dict[str, object]:
    terminals = {tid: store.terminal(tid) for tid in (TERMINAL, OTHER_TERMINAL)}
    return {
        "terminals": terminals,
        "keys": {tid: store.terminal_keys(t) for tid, t in terminals.items() if t is not None},
        "merchant": store.merchant(MERCHANT),
    }


def sql_contents(twin: Twin) -> dict[str, object]:
    with transaction(twin.engine) as conn:

        def rows(table: sa.Table, *order: Any) -> list[Any]:
            return list(conn.execute(sa.select(table).order_by(*order)).mappings())

        logged = events(conn, after_id=twin.setup_event_id, limit=10_000)
        store = SqlSwitchStore(conn, twin.data_keys)
        txns = [_txn(r) for r in rows(txn_table, txn_table.c.id)]
        return {
            "txns": txns,
            "pans": [store.pan_of(t.id) for t in txns],
            "advices": [_advice(r) for r in rows(advice_table, advice_table.c.id)],
            "batches": sorted(
                (BatchRecord(*(r[c] for c in _BATCH_COLUMNS)) for r in rows(batch_table)),
                key=_batch_key,
            ),
            "uploads": sorted(tuple(r[c] for c in _UPLOAD_COLUMNS) for r in rows(upload_table)),
            "requests": [
                StoredRequest(r["key"], r["content_sha256"], r["txn_id"])
                for r in rows(request_table, request_table.c.key)
            ],
            "responses": {
                r["key"]: (r["mti"], _fields_of(r["fields"])) for r in rows(response_table)
            },
            "events": [
                (e.at_ms, e.kind, None if e.txn_key is None else int(e.txn_key), dict(e.detail))
                for e in logged
            ],
            "registry": _registry_view(store),
        }


_BATCH_COLUMNS: Final = (
    "terminal_id",
    "batch_no",
    "result",
    "terminal_totals",
    "switch_totals",
    "closed_at_ms",
)
_UPLOAD_COLUMNS: Final = (
    "terminal_id",
    "batch_no",
    "stan",
    "rrn",
    "amount_minor",
    "processing_code",
    "difference",
    "at_ms",
)


def _batch_key(record: BatchRecord) -> tuple[str, int]:
    return record.terminal_id, record.batch_no


def memory_contents(memory: MemorySwitchStore) -> dict[str, object]:
    return {
        "txns": memory.all_txns(),
        "pans": [memory.pan_of(t.id) for t in memory.all_txns()],
        "advices": memory.all_advices(),
        "batches": sorted(memory.all_batches(), key=_batch_key),
        "uploads": sorted(
            tuple(getattr(u, c) for c in _UPLOAD_COLUMNS) for u in memory.all_uploads()
        ),
        "requests": sorted(memory.all_requests(), key=lambda r: r.key),
        "responses": memory.all_responses(),
        "events": memory.events(),
        "registry": _registry_view(memory),
    }


def assert_same_contents(twin: Twin) -> None:
    sql, memory = sql_contents(twin), memory_contents(twin.memory)
    for part, held in sql.items():
        assert held == memory[part], part
    assert twin.memory.txn_count() == len(twin.memory.all_txns())


# -- the core through both stores ----------------------------------------------------------------


def _sale(
    twin: Twin, device: Device, amount: int = 8_800, card: Card = CARD
) -> tuple[Message, Any]:
    message = sale_message(device, amount, card)
    return message, twin.terminal(device.raw(message))


def sale_message(device: Device, amount: int, card: Card = CARD) -> Message:
    return sale(device.who, device.next_stan(), device.batch_no, card=card, amount_minor=amount)


def test_registry_look_ups_agree(twin: Twin) -> None:
    def look_ups(store: SwitchStore) -> list[object]:
        return [
            store.terminal(TERMINAL),
            store.terminal("99999999"),
            store.merchant(MERCHANT),
            store.merchant("NOBODY"),
            store.terminal_keys(_present(store.terminal(OTHER_TERMINAL))),
        ]

    seen = twin.same(look_ups)
    assert seen[1] is None and seen[3] is None
    # 62258899 lies inside 622588: the longer prefix wins; 622700 is issuer_a's other BIN.
    cards = (CARD.pan, CARD_B.pan, pan("622700123"), NO_ROUTE_CARD.pan)
    routes = twin.same(lambda s: [s.route(card) for card in cards])
    assert [None if r is None else r.link_id for r in routes] == [LINK, LINK_B, LINK, None]
    assert _present(routes[0]).bins == ("622588", "622700")
    assert_same_contents(twin)


def _present(value: T | None) -> T:
    assert value is not None
    return value


def test_sign_on_sets_the_keys_and_a_second_one_replaces_them(twin: Twin) -> None:
    device = twin.devices[TERMINAL]
    first = twin.sign_on(device)
    keys = twin.same(lambda s: s.terminal_keys(_present(s.terminal(TERMINAL))))
    assert keys.working == device.keys and first.fields[60] == "00000001003"
    twin.sign_on(device)  # the same millisecond: the cache must not serve the old keys
    again = twin.same(lambda s: s.terminal_keys(_present(s.terminal(TERMINAL))))
    assert again.working == device.keys != keys.working
    twin.same(lambda s: s.set_batch(TERMINAL, 7))
    twin.same(lambda s: s.sign_on("99999999", twin.steps.working_keys(), NOW_MS))  # no such row
    assert twin.same(lambda s: _present(s.terminal(TERMINAL)).batch_no) == 7
    assert_same_contents(twin)


def test_a_sale_answered_by_its_issuer_and_repeated(twin: Twin, device: Device) -> None:
    message, forward = _sale(twin, device, 4_200, CARD_B)
    assert isinstance(forward, Forward) and forward.link_id == LINK_B
    assert isinstance(twin.terminal(device.raw(message)), Join)  # repeat while in flight
    answer = twin.issuer(issuer_answer(forward.body, "00", f38="123456"))
    assert isinstance(answer, TerminalAnswer) and answer.code == "00"
    repeat = twin.terminal(device.raw(message), NOW_MS + 10)
    assert isinstance(repeat, Answer) and repeat.outcome == "duplicate"
    changed = message.with_fields({4: "000000000001"})
    assert twin.terminal(device.raw(changed)).code == "94"  # same key, other content
    _, declined = _sale(twin, device, 900)
    assert twin.issuer(issuer_answer(declined.body, "51")).code == "51"
    refused = twin.terminal(device.raw(sale_message(device, 5, NO_ROUTE_CARD)))
    assert refused.code == "14"

    sent = decoded(forward.body)

    def reads(store: SwitchStore) -> list[object]:
        txn = _present(store.txn(forward.txn_id))
        return [
            txn,
            store.txn(999),
            store.txn_by_issuer_key(sent.fields[11], sent.fields[7]),
            store.txn_by_issuer_key(sent.fields[11], "0101000000"),
            store.txn_by_terminal_key(TERMINAL, 1, message.fields[11]),
            store.txn_by_terminal_key(TERMINAL, 2, message.fields[11]),
            store.reversed_before(TERMINAL, 1, message.fields[11]),
            store.request(txn.request_key),
            store.request("nothing"),
            store.response(txn.request_key),
            store.response("nothing"),
            store.pan_of(forward.txn_id),
            store.pan_of(999),
            store.txns_in_state([TxnState.APPROVED, TxnState.DECLINED]),
            store.txns_in_state([TxnState.REFUSED]),
            store.txns_in_state([]),
            store.batch_txns(TERMINAL, 1),
            store.batch_txns(OTHER_TERMINAL, 1),
            store.unanswered_forwards(),
        ]

    seen = twin.same(reads)
    assert seen[2] == seen[0] and seen[11] == CARD_B.pan
    done = twin.same(lambda s: s.txns_in_state([TxnState.APPROVED, TxnState.DECLINED]))
    assert [t.id for t in done] == [forward.txn_id, declined.txn_id]
    assert_same_contents(twin)


def test_a_timeout_queues_an_advice_that_is_sent_resent_and_acked(
    twin: Twin, device: Device
) -> None:
    raw = device.raw(sale_message(device, 8_800))
    forward = twin.terminal(raw)
    assert isinstance(forward, Forward)
    assert twin.same(lambda s: s.unanswered_forwards())[0].id == forward.txn_id
    timed_out = twin.same(lambda s: twin.core.timed_out(forward.txn_id, LATER, s))
    assert isinstance(timed_out, TerminalAnswer) and timed_out.code == "98"
    assert twin.same(lambda s: s.unanswered_forwards()) == []
    [send] = twin.same(lambda s: twin.core.advices_due(LATER, s, frozenset(LINKS)))
    assert isinstance(send, AdviceSend) and send.attempt == 0
    assert twin.same(lambda s: twin.core.advices_due(LATER, s, frozenset(LINKS))) == []
    [resend] = twin.same(
        lambda s: twin.core.advices_due(LATER + BACKOFF_MIN_MS, s, frozenset({LINK}))
    )
    assert resend.advice_id == send.advice_id and resend.attempt == 1
    retry = twin.issuer(issuer_answer(resend.body, "96"), LATER + 1_100)
    assert isinstance(retry, Ignored)
    late = twin.issuer(issuer_answer(forward.body, "00", f38="123456"), LATER + 1_200)
    assert late == Ignored("late: the stored reversal undoes it", forward.txn_id)
    acked = twin.issuer(issuer_answer(send.body, "00"), LATER + 1_300)
    assert acked == AdviceAcked(send.advice_id, LINK, "00")
    assert isinstance(twin.issuer(issuer_answer(send.body, "00"), LATER + 1_400), Ignored)
    assert _present(twin.same(lambda s: s.advice_for_txn(forward.txn_id))).ack_code == "00"
    assert twin.same(lambda s: s.due_advices(LATER + 3_600_000, 10, LINKS)) == []
    repeat = twin.terminal(raw, LATER + 2_000)
    assert repeat.outcome == "duplicate" and repeat.body == timed_out.body
    assert_same_contents(twin)


def test_terminal_reversals_voids_and_recovery(twin: Twin, device: Device) -> None:
    approved_message, approved = _sale(twin, device, 4_200)
    assert twin.issuer(issuer_answer(approved.body, "00", f38="123456")).code == "00"
    reversal = reversal_of(approved_message, "98")
    assert twin.terminal(device.raw(reversal), NOW_MS + 5).code == "00"
    again = twin.terminal(device.raw(reversal_of(approved_message, "98", repeat=True)))
    assert again.outcome == "duplicate"
    kept_message, kept = _sale(twin, device, 2_000)
    kept_answer = decoded(twin.issuer(issuer_answer(kept.body, "00", f38="654321")).body)
    voiding = void(
        device.who,
        device.next_stan(),
        1,
        card=CARD,
        original=kept_message,
        original_answer=kept_answer,
    )
    void_forward = twin.terminal(device.raw(voiding))
    assert isinstance(void_forward, Forward)
    # A reversal that overtakes its sale: the sale that follows is refused.
    ghost = sale_message(device, 300)
    assert twin.terminal(device.raw(reversal_of(ghost, "98"))).code == "00"
    assert twin.terminal(device.raw(ghost)).code == "12"
    # Reversed while in flight, then the switch restarts with two forwards outstanding.
    in_flight_message, in_flight = _sale(twin, device, 700)
    assert twin.terminal(device.raw(reversal_of(in_flight_message, "98"))).code == "00"
    recovered = twin.same(lambda s: twin.core.recover(LATER, s))
    assert recovered == [void_forward.txn_id, in_flight.txn_id]

    def reads(store: SwitchStore) -> list[object]:
        return [
            store.followers(kept.txn_id),
            store.followers(approved.txn_id),
            store.followers(999),
            store.reversed_before(TERMINAL, 1, approved_message.fields[11]),
            store.reversed_before(TERMINAL, 1, kept_message.fields[11]),
            store.txn_by_terminal_key(TERMINAL, 1, approved_message.fields[11]),
            store.advice_for_txn(approved.txn_id),
            store.advice_for_txn(kept.txn_id),
            store.due_advices(LATER, 64, LINKS),
        ]

    seen = twin.same(reads)
    assert seen[3] is True and seen[4] is False
    voids = twin.same(lambda s: s.followers(kept.txn_id))
    assert [t.kind for t in voids] == [TxnKind.VOID]
    assert_same_contents(twin)


def test_settlement_and_batch_upload(twin: Twin, device: Device) -> None:
    sold = []
    for amount in (1_000, 2_000):
        message, forward = _sale(twin, device, amount)
        answer = twin.issuer(issuer_answer(forward.body, "00", f38="123456"))
        sold.append((message, decoded(answer.body)))
    closing = settlement(device.who, device.next_stan(), 1, "0" * 31)
    settled = twin.terminal(device.raw(closing), NOW_MS + 3_600_000)
    assert decoded(settled.body).fields[48][-1] == "2"  # not balanced: it claimed nothing
    for message, answer in [*sold, sold[0]]:  # the first one twice: a repeat
        record = upload_record(device.who, 1, pan=CARD.pan, txn=message, answer=answer)
        assert twin.terminal(device.raw(record), NOW_MS + 3_600_100).code == "00"
    count = upload_closing(device.who, device.next_stan(), 1, 2)
    assert twin.terminal(device.raw(count), NOW_MS + 3_600_200).code == "00"
    repeat = twin.terminal(device.raw(closing), NOW_MS + 3_700_000)
    assert repeat.outcome == "duplicate" and repeat.body == settled.body

    def reads(store: SwitchStore) -> list[object]:
        return [
            store.batch(TERMINAL, 1),
            store.batch(TERMINAL, 2),
            store.count_uploads(TERMINAL, 1),
            store.count_uploads(OTHER_TERMINAL, 1),
            _present(store.terminal(TERMINAL)).batch_no,
        ]

    seen = twin.same(reads)
    assert seen[2] == 2 and seen[4] == 2
    assert_same_contents(twin)


# -- the store's methods directly ----------------------------------------------------------------


def _new(
    stan: int,
    *,
    kind: TxnKind = TxnKind.SALE,
    terminal: str = TERMINAL,
    batch: int = 1,
    card: Pan | None = CARD.pan,
    original: int | None = None,
) -> NewTxn:
    return NewTxn(
        request_key=f"0200|{terminal}|{stan:06d}|{batch:06d}|20261119|{kind.value}",
        kind=kind,
        state=TxnState.RECEIVED,
        terminal_id=terminal,
        merchant_id=MERCHANT,
        batch_no=batch,
        stan=f"{stan:06d}",
        local_date="20261119",
        pan=card,
        processing_code="000000",
        amount_minor=100 * stan,
        currency="156",
        echo_fields={41: terminal, 11: f"{stan:06d}", 3: "000000"},
        original_id=original,
        at_ms=NOW_MS,
    )


def _forwarding(link: str, stan: str, at: str = "1119120000") -> Forwarding:
    return Forwarding(link, stan, at, "0200", "000000000001")


def _txn_script(store: SwitchStore) -> list[object]:
    """Transactions and their indexes, with updates that hit no row."""
    ids = [store.add_txn(_new(n)).id for n in (1, 2, 3)]
    ids.append(store.add_txn(_new(2, kind=TxnKind.REVERSAL, card=None, original=ids[1])).id)
    ids.append(store.add_txn(_new(2)).id)  # the same terminal key again: the latest wins
    ids.append(store.add_txn(_new(9, batch=2, terminal=OTHER_TERMINAL, original=ids[0])).id)
    store.forwarded(ids[0], _forwarding(LINK, "000777"), NOW_MS + 1)
    store.forwarded(ids[2], _forwarding(LINK, "000777"), NOW_MS + 2)  # a wrapped trace number
    store.forwarded(ids[4], _forwarding(LINK, "000888"), NOW_MS + 3)
    store.forwarded(ids[4], _forwarding(LINK_B, "000999"), NOW_MS + 4)  # re-keyed
    store.set_state(ids[0], TxnState.APPROVED, NOW_MS + 5, response_code="00", auth_code="A1")
    store.set_state(ids[0], TxnState.REVERSAL_PENDING, NOW_MS + 6)  # keeps the codes
    store.set_state(ids[2], TxnState.TIMED_OUT, NOW_MS + 7, response_code="98")
    store.set_state(999, TxnState.APPROVED, NOW_MS)
    store.forwarded(999, _forwarding(LINK, "000001"), NOW_MS)
    store.add_request(StoredRequest("k1", "sha", ids[0]), NOW_MS)
    store.add_request(StoredRequest("k2", "sha2", None), NOW_MS)
    store.save_response("k2", "0510", {39: "00", 11: "000002", 4: "1"}, NOW_MS)
    return [
        ids,
        [store.txn(i) for i in [*ids, 999]],
        store.txn_by_issuer_key("000777", "1119120000"),
        store.txn_by_issuer_key("000888", "1119120000"),
        store.txn_by_issuer_key("000999", "1119120000"),
        store.txn_by_terminal_key(TERMINAL, 1, "000002"),
        store.reversed_before(TERMINAL, 1, "000002"),
        store.reversed_before(TERMINAL, 1, "000001"),
        store.followers(ids[0]),
        store.followers(ids[1]),
        store.batch_txns(TERMINAL, 1),
        store.batch_txns(OTHER_TERMINAL, 2),
        store.txns_in_state(iter([TxnState.FORWARDED, TxnState.TIMED_OUT])),
        store.unanswered_forwards(),
        [store.pan_of(i) for i in ids],
        store.request("k1"),
        store.response("k2"),
    ]


def _queue_script(store: SwitchStore) -> list[object]:
    """The advice queue: order by next try then id, the limit, the links asked for."""
    txns = [store.add_txn(_new(n)).id for n in range(1, 7)]
    links = [LINK, LINK_B, LINK, LINK_B, LINK, "issuer_c"]
    ids = [
        store.add_advice(t, link, {90: f"{t:042d}", 11: f"{t:06d}"}, NOW_MS + 10 * (t % 3))
        for t, link in zip(txns, links, strict=True)
    ]
    store.add_advice(txns[0], LINK, {11: "again"}, NOW_MS + 50)  # a second advice, same txn
    store.advice_sent(ids[0], 1, NOW_MS + 5)
    store.advice_sent(ids[1], 2, NOW_MS + 5)
    store.ack_advice(ids[2], "00", NOW_MS + 6)
    store.ack_advice(ids[2], "05", NOW_MS + 7)  # already acknowledged: no change
    store.advice_sent(ids[2], 3, NOW_MS)  # acknowledged advices are updated but never due
    store.advice_sent(999, 1, NOW_MS)
    store.ack_advice(999, "00", NOW_MS)
    later = NOW_MS + 1_000
    return [
        ids,
        [store.advice(i) for i in [*ids, 999]],
        store.advice_for_txn(txns[0]),
        store.advice_for_txn(999),
        store.due_advices(later, 64, LINKS),
        store.due_advices(later, 2, [LINK_B, LINK, LINK]),
        store.due_advices(later, 0, LINKS),
        store.due_advices(NOW_MS + 5, 64, LINKS),
        store.due_advices(NOW_MS - 1, 64, LINKS),
        store.due_advices(later, 64, ["issuer_c"]),
        store.due_advices(later, 64, []),
        store.due_advices(later, 64, iter(["nowhere"])),
    ]


def _batch_script(store: SwitchStore) -> list[object]:
    record = BatchRecord(TERMINAL, 1, "balanced", "0" * 30, "0" * 30, NOW_MS)
    store.close_batch(record)
    fields = {11: "000001", 37: "000000000001", 4: "000000001000", 3: "000000", 41: TERMINAL}
    added = [
        store.add_upload(TERMINAL, 1, fields, "", NOW_MS),
        store.add_upload(TERMINAL, 1, fields | {4: "2"}, "differs", NOW_MS),
        store.add_upload(TERMINAL, 1, {11: "000002"}, "unknown at the switch", NOW_MS),
        store.add_upload(TERMINAL, 2, fields, "", NOW_MS),  # a batch not closed: still kept
        store.add_upload(TERMINAL, 1, {4: ""}, "no stan", NOW_MS),
    ]
    store.log_event(NOW_MS, "sim.test", None, {"b": [1, 2], "a": None})
    store.log_event(NOW_MS, "sim.test", 3, {})
    return [
        added,
        store.batch(TERMINAL, 1),
        store.batch(TERMINAL, 2),
        store.count_uploads(TERMINAL, 1),
        store.count_uploads(TERMINAL, 2),
        store.count_uploads(OTHER_TERMINAL, 1),
    ]


@pytest.mark.parametrize("script", [_txn_script, _queue_script, _batch_script])
def test_direct_calls_agree(twin: Twin, script: Callable[[SwitchStore], list[object]]) -> None:
    twin.same(script)
    assert_same_contents(twin)


def _txn_and_advice(store: SwitchStore, stan: int, advised: int) -> tuple[int, int]:
    return store.add_txn(_new(stan)).id, store.add_advice(advised, LINK, {}, NOW_MS)


def test_a_rolled_back_step_is_gone_from_both_and_its_ids_are_reused(twin: Twin) -> None:
    first = twin.same(lambda s: s.add_txn(_new(1)).id)
    assert twin.same(lambda s: _txn_and_advice(s, 2, first), commit=False) == (2, 1)
    assert twin.same(lambda s: _txn_and_advice(s, 3, first)) == (2, 1)
    assert_same_contents(twin)


# -- many steps, some rolled back, through the core ----------------------------------------------


@dataclass
class _Traffic:
    """What a random run remembers of the answers it got, to pick its next step."""

    twin: Twin
    rng: random.Random
    now_ms: int = NOW_MS
    sent: list[tuple[Device, Message]] = field(default_factory=list)
    forwards: list[tuple[Device, Message, Forward]] = field(default_factory=list)
    approved: list[tuple[Device, Message, Message]] = field(default_factory=list)
    sends: list[AdviceSend] = field(default_factory=list)

    def step(self) -> None:
        self.now_ms += self.rng.choice((0, 1, 250, 1_500, TIMEOUT_MS))
        commit = self.rng.random() > 0.2
        action = self.rng.choice(_ACTIONS)
        action(self, commit)

    def device(self) -> Device:
        return self.twin.devices[self.rng.choice((TERMINAL, OTHER_TERMINAL))]

    def terminal(self, device: Device, message: Message, commit: bool) -> Any:
        return self.twin.terminal(device.raw(message), self.now_ms, commit=commit)


def _do_sale(t: _Traffic, commit: bool) -> None:
    device = t.device()
    card = t.rng.choice((CARD, CARD, CARD_B, NO_ROUTE_CARD))
    message = sale_message(device, t.rng.randint(1, 50_000), card)
    outcome = t.terminal(device, message, commit)
    if commit:
        t.sent.append((device, message))
        if isinstance(outcome, Forward):
            t.forwards.append((device, message, outcome))


def _do_answer(t: _Traffic, commit: bool) -> None:
    if t.forwards:
        device, message, forward = t.rng.choice(t.forwards)
        raw = issuer_answer(forward.body, t.rng.choice(("00", "00", "51")), f38="123456")
        outcome = t.twin.issuer(raw, t.now_ms, commit=commit)
        if commit and isinstance(outcome, TerminalAnswer) and outcome.code == "00":
            t.approved.append((device, message, decoded(outcome.body)))


def _do_timeout(t: _Traffic, commit: bool) -> None:
    if t.forwards:
        txn_id = t.rng.choice(t.forwards)[2].txn_id
        t.twin.same(lambda s: t.twin.core.timed_out(txn_id, t.now_ms, s), commit=commit)


def _do_reversal(t: _Traffic, commit: bool) -> None:
    if t.sent:
        device, message = t.rng.choice(t.sent)
        t.terminal(device, reversal_of(message, "98", repeat=t.rng.random() < 0.3), commit)


def _do_repeat(t: _Traffic, commit: bool) -> None:
    if t.sent:
        device, message = t.rng.choice(t.sent)
        t.terminal(device, message, commit)


def _do_void(t: _Traffic, commit: bool) -> None:
    if t.approved:
        device, original, answer = t.rng.choice(t.approved)
        message = void(
            device.who,
            device.next_stan(),
            device.batch_no,
            card=CARD,
            original=original,
            original_answer=answer,
        )
        outcome = t.terminal(device, message, commit)
        if commit and isinstance(outcome, Forward):
            t.forwards.append((device, message, outcome))


def _do_queue(t: _Traffic, commit: bool) -> None:
    up = frozenset(link for link in LINKS if t.rng.random() < 0.8)
    sends = t.twin.same(lambda s: t.twin.core.advices_due(t.now_ms, s, up), commit=commit)
    if commit:
        t.sends.extend(sends)


def _do_ack(t: _Traffic, commit: bool) -> None:
    if t.sends:
        send = t.rng.choice(t.sends)
        code = t.rng.choice(("00", "00", "96", "25", "05"))
        t.twin.issuer(issuer_answer(send.body, code), t.now_ms, commit=commit)


def _do_settle(t: _Traffic, commit: bool) -> None:
    device = t.device()
    message = settlement(device.who, device.next_stan(), device.batch_no, "0" * 31)
    t.terminal(device, message, commit)
    if commit:
        t.sent.append((device, message))
        device.batch_no += 1


def _do_upload(t: _Traffic, commit: bool) -> None:
    if t.approved:
        device, message, answer = t.rng.choice(t.approved)
        batch = int(message.fields[60][2:8])
        record = upload_record(device.who, batch, pan=CARD.pan, txn=message, answer=answer)
        t.terminal(device, record, commit)


def _do_recover(t: _Traffic, commit: bool) -> None:
    t.twin.same(lambda s: t.twin.core.recover(t.now_ms, s), commit=commit)


def _do_sign_on(t: _Traffic, commit: bool) -> None:
    t.twin.sign_on(t.device(), t.now_ms, commit=commit)


_ACTIONS: Final[tuple[Callable[[_Traffic, bool], None], ...]] = (
    _do_sale,
    _do_sale,
    _do_sale,
    _do_answer,
    _do_answer,
    _do_timeout,
    _do_reversal,
    _do_repeat,
    _do_void,
    _do_queue,
    _do_queue,
    _do_ack,
    _do_settle,
    _do_upload,
    _do_recover,
    _do_sign_on,
)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_traffic_with_rollbacks_agrees_step_by_step(twin: Twin, seed: int) -> None:
    for device in twin.devices.values():
        twin.sign_on(device)
    traffic = _Traffic(twin, random.Random(seed))
    for n in range(1, 201):
        traffic.step()
        if n % 50 == 0:
            assert_same_contents(twin)
    assert len(twin.memory.all_advices()) > 0 and len(twin.memory.all_batches()) > 0


# -- the memory store's own promises -------------------------------------------------------------


def _everything(memory: MemorySwitchStore) -> dict[str, object]:
    """What the store answers, through its indexes as well as its plain lists."""
    txns = memory.all_txns()
    keys = {(t.terminal_id, t.batch_no, t.stan) for t in txns}
    issuer_keys = {(t.issuer_stan, t.transmitted or "") for t in txns if t.issuer_stan}
    batches = {(t.terminal_id, t.batch_no) for t in txns} | {(TERMINAL, 9)}
    return memory_contents(memory) | {
        "count": memory.txn_count(),
        "by_terminal_key": {k: memory.txn_by_terminal_key(*k) for k in keys},
        "reversed_before": {k: memory.reversed_before(*k) for k in keys},
        "by_issuer_key": {k: memory.txn_by_issuer_key(*k) for k in issuer_keys},
        "followers": {t.id: memory.followers(t.id) for t in txns},
        "advice_for_txn": {t.id: memory.advice_for_txn(t.id) for t in txns},
        "pans": {t.id: memory.pan_of(t.id) for t in txns},
        "batch_txns": {b: memory.batch_txns(*b) for b in batches},
        "uploaded": {b: memory.count_uploads(*b) for b in batches},
        "due": memory.due_advices(NOW_MS + 10**9, 1_000, [*LINKS, "issuer_c"]),
        "unanswered": memory.unanswered_forwards(),
        "routes": [memory.route(c.pan) for c in (CARD, CARD_B, NO_ROUTE_CARD)],
        "link_c": memory.link("issuer_c"),
        "requests_seen": {r.key: memory.request(r.key) for r in memory.all_requests()},
        "responses_seen": {k: memory.response(k) for k in memory.all_responses()},
    }


def _business(twin: Twin, device: Device) -> None:
    """Committed history: an approval, a timeout with its advice sent, a settled batch."""
    message, forward = _sale(twin, device, 1_000)
    twin.issuer(issuer_answer(forward.body, "00", f38="123456"))
    _, slow = _sale(twin, device, 2_000)
    twin.same(lambda s: twin.core.timed_out(slow.txn_id, LATER, s))
    twin.same(lambda s: twin.core.advices_due(LATER, s, frozenset(LINKS)))
    twin.terminal(device.raw(reversal_of(message, "98")), LATER)
    twin.terminal(device.raw(settlement(device.who, device.next_stan(), 1, "0" * 31)), LATER)


def _mutate_everything(twin: Twin, device: Device, store: MemorySwitchStore) -> None:
    core = twin.core
    raw = device.raw(sale_message(device, 3_000, CARD_B))
    forward = core.terminal_request(raw, LATER, store)
    assert isinstance(forward, Forward)
    core.timed_out(forward.txn_id, LATER + TIMEOUT_MS, store)
    for send in core.advices_due(LATER + 10**6, store, frozenset(LINKS)):
        core.issuer_message(issuer_answer(send.body, "00"), LATER + 10**6, store)
    store.forwarded(1, _forwarding(LINK, "123456"), LATER)  # re-keys an old one
    store.set_state(1, TxnState.REVERSED, LATER, response_code="XX", auth_code="YY")
    advice = store.add_advice(1, "issuer_c", {11: "x"}, LATER)
    store.advice_sent(advice, 4, LATER + 1)
    store.ack_advice(1, "00", LATER)
    store.add_txn(_new(50, kind=TxnKind.REVERSAL, original=1, batch=9))
    store.close_batch(BatchRecord(TERMINAL, 9, "balanced", "", "", LATER))
    store.add_upload(TERMINAL, 9, {11: "000050"}, "", LATER)
    store.add_upload(TERMINAL, 1, {11: "000051"}, "", LATER)
    store.sign_on(OTHER_TERMINAL, twin.steps.working_keys(), LATER)
    store.set_batch(TERMINAL, 40)
    store.log_event(LATER, "sim.rollback", 1, {"x": 1})
    store.add_route(IssuerRoute("issuer_c", "h", 1, 100, ("4000",)))
    store.add_merchant(Merchant("M2", "N", "5812", "", "p", None, SettlementCycle.D0, "a", 0))
    store.add_terminal(
        Terminal("T2", "M2", MacAlgorithm.X9_19, True, TerminalStatus.ACTIVE, 1, "", None, 0),
        bytes(16),
    )


def test_rollback_restores_exactly_the_committed_state(twin: Twin, device: Device) -> None:
    _business(twin, device)
    memory = twin.memory
    before, count = _everything(memory), memory.txn_count()
    memory.log.begin()
    _mutate_everything(twin, device, memory)
    assert _everything(memory) != before
    memory.log.rollback()
    assert _everything(memory) == before
    assert memory.terminal("T2") is None and memory.merchant("M2") is None
    # The ids a rolled-back transaction took are handed out again, as SQLite does.
    assert memory.add_txn(_new(60)).id == len(memory.all_txns()) == count + 1


def test_a_crash_mid_step_and_a_failed_commit_keep_only_what_was_committed(
    twin: Twin, device: Device
) -> None:
    _business(twin, device)
    memory = twin.memory
    before, count = _everything(memory), memory.txn_count()
    with pytest.raises(RuntimeError), memory.log.transaction():
        _mutate_everything(twin, device, memory)
        raise RuntimeError("crash")
    assert _everything(memory) == before
    memory.log.commit_fault = lambda: CommitFault.FAIL
    with pytest.raises(CommitFailedError), memory.log.transaction():
        memory.add_txn(_new(70))
    memory.log.commit_fault = None
    assert _everything(memory) == before
    with memory.log.transaction():
        kept = memory.add_txn(_new(71))
    assert memory.all_txns()[-1] == kept
    assert memory.txn_count() == kept.id == count + 1


def test_setup_without_a_transaction_applies_at_once() -> None:
    memory = MemorySwitchStore()
    memory.add_route(IssuerRoute("x", "h", 1, 100, ("622700", "622588")))
    assert not memory.log.in_transaction
    assert _present(memory.route(CARD.pan)).bins == ("622588", "622700")
    txn = memory.add_txn(_new(1))
    assert txn.id == 1
    # Fixed simulation data keys by default: the same card, the same fingerprint, every run.
    assert txn.pan_fingerprint == MemorySwitchStore().add_txn(_new(1)).pan_fingerprint
    memory.log.rollback()  # nothing open: nothing to undo
    assert memory.txn_count() == 1


# -- writes the schema refuses -------------------------------------------------------------------


def _request(s: SwitchStore) -> None:
    s.add_request(StoredRequest("k", "a", None), NOW_MS)


def _answered(s: SwitchStore) -> None:
    _request(s)
    s.save_response("k", "0210", {39: "00"}, NOW_MS)


def _closed(s: SwitchStore) -> None:
    s.close_batch(BatchRecord(TERMINAL, 1, "balanced", "", "", NOW_MS))


def _nothing(s: SwitchStore) -> None:
    pass


#: What the schema refuses: (what comes first, the refused write, the memory store's error).
REFUSED: Final[dict[str, tuple[Callable[[SwitchStore], object], ...]]] = {
    "duplicate request": (_request, lambda s: s.add_request(StoredRequest("k", "b", None), 1)),
    "duplicate response": (_answered, lambda s: s.save_response("k", "0210", {39: "05"}, 1)),
    "duplicate batch": (
        _closed,
        lambda s: s.close_batch(BatchRecord(TERMINAL, 1, "not_balanced", "", "", 1)),
    ),
    "response without request": (_nothing, lambda s: s.save_response("k", "0210", {}, 1)),
    "request of no txn": (_nothing, lambda s: s.add_request(StoredRequest("k", "a", 5), 1)),
    "txn of no original": (_nothing, lambda s: s.add_txn(_new(1, original=5))),
    "advice of no txn": (_nothing, lambda s: s.add_advice(5, LINK, {}, NOW_MS)),
}
#: CHECK constraints: ValueError in memory.
CHECKED: Final[dict[str, Callable[[SwitchStore], object]]] = {
    "negative amount": lambda s: s.add_txn(replace(_new(1), amount_minor=-1)),
    "bad batch result": lambda s: s.close_batch(BatchRecord(TERMINAL, 1, "x", "", "", 1)),
}


def _refused_by_both(
    twin: Twin,
    first: Callable[[SwitchStore], object],
    write: Callable[[SwitchStore], object],
    error: type[Exception],
) -> None:
    with pytest.raises(IntegrityError), transaction(twin.engine) as conn:
        store = SqlSwitchStore(conn, twin.data_keys)
        first(store)
        write(store)
    memory = twin.memory
    with memory.log.transaction():
        first(memory)
    before = _everything(memory)
    memory.log.begin()
    with pytest.raises(error):
        write(memory)
    assert _everything(memory) == before  # refused before it changed anything
    memory.log.rollback()


@pytest.mark.parametrize("case", list(REFUSED))
def test_writes_on_a_taken_or_missing_key_raise_key_error(twin: Twin, case: str) -> None:
    first, write = REFUSED[case]
    _refused_by_both(twin, first, write, KeyError)


@pytest.mark.parametrize("case", list(CHECKED))
def test_values_a_check_refuses_raise_value_error(twin: Twin, case: str) -> None:
    _refused_by_both(twin, _nothing, CHECKED[case], ValueError)


def test_registry_duplicates_raise_key_error() -> None:
    memory = MemorySwitchStore()
    merchant = Merchant("M1", "N", "5812", "", "p", None, SettlementCycle.T1, "a", 0)
    memory.add_merchant(merchant)
    with pytest.raises(KeyError, match="merchant M1 already exists"):
        memory.add_merchant(merchant)
    route = IssuerRoute("a", "h", 1, 100, ("622588",))
    memory.add_route(route)
    with pytest.raises(KeyError, match="issuer link a already exists"):
        memory.add_route(route)
    with pytest.raises(KeyError, match="BIN 622588 is already routed to a"):
        memory.add_route(IssuerRoute("b", "h", 1, 100, ("622700", "622588")))
    with pytest.raises(KeyError, match="given twice"):
        memory.add_route(IssuerRoute("c", "h", 1, 100, ("411111", "411111")))
    assert memory.link("b") is None and memory.route(pan("622700123")) is None
    terminal = Terminal("T1", "M1", MacAlgorithm.X9_19, True, TerminalStatus.ACTIVE, 1, "", None, 0)
    with pytest.raises(KeyError, match="not registered"):
        memory.terminal_keys(terminal)
    memory.add_terminal(terminal, bytes(16))
    with pytest.raises(KeyError, match="terminal T1 already exists"):
        memory.add_terminal(terminal, bytes(range(16)))
    assert memory.terminal_keys(terminal).master_key == bytes(16)
