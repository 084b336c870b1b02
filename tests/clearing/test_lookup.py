"""``cardtally lookup``: the hotline's answer for a swipe, from real hosts and a real day end.

One network for the module (issuer and switch as child processes, a signed-on terminal): the
story below is played once, then every test only reads it with ``cardtally lookup``:

- a sale of 12.34, approved, receipted, cleared on day D and paid to the merchant at D+1's end;
- a sale the card cannot cover (51); a sale voided the same day; a sale refunded in part;
- a sale whose answer is lost, reversed by the terminal's next request (money back);
- the seeds' story: a sale whose answer is lost and whose reversals are dropped, then the batch
  settles without it; day D's end refunds the one-sided debit, with a notice; the terminal's
  reversal gets through afterwards and finds nothing left to undo;
- a debit sent to the issuer directly (no switch record): an issuer-only one-sided debit;
- after both day ends, a sale still waiting for its day end.

A few verdicts no honest story here can reach (a reversal the issuer refuses, a posting missing
at the issuer, a timeout still being reversed) are checked on hand-made facts at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.clearing._calendar import day_of
from cardtally.clearing._lookup import (
    Answer,
    DayEndFacts,
    Facts,
    IssuerFacts,
    LookupInputError,
    MoneyState,
    SwitchFacts,
    explain,
    parse_criteria,
    timeline,
)
from cardtally.switch._model import Advice, Txn, TxnKind, TxnState
from cardtally.wire import Pan
from tests.issuer.messages import CREDIT_PAN, DEBIT_PAN, EXPIRY, PIN
from tests.issuer.messages import MERCHANT as DIRECT_MERCHANT
from tests.issuer.messages import sale as issuer_sale
from tests.issuer.tcp_support import exchange, zak_of, zpk_of
from tests.switch.tcp_support import MERCHANT
from tests.terminal.proxy import FaultProxy
from tests.terminal.tcp_support import (
    ADMIN,
    LOST_TIMEOUT_S,
    TERMINAL_ID,
    CliRun,
    TerminalNet,
    cardtally_cli,
    terminal_network,
)

MASKED: Final = Pan(DEBIT_PAN).masked
CUTOFF_MINUTES: Final = 23 * 60  # the default dayend.cutoff


@dataclass(frozen=True)
class Story:
    term: TerminalNet
    day: str  # business day D, closed early
    next_day: str  # D+1, closed early too (it pays D's statement)
    outcomes: dict[str, dict[str, Any]]

    @property
    def home(self) -> Path:
        return self.term.home

    def voucher(self, name: str) -> str:
        voucher = self.outcomes[name]["txn"]["voucher"]
        assert isinstance(voucher, str)
        return voucher

    def rrn(self, name: str) -> str:
        rrn = self.outcomes[name]["txn"]["rrn"]
        assert isinstance(rrn, str)
        return rrn


def _ok(done: tuple[int, dict[str, Any]], code: int = 0) -> dict[str, Any]:
    assert done[0] == code, done
    return done[1]


def _close_day(term: TerminalNet, day: str) -> None:
    done = cardtally_cli(term.home, "dayend", "run", "--date", day, "--close-now")
    assert done.exit_code == 0, done


def _issuer_only_debit(term: TerminalNet) -> None:
    """A sale straight to the issuer, as if the switch had lost its record of it."""
    assert term.net.issuer is not None
    message = issuer_sale(DEBIT_PAN, 4321, 777, pin=PIN, zpk=zpk_of(term.home))
    with term.net.issuer.connect() as client:
        answer = exchange(client, message, zak_of(term.home))
    assert answer.response_code == "00", answer


def _play(term: TerminalNet, proxy: FaultProxy) -> Story:
    outcomes = {"cleared": _ok(term.sale("12.34"))}
    outcomes["declined"] = _ok(term.sale(f"{term.issuer_balance() // 100 + 1}.00"), 1)
    outcomes["voided"] = _ok(term.sale("20.00"))
    voucher = str(int(outcomes["voided"]["txn"]["voucher"]))
    outcomes["void"] = _ok(term.term_json("void", "--voucher", voucher, "--admin-password", ADMIN))
    outcomes["refunded"] = _ok(term.sale("30.00"))
    refund = ("--rrn", outcomes["refunded"]["txn"]["rrn"], "--amount", "5.00")
    card = ("--pan", DEBIT_PAN, "--expiry", EXPIRY, "--admin-password", ADMIN)
    outcomes["refund"] = _ok(term.term_json("refund", *refund, *card))
    # An answer lost; the next request reverses the sale first, and the queue delivers it.
    proxy.drop_answers("0210")
    outcomes["reversed"] = _ok(term.sale("7.77", via=proxy.port, timeout_s=LOST_TIMEOUT_S), 3)
    _ok(term.balance(via=proxy.port))
    term.net.wait_queue_drained()
    # The seeds: an answer lost and every reversal dropped; the batch settles without it.
    proxy.drop_answers("0210")
    outcomes["one_sided"] = _ok(term.sale("8.88", via=proxy.port, timeout_s=LOST_TIMEOUT_S), 3)
    proxy.drop_requests("040", 3)
    settle = ("settle", "--admin-password", ADMIN)
    settled = _ok(term.term_json(*settle, via=proxy.port, timeout_s=LOST_TIMEOUT_S))
    assert settled["result"] == "not_balanced", settled
    _issuer_only_debit(term)
    day = day_of(int(time.time() * 1000), CUTOFF_MINUTES).day
    _close_day(term, day.isoformat())
    _ok(term.balance())  # the terminal's pending reversal goes through at last
    term.net.wait_queue_drained()
    next_day = (day + timedelta(days=1)).isoformat()
    _close_day(term, next_day)
    outcomes["waiting"] = _ok(term.sale("3.21"))
    return Story(term, day.isoformat(), next_day, outcomes)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("lookup")
    with terminal_network(root) as term, FaultProxy(term.switch_port) as proxy:
        yield _play(term, proxy)


def lookup(story: Story, *args: str) -> CliRun:
    done = cardtally_cli(story.home, "lookup", *args)
    # The card number never shows, whatever was asked and however it failed.
    assert DEBIT_PAN not in done.stdout + done.stderr, done
    return done


def matches(story: Story, *args: str) -> list[dict[str, Any]]:
    done = lookup(story, *args, "--json")
    assert done.exit_code == 0, done
    shown = done.json()
    assert shown["count"] == len(shown["matches"])
    found = shown["matches"]
    assert isinstance(found, list)
    return found


def only(story: Story, *args: str) -> dict[str, Any]:
    [found] = matches(story, *args)
    return found


def events(found: dict[str, Any]) -> list[str]:
    return [step["event"] for step in found["timeline"]]


# --- the stories, as the hotline reads them -------------------------------------------------


def test_approved_sale_cleared_and_paid(story: Story) -> None:
    found = only(story, "--rrn", story.rrn("cleared"))
    assert found["headline"] == (
        f"Approved and receipted; CNY 12.34 cleared on {story.day}, paid to COFFEE SHOP on "
        f"{story.next_day} (T+1)"
    )
    assert found["money"] == MoneyState.PAID_TO_MERCHANT.value
    assert (found["kind"], found["state"], found["amount"]) == ("sale", "approved", "CNY 12.34")
    assert found["card"] == MASKED
    assert found["business_day"] == story.day
    assert found["day_end"][0]["class"] == "matched"
    assert found["day_end"][0]["paid_by"].startswith(f"dayend:{story.next_day}:payout:")
    assert events(found) == [
        "received",
        "forwarded",
        "issuer_decision",
        "notice",
        "answered",
        "batch_settled",
        "uploaded",
        "day_end",
        "statement",
        "payout",
    ]
    ats = [step["at_ms"] for step in found["timeline"]]
    assert ats == sorted(ats)


def test_declined_sale_took_nothing(story: Story) -> None:
    found = only(story, "--terminal", TERMINAL_ID, "--voucher", story.voucher("declined"))
    assert found["headline"] == (
        "Declined by the card's bank (51 insufficient funds); no money was taken"
    )
    assert found["money"] == "not_taken"
    assert found["issuer"]["response_code"] == "51"
    assert "batch_settled" not in events(found)  # the batch says nothing about a decline


def test_interrupted_sale_reversed_by_the_switch(story: Story) -> None:
    found = only(story, "--amount", "7.77")
    assert found["state"] == "reversed"
    assert found["money"] == "reversed"
    assert found["headline"].startswith(
        "Interrupted: no answer reached the terminal; the switch reversed it at the issuer at "
    )
    assert found["headline"].endswith(" CST; the cardholder's money is back")
    assert (found["issuer"]["moved_money"], found["issuer"]["reversed"]) == (True, True)
    steps = events(found)
    for step in ("terminal_reversal", "reversal_queued", "issuer_reversal", "reversal_acked"):
        assert step in steps, steps
    assert steps.index("terminal_reversal") < steps.index("issuer_reversal")
    texts = " | ".join(s["text"] for s in found["timeline"])
    assert "(reversal)" in texts  # the refund SMS the cardholder was sent


def test_seeds_one_sided_debit_refunded_at_day_end(story: Story) -> None:
    found = only(story, "--pan", DEBIT_PAN, "--amount", "8.88")
    assert found["headline"] == (
        "Interrupted: the terminal never printed a receipt; the debit was refunded at the day "
        f"end of {story.day}, with a notice to the cardholder"
    )
    assert found["money"] == "refunded_at_day_end"
    assert found["day_end"][0]["class"] == "one_sided_debit"
    assert found["day_end"][0]["refund"] == {"result": "refunded", "amount_minor": 888}
    assert found["issuer"]["reversed"] is False  # the late reversal found nothing to undo
    steps = events(found)
    assert "not_uploaded" in steps and "day_end_refund" in steps
    notices = [s["text"] for s in found["timeline"] if s["event"] == "notice"]
    assert any("refund CNY 8.88" in n and "(day-end refund)" in n for n in notices), notices
    # The terminal's reversal arrived after the day end; the issuer had nothing left to undo.
    assert found["state"] == "reversed"
    late = [s for s in found["timeline"] if s["event"] == "issuer_reversal"]
    assert late and "already refunded" in late[0]["text"], found["timeline"]
    assert steps.index("day_end_refund") < steps.index("terminal_reversal")


def test_issuer_only_debit_found_by_card_and_merchant(story: Story) -> None:
    found = only(story, "--pan", DEBIT_PAN, "--amount", "43.21")
    assert found["source"] == "issuer_only"
    assert found["money"] == "refunded_at_day_end"
    assert found["headline"].startswith(
        "Issuer-only debit: the card's bank took it but the switch has no record of the swipe; "
        f"the debit was refunded at the day end of {story.day}"
    )
    assert (found["merchant_id"], found["voucher"], found["card"]) == (
        DIRECT_MERCHANT,
        None,
        MASKED,
    )
    assert only(story, "--merchant", DIRECT_MERCHANT)["rrn"] == found["rrn"]
    assert only(story, "--rrn", str(int(found["rrn"])))["source"] == "issuer_only"
    # An issuer record carries the switch's trace number, not a terminal's voucher.
    assert lookup(story, "--merchant", DIRECT_MERCHANT, "--voucher", "777").exit_code == 1


def test_void_and_refund_in_plain_words(story: Story) -> None:
    voided = only(story, "--rrn", story.rrn("voided"))
    assert (voided["headline"], voided["money"]) == ("Voided the same day: nothing taken", "voided")
    void = only(story, "--rrn", story.rrn("void"))
    assert void["headline"] == (
        f"Void of RRN {story.rrn('voided')} (CNY 20.00 sale): voided the same day, so neither "
        "is cleared"
    )
    refund = only(story, "--rrn", story.rrn("refund"))
    assert refund["headline"].startswith(
        f"Refund of RRN {story.rrn('refunded')} (CNY 30.00 sale): CNY 5.00 given back to the "
        f"card; cleared on {story.day}"
    )
    assert refund["money"] == "credited_to_card"
    refunded = only(story, "--rrn", story.rrn("refunded"))
    assert refunded["headline"].endswith(f"; refund of CNY 5.00 later (RRN {story.rrn('refund')})")


def test_sale_after_the_last_day_end_waits_for_it(story: Story) -> None:
    found = only(story, "--amount", "3.21")
    assert found["headline"] == "Approved; waiting for the day end"
    assert found["money"] == "debited_awaiting_day_end"
    assert found["day_end"] == []
    assert found["business_day"] > story.next_day


# --- finding: each criterion, and all together -----------------------------------------------


def test_each_criterion_finds_and_they_combine_with_and(story: Story) -> None:
    rrn, voucher = story.rrn("cleared"), story.voucher("cleared")
    assert only(story, "--voucher", voucher)["rrn"] == rrn
    assert only(story, "--voucher", str(int(voucher)))["rrn"] == rrn  # leading zeros optional
    assert only(story, "--rrn", str(int(rrn)))["rrn"] == rrn
    assert only(story, "--amount", "12.34", "--date", story.day)["rrn"] == rrn
    everything = (
        *("--merchant", MERCHANT, "--terminal", TERMINAL_ID, "--pan", DEBIT_PAN),
        *("--date", story.day, "--amount", "12.34", "--rrn", rrn, "--voucher", voucher),
    )
    assert only(story, *everything)["rrn"] == rrn
    assert lookup(story, "--voucher", voucher, "--amount", "12.35").exit_code == 1
    assert lookup(story, "--rrn", rrn, "--date", story.next_day).exit_code == 1
    by_day = matches(story, "--date", story.day)
    assert {m["business_day"] for m in by_day} == {story.day}
    assert rrn in {m["rrn"] for m in by_day}
    assert "CNY 3.21" not in {m["amount"] for m in by_day}
    terminal = matches(story, "--terminal", TERMINAL_ID, "--limit", "100")
    merchant = matches(story, "--merchant", MERCHANT, "--limit", "100")
    assert [m["rrn"] for m in terminal] == [m["rrn"] for m in merchant]
    assert {m["kind"] for m in terminal} == {"sale", "void", "refund"}  # no balance inquiries
    ats = [m["at_ms"] for m in terminal]
    assert ats == sorted(ats, reverse=True)  # newest first
    assert len(matches(story, "--terminal", TERMINAL_ID, "--limit", "2")) == 2


def test_terminal_reversal_rrn_finds_the_swipe_it_undid(story: Story) -> None:
    found = only(story, "--amount", "7.77")
    log = story.term.switch_txns()
    [reversal] = [t for t in log if t["kind"] == "reversal" and t["original_rrn"] == found["rrn"]]
    assert only(story, "--rrn", reversal["rrn"])["rrn"] == found["rrn"]


def test_text_reads_aloud_with_the_card_masked(story: Story) -> None:
    text = lookup(story, "--pan", DEBIT_PAN, "--amount", "8.88")
    assert text.exit_code == 0, text
    lines = text.stdout.splitlines()
    assert lines[0] == f"1 swipe found for card {MASKED}, amount CNY 8.88 (newest first)"
    assert lines[2].startswith(f"RRN {only(story, '--amount', '8.88')['rrn']}  sale  CNY 8.88  ")
    assert lines[2].endswith(f"card {MASKED}")
    assert f"  >> {only(story, '--amount', '8.88')['headline']}" in lines
    assert any(
        line.startswith("  money: refunded_at_day_end. CNY 8.88 went back") for line in lines
    )
    assert "  timeline (CST):" in lines
    assert any("(day-end refund)" in line for line in lines)  # the SMS, word for word
    spaced = " ".join(DEBIT_PAN[i : i + 4] for i in range(0, len(DEBIT_PAN), 4))
    assert lookup(story, "--pan", spaced, "--json").json()["criteria"] == {"card": MASKED}


def test_another_card_finds_nothing(story: Story) -> None:
    done = lookup(story, "--pan", CREDIT_PAN)
    assert done.exit_code == 1, done
    assert done.stderr.strip() == f"nothing found for card {Pan(CREDIT_PAN).masked}"
    assert CREDIT_PAN not in done.stdout + done.stderr


def test_json_shape(story: Story) -> None:
    done = lookup(story, "--rrn", story.rrn("cleared"), "--json")
    shown = done.json()
    assert shown["criteria"] == {"rrn": story.rrn("cleared")}
    [found] = shown["matches"]
    assert set(found) == {
        *("rrn", "source", "kind", "state", "terminal_id", "merchant_id", "merchant_name"),
        *("voucher", "batch_no", "card", "amount_minor", "amount", "currency", "business_day"),
        *("at_ms", "at", "headline", "money", "money_detail", "issuer", "day_end", "timeline"),
    }
    assert found["money"] in {m.value for m in MoneyState}
    assert set(found["timeline"][0]) == {"at", "at_ms", "event", "text"}
    assert (found["amount_minor"], found["currency"]) == (1234, "156")


# --- refusing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "at least one of --merchant"),
        (("--limit", "5"), "at least one of --merchant"),
        (("--amount", "abc"), "--amount: not an amount: 'abc'"),
        (("--pan", DEBIT_PAN[:-1] + str((int(DEBIT_PAN[-1]) + 1) % 10)), "fails the Luhn check"),
        (("--pan", "1234"), "--pan: card number must be 12 to 19 digits"),
        (("--voucher", "1234567"), "--voucher must be a trace number"),
        (("--rrn", "RRN1"), "--rrn must be 1-12 digits"),
        (("--date", "21/11/2026"), "--date: business day must be YYYY-MM-DD"),
        (("--terminal", "1030"), "--terminal: terminal ID must be exactly 8"),
        (("--merchant", "COFFEE SHOP"), "--merchant must be 1-15 letters and digits"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    story: Story, args: tuple[str, ...], fragment: str
) -> None:
    done = lookup(story, *args)
    assert done.exit_code == 2, done
    assert fragment in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1
    assert DEBIT_PAN[:-1] not in done.stderr  # not even a near miss of the card number


def test_nothing_found_is_exit_1_with_a_clear_line(story: Story) -> None:
    done = lookup(story, "--amount", "999.99", "--terminal", TERMINAL_ID)
    assert done.exit_code == 1, done
    assert done.stdout == ""
    assert done.stderr.strip() == (f"nothing found for terminal {TERMINAL_ID}, amount CNY 999.99")
    shown = lookup(story, "--amount", "999.99", "--json")
    assert shown.exit_code == 1
    assert shown.json() == {"criteria": {"amount": "CNY 999.99"}, "count": 0, "matches": []}


# --- verdicts on hand-made facts ---------------------------------------------------------------

AT: Final = 1_795_000_000_000


def _txn(**changes: Any) -> Txn:
    base = Txn(
        id=42,
        request_key="0200|10300001|000007|000001|20261121",
        kind=TxnKind.SALE,
        state=TxnState.APPROVED,
        terminal_id=TERMINAL_ID,
        merchant_id=MERCHANT,
        batch_no=1,
        stan="000007",
        local_date="20261121",
        pan_masked=MASKED,
        pan_fingerprint="",
        processing_code="000000",
        amount_minor=1234,
        currency="156",
        link_id="issuer_a",
        issuer_stan="000003",
        transmitted="1121060300",
        forwarded_mti="0200",
        forwarded_rrn="000000000042",
        response_code="00",
        auth_code="123456",
        echo_fields={},
        original_id=None,
        received_at_ms=AT,
        updated_at_ms=AT,
    )
    return replace(base, **changes)


def _facts(txn: Txn, *day_ends: DayEndFacts, advice: Advice | None = None) -> Facts:
    switch = SwitchFacts(
        txn=txn,
        answer=Answer(txn.response_code or "98", AT + 10),
        events=(),
        advice=advice,
        reversal=None,
        reversal_why=None,
        follow_ups=(),
        original=None,
        batch=None,
    )
    return Facts("156", "COFFEE SHOP", "2026-11-21", switch, None, IssuerFacts(), day_ends)


def _advice(**changes: Any) -> Advice:
    base = Advice(42, 42, "issuer_a", {}, 3, AT + 9000, AT + 1500, None, None)
    return replace(base, **changes)


def test_missing_at_issuer_is_an_exception_for_operations() -> None:
    item = DayEndFacts(
        "2026-11-21", "missing_at_issuer", "issuer has no posting for it", None, AT + 60_000
    )
    verdict = explain(_facts(_txn(), item))
    assert verdict.headline == (
        "Exception for operations: approved at the switch but the issuer has no posting "
        "(day end 2026-11-21)"
    )
    assert verdict.money is MoneyState.EXCEPTION


def test_timeout_still_being_reversed() -> None:
    txn = _txn(state=TxnState.TIMED_OUT, response_code="98", auth_code=None)
    facts = _facts(txn, advice=_advice())
    verdict = explain(facts)
    assert verdict.headline == (
        "Interrupted: the card's bank did not answer in time (98); the switch is reversing it "
        "at the card's bank (3 sends so far)"
    )
    assert verdict.money is MoneyState.REVERSAL_PENDING
    assert [s.event for s in timeline(facts)] == [
        "received",
        "forwarded",
        "answered",
        "reversal_queued",
        "reversal_next_send",
    ]


def test_reversal_refused_by_the_issuer() -> None:
    txn = _txn(state=TxnState.REVERSAL_REFUSED)
    facts = _facts(txn, advice=_advice(acked_at_ms=AT + 2000, ack_code="51"))
    verdict = explain(facts)
    assert verdict.headline == (
        "Exception for operations: the card's bank refused the reversal (51 insufficient funds)"
    )
    assert verdict.money is MoneyState.EXCEPTION


@pytest.mark.parametrize(
    ("txn", "money", "headline"),
    [
        (
            _txn(kind=TxnKind.PREAUTH),
            MoneyState.HELD,
            "Pre-authorisation approved: CNY 12.34 held on the card",
        ),
        (
            _txn(state=TxnState.FORWARDED, response_code=None),
            MoneyState.AWAITING_ANSWER,
            "Waiting for the card's bank to answer",
        ),
        (
            _txn(state=TxnState.REFUSED, response_code="14", link_id=None),
            MoneyState.NOT_TAKEN,
            "Refused by the switch (14 invalid card number), never sent to the card's bank; no "
            "money was taken",
        ),
    ],
)
def test_other_states(txn: Txn, money: MoneyState, headline: str) -> None:
    verdict = explain(_facts(txn))
    assert (verdict.money, verdict.headline) == (money, headline)


def test_criteria_parse_without_keys_unless_a_card_is_given() -> None:
    def no_keys(_: Pan) -> str:
        raise AssertionError("the data keys are read only for --pan")

    criteria = parse_criteria(currency="156", fingerprint=no_keys, voucher="12", rrn="7")
    assert (criteria.stan, criteria.rrn) == ("000012", "000000000007")
    assert parse_criteria(currency="156", fingerprint=no_keys, day="20261121").day == date(
        2026, 11, 21
    )
    with pytest.raises(LookupInputError, match="at least one of"):
        parse_criteria(currency="156", fingerprint=no_keys)
    keyed = parse_criteria(currency="156", fingerprint=lambda p: "fp", pan=DEBIT_PAN)
    assert (keyed.pan_fingerprint, keyed.pan_masked) == ("fp", MASKED)
    assert DEBIT_PAN not in repr(keyed)
