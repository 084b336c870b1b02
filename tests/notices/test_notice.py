"""Notice: validated on construction, JSON both ways, rendered like a bank SMS."""

from __future__ import annotations

from datetime import UTC

import pytest

from cardtally.money import Money
from cardtally.notices import Notice, NoticeError, NoticeKind, render_text
from tests.notices.support import AT_MS, make_notice


def test_debit_text() -> None:
    assert make_notice().text == (
        "[cardtally bank] Card ending 1234: debit CNY 100.00 at LUCKY MART on 2026-11-21 14:32. "
        "Available balance CNY 900.00. Ref 123456789012."
    )


def test_refund_text_names_the_reason() -> None:
    refund = make_notice(kind=NoticeKind.REFUND, available=Money(100_000), reason="reversal")
    assert render_text(refund) == (
        "[cardtally bank] Card ending 1234: refund CNY 100.00 from LUCKY MART (reversal) "
        "on 2026-11-21 14:32. Available balance CNY 1000.00. Ref 123456789012."
    )


def test_text_without_reference_merchant_or_reason() -> None:
    bare = make_notice(kind="refund", merchant_name="", reference="", reason="")
    assert bare.text == (
        "[cardtally bank] Card ending 1234: refund CNY 100.00 on 2026-11-21 14:32. "
        "Available balance CNY 900.00."
    )


def test_text_tidies_a_padded_field_43_and_takes_a_time_zone() -> None:
    padded = make_notice(merchant_name="LUCKY MART               SHANGHAI     CN")
    text = render_text(padded, tz=UTC)
    assert "at LUCKY MART SHANGHAI CN on 2026-11-21 06:32." in text


def test_text_in_a_currency_without_decimals_and_a_negative_balance() -> None:
    yen = make_notice(amount=Money(500, "392"), available=Money(-20, "392"))
    assert "debit JPY 500 at" in yen.text
    assert "Available balance JPY -20." in yen.text


def test_minutes_are_truncated_not_rounded() -> None:
    assert "on 2026-11-21 14:32." in make_notice(at_ms=AT_MS + 59_999).text


def test_json_round_trip_and_plain_kind_string() -> None:
    notice = make_notice(kind="refund")
    assert notice.kind is NoticeKind.REFUND
    data = notice.to_json()
    assert data == {
        "id": "N1",
        "at_ms": AT_MS,
        "kind": "refund",
        "card_tail": "1234",
        "merchant_name": "LUCKY MART",
        "amount": {"minor": 10_000, "currency": "156"},
        "available": {"minor": 90_000, "currency": "156"},
        "reference": "123456789012",
        "reason": "sale",
    }
    assert Notice.from_json(data) == notice
    # What sinks send carries the text as well; reading it back ignores it.
    assert Notice.from_json({**data, "text": notice.text}) == notice


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"card_tail": "123"}, "card_tail must be exactly 4 digits"),
        ({"card_tail": "6222021234567890"}, "card_tail must be exactly 4 digits"),
        ({"card_tail": "12a4"}, "card_tail"),
        ({"id": ""}, "id must be"),
        ({"id": "N 1"}, "id must be"),
        ({"id": "N1\r\nX-Evil: 1"}, "id must be"),
        ({"id": "x" * 129}, "id must be"),
        ({"kind": "credit"}, "kind must be 'debit' or 'refund'"),
        ({"kind": 1}, "kind must be"),
        ({"at_ms": -1}, "at_ms"),
        ({"at_ms": True}, "at_ms"),
        ({"amount": Money(0)}, "amount must be a positive Money"),
        ({"amount": 100}, "amount must be a positive Money"),
        ({"available": 1}, "available must be Money"),
        ({"merchant_name": "SHOP\nLINE"}, "merchant_name"),
        ({"merchant_name": "M" * 101}, "merchant_name"),
        ({"reference": "has space"}, "reference"),
        ({"reason": "r" * 41}, "reason"),
    ],
)
def test_refused_notices(changes: dict[str, object], message: str) -> None:
    with pytest.raises(NoticeError, match=message):
        make_notice(**changes)


def test_a_notice_is_a_value_error_to_callers_that_catch_those() -> None:
    with pytest.raises(ValueError, match="card_tail"):
        make_notice(card_tail="")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"card_tail": None}, "missing \\['card_tail'\\]"),
        ({"extra": 1}, "unknown \\['extra'\\]"),
        ({"at_ms": "1"}, "at_ms must be an integer"),
        ({"at_ms": 1.5}, "at_ms must be an integer"),
        ({"reason": 7}, "reason must be a string"),
        ({"kind": "credit"}, "kind must be"),
        ({"amount": {"minor": 1.0, "currency": "156"}}, "amount must be"),
        ({"amount": {"minor": 1}}, "amount must be"),
        ({"available": {"minor": 1, "currency": "999"}}, "unknown ISO 4217"),
    ],
)
def test_from_json_names_what_is_wrong(change: dict[str, object], message: str) -> None:
    data = make_notice().to_json()
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(NoticeError, match=message):
        Notice.from_json(data)
