"""The switch's registry, queue view and transaction log, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, Final

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cardtally.security import DataKeys, MacAlgorithm, kcv_hex, open_secret
from cardtally.storage import events, read_party, transaction
from cardtally.switch._database import SWITCH_TREES, open_switch_database
from cardtally.switch._errors import RegistryError, SwitchError
from cardtally.switch._model import (
    IssuerRoute,
    SettlementCycle,
    TerminalKeys,
    TerminalStatus,
    TxnKind,
    TxnState,
)
from cardtally.switch._registry import (
    add_issuer_link,
    add_merchant,
    add_terminal,
    check_terminal_id,
    list_advices,
    list_issuer_links,
    list_merchants,
    list_terminals,
    normalise_merchant_id,
    queue_status,
    set_terminal_status,
    txn_log,
)
from cardtally.switch._schema import terminal_table
from cardtally.switch._store import NewTxn, SqlSwitchStore, tmk_purpose
from cardtally.wire import Pan
from tests.issuer.messages import CREDIT_PAN, DEBIT_PAN

NOW: Final = 1_795_000_000_000
MID: Final = "898440358120001"
KEY: Final = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


@pytest.fixture
def data_keys() -> DataKeys:
    return DataKeys(secrets.token_bytes(32), secrets.token_bytes(32))


@pytest.fixture
def switch_engine(db_url: str) -> Iterator[Engine]:
    engine = open_switch_database(db_url, NOW)
    yield engine
    engine.dispose()


@pytest.fixture
def conn(switch_engine: Engine) -> Iterator[Connection]:
    with transaction(switch_engine) as connection:
        yield connection


def merchant(conn: Connection, merchant_id: str = MID, **extra: Any) -> None:
    values: dict[str, Any] = {"name": "LUCKY MART", "mcc": "5411", **extra}
    add_merchant(conn, merchant_id=merchant_id, at_ms=NOW, **values)


# --- database ------------------------------------------------------------------------------


def test_open_migrates_every_tree_and_claims_the_database(db_url: str) -> None:
    assert SWITCH_TREES == ("core", "switch")
    for _ in range(2):  # a second open is a no-op
        engine = open_switch_database(db_url, NOW)
        with transaction(engine) as conn:
            party = read_party(conn)
        engine.dispose()
        assert party is not None
        assert (party.role, party.party_id, party.created_at_ms) == ("switch", "switch", NOW)


# --- IDs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [(MID, MID), ("M001" + " " * 11, "M001"), ("A", "A"), ("abc123  ", "abc123")],
)
def test_merchant_ids_compare_without_field_42_padding(given: str, stored: str) -> None:
    assert normalise_merchant_id(given) == stored


@pytest.mark.parametrize(
    "given", ["", " ", "  M001", "M-001", "8984403581200011", "M 001", "商户", "M001\t", "０１２３"]
)
def test_bad_merchant_ids_are_refused(given: str) -> None:
    with pytest.raises(RegistryError, match="merchant ID must be 1-15 ASCII letters and digits"):
        normalise_merchant_id(given)


@pytest.mark.parametrize("given", ["1030000", "103000011", "1030 001", "10300001 ", "1030-001"])
def test_terminal_ids_are_exactly_8_alphanumerics(given: str) -> None:
    assert check_terminal_id("T0000001") == "T0000001"
    with pytest.raises(RegistryError, match="exactly 8 ASCII letters and digits"):
        check_terminal_id(given)


def test_registry_errors_are_switch_errors_and_value_errors() -> None:
    assert issubclass(RegistryError, SwitchError)
    assert issubclass(RegistryError, ValueError)


# --- merchants -----------------------------------------------------------------------------


def test_add_and_list_merchants(conn: Connection) -> None:
    added = add_merchant(
        conn,
        merchant_id="M002           ",
        name="WAREHOUSE CLUB",
        mcc="5300",
        city="SHANGHAI",
        fee_plan="warehouse",
        agent="agent-7",
        settlement_cycle=SettlementCycle.D0,
        at_ms=NOW,
    )
    assert added.merchant_id == "M002"
    assert added.settlement_account == "merchant:M002"
    assert (added.fee_plan, added.agent, added.settlement_cycle) == (
        "warehouse",
        "agent-7",
        SettlementCycle.D0,
    )
    merchant(conn, settlement_account="bank:6222020000000001")
    listed = list_merchants(conn)
    assert [m.merchant_id for m in listed] == [MID, "M002"]
    assert listed[0].settlement_account == "bank:6222020000000001"
    assert listed[0].settlement_cycle is SettlementCycle.T1
    assert listed[0].fee_plan == "standard" and listed[0].agent is None
    logged = [e for e in events(conn) if e.kind == "switch.merchant_added"]
    assert [e.detail["merchant_id"] for e in logged] == ["M002", MID]
    assert all(e.txn_key is None for e in logged)


def test_a_padded_repeat_is_a_duplicate(conn: Connection) -> None:
    merchant(conn)
    with pytest.raises(RegistryError, match=f"merchant {MID} already exists"):
        merchant(conn)
    merchant(conn, "M001")
    with pytest.raises(RegistryError, match="merchant M001 already exists"):
        merchant(conn, "M001     ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"mcc": "541"}, "MCC must be exactly 4 digits"),
        ({"mcc": "54111"}, "MCC must be exactly 4 digits"),
        ({"mcc": "54a1"}, "MCC must be exactly 4 digits"),
        ({"name": ""}, "merchant name (field 43) must be 1-40"),
        ({"name": "X" * 41}, "merchant name (field 43) must be 1-40"),
        ({"name": "咖啡店"}, "printable ASCII"),
        ({"name": "LUCKY\nMART"}, "printable ASCII"),
        ({"city": "C" * 41}, "city must be 0-40"),
        ({"fee_plan": ""}, "fee plan must be"),
        ({"agent": "has space"}, "agent must be"),
        ({"settlement_account": "a b"}, "settlement account must be"),
    ],
)
def test_bad_merchant_fields_are_refused(
    conn: Connection, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        merchant(conn, **extra)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert list_merchants(conn) == []


def test_names_lose_surrounding_spaces_and_keep_40_characters(conn: Connection) -> None:
    merchant(conn, name="  " + "N" * 40 + "  ")
    assert list_merchants(conn)[0].name == "N" * 40


# --- terminals -----------------------------------------------------------------------------


def test_add_terminal_generates_and_seals_a_master_key(
    conn: Connection, data_keys: DataKeys
) -> None:
    merchant(conn)
    terminal, key = add_terminal(
        conn, data_keys, terminal_id="10300001", merchant_id=MID, at_ms=NOW
    )
    assert len(key) == 16
    assert terminal.master_key_kcv == kcv_hex(key)
    assert (terminal.status, terminal.batch_no) == (TerminalStatus.ACTIVE, 1)
    assert terminal.mac_required and terminal.mac_algorithm is MacAlgorithm.X9_19
    assert terminal.signed_on_at_ms is None
    sealed = conn.execute(sa.select(terminal_table.c.master_key_sealed)).scalar_one()
    assert key not in bytes(sealed)
    assert open_secret(data_keys, tmk_purpose("10300001"), bytes(sealed)) == key
    assert _keys_of(SqlSwitchStore(conn, data_keys), "10300001").master_key == key
    [event] = [e for e in events(conn) if e.kind == "switch.terminal_added"]
    assert event.detail["master_key_kcv"] == terminal.master_key_kcv
    assert key.hex().upper() not in str(event.detail).upper()


def test_add_terminal_with_a_given_key_and_options(conn: Connection, data_keys: DataKeys) -> None:
    merchant(conn, "M001")
    terminal, key = add_terminal(
        conn,
        data_keys,
        terminal_id="T0000001",
        merchant_id="M001           ",
        mac_required=False,
        mac_algorithm=MacAlgorithm.CUP_ECB,
        master_key=KEY,
        at_ms=NOW,
    )
    assert key == KEY
    assert terminal.merchant_id == "M001"
    assert not terminal.mac_required and terminal.mac_algorithm is MacAlgorithm.CUP_ECB
    assert terminal.master_key_kcv == kcv_hex(KEY)


def test_two_generated_master_keys_differ(conn: Connection, data_keys: DataKeys) -> None:
    merchant(conn)
    _, first = add_terminal(conn, data_keys, terminal_id="10300001", merchant_id=MID, at_ms=NOW)
    _, second = add_terminal(conn, data_keys, terminal_id="10300002", merchant_id=MID, at_ms=NOW)
    assert first != second
    assert [t.terminal_id for t in list_terminals(conn)] == ["10300001", "10300002"]


@pytest.mark.parametrize(
    ("terminal_id", "merchant_id", "master_key", "message"),
    [
        ("10300001", "M404", None, "unknown merchant M404"),
        ("1030001", MID, None, "exactly 8 ASCII letters and digits"),
        ("10300001", "M-1", None, "merchant ID must be"),
        ("10300001", MID, bytes(8), "master key must be 16 bytes"),
        ("10300001", MID, bytes(24), "got 24"),
        ("10300009", MID, None, "terminal 10300009 already exists"),
    ],
)
def test_bad_terminals_are_refused(  # noqa: PLR0917 - parametrized
    conn: Connection,
    data_keys: DataKeys,
    terminal_id: str,
    merchant_id: str,
    master_key: bytes | None,
    message: str,
) -> None:
    merchant(conn)
    add_terminal(conn, data_keys, terminal_id="10300009", merchant_id=MID, at_ms=NOW)
    with pytest.raises(RegistryError, match=message):
        add_terminal(
            conn,
            data_keys,
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            master_key=master_key,
            at_ms=NOW,
        )
    assert [t.terminal_id for t in list_terminals(conn)] == ["10300009"]


def test_disable_and_enable(conn: Connection, data_keys: DataKeys) -> None:
    merchant(conn)
    add_terminal(conn, data_keys, terminal_id="10300001", merchant_id=MID, at_ms=NOW)
    disabled = set_terminal_status(conn, "10300001", TerminalStatus.DISABLED, NOW + 1)
    assert disabled.status is TerminalStatus.DISABLED
    again = set_terminal_status(conn, "10300001", TerminalStatus.DISABLED, NOW + 2)
    assert again == disabled
    enabled = set_terminal_status(conn, "10300001", TerminalStatus.ACTIVE, NOW + 3)
    assert enabled.status is TerminalStatus.ACTIVE
    logged = [e.detail for e in events(conn) if e.kind == "switch.terminal_status"]
    changes = [(d["from"], d["to"]) for d in logged]
    assert changes == [("active", "disabled"), ("disabled", "active")]
    with pytest.raises(RegistryError, match="unknown terminal 10300002"):
        set_terminal_status(conn, "10300002", TerminalStatus.DISABLED, NOW)


# --- issuer links --------------------------------------------------------------------------


def link(conn: Connection, *bins: str, **extra: Any) -> IssuerRoute:
    values: dict[str, Any] = {"link_id": "bank-a", "host": "127.0.0.1", "port": 9583}
    values.update({"timeout_ms": 5000, **extra})
    return add_issuer_link(conn, bins=list(bins), at_ms=NOW, **values)


def test_issuer_links_route_bins(conn: Connection, data_keys: DataKeys) -> None:
    route = link(conn, "622588", "622588")
    assert route == list_issuer_links(conn)[0]
    assert list_issuer_links(conn)[0].bins == ("622588",)
    # Same link, same address: more BINs join it, and a repeat is harmless.
    link(conn, "622588", "62580700")
    link(conn, "62580700")
    link(conn, "625807", link_id="bank-b", host="10.0.0.2", port=9600, timeout_ms=800)
    routes = list_issuer_links(conn)
    assert [(r.link_id, r.host, r.port, r.timeout_ms, r.bins) for r in routes] == [
        ("bank-a", "127.0.0.1", 9583, 5000, ("622588", "62580700")),
        ("bank-b", "10.0.0.2", 9600, 800, ("625807",)),
    ]
    store = SqlSwitchStore(conn, data_keys)
    debit = store.route(Pan(DEBIT_PAN))
    assert debit is not None and debit.link_id == "bank-a"
    credit = store.route(Pan(CREDIT_PAN))  # 6258070... : the longest prefix wins
    assert credit is not None and credit.link_id == "bank-a"
    added = [e.detail["bins_added"] for e in events(conn) if e.kind == "switch.issuer_link_added"]
    assert added == [["622588"], ["62580700"], ["625807"]]


@pytest.mark.parametrize(
    ("bins", "extra", "message"),
    [
        (("622588",), {"link_id": "bank-b"}, "BIN 622588 is already routed to issuer link bank-a"),
        (("625807",), {"host": "10.0.0.9"}, "bank-a already exists for 127.0.0.1:9583"),
        (("625807",), {"port": 9999}, "not 127.0.0.1:9999"),
        (("625807",), {"timeout_ms": 6000}, "already exists with timeout 5000 ms"),
        (("62258",), {}, "BIN must be 6-11 digits, got '62258'"),
        (("622588000001",), {}, "BIN must be 6-11 digits"),
        (("62258a",), {}, "BIN must be 6-11 digits"),
        ((), {}, "at least one BIN"),
        (("625807",), {"port": 0}, "port must be 1..65535"),
        (("625807",), {"timeout_ms": 50, "link_id": "x"}, "timeout (ms) must be 100..120000"),
        (("625807",), {"link_id": "a b"}, "link name must be"),
        (("625807",), {"host": "", "link_id": "x"}, "host must be"),
    ],
)
def test_bad_issuer_links_are_refused(
    conn: Connection, bins: tuple[str, ...], extra: dict[str, Any], message: str
) -> None:
    link(conn, "622588")
    with pytest.raises(RegistryError) as caught:
        link(conn, *bins, **extra)
    assert message in str(caught.value)
    assert [(r.link_id, r.bins) for r in list_issuer_links(conn)] == [("bank-a", ("622588",))]


# --- queue and log -------------------------------------------------------------------------


def new_txn(store: SqlSwitchStore, stan: str, at_ms: int, terminal_id: str = "10300001") -> int:
    txn = store.add_txn(
        NewTxn(
            request_key=f"{terminal_id}:000001:{stan}",
            kind=TxnKind.SALE,
            state=TxnState.TIMED_OUT,
            terminal_id=terminal_id,
            merchant_id=MID,
            batch_no=1,
            stan=stan,
            local_date="20261121",
            pan=Pan(DEBIT_PAN),
            processing_code="000000",
            amount_minor=12_345,
            currency="156",
            echo_fields={11: stan, 41: terminal_id},
            original_id=None,
            at_ms=at_ms,
        )
    )
    return txn.id


def test_queue_status_and_pending_advices(conn: Connection, data_keys: DataKeys) -> None:
    empty = queue_status(conn, NOW)
    assert (empty.depth, empty.oldest_age_ms, empty.by_link, empty.acked_total) == (0, 0, {}, 0)
    assert list_advices(conn) == []
    store = SqlSwitchStore(conn, data_keys)
    ids = [new_txn(store, f"{n:06d}", NOW + n * 1000) for n in range(1, 5)]
    advice_ids = [
        store.add_advice(txn_id, link_id, {11: "000001"}, NOW + n * 1000)
        for n, (txn_id, link_id) in enumerate(
            zip(ids, ["bank-a", "bank-b", "bank-a", "bank-a"], strict=True), start=1
        )
    ]
    store.ack_advice(advice_ids[0], "00", NOW + 5000)
    status = queue_status(conn, NOW + 10_000)
    assert status.depth == 3
    assert status.oldest_age_ms == 8000  # the advice made at NOW + 2000
    assert status.by_link == {"bank-a": 2, "bank-b": 1}
    assert status.acked_total == 1
    pending = list_advices(conn)
    assert [a.txn_id for a in pending] == ids[1:]
    assert [a.txn_id for a in list_advices(conn, limit=1)] == [ids[1]]
    assert [a.txn_id for a in list_advices(conn, pending_only=False)] == ids[::-1]
    assert queue_status(conn, NOW).oldest_age_ms == 0  # a clock behind the queue is not negative


def test_txn_log_is_newest_first_and_filters_by_terminal(
    conn: Connection, data_keys: DataKeys
) -> None:
    store = SqlSwitchStore(conn, data_keys)
    first = new_txn(store, "000001", NOW)
    other = new_txn(store, "000001", NOW + 1, terminal_id="10300002")
    last = new_txn(store, "000002", NOW + 2)
    assert [t.id for t in txn_log(conn)] == [last, other, first]
    assert [t.id for t in txn_log(conn, terminal_id="10300001")] == [last, first]
    assert [t.id for t in txn_log(conn, limit=1)] == [last]
    assert txn_log(conn)[0].pan_masked == DEBIT_PAN[:6] + "******" + DEBIT_PAN[-4:]
    with pytest.raises(RegistryError, match=r"limit must be 1\.\.10000"):
        txn_log(conn, limit=0)
    with pytest.raises(RegistryError, match="terminal ID"):
        txn_log(conn, terminal_id="short")


def _keys_of(store: SqlSwitchStore, terminal_id: str) -> TerminalKeys:
    terminal = store.terminal(terminal_id)
    assert terminal is not None
    return store.terminal_keys(terminal)
