"""The day-end matcher: every classification rule, item fields and numbering, and properties.

Tiny days built row by row in an in-memory DuckDB. A switch row ``Sw`` derives its STANs from its
id; ``posting`` and ``uploaded`` give the issuer's posting and the terminal's upload record that
agree with it (keyword changes make them disagree), ``Batch()`` its closed, balanced batch. The
property test checks the rules against a one-row-at-a-time model of them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtally.clearing._match import ReconCounts, create_inputs, reconcile
from cardtally.clearing._tables import EXCEPTIONS, ReconClass

CUTOFF_MS = 1_000_000
TERMINAL = "10300001"
OTHER_TERMINAL = "10300002"
MERCHANT = "898310048160001"
TRANSMITTED = "1121093000"
CURRENCY = "156"
DEBIT_KINDS = ("sale", "completion")
STATES = (
    "received",
    "forwarded",
    "approved",
    "declined",
    "refused",
    "timed_out",
    "reversal_pending",
    "reversed",
    "reversal_refused",
)


@dataclass(frozen=True, slots=True)
class Sw:
    """A switch log row; its STANs and RRN come from its id."""

    txn_id: int
    kind: str = "sale"
    state: str = "approved"
    amount_minor: int = 1_000
    terminal_id: str = TERMINAL
    merchant_id: str = MERCHANT
    batch_no: int = 1
    original_id: int | None = None
    response_code: str | None = None
    routed: bool = True  # False: never sent to an issuer (no issuer STAN, no link)

    @property
    def stan(self) -> str:
        return f"{self.txn_id % 1_000_000:06d}"

    @property
    def issuer_stan(self) -> str | None:
        return f"{(self.txn_id + 500_000) % 1_000_000:06d}" if self.routed else None

    @property
    def rrn(self) -> str:
        return f"{self.txn_id:012d}"

    def row(self) -> tuple[object, ...]:
        return (
            self.txn_id,
            self.kind,
            self.state,
            self.terminal_id,
            self.merchant_id,
            self.batch_no,
            self.stan,
            self.amount_minor,
            CURRENCY,
            "bank-a" if self.routed else None,
            self.issuer_stan,
            TRANSMITTED if self.routed else None,
            self.response_code,
            None,
            "622588******0001",
            self.original_id,
            500_000 + self.txn_id,
            False,
        )


@dataclass(frozen=True, slots=True)
class Iss:
    issuer_txn_id: str
    kind: str
    terminal_id: str
    merchant_id: str
    stan: str
    transmitted: str
    rrn: str
    amount_minor: int
    in_effect: bool = True
    at_ms: int = 600_000

    def row(self) -> tuple[object, ...]:
        return (
            self.issuer_txn_id,
            self.kind,
            self.terminal_id,
            self.merchant_id,
            self.stan,
            self.transmitted,
            self.rrn,
            self.amount_minor,
            CURRENCY,
            self.in_effect,
            self.at_ms,
        )


@dataclass(frozen=True, slots=True)
class Batch:
    batch_no: int = 1
    result: str = "balanced"
    terminal_id: str = TERMINAL
    claimed: bool = False
    closed_at_ms: int = 900_000

    def row(self) -> tuple[object, ...]:
        return (self.terminal_id, self.batch_no, self.result, self.closed_at_ms, self.claimed)


@dataclass(frozen=True, slots=True)
class Upload:
    stan: str
    amount_minor: int
    batch_no: int = 1
    terminal_id: str = TERMINAL
    processing_code: str = "000000"
    difference: str = ""
    rrn: str = "000000000000"

    def row(self) -> tuple[object, ...]:
        return (
            self.terminal_id,
            self.batch_no,
            self.stan,
            self.rrn,
            self.amount_minor,
            self.processing_code,
            self.difference,
            MERCHANT,
            CURRENCY,
        )


Row = Sw | Iss | Batch | Upload
_TABLES: dict[type, tuple[str, int]] = {
    Sw: ("sw_txn", 18),
    Iss: ("iss_txn", 11),
    Batch: ("sw_batch", 5),
    Upload: ("sw_upload", 9),
}


def posting(s: Sw, **changes: Any) -> Iss:
    """The issuer's posting of ``s`` (same key, kind and amount), with ``changes``."""
    assert s.issuer_stan is not None
    own_rrn = f"{s.txn_id + 700_000_000_000:012d}" if s.kind in DEBIT_KINDS else ""
    base = Iss(
        f"iss-{s.txn_id}",
        s.kind,
        s.terminal_id,
        s.merchant_id,
        s.issuer_stan,
        TRANSMITTED,
        own_rrn,
        s.amount_minor,
    )
    return dataclasses.replace(base, **changes)


def uploaded(s: Sw, **changes: Any) -> Upload:
    """The terminal's upload record of ``s``, with ``changes``."""
    code = "000000" if s.kind in DEBIT_KINDS else "200000"
    base = Upload(s.stan, s.amount_minor, s.batch_no, s.terminal_id, code, "", s.rrn)
    return dataclasses.replace(base, **changes)


def load(con: duckdb.DuckDBPyConnection, *rows: Row) -> None:
    for row in rows:
        table, width = _TABLES[type(row)]
        con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", row.row())


def items(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cursor = con.execute("SELECT * FROM recon_item ORDER BY item_no")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def run(con: duckdb.DuckDBPyConnection, *rows: Row) -> list[dict[str, Any]]:
    load(con, *rows)
    reconcile(con, cutoff_ms=CUTOFF_MS)
    return items(con)


def only(found: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    opened = duckdb.connect(":memory:")
    create_inputs(opened)
    yield opened
    opened.close()


# --- A: approved at the switch -------------------------------------------------------------


def test_approved_sale_agreed_by_issuer_and_balanced_batch_is_matched_and_cleared_debit(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(41, amount_minor=1_234)
    item = only(run(con, s, posting(s), Batch()))
    assert item == {
        "item_no": 1,
        "class": "matched",
        "reason": "switch and issuer agree; terminal batch balanced",
        "switch_txn_id": 41,
        "issuer_txn_id": "iss-41",
        "kind": "sale",
        "terminal_id": TERMINAL,
        "merchant_id": MERCHANT,
        "batch_no": 1,
        "stan": "000041",
        "rrn": "000000000041",
        "amount_minor": 1_234,
        "issuer_amount_minor": 1_234,
        "terminal_amount_minor": None,
        "currency": CURRENCY,
        "link_id": "bank-a",
        "cleared_as": "debit",
        "at_ms": 500_041,
    }


@pytest.mark.parametrize(("kind", "cleared_as"), [("completion", "debit"), ("refund", "credit")])
def test_matched_completion_clears_debit_and_refund_credit(
    con: duckdb.DuckDBPyConnection, kind: str, cleared_as: str
) -> None:
    s = Sw(5, kind=kind, original_id=1 if kind == "refund" else None)
    item = only(run(con, s, posting(s), Batch()))
    assert (item["class"], item["cleared_as"]) == ("matched", cleared_as)


def test_a1_no_posting_at_the_issuer_is_missing_at_issuer(con: duckdb.DuckDBPyConnection) -> None:
    item = only(run(con, Sw(7), Batch()))
    assert item["class"] == "missing_at_issuer"
    assert item["reason"] == "issuer has no posting for it"
    assert (item["issuer_txn_id"], item["issuer_amount_minor"], item["cleared_as"]) == (
        None,
        None,
        None,
    )


def test_a1_posting_reversed_since_is_missing_at_issuer_before_its_amount_is_compared(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(7)
    item = only(run(con, s, posting(s, in_effect=False, amount_minor=1), Batch()))
    assert (item["class"], item["reason"]) == ("missing_at_issuer", "issuer reversed it since")
    assert item["issuer_txn_id"] == "iss-7"


@pytest.mark.parametrize("part", ["terminal_id", "merchant_id", "stan", "transmitted"])
def test_a1_the_posting_must_agree_on_every_part_of_the_key(
    con: duckdb.DuckDBPyConnection, part: str
) -> None:
    s = Sw(7)
    other = {"terminal_id": "10399999", "merchant_id": "898310048169999", "stan": "999999"}
    stray = posting(s, **{part: other.get(part, "1121093001")})
    found = run(con, s, stray, Batch())
    assert [i["class"] for i in found] == ["missing_at_issuer", "one_sided_debit"]
    assert [i["issuer_txn_id"] for i in found] == [None, "iss-7"]


def test_a2_issuer_amount_differs_before_the_batch_is_looked_at(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(9, amount_minor=1_234)
    item = only(run(con, s, posting(s, amount_minor=1_200)))  # no batch either
    assert item["class"] == "amount_mismatch"
    assert item["reason"] == "amount differs: switch 1234, issuer 1200"
    assert (item["amount_minor"], item["issuer_amount_minor"]) == (1_234, 1_200)


def test_a3_batch_not_closed_is_awaiting_batch(con: duckdb.DuckDBPyConnection) -> None:
    s = Sw(9, batch_no=12)
    item = only(run(con, s, posting(s), Batch(batch_no=11), Batch(12, terminal_id="10399999")))
    assert item["class"] == "awaiting_batch"
    assert item["reason"] == "terminal batch 000012 not settled yet"
    assert item["cleared_as"] is None


@pytest.mark.parametrize(
    ("kind", "expected"), [("sale", "one_sided_debit"), ("refund", "one_sided_credit")]
)
def test_a4_approved_but_missing_from_the_upload_of_a_not_balanced_batch_is_one_sided(
    con: duckdb.DuckDBPyConnection, kind: str, expected: str
) -> None:
    s, neighbour = Sw(3, kind=kind), Sw(4)
    found = run(
        con,
        s,
        posting(s),
        neighbour,
        posting(neighbour),
        uploaded(neighbour),
        Batch(1, "not_balanced"),
    )
    assert [i["class"] for i in found] == [expected, "matched"]
    assert found[0]["reason"] == (
        "approved but never receipted at the terminal: not in the upload of its"
        " not-balanced batch 000001"
    )
    assert found[1]["reason"] == "switch, issuer and the terminal's upload agree"
    assert found[1]["terminal_amount_minor"] == 1_000


@pytest.mark.parametrize("result", ["balanced", "not_balanced"])
def test_a5_uploaded_amount_differs_is_amount_mismatch(
    con: duckdb.DuckDBPyConnection, result: str
) -> None:
    s = Sw(3, amount_minor=1_234)
    item = only(run(con, s, posting(s), uploaded(s, amount_minor=1_300), Batch(1, result)))
    assert item["class"] == "amount_mismatch"
    assert item["reason"] == "amount differs: terminal 1300, switch 1234"
    assert (item["amount_minor"], item["terminal_amount_minor"]) == (1_234, 1_300)


# --- B: not approved at the switch ---------------------------------------------------------


def test_b1_receipted_at_the_terminal_but_failed_at_the_switch_is_unknown_to_host(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(3, state="timed_out", response_code="98")
    found = run(con, s, posting(s), uploaded(s), Batch(1, "not_balanced"))  # issuer debit too
    item = only(found)
    assert item["class"] == "unknown_to_host"
    assert item["reason"] == "receipted at the terminal but the switch has it timed_out"
    assert (item["terminal_amount_minor"], item["cleared_as"]) == (1_000, None)


@pytest.mark.parametrize(
    ("kind", "expected", "money"),
    [("sale", "one_sided_debit", "debit"), ("refund", "one_sided_credit", "credit")],
)
def test_b2_failed_at_the_switch_with_the_issuer_posting_in_effect_is_one_sided(
    con: duckdb.DuckDBPyConnection, kind: str, expected: str, money: str
) -> None:
    s = Sw(3, kind=kind, state="timed_out", response_code="98")
    item = only(run(con, s, posting(s), Batch()))
    assert item["class"] == expected
    assert item["reason"] == f"switch has it timed_out; the issuer's {money} is still in effect"
    assert item["issuer_txn_id"] == "iss-3"


@pytest.mark.parametrize(
    ("state", "code", "reason"),
    [
        ("declined", "51", "declined by the issuer (rc 51)"),
        ("declined", None, "declined by the issuer (rc none)"),
        ("refused", "94", "refused by the switch (rc 94)"),
        ("timed_out", "98", "timed out; nothing in effect at the issuer"),
        ("reversed", "98", "reversed; nothing in effect at the issuer"),
        (
            "reversal_pending",
            "00",
            "reversal queued at the switch; nothing in effect at the issuer",
        ),
        ("reversal_refused", "00", "the issuer refused the reversal; nothing in effect there"),
        ("forwarded", None, "no answer from the issuer; nothing in effect at the issuer"),
        ("received", None, "never forwarded to the issuer; nothing in effect there"),
        ("lost", None, "switch has it lost; nothing in effect at the issuer"),
    ],
)
def test_b3_nothing_in_effect_anywhere_is_unsuccessful_with_the_state_in_words(
    con: duckdb.DuckDBPyConnection, state: str, code: str | None, reason: str
) -> None:
    s = Sw(3, state=state, response_code=code)
    item = only(run(con, s, Batch()))
    assert (item["class"], item["reason"], item["cleared_as"]) == ("unsuccessful", reason, None)


def test_b3_a_posting_undone_at_the_issuer_leaves_a_failed_row_unsuccessful(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(3, state="reversed", response_code="98")
    item = only(run(con, s, posting(s, in_effect=False), Batch()))
    assert (item["class"], item["issuer_txn_id"]) == ("unsuccessful", "iss-3")


def test_a_row_never_routed_matches_no_posting(con: duckdb.DuckDBPyConnection) -> None:
    s = Sw(3, state="refused", response_code="94", routed=False)
    item = only(run(con, s, Batch()))
    assert (item["class"], item["link_id"], item["issuer_txn_id"]) == ("unsuccessful", None, None)


# --- C: issuer-only postings ---------------------------------------------------------------


def _stray(issuer_txn_id: str, **changes: Any) -> Iss:
    """A posting no switch row names."""
    base = Iss(issuer_txn_id, "sale", TERMINAL, MERCHANT, "999001", TRANSMITTED, "R1", 777)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("kind", "in_effect", "expected", "reason"),
    [
        ("sale", True, "one_sided_debit", "issuer debit with no switch record"),
        ("completion", True, "one_sided_debit", "issuer debit with no switch record"),
        ("refund", True, "one_sided_credit", "issuer credit with no switch record"),
        ("void", True, "one_sided_credit", "issuer credit with no switch record"),
        ("sale", False, "unsuccessful", "issuer-only record, undone since"),
    ],
)
def test_c_issuer_only_posting_before_the_cutoff(
    con: duckdb.DuckDBPyConnection, kind: str, in_effect: bool, expected: str, reason: str
) -> None:
    item = only(run(con, _stray("iss-x", kind=kind, in_effect=in_effect, at_ms=CUTOFF_MS - 1)))
    assert item == {
        "item_no": 1,
        "class": expected,
        "reason": reason,
        "switch_txn_id": None,
        "issuer_txn_id": "iss-x",
        "kind": kind,
        "terminal_id": TERMINAL,
        "merchant_id": MERCHANT,
        "batch_no": None,
        "stan": "999001",
        "rrn": "R1",
        "amount_minor": 777,
        "issuer_amount_minor": 777,
        "terminal_amount_minor": None,
        "currency": CURRENCY,
        "link_id": None,
        "cleared_as": None,
        "at_ms": CUTOFF_MS - 1,
    }


@pytest.mark.parametrize("at_ms", [CUTOFF_MS, CUTOFF_MS + 1])
def test_c_issuer_only_posting_from_the_cutoff_on_is_left_for_the_next_day(
    con: duckdb.DuckDBPyConnection, at_ms: int
) -> None:
    assert run(con, _stray("iss-x", at_ms=at_ms)) == []
    assert reconcile(con, cutoff_ms=at_ms + 1).total == 1  # the next day's run sees it


def test_c_a_posting_after_the_cutoff_still_matches_its_switch_row(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(3)
    item = only(run(con, s, posting(s, at_ms=CUTOFF_MS + 5_000), Batch()))
    assert (item["class"], item["issuer_txn_id"]) == ("matched", "iss-3")


# --- D: terminal-only upload records -------------------------------------------------------


@pytest.mark.parametrize(("code", "kind"), [("000000", "sale"), ("200000", "refund")])
def test_d_upload_unknown_at_the_switch_in_an_unclaimed_batch_is_unknown_to_host(
    con: duckdb.DuckDBPyConnection, code: str, kind: str
) -> None:
    record = Upload("000777", 650, 4, OTHER_TERMINAL, code, "unknown at the switch", "RRN7")
    item = only(run(con, record, Batch(4, "not_balanced", OTHER_TERMINAL, closed_at_ms=880_000)))
    assert item == {
        "item_no": 1,
        "class": "unknown_to_host",
        "reason": "uploaded by the terminal, unknown at the switch",
        "switch_txn_id": None,
        "issuer_txn_id": None,
        "kind": kind,
        "terminal_id": OTHER_TERMINAL,
        "merchant_id": MERCHANT,
        "batch_no": 4,
        "stan": "000777",
        "rrn": "RRN7",
        "amount_minor": 650,
        "issuer_amount_minor": None,
        "terminal_amount_minor": 650,
        "currency": CURRENCY,
        "link_id": None,
        "cleared_as": None,
        "at_ms": 880_000,  # the table has no time of its own for an upload: its batch's close
    }


@pytest.mark.parametrize(
    ("claimed", "difference"),
    [(True, "unknown at the switch"), (False, "amount: terminal 650, switch 600")],
)
def test_d_other_unmatched_uploads_produce_nothing(
    con: duckdb.DuckDBPyConnection, claimed: bool, difference: str
) -> None:
    record = Upload("000777", 650, difference=difference)
    assert run(con, record, Batch(1, "not_balanced", claimed=claimed)) == []


def test_d_an_upload_of_a_switch_row_adds_no_item_of_its_own(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(3)
    item = only(run(con, s, posting(s), uploaded(s, difference="unknown at the switch"), Batch()))
    assert (item["switch_txn_id"], item["class"]) == (3, "matched")


def test_d_an_issuer_only_posting_with_the_rrn_of_an_unknown_upload_is_one_exception(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A switch that lost the sale (restored from a backup, say): issuer and terminal agree on
    terminal, merchant and RRN, so one unknown_to_host item, and no one-sided debit to refund."""
    record = Upload("000777", 650, rrn="000000004711", difference="unknown at the switch")
    debit = _stray("iss-x", rrn="000000004711", amount_minor=650)
    item = only(run(con, record, debit, Batch(1, "not_balanced")))
    assert item["reason"] == (
        "uploaded by the terminal and posted at the issuer, unknown at the switch"
    )
    assert (item["class"], item["switch_txn_id"], item["issuer_txn_id"]) == (
        "unknown_to_host",
        None,
        "iss-x",
    )
    assert (item["issuer_amount_minor"], item["terminal_amount_minor"]) == (650, 650)


@pytest.mark.parametrize(
    "changes",
    [{"terminal_id": OTHER_TERMINAL}, {"merchant_id": "898310048169999"}, {"rrn": "000000004712"}],
)
def test_d_an_issuer_only_posting_of_another_swipe_stays_apart_from_the_upload(
    con: duckdb.DuckDBPyConnection, changes: dict[str, str]
) -> None:
    record = Upload("000777", 650, rrn="000000004711", difference="unknown at the switch")
    debit = _stray("iss-x", **{"rrn": "000000004711", **changes})
    found = run(con, record, debit, Batch(1, "not_balanced"))
    assert [(i["class"], i["issuer_txn_id"]) for i in found] == [
        ("one_sided_debit", "iss-x"),
        ("unknown_to_host", None),
    ]


# --- cleared_as: voids and refunds ---------------------------------------------------------


def test_a_void_matched_with_its_matched_sale_of_the_same_day_clears_neither(
    con: duckdb.DuckDBPyConnection,
) -> None:
    sale, void = Sw(10, amount_minor=500), Sw(11, "void", amount_minor=500, original_id=10)
    found = run(con, sale, posting(sale), void, posting(void), Batch())
    assert [(i["class"], i["cleared_as"], i["reason"]) for i in found] == [
        ("matched", None, "voided the same day"),
        ("matched", None, "voids a sale of the same day"),
    ]


def test_a_void_of_a_sale_cleared_on_an_earlier_day_clears_credit(
    con: duckdb.DuckDBPyConnection,
) -> None:
    void = Sw(11, "void", original_id=2)  # sale 2 is not in today's log
    item = only(run(con, void, posting(void), Batch()))
    assert (item["class"], item["cleared_as"]) == ("matched", "credit")


def test_a_matched_void_of_an_unmatched_sale_clears_credit_and_the_sale_nothing(
    con: duckdb.DuckDBPyConnection,
) -> None:
    sale, void = Sw(10, amount_minor=500), Sw(11, "void", amount_minor=500, original_id=10)
    found = run(con, sale, posting(sale, amount_minor=499), void, posting(void), Batch())
    assert [(i["class"], i["cleared_as"]) for i in found] == [
        ("amount_mismatch", None),
        ("matched", "credit"),
    ]


def test_an_unmatched_void_leaves_its_sale_cleared_debit(con: duckdb.DuckDBPyConnection) -> None:
    sale, void = Sw(10), Sw(11, "void", "declined", original_id=10, response_code="51")
    found = run(con, sale, posting(sale), void, Batch())
    assert [(i["class"], i["cleared_as"]) for i in found] == [
        ("matched", "debit"),
        ("unsuccessful", None),
    ]


def test_a_same_day_refund_clears_on_its_own(con: duckdb.DuckDBPyConnection) -> None:
    sale, refund = Sw(10), Sw(11, "refund", amount_minor=400, original_id=10)
    found = run(con, sale, posting(sale), refund, posting(refund), Batch())
    assert [(i["cleared_as"], i["amount_minor"]) for i in found] == [
        ("debit", 1_000),
        ("credit", 400),
    ]


# --- numbering, re-runs, counts ------------------------------------------------------------


def test_items_are_numbered_switch_by_id_then_issuer_only_by_id_then_terminal_only(
    con: duckdb.DuckDBPyConnection,
) -> None:
    switch = [Sw(n) for n in (900, 7, 64, 63, 65, 128, 987_654_321)]  # unsorted, across blocks
    strays = [_stray(f"iss-{c}", stan=f"99900{n}") for n, c in enumerate("cab")]
    records = [
        Upload("000001", 1, 2, OTHER_TERMINAL, difference="unknown at the switch"),
        Upload("000002", 1, 1, OTHER_TERMINAL, difference="unknown at the switch"),
        Upload("000001", 1, 1, OTHER_TERMINAL, difference="unknown at the switch"),
    ]
    batches = [Batch(n, "not_balanced", OTHER_TERMINAL) for n in (1, 2)]
    found = run(con, *switch, *strays, *records, *batches)
    assert [i["item_no"] for i in found] == list(range(1, 14))
    keys = [(i["switch_txn_id"], i["issuer_txn_id"], i["batch_no"], i["stan"]) for i in found]
    assert keys[:7] == [
        (n, None, 1, f"{n % 1_000_000:06d}") for n in sorted(s.txn_id for s in switch)
    ]
    assert [k[1] for k in keys[7:10]] == ["iss-a", "iss-b", "iss-c"]
    assert [k[2:] for k in keys[10:]] == [(1, "000001"), (1, "000002"), (2, "000001")]


def test_reconcile_rebuilds_the_table_from_the_inputs_each_time(
    con: duckdb.DuckDBPyConnection,
) -> None:
    s = Sw(3)
    first = run(con, s, posting(s), Batch())
    assert reconcile(con, cutoff_ms=CUTOFF_MS).total == 1
    assert items(con) == first
    con.execute("DELETE FROM iss_txn")
    counts = reconcile(con, cutoff_ms=CUTOFF_MS)
    assert counts.by_class[ReconClass.MISSING_AT_ISSUER] == 1
    assert [i["class"] for i in items(con)] == ["missing_at_issuer"]


def test_a_failed_run_leaves_no_half_built_table(con: duckdb.DuckDBPyConnection) -> None:
    s = Sw(3)
    run(con, s, posting(s), Batch())
    con.execute("DROP TABLE sw_upload")
    with pytest.raises(duckdb.CatalogException, match="sw_upload"):
        reconcile(con, cutoff_ms=CUTOFF_MS)
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"sw_txn", "iss_txn", "sw_batch"}


def test_a_switch_log_holding_a_txn_id_twice_stops_the_run(
    con: duckdb.DuckDBPyConnection,
) -> None:
    load(con, Sw(65), Sw(70), dataclasses.replace(Sw(70), kind="refund"), Batch())
    with pytest.raises(duckdb.InvalidInputException, match="txn_id twice, between 64 and 127"):
        reconcile(con, cutoff_ms=CUTOFF_MS)


def test_an_empty_day_counts_every_class_as_zero(con: duckdb.DuckDBPyConnection) -> None:
    counts = reconcile(con, cutoff_ms=CUTOFF_MS)
    assert dict(counts.by_class) == dict.fromkeys(ReconClass, 0)
    assert (counts.total, counts.exceptions) == (0, 0)
    assert items(con) == []


def test_counts_are_by_class_with_the_exceptions_for_operations(
    con: duckdb.DuckDBPyConnection,
) -> None:
    good, lost, failed = Sw(1), Sw(2), Sw(3, state="declined", response_code="51")
    timed_out = Sw(4, state="timed_out")
    rows = (good, posting(good), lost, failed, timed_out, posting(timed_out), Batch())
    load(con, *rows, _stray("iss-x", at_ms=10), _stray("iss-y", stan="999002", kind="refund"))
    counts = reconcile(con, cutoff_ms=CUTOFF_MS)
    expected = dict.fromkeys(ReconClass, 0) | {
        ReconClass.MATCHED: 1,
        ReconClass.MISSING_AT_ISSUER: 1,
        ReconClass.UNSUCCESSFUL: 1,
        ReconClass.ONE_SIDED_DEBIT: 2,
        ReconClass.ONE_SIDED_CREDIT: 1,
    }
    assert dict(counts.by_class) == expected
    assert list(counts.by_class) == list(ReconClass)
    assert counts.total == 6
    assert counts.exceptions == 2  # missing_at_issuer and one_sided_credit; debits are refunded
    with pytest.raises(TypeError):
        counts.by_class[ReconClass.MATCHED] = 0  # type: ignore[index]


def test_recon_counts_of_fills_in_the_missing_classes() -> None:
    counts = ReconCounts.of({ReconClass.AMOUNT_MISMATCH: 2, ReconClass.AWAITING_BATCH: 5})
    assert counts.by_class[ReconClass.MATCHED] == 0
    assert (counts.total, counts.exceptions) == (7, 2)
    assert ReconClass.AMOUNT_MISMATCH in EXCEPTIONS


# --- properties ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Day:
    switch: tuple[Sw, ...]
    postings: tuple[Iss, ...]
    batches: tuple[Batch, ...]
    uploads: tuple[Upload, ...]

    def rows(self) -> tuple[Row, ...]:
        return (*self.switch, *self.postings, *self.batches, *self.uploads)


_TERMINALS = (TERMINAL, OTHER_TERMINAL)
_AMOUNTS = st.sampled_from([100, 250, 999])
# Most rows agree, so that matches (and same-day voided pairs) come up as often as faults.
_OFTEN = st.integers(0, 9).map(lambda n: n < 9)
_TIMES = st.sampled_from([10, CUTOFF_MS - 1, CUTOFF_MS, CUTOFF_MS + 1])


@st.composite
def _switch_rows(draw: st.DrawFn) -> tuple[Sw, ...]:
    ids = draw(st.lists(st.integers(1, 200), max_size=12, unique=True))
    rows: list[Sw] = []
    voided: set[int] = set()
    for txn_id in ids:
        kind = draw(st.sampled_from(["sale", "sale", "completion", "void", "refund"]))
        original = None
        if kind in ("void", "refund"):
            sales = [r.txn_id for r in rows if r.kind in DEBIT_KINDS and r.txn_id not in voided]
            earlier_day = 1_000 + txn_id  # not in today's log
            original = draw(st.sampled_from([*sales, *sales, earlier_day]))
            if kind == "void":
                voided.add(original)
        rows.append(
            Sw(
                txn_id,
                kind,
                "approved" if draw(_OFTEN) else draw(st.sampled_from(STATES)),
                draw(_AMOUNTS),
                draw(st.sampled_from(_TERMINALS)),
                batch_no=draw(st.integers(1, 2)),
                original_id=original,
                response_code=draw(st.sampled_from([None, "00", "51"])),
                routed=draw(_OFTEN),
            )
        )
    return tuple(rows)


@st.composite
def days(draw: st.DrawFn) -> Day:
    switch = draw(_switch_rows())
    postings = [
        posting(
            s,
            in_effect=draw(_OFTEN),
            amount_minor=s.amount_minor if draw(_OFTEN) else s.amount_minor + 1,
            at_ms=draw(_TIMES),
        )
        for s in switch
        if s.routed and draw(_OFTEN)
    ]
    for n in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["sale", "completion", "void", "refund"]))
        stray = _stray(
            f"iss-stray-{n}",
            kind=kind,
            terminal_id=draw(st.sampled_from(_TERMINALS)),
            stan=f"99{n:04d}",
            rrn=f"R{n}",
            at_ms=draw(_TIMES),
        )
        postings.append(dataclasses.replace(stray, in_effect=draw(st.booleans())))
    batches = [
        Batch(b, draw(st.sampled_from(["balanced", "not_balanced"])), t, draw(st.booleans()))
        for t in _TERMINALS
        for b in (1, 2)
        if draw(_OFTEN)  # else not closed yet
    ]
    uploads = [
        uploaded(s, amount_minor=s.amount_minor if draw(_OFTEN) else s.amount_minor - 1)
        for s in switch
        if draw(st.booleans())
    ]
    for n in range(draw(st.integers(0, 3))):
        difference = draw(
            st.sampled_from(["unknown at the switch", "amount: terminal 1, switch 2"])
        )
        code = draw(st.sampled_from(["000000", "200000"]))
        where = {
            "batch_no": draw(st.integers(1, 2)),
            "terminal_id": draw(st.sampled_from(_TERMINALS)),
        }
        rrn = f"R{n}"  # a stray posting's, if there is one: the same swipe
        uploads.append(
            Upload(
                f"8{n:05d}",
                draw(_AMOUNTS),
                processing_code=code,
                difference=difference,
                rrn=rrn,
                **where,
            )
        )
    return Day(switch, tuple(postings), tuple(batches), tuple(uploads))


def _expected_class(s: Sw, day: Day) -> str:  # noqa: PLR0911 - one return per rule, in order
    """The rules of ``_match`` for a switch row, one row at a time, in plain Python."""
    i = next((p for p in day.postings if p.issuer_txn_id == f"iss-{s.txn_id}"), None)
    b = next(
        (b for b in day.batches if (b.terminal_id, b.batch_no) == (s.terminal_id, s.batch_no)), None
    )
    key = (s.terminal_id, s.batch_no, s.stan)
    u = next((u for u in day.uploads if (u.terminal_id, u.batch_no, u.stan) == key), None)
    one_sided = "one_sided_debit" if s.kind in DEBIT_KINDS else "one_sided_credit"
    if s.state != "approved":
        if u is not None:
            return "unknown_to_host"
        return one_sided if i is not None and i.in_effect else "unsuccessful"
    if i is None or not i.in_effect:
        return "missing_at_issuer"
    if i.amount_minor != s.amount_minor:
        return "amount_mismatch"
    if b is None:
        return "awaiting_batch"
    if b.result == "not_balanced" and u is None:
        return one_sided
    if u is not None and u.amount_minor != s.amount_minor:
        return "amount_mismatch"
    return "matched"


def _check_coverage(day: Day, found: list[dict[str, Any]]) -> None:
    """One item per switch row; one per unmatched posting before the cutoff, none after."""
    by_switch = Counter(i["switch_txn_id"] for i in found if i["switch_txn_id"] is not None)
    assert by_switch == Counter(s.txn_id for s in day.switch)
    by_posting = Counter(i["issuer_txn_id"] for i in found if i["issuer_txn_id"] is not None)
    named = {f"iss-{s.txn_id}" for s in day.switch}
    for p in day.postings:
        if p.issuer_txn_id in named:
            assert by_posting[p.issuer_txn_id] == 1  # on its switch row, whatever its time
        else:
            assert by_posting[p.issuer_txn_id] == (1 if p.at_ms < CUTOFF_MS else 0)
    open_batches = {(b.terminal_id, b.batch_no) for b in day.batches if not b.claimed}
    reported = [
        u
        for u in day.uploads
        if u.stan.startswith("8")  # the records no switch row has
        and u.difference == "unknown at the switch"
        and (u.terminal_id, u.batch_no) in open_batches
    ]
    # (an upload may carry the id of an issuer-only posting of the same RRN: still one item)
    orphans = [i for i in found if i["switch_txn_id"] is None and i["terminal_amount_minor"]]
    assert sorted((i["terminal_id"], i["batch_no"], i["stan"]) for i in orphans) == sorted(
        (u.terminal_id, u.batch_no, u.stan) for u in reported
    )
    assert [i["item_no"] for i in found] == list(range(1, len(found) + 1))


def _check_order(found: list[dict[str, Any]]) -> None:
    switch = [i["switch_txn_id"] for i in found if i["switch_txn_id"] is not None]
    issuer = [
        i["issuer_txn_id"] for i in found if i["switch_txn_id"] is None and i["issuer_txn_id"]
    ]
    assert [i["switch_txn_id"] for i in found[: len(switch)]] == sorted(switch)
    assert [i["issuer_txn_id"] for i in found[len(switch) : len(switch) + len(issuer)]] == sorted(
        issuer
    )
    terminal = [
        (i["terminal_id"], i["batch_no"], i["stan"]) for i in found[len(switch) + len(issuer) :]
    ]
    assert terminal == sorted(terminal)


def _check_clearing(day: Day, found: list[dict[str, Any]]) -> None:
    """What is cleared: matched rows only, less the same-day voided pairs."""
    klass = {i["switch_txn_id"]: i["class"] for i in found if i["switch_txn_id"] is not None}
    by_id = {s.txn_id: s for s in day.switch}
    paired = {
        n
        for s in day.switch
        if s.kind == "void"
        and klass[s.txn_id] == "matched"
        and s.original_id in by_id
        and by_id[s.original_id].kind in DEBIT_KINDS
        and klass[s.original_id] == "matched"
        for n in (s.txn_id, s.original_id)
    }
    assert all(i["class"] == "matched" for i in found if i["cleared_as"] is not None)
    cleared = {
        d: sum(i["amount_minor"] for i in found if i["cleared_as"] == d)
        for d in ("debit", "credit")
    }
    matched = [s for s in day.switch if klass[s.txn_id] == "matched" and s.txn_id not in paired]
    assert all(s.state == "approved" for s in matched)
    assert cleared["debit"] == sum(s.amount_minor for s in matched if s.kind in DEBIT_KINDS)
    assert cleared["credit"] == sum(s.amount_minor for s in matched if s.kind not in DEBIT_KINDS)
    assert {
        i["switch_txn_id"] for i in found if i["class"] == "matched" and i["cleared_as"] is None
    } == paired


@settings(max_examples=300, deadline=None)
@given(days())
def test_every_day_is_covered_once_in_order_and_cleared_by_the_rules(day: Day) -> None:
    con = duckdb.connect(":memory:")
    try:
        create_inputs(con)
        found = run(con, *day.rows())
    finally:
        con.close()
    _check_coverage(day, found)
    _check_order(found)
    _check_clearing(day, found)
    for item in found:
        if item["switch_txn_id"] is not None:
            s = next(s for s in day.switch if s.txn_id == item["switch_txn_id"])
            assert item["class"] == _expected_class(s, day), item
