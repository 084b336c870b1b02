"""Sales, balance inquiries and every decline, through the core on a real database."""

from __future__ import annotations

import pytest

from cardtally.issuer import CardLimits
from cardtally.wire import Message
from tests.issuer.bank import NOON, Bank
from tests.issuer.messages import (
    CREDIT_PAN,
    DEBIT_PAN,
    PIN,
    UNKNOWN_PAN,
    balance_inquiry,
    pan,
    reversal,
    sale,
)


def test_sale_debits_once_and_writes_one_notice(bank: Bank) -> None:
    outcome = bank.run(sale(DEBIT_PAN, 12_345, 1))
    assert outcome.response is not None
    assert outcome.response.mti == "0210"
    assert outcome.response.response_code == "00"
    assert len(outcome.response.fields[38]) == 6
    assert outcome.response.fields[12] == "120000"  # local time, CST
    assert outcome.response.fields[13] == "1121"
    assert 2 not in outcome.response.fields and 52 not in outcome.response.fields
    assert bank.money(DEBIT_PAN) == (100_000 - 12_345, 100_000 - 12_345)
    [notice] = bank.notices()
    assert notice.kind == "debit"
    assert notice.card_tail == DEBIT_PAN[-4:]
    assert notice.amount.minor == 12_345
    assert notice.available.minor == 100_000 - 12_345
    assert "COFFEE SHOP SHANGHAI" in notice.text
    assert bank.violations() == []


def test_a_repeat_gets_the_stored_answer_and_no_second_debit(bank: Bank) -> None:
    first = bank.run(sale(DEBIT_PAN, 5_000, 1))
    again = bank.run(sale(DEBIT_PAN, 5_000, 1))
    assert again.result == "duplicate"
    assert again.response == first.response
    assert bank.money(DEBIT_PAN)[0] == 95_000
    assert len(bank.notices()) == 1


def test_same_key_different_content_is_refused_with_94(bank: Bank) -> None:
    bank.run(sale(DEBIT_PAN, 5_000, 1))
    before = bank.snapshot()
    outcome = bank.run(sale(DEBIT_PAN, 6_000, 1))
    assert outcome.response_code == "94"
    assert bank.snapshot() == before


def test_a_declined_request_repeated_gets_the_same_decline(bank: Bank) -> None:
    first = bank.run(sale(DEBIT_PAN, 500_000, 1, **_pin(bank)))
    assert first.response_code == "51"
    assert bank.run(sale(DEBIT_PAN, 500_000, 1, **_pin(bank))).response == first.response


def test_credit_card_spends_into_its_credit_line(bank: Bank) -> None:
    assert bank.run(sale(CREDIT_PAN, 50_000, 1)).response_code == "00"
    assert bank.money(CREDIT_PAN) == (-50_000, 150_000)
    assert bank.run(sale(CREDIT_PAN, 90_000, 2)).response_code == "00"
    assert bank.run(sale(CREDIT_PAN, 60_001, 3)).response_code == "51"
    assert bank.money(CREDIT_PAN) == (-140_000, 60_000)


def _pin(bank: Bank, pin: str = PIN) -> dict[str, object]:
    return {"pin": pin, "zpk": bank.keys.zpk}


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda b: sale(UNKNOWN_PAN, 100, 9), "14"),
        (lambda b: sale(DEBIT_PAN[:-1] + str((int(DEBIT_PAN[-1]) + 1) % 10), 100, 9), "14"),
        (lambda b: sale(DEBIT_PAN, 100, 9, **_pin(b, "654321")), "55"),
        (lambda b: sale(DEBIT_PAN, 100, 9, expiry="2811"), "54"),
        (lambda b: sale(DEBIT_PAN, 100_001, 9, **_pin(b)), "51"),
        (lambda b: sale(DEBIT_PAN, 100_001, 9), "55"),  # above the no-PIN limit, no PIN
        (lambda b: sale(DEBIT_PAN, 0, 9), "13"),
        (lambda b: sale(DEBIT_PAN, 100, 9, processing_code="400000"), "12"),
        (lambda b: sale(DEBIT_PAN, 100, 9, mti="0200").with_fields({49: "840"}), "13"),
    ],
    ids=["unknown", "luhn", "wrong-pin", "expiry", "funds", "pin-required", "zero", "proc", "ccy"],
)
def test_declines_change_no_balance(bank: Bank, build: object, code: str) -> None:
    message = build(bank)  # type: ignore[operator]
    assert isinstance(message, Message)
    before = bank.money(DEBIT_PAN), bank.money(CREDIT_PAN)
    outcome = bank.run(message)
    assert outcome.response_code == code, outcome.reason
    assert (bank.money(DEBIT_PAN), bank.money(CREDIT_PAN)) == before
    assert bank.notices() == []
    assert outcome.reason


def test_malformed_key_fields_get_30_and_no_record(bank: Bank) -> None:
    before = bank.snapshot()
    outcome = bank.run(sale(DEBIT_PAN, 100, 1).with_fields({11: None}))
    assert outcome.response_code == "30"
    assert bank.snapshot() == before


def test_expired_card_is_declined_54(bank: Bank) -> None:
    expired = pan("622588000000777")
    bank.add(expired, balance_minor=10_000, expiry="2610")
    assert bank.run(sale(expired, 100, 1, expiry="2610")).response_code == "54"


def test_three_wrong_pins_lock_the_card_with_75(bank: Bank) -> None:
    codes = [
        bank.run(sale(DEBIT_PAN, 100, n, **_pin(bank, "000000"))).response_code for n in (1, 2, 3)
    ]
    assert codes == ["55", "55", "75"]
    assert bank.pin_tries(DEBIT_PAN) == 3
    # Even the right PIN is refused now, and money never moved.
    assert bank.run(sale(DEBIT_PAN, 100, 4, **_pin(bank))).response_code == "75"
    assert bank.money(DEBIT_PAN)[0] == 100_000


def test_a_right_pin_clears_the_try_counter(bank: Bank) -> None:
    bank.run(sale(DEBIT_PAN, 100, 1, **_pin(bank, "000000")))
    assert bank.pin_tries(DEBIT_PAN) == 1
    assert bank.run(sale(DEBIT_PAN, 100, 2, **_pin(bank))).response_code == "00"
    assert bank.pin_tries(DEBIT_PAN) == 0


def test_per_transaction_and_daily_limits_give_61(bank: Bank) -> None:
    limited = pan("622588000000555")
    bank.add(limited, balance_minor=1_000_000, limits=CardLimits(100_000, 30_000, 50_000))
    assert bank.run(sale(limited, 30_001, 1)).response_code == "61"
    assert bank.run(sale(limited, 30_000, 2)).response_code == "00"
    assert bank.run(sale(limited, 20_001, 3)).response_code == "61"  # 50,001 today
    assert bank.run(sale(limited, 20_000, 4)).response_code == "00"
    assert bank.run(sale(limited, 1, 6)).response_code == "61"
    # A reversed sale no longer counts against the day.
    assert bank.run(reversal(sale(limited, 20_000, 4))).response_code == "00"
    assert bank.run(sale(limited, 20_000, 7)).response_code == "00"
    next_day = NOON + 86_400_000
    assert bank.run(sale(limited, 20_000, 5), now_ms=next_day).response_code == "00"


def test_blocked_and_lost_cards_are_declined(bank: Bank) -> None:
    from cardtally.issuer import CardStatus, find_card, set_status
    from cardtally.storage import transaction
    from cardtally.wire import Pan

    with transaction(bank.engine) as conn:
        set_status(
            conn, find_card(conn, bank.data_keys, Pan(DEBIT_PAN)), CardStatus.LOST, NOON, "t"
        )
    outcome = bank.run(sale(DEBIT_PAN, 100, 1))
    assert outcome.response_code == "05"
    assert "lost" in outcome.reason


def test_balance_inquiry_needs_the_pin_and_reports_available(bank: Bank) -> None:
    bank.run(sale(DEBIT_PAN, 2_345, 1))
    outcome = bank.run(balance_inquiry(DEBIT_PAN, 2, pin=PIN, zpk=bank.keys.zpk))
    assert outcome.response is not None
    assert outcome.response.fields[54] == "1002156C000000097655"
    no_pin = balance_inquiry(DEBIT_PAN, 3, pin=PIN, zpk=bank.keys.zpk).with_fields(
        {52: None, 53: None}
    )
    assert bank.run(no_pin).response_code == "55"


def test_echo_is_answered_without_a_record(bank: Bank) -> None:
    before = bank.snapshot()
    echo = Message("0800", {7: "1121103015", 11: "000001", 32: "48020000", 70: "301"})
    outcome = bank.run(echo)
    assert outcome.response is not None
    assert (outcome.response.mti, outcome.response.response_code) == ("0810", "00")
    assert bank.snapshot() == before
