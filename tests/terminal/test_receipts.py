"""The terminal's slips: what they print, that they fit the paper, and what they never print."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardtally.money import Money
from cardtally.terminal._model import (
    Batch,
    BatchState,
    JournalTxn,
    PendingReversal,
    SlipHeader,
    TxnState,
    batch_totals,
)
from cardtally.terminal._receipts import (
    REPRINT_MARK,
    TXN_TYPE_NAMES,
    WIDTH,
    Copy,
    decline_slip,
    detail_list,
    entry_mode_name,
    receipt,
    settlement_slip,
)
from cardtally.wire import BatchTotals, Pan, TxnKind, luhn_check_digit

CLEAR_PAN = "622848001234567" + luhn_check_digit("622848001234567")
PAN = Pan(CLEAR_PAN)
MASKED = "622848******" + CLEAR_PAN[-4:]
HEADER = SlipHeader(
    merchant_name="LUJIAZUI MART",
    merchant_id="898310048161234",
    terminal_id="12345678",
    operator="01",
    currency="156",
)
PRINTED_AT = "2024/05/01 23:00:00"


def make_txn(**changes: object) -> JournalTxn:
    base = JournalTxn(
        id=1,
        batch_no=1,
        stan=123,
        kind=TxnKind.SALE,
        state=TxnState.APPROVED,
        amount_minor=1234,
        currency="156",
        pan=PAN,
        expiry="2812",
        entry_mode="051",
        request={},
        started_at_ms=0,
        response_code="00",
        rrn="412345678901",
        auth_code="654321",
        host_at="2024/05/01 12:34:56",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


SALE = make_txn()
VOID = make_txn(id=2, stan=124, kind=TxnKind.VOID, original_stan=123, rrn="412345678902")
REFUND = make_txn(
    id=3, stan=125, kind=TxnKind.REFUND, amount_minor=500, original_rrn="400000000001"
)
COMPLETION = make_txn(id=4, stan=126, kind=TxnKind.COMPLETION, original_stan=100)
PREAUTH = make_txn(id=5, stan=127, kind=TxnKind.PREAUTH, amount_minor=100_000)
DECLINED = make_txn(
    id=6, stan=128, state=TxnState.DECLINED, response_code="51", rrn=None, auth_code=None
)


def make_batch(result: str | None = "balanced") -> Batch:
    return Batch(batch_no=1, state=BatchState.SETTLED, opened_at_ms=0, result=result)


def make_pending(**changes: object) -> PendingReversal:
    base = PendingReversal(
        id=1, txn_id=9, batch_no=1, stan=131, reason="98", sends=3, flagged=True, created_at_ms=0
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_fits(text: str) -> None:
    too_long = [line for line in lines_of(text) if len(line) > WIDTH]
    assert not too_long, too_long


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "name"),
    [
        ("021", "SWIPED"),
        ("022", "SWIPED"),
        ("051", "CHIP"),
        ("052", "CHIP"),
        ("071", "CONTACTLESS"),
        ("072", "CONTACTLESS"),
        ("012", "MANUAL"),
        ("901", "ENTRY 901"),
        ("", "ENTRY "),
        ("05", "ENTRY 05"),
        ("0511", "ENTRY 0511"),
    ],
)
def test_entry_mode_name(mode: str, name: str) -> None:
    assert entry_mode_name(mode) == name


def test_every_journalled_kind_has_a_type_name() -> None:
    assert TXN_TYPE_NAMES == {
        TxnKind.SALE: "SALE",
        TxnKind.BALANCE: "BALANCE INQUIRY",
        TxnKind.VOID: "VOID",
        TxnKind.REFUND: "REFUND",
        TxnKind.PREAUTH: "PRE-AUTH",
        TxnKind.COMPLETION: "PRE-AUTH COMPLETION",
    }


# --- receipt -------------------------------------------------------------------------------


def test_merchant_copy_of_a_sale() -> None:
    slip = receipt(HEADER, SALE, Copy.MERCHANT)
    lines = lines_of(slip)
    assert lines[0].strip() == "POS SALES SLIP"
    assert lines[1].strip() == "MERCHANT COPY"
    for expected in (
        "MERCHANT NAME: LUJIAZUI MART",
        "MERCHANT NO: 898310048161234",
        f"CARD NO: {MASKED} CHIP",
        "EXP DATE: 28/12",
        "TXN TYPE: SALE",
        "DATE/TIME: 2024/05/01 12:34:56",
        "AMOUNT: CNY 12.34",
        "CARDHOLDER SIGNATURE",
        "_" * WIDTH,
    ):
        assert expected in lines
    text = " ".join(slip.split())
    assert "TERMINAL NO: 12345678 OPERATOR: 01" in text
    assert "BATCH NO: 000001 VOUCHER NO: 000123" in text
    assert "REF NO: 412345678901 AUTH NO: 654321" in text
    assert "I ACKNOWLEDGE SATISFACTORY RECEIPT OF RELATIVE GOODS/SERVICES" in text
    assert "REPRINT" not in slip
    assert_fits(slip)


def test_cardholder_copy_has_no_signature_block() -> None:
    merchant = receipt(HEADER, SALE, Copy.MERCHANT)
    cardholder = receipt(HEADER, SALE, Copy.CARDHOLDER)
    assert "CARDHOLDER COPY" in cardholder
    assert "SIGNATURE" not in cardholder
    assert "ACKNOWLEDGE" not in cardholder
    assert "_" * WIDTH not in cardholder
    # Everything else is the same slip: the cardholder's is the merchant's up to the signature.
    rest = lines_of(cardholder)[2:]
    assert lines_of(merchant)[2 : 2 + len(rest)] == rest


@pytest.mark.parametrize("txn", [SALE, VOID, REFUND, COMPLETION, PREAUTH])
@pytest.mark.parametrize("copy", list(Copy))
def test_a_reprint_differs_only_by_its_reprint_line(txn: JournalTxn, copy: Copy) -> None:
    original = receipt(HEADER, txn, copy)
    reprint = receipt(HEADER, txn, copy, reprint=True)
    marked = [line for line in lines_of(reprint) if line.strip() == REPRINT_MARK]
    assert len(marked) == 1
    assert lines_of(reprint).index(marked[0]) < 3  # near the top
    assert [line for line in lines_of(reprint) if line not in marked] == lines_of(original)


def test_a_void_prints_negative_with_the_original_voucher() -> None:
    lines = lines_of(receipt(HEADER, VOID, Copy.MERCHANT))
    assert "TXN TYPE: VOID" in lines
    assert "AMOUNT: CNY -12.34" in lines
    assert "ORIG VOUCHER: 000123" in lines


def test_a_refund_prints_negative_with_the_original_reference() -> None:
    lines = lines_of(receipt(HEADER, REFUND, Copy.CARDHOLDER))
    assert "TXN TYPE: REFUND" in lines
    assert "AMOUNT: CNY -5.00" in lines
    assert "ORIG REF NO: 400000000001" in lines
    assert not any(line.startswith("ORIG VOUCHER") for line in lines)


def test_a_completion_prints_its_pre_authorisation_voucher() -> None:
    lines = lines_of(receipt(HEADER, COMPLETION, Copy.MERCHANT))
    assert "TXN TYPE: PRE-AUTH COMPLETION" in lines
    assert "AMOUNT: CNY 12.34" in lines
    assert "ORIG VOUCHER: 000100" in lines


def test_a_sale_prints_no_original_and_a_blank_auth_code_when_none() -> None:
    lines = lines_of(receipt(HEADER, make_txn(auth_code=None, expiry=None), Copy.MERCHANT))
    assert not any(line.startswith("ORIG") for line in lines)
    assert not any(line.startswith("EXP DATE") for line in lines)
    assert any(
        line.startswith("REF NO: 412345678901") and line.endswith("AUTH NO:") for line in lines
    )


def test_amounts_use_the_currency_minor_units() -> None:
    yen = make_txn(currency="392", amount_minor=1500)
    assert "AMOUNT: JPY 1500" in lines_of(receipt(HEADER, yen, Copy.MERCHANT))


@pytest.mark.parametrize(
    "state", [TxnState.DECLINED, TxnState.FAILED, TxnState.SENDING, TxnState.NO_ANSWER]
)
def test_only_an_approved_transaction_has_a_receipt(state: TxnState) -> None:
    with pytest.raises(ValueError, match="only an approved transaction"):
        receipt(HEADER, make_txn(state=state), Copy.MERCHANT)


def test_a_long_merchant_name_is_cut_to_the_paper() -> None:
    long_name = "SHANGHAI PUDONG NEW AREA LUJIAZUI 24-HOUR CONVENIENCE STORE NO. 3"
    slip = receipt(dataclasses.replace(HEADER, merchant_name=long_name), SALE, Copy.MERCHANT)
    assert_fits(slip)
    assert long_name[:WIDTH] in lines_of(slip)


def test_a_chinese_merchant_name_is_cut_by_printed_columns() -> None:
    name = "上海浦东新区陆家嘴二十四小时便利店第三分店有限公司"  # 25 wide characters
    lines = lines_of(receipt(dataclasses.replace(HEADER, merchant_name=name), SALE, Copy.MERCHANT))
    assert name[:20] in lines  # 20 characters are 40 columns
    assert name[:21] not in "\n".join(lines)


# --- decline slip --------------------------------------------------------------------------


def test_decline_slip() -> None:
    slip = decline_slip(HEADER, DECLINED)
    lines = lines_of(slip)
    assert lines[0].strip() == "TRANSACTION DECLINED"
    for expected in (
        "MERCHANT NO: 898310048161234",
        f"CARD NO: {MASKED} CHIP",
        "TXN TYPE: SALE",
        "VOUCHER NO: 000128",
        "DATE/TIME: 2024/05/01 12:34:56",
        "AMOUNT: CNY 12.34",
        "RESPONSE CODE: 51",
        "INSUFFICIENT FUNDS",
    ):
        assert expected in lines
    assert "NOT CHARGED" in slip
    assert "NOT A RECEIPT" in slip
    assert "SIGNATURE" not in slip
    assert "POS SALES SLIP" not in slip
    assert_fits(slip)


def test_a_declined_void_says_nothing_was_refunded() -> None:
    void = make_txn(kind=TxnKind.VOID, state=TxnState.DECLINED, response_code="25", host_at=None)
    slip = decline_slip(HEADER, void)
    assert "NOTHING REFUNDED" in slip
    assert "NOT CHARGED" not in slip
    assert "UNABLE TO LOCATE ORIGINAL TRANSACTION" in lines_of(slip)
    assert "DATE/TIME" not in slip
    assert_fits(slip)


def test_an_unknown_response_code_still_fits() -> None:
    slip = decline_slip(HEADER, make_txn(state=TxnState.DECLINED, response_code="Z9"))
    assert "RESPONSE CODE: Z9" in lines_of(slip)
    assert "UNKNOWN RESPONSE CODE 'Z9'" in lines_of(slip)


@pytest.mark.parametrize("state", [TxnState.APPROVED, TxnState.FAILED, TxnState.NO_ANSWER])
def test_only_a_declined_transaction_has_a_decline_slip(state: TxnState) -> None:
    with pytest.raises(ValueError, match="not declined"):
        decline_slip(HEADER, make_txn(state=state))


# --- detail list ---------------------------------------------------------------------------

VOIDED_SALE = make_txn(id=7, stan=122, amount_minor=2000, voided=True)
VOID_OF_IT = make_txn(id=8, stan=129, kind=TxnKind.VOID, amount_minor=2000, original_stan=122)
NOT_LISTED = [
    DECLINED,
    make_txn(id=9, stan=130, state=TxnState.FAILED),
    make_txn(id=10, stan=131, state=TxnState.SENDING),
    make_txn(id=11, stan=132, kind=TxnKind.BALANCE, amount_minor=None, balance_minor=10_000),
    make_txn(id=12, stan=133, kind=TxnKind.BALANCE, state=TxnState.NO_ANSWER, amount_minor=None),
]
BATCH_TXNS = [REFUND, SALE, *NOT_LISTED, VOID_OF_IT, PREAUTH, VOIDED_SALE, COMPLETION]


def totals_row(lines: list[str], label: str) -> tuple[int | None, str]:
    for line in lines:
        match = re.fullmatch(rf"{label}\s+(?:(\d+)\s+)?(CNY -?\d+\.\d\d)", line)
        if match:
            return (int(match[1]) if match[1] else None, match[2])
    raise AssertionError(f"no {label} row in {lines}")


def test_detail_list_lists_approved_money_transactions_by_voucher() -> None:
    slip = detail_list(HEADER, 1, BATCH_TXNS, PRINTED_AT)
    lines = lines_of(slip)
    assert lines[0].strip() == "TRANSACTION DETAIL LIST"
    assert "BATCH NO: 000001" in lines
    assert f"PRINTED: {PRINTED_AT}" in lines
    vouchers = [line[:6] for line in lines if re.match(rf"\d{{6}} \S+ +{re.escape(MASKED)}$", line)]
    assert vouchers == ["000122", "000123", "000125", "000126", "000127", "000129"]
    for skipped in NOT_LISTED:
        assert skipped.voucher not in slip
    assert "BALANCE" not in slip
    assert_fits(slip)


def test_detail_list_rows_show_type_amount_and_marks() -> None:
    lines = lines_of(detail_list(HEADER, 1, BATCH_TXNS, PRINTED_AT))

    def row(voucher: str) -> tuple[str, str]:
        at = next(i for i, line in enumerate(lines) if line.startswith(voucher + " "))
        return lines[at], lines[at + 1]

    assert row("000122")[0].split()[1] == "SALE"
    assert row("000122")[1].split() == ["VOIDED", "CNY", "20.00"]
    assert row("000123")[1].split() == ["CNY", "12.34"]
    assert row("000125")[0].split()[1] == "REFUND"
    assert row("000125")[1].split() == ["CNY", "-5.00"]
    assert row("000126")[0].split()[1] == "COMPLETE"
    assert row("000127")[0].split()[1] == "PREAUTH"
    assert "HOLD, NOT IN TOTALS" in row("000127")[1]
    assert row("000129")[0].split()[1] == "VOID"
    assert row("000129")[1].split() == ["CNY", "-20.00"]


def test_detail_list_totals_are_the_batch_totals() -> None:
    lines = lines_of(detail_list(HEADER, 1, BATCH_TXNS, PRINTED_AT))
    totals = batch_totals(BATCH_TXNS)
    # sale 12.34 + voided sale 20.00 + completion 12.34; void 20.00 + refund 5.00
    assert totals == BatchTotals(4468, 3, 2500, 2)
    assert totals_row(lines, "DEBITS") == (3, str(Money(4468)))
    assert totals_row(lines, "CREDITS") == (2, str(Money(-2500)))
    assert totals_row(lines, "NET") == (None, str(Money(1968)))


@pytest.mark.parametrize("txns", [[], NOT_LISTED])
def test_an_empty_detail_list(txns: list[JournalTxn]) -> None:
    lines = lines_of(detail_list(HEADER, 7, txns, PRINTED_AT))
    assert "NO TRANSACTIONS" in [line.strip() for line in lines]
    assert "BATCH NO: 000007" in lines
    assert totals_row(lines, "DEBITS") == (0, "CNY 0.00")
    assert totals_row(lines, "CREDITS") == (0, "CNY 0.00")


# --- settlement slip -----------------------------------------------------------------------

OUR_TOTALS = BatchTotals(4468, 3, 2500, 2)


def settle(**changes: object) -> str:
    arguments: dict[str, object] = {
        "batch": make_batch(),
        "totals": OUR_TOTALS,
        "uploaded": 0,
        "pending": None,
        "printed_at": PRINTED_AT,
    }
    arguments.update(changes)
    slip = settlement_slip(HEADER, **arguments)  # type: ignore[arg-type]
    assert_fits(slip)
    return slip


def test_a_balanced_settlement() -> None:
    lines = lines_of(settle())
    stripped = [line.strip() for line in lines]
    assert stripped[0] == "SETTLEMENT"
    assert "BATCH NO: 000001" in lines
    assert f"DATE/TIME: {PRINTED_AT}" in lines
    assert "BALANCED" in stripped
    assert "TERMINAL TOTALS" in lines
    assert totals_row(lines, "DEBITS") == (3, "CNY 44.68")
    assert totals_row(lines, "CREDITS") == (2, "CNY -25.00")
    assert "HOST TOTALS" not in "\n".join(lines)
    assert "REVERSAL" not in "\n".join(lines)
    assert stripped[-1] == "BATCH 000001 CLOSED"


def test_an_unbalanced_settlement_shows_the_upload_and_our_totals() -> None:
    slip = settle(batch=make_batch("not_balanced"), uploaded=5)
    text = " ".join(slip.split())
    assert "NOT BALANCED - BATCH UPLOADED (5 RECORDS)" in text
    lines = lines_of(slip)
    assert totals_row(lines, "DEBITS") == (3, "CNY 44.68")
    assert totals_row(lines, "CREDITS") == (2, "CNY -25.00")


def test_a_pending_reversal_is_printed_in_its_own_block() -> None:
    slip = settle(pending=make_pending())
    lines = lines_of(slip)
    assert "*** REVERSAL PENDING ***" in [line.strip() for line in lines]
    block = lines[lines.index("*" * WIDTH) :]
    assert block.count("*" * WIDTH) == 2
    text = "\n".join(block)
    assert "VOUCHER NO: 000131" in text
    assert "REASON: 98 ISSUER TIMEOUT / NO RESPONSE" in block
    assert "SENDS: 3" in block
    assert "FLAGGED: CONTACT ACQUIRER" in block
    assert lines[-1].strip() == "BATCH 000001 CLOSED"


def test_an_unflagged_pending_reversal_is_not_flagged() -> None:
    slip = settle(pending=make_pending(flagged=False, sends=1, reason="A0"))
    assert "REVERSAL PENDING" in slip
    assert "REASON: A0 MAC ERROR, SIGN ON AGAIN" in lines_of(slip)
    assert "FLAGGED" not in slip


def test_a_cleared_reversal_is_not_printed() -> None:
    cleared = make_pending(cleared_at_ms=5, cleared_code="00")
    assert "REVERSAL" not in settle(pending=cleared)


# --- every slip ----------------------------------------------------------------------------

SLIPS: list[tuple[str, Callable[[SlipHeader], str]]] = [
    *(
        (f"receipt-{t.kind}-{c}", lambda h, t=t, c=c: receipt(h, t, c))
        for t in (SALE, VOID, REFUND, COMPLETION, PREAUTH)
        for c in Copy
    ),
    ("reprint", lambda h: receipt(h, SALE, Copy.MERCHANT, reprint=True)),
    ("decline", lambda h: decline_slip(h, DECLINED)),
    ("detail", lambda h: detail_list(h, 1, BATCH_TXNS, PRINTED_AT)),
    (
        "settlement",
        lambda h: settlement_slip(
            h,
            make_batch("not_balanced"),
            OUR_TOTALS,
            uploaded=999_999,
            pending=make_pending(),
            printed_at=PRINTED_AT,
        ),
    ),
]


@pytest.mark.parametrize(("name", "make"), SLIPS, ids=[name for name, _ in SLIPS])
def test_every_slip_fits_and_never_prints_the_card_number(
    name: str, make: Callable[[SlipHeader], str]
) -> None:
    slip = make(HEADER)
    assert_fits(slip)
    assert CLEAR_PAN not in slip
    assert CLEAR_PAN[6:12] not in slip  # not even the hidden middle digits
    assert not any(line != line.rstrip() for line in lines_of(slip))
    if name != "settlement":
        assert MASKED in slip


@given(
    name=st.text(max_size=90),
    operator=st.text(max_size=50),
    terminal_id=st.text(max_size=50),
)
def test_any_header_fits_the_paper(name: str, operator: str, terminal_id: str) -> None:
    header = dataclasses.replace(
        HEADER, merchant_name=name, operator=operator, terminal_id=terminal_id
    )
    for _, make in SLIPS:
        assert_fits(make(header))


@given(
    amount=st.integers(min_value=0, max_value=999_999_999_999),
    entry_mode=st.text(max_size=40),
    rrn=st.text(max_size=40),
)
def test_any_amount_and_reference_fits_the_paper(amount: int, entry_mode: str, rrn: str) -> None:
    txn = make_txn(kind=TxnKind.REFUND, amount_minor=amount, entry_mode=entry_mode, rrn=rrn)
    assert_fits(receipt(HEADER, txn, Copy.MERCHANT))
    assert_fits(detail_list(HEADER, 1, [txn], PRINTED_AT))
    assert f"AMOUNT: {Money(-amount)}" in receipt(HEADER, txn, Copy.CARDHOLDER)
