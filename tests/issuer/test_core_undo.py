"""Voids, refunds, holds and reversals: money comes back once, and only once."""

from __future__ import annotations

from cardtally.issuer._follow_ups import OWED_REASON
from cardtally.issuer._request import request_key
from cardtally.notices import NoticeKind
from tests.issuer.bank import NOON, Bank
from tests.issuer.messages import (
    CREDIT_PAN,
    DEBIT_PAN,
    completion,
    preauth,
    refund,
    reversal,
    sale,
    void,
)

DAY_MS = 86_400_000


def _approved_sale(bank: Bank, amount: int, stan: int) -> tuple[object, str]:
    message = sale(DEBIT_PAN, amount, stan)
    outcome = bank.run(message)
    assert outcome.response is not None and outcome.response_code == "00"
    return message, outcome.response.fields[38]


def test_void_same_day_returns_the_money_with_a_refund_notice(bank: Bank) -> None:
    original, auth = _approved_sale(bank, 10_000, 1)
    outcome = bank.run(void(DEBIT_PAN, original, auth, 2))  # type: ignore[arg-type]
    assert outcome.response_code == "00", outcome.reason
    assert bank.money(DEBIT_PAN)[0] == 100_000
    notices = bank.notices()
    assert [n.kind for n in notices] == [NoticeKind.DEBIT, NoticeKind.REFUND]
    assert notices[1].reason == "void"
    # A second void of the same sale is refused and changes nothing.
    again = bank.run(void(DEBIT_PAN, original, auth, 3))  # type: ignore[arg-type]
    assert again.response_code == "12"
    assert bank.money(DEBIT_PAN)[0] == 100_000


def test_void_checks_the_original(bank: Bank) -> None:
    original, auth = _approved_sale(bank, 10_000, 1)
    assert bank.run(void(DEBIT_PAN, original, "999999", 2)).response_code == "25"  # type: ignore[arg-type]
    other_rrn = original.with_fields({37: "777777777777"})  # type: ignore[attr-defined]
    assert bank.run(void(DEBIT_PAN, other_rrn, auth, 3)).response_code == "25"
    wrong_amount = void(DEBIT_PAN, original, auth, 4).with_fields({4: "000000000001"})  # type: ignore[arg-type]
    assert bank.run(wrong_amount).response_code == "13"
    next_day = bank.run(void(DEBIT_PAN, original, auth, 5), now_ms=NOON + DAY_MS)  # type: ignore[arg-type]
    assert next_day.response_code == "12"
    assert bank.money(DEBIT_PAN)[0] == 90_000


def test_refunds_up_to_the_original_amount_across_days(bank: Bank) -> None:
    original, _ = _approved_sale(bank, 10_000, 1)
    later = NOON + 3 * DAY_MS
    first = bank.run(refund(DEBIT_PAN, original, 4_000, 2), now_ms=later)  # type: ignore[arg-type]
    assert first.response is not None
    assert (first.response.mti, first.response_code) == ("0230", "00")
    assert bank.run(refund(DEBIT_PAN, original, 6_001, 3), now_ms=later).response_code == "13"  # type: ignore[arg-type]
    assert bank.run(refund(DEBIT_PAN, original, 6_000, 4), now_ms=later).response_code == "00"  # type: ignore[arg-type]
    assert bank.money(DEBIT_PAN)[0] == 100_000
    unknown = original.with_fields({37: "123123123123"})  # type: ignore[attr-defined]
    assert bank.run(refund(DEBIT_PAN, unknown, 1, 5)).response_code == "25"
    assert [n.reason for n in bank.notices()] == ["sale", "refund", "refund"]


def test_hold_then_partial_completion_releases_the_rest(bank: Bank) -> None:
    hold = bank.run(preauth(DEBIT_PAN, 30_000, 1))
    assert hold.response is not None and hold.response.mti == "0110"
    assert bank.money(DEBIT_PAN) == (100_000, 70_000)
    assert bank.notices() == []  # a hold moves no money
    code = hold.response.fields[38]
    assert bank.run(completion(DEBIT_PAN, 30_001, code, 2)).response_code == "13"
    assert bank.run(completion(DEBIT_PAN, 25_000, code, 3)).response_code == "00"
    assert bank.money(DEBIT_PAN) == (75_000, 75_000)
    assert bank.run(completion(DEBIT_PAN, 1_000, code, 4)).response_code == "12"
    assert bank.run(completion(DEBIT_PAN, 1_000, "000000", 5)).response_code == "25"
    assert [n.reason for n in bank.notices()] == ["pre-authorisation completion"]
    assert bank.violations() == []


def test_expired_hold_is_released_by_the_tick_and_cannot_be_completed(bank: Bank) -> None:
    hold = bank.run(preauth(DEBIT_PAN, 30_000, 1))
    assert hold.response is not None
    after = NOON + 31 * DAY_MS
    assert bank.tick(NOON + DAY_MS) == 0
    assert bank.tick(after) == 1
    assert bank.money(DEBIT_PAN) == (100_000, 100_000)
    late = bank.run(completion(DEBIT_PAN, 30_000, hold.response.fields[38], 2), now_ms=after)
    assert late.response_code == "12"


def test_reversal_refunds_a_sale_once_and_repeats_answer_the_same(bank: Bank) -> None:
    original, _ = _approved_sale(bank, 10_000, 1)
    first = bank.run(reversal(original))  # type: ignore[arg-type]
    assert first.response is not None
    assert (first.response.mti, first.response_code) == ("0410", "00")
    assert bank.money(DEBIT_PAN)[0] == 100_000
    repeat = bank.run(reversal(original, mti="0401"))  # type: ignore[arg-type]
    assert repeat.response == first.response
    # The key the answer is kept under travels with it, for the runtime's log line.
    assert first.key == repeat.key == request_key(reversal(original))  # type: ignore[arg-type]
    advice = bank.run(reversal(original, mti="0420", transmitted="1121104000"))  # type: ignore[arg-type]
    assert advice.response is not None
    assert (advice.response.mti, advice.response_code) == ("0430", "00")
    assert bank.money(DEBIT_PAN)[0] == 100_000
    assert [n.kind for n in bank.notices()] == [NoticeKind.DEBIT, NoticeKind.REFUND]
    assert bank.violations() == []


def test_reversal_without_an_original_is_25_and_of_a_decline_is_a_no_op(bank: Bank) -> None:
    assert bank.run(reversal(sale(DEBIT_PAN, 100, 42))).response_code == "25"
    declined = sale(CREDIT_PAN, 100, 43, expiry="2701")
    assert bank.run(declined).response_code == "54"
    before = bank.snapshot()
    outcome = bank.run(reversal(declined))
    assert outcome.response_code == "00"
    assert "nothing to undo" in outcome.reason
    assert bank.snapshot()[1:] == before[1:]


def test_reversal_releases_a_hold(bank: Bank) -> None:
    message = preauth(DEBIT_PAN, 30_000, 1)
    bank.run(message)
    assert bank.run(reversal(message)).response_code == "00"
    assert bank.money(DEBIT_PAN) == (100_000, 100_000)


def test_reversal_of_a_void_takes_the_money_again(bank: Bank) -> None:
    original, auth = _approved_sale(bank, 10_000, 1)
    voided = void(DEBIT_PAN, original, auth, 2)  # type: ignore[arg-type]
    bank.run(voided)
    assert bank.run(reversal(voided)).response_code == "00"
    assert bank.money(DEBIT_PAN)[0] == 90_000
    assert [n.kind for n in bank.notices()][-1] == NoticeKind.DEBIT
    # The sale stands again, so it can be voided again by a new request.
    assert bank.run(void(DEBIT_PAN, original, auth, 3)).response_code == "00"  # type: ignore[arg-type]
    assert bank.money(DEBIT_PAN)[0] == 100_000


def test_reversal_of_a_spent_void_is_forced_and_booked_as_owed(bank: Bank) -> None:
    # The void reached the issuer but the terminal showed 98 (no void slip): the sale stands
    # for the merchant. The cardholder spent the money given back before the reversal came.
    original, auth = _approved_sale(bank, 10_000, 1)
    voided = void(DEBIT_PAN, original, auth, 2)  # type: ignore[arg-type]
    assert bank.run(voided).response_code == "00"
    _approved_sale(bank, 95_000, 3)
    assert bank.money(DEBIT_PAN) == (5_000, 5_000)
    advice = reversal(voided, mti="0420")
    outcome = bank.run(advice)
    assert outcome.response is not None
    assert (outcome.response.mti, outcome.response_code) == ("0430", "00"), outcome.reason
    # The card keeps its floor; the debt is on the cardholder's owed account, told in a notice.
    assert bank.money(DEBIT_PAN) == (5_000, 5_000)
    assert bank.owed(DEBIT_PAN) == 10_000
    last = bank.notices()[-1]
    assert (last.kind, last.amount.minor, last.reason) == (
        NoticeKind.DEBIT,
        10_000,
        f"reversal of void; {OWED_REASON}",
    )
    assert "(reversal of void; owed to the bank)" in last.text
    # A repeat of the advice answers the same and books nothing more.
    assert bank.run(advice).response == outcome.response
    repeat = bank.run(reversal(voided, mti="0421"))  # type: ignore[arg-type]
    assert repeat.response_code == "00"
    assert bank.owed(DEBIT_PAN) == 10_000
    assert bank.violations() == []


def test_reversal_of_a_void_still_covered_owes_nothing(bank: Bank) -> None:
    original, auth = _approved_sale(bank, 10_000, 1)
    voided = void(DEBIT_PAN, original, auth, 2)  # type: ignore[arg-type]
    bank.run(voided)
    assert bank.run(reversal(voided, mti="0420")).response_code == "00"
    assert bank.money(DEBIT_PAN)[0] == 90_000
    assert bank.owed(DEBIT_PAN) == 0


def test_reversal_after_a_partial_refund_returns_only_the_rest(bank: Bank) -> None:
    original, _ = _approved_sale(bank, 10_000, 1)
    bank.run(refund(DEBIT_PAN, original, 3_000, 2))  # type: ignore[arg-type]
    assert bank.run(reversal(original)).response_code == "00"  # type: ignore[arg-type]
    assert bank.money(DEBIT_PAN)[0] == 100_000
    assert bank.violations() == []


def test_a_request_that_arrives_after_its_reversal_advice_moves_no_money(bank: Bank) -> None:
    """The switch timed out, its advice overtook the request and found nothing (25); the
    request, delayed on the way, must not debit or hold: nobody would undo it again."""
    late_sale = sale(DEBIT_PAN, 10_000, 7)
    late_hold = preauth(DEBIT_PAN, 30_000, 8)
    for original in (late_sale, late_hold):
        advice = reversal(original, mti="0420", transmitted=original.fields[7])
        assert bank.run(advice).response_code == "25"
        outcome = bank.run(original)
        assert outcome.response_code == "12"
        assert "reversed before it arrived" in outcome.reason
    assert bank.money(DEBIT_PAN) == (100_000, 100_000)
    assert bank.notices() == []
    assert bank.violations() == []


def test_an_earlier_reversal_of_another_send_does_not_block_a_request(bank: Bank) -> None:
    """Same terminal and STAN but another transmission time: not this request's reversal."""
    earlier = sale(DEBIT_PAN, 100, 9, transmitted="1121090000")
    assert bank.run(reversal(earlier, mti="0420", transmitted="1121090000")).response_code == "25"
    assert bank.run(sale(DEBIT_PAN, 100, 9, transmitted="1121100000")).response_code == "00"
