"""A cardholder notice: what the bank's SMS says about one debit or refund."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Final

from cardtally.money import Money, MoneyError
from cardtally.notices._errors import NoticeError

# Fixed +08:00 rather than a zone name: China has had no daylight saving since 1991,
# and a fixed offset needs no tzdata on the host.
CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8), "CST")
SENDER: Final = "[cardtally bank]"

ID_CHARS_MAX = 128
MERCHANT_NAME_CHARS_MAX = 100
REFERENCE_CHARS_MAX = 32
REASON_CHARS_MAX = 40
AT_MS_MAX = 2**63 - 1

# Printable ASCII without spaces: the id travels in an HTTP header (Idempotency-Key)
# and in log lines, where a space or a line break would forge a field.
_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{ID_CHARS_MAX}}}")
_REFERENCE = re.compile(rf"[\x21-\x7e]{{0,{REFERENCE_CHARS_MAX}}}")
_CARD_TAIL = re.compile(r"[0-9]{4}")
_FIELDS: Final = frozenset(
    {
        "id",
        "at_ms",
        "kind",
        "card_tail",
        "merchant_name",
        "amount",
        "available",
        "reference",
        "reason",
    }
)
# Derived from the other fields; receivers' copies carry it, so reading one back accepts it.
_DERIVED: Final = frozenset({"text"})


class NoticeKind(StrEnum):
    """Which way the money moved for the cardholder."""

    DEBIT = "debit"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to the cardholder, keyed by a stable ``id`` chosen by the issuer.

    Receivers deduplicate by ``id``: delivery is at least once.
    """

    id: str
    at_ms: int
    kind: NoticeKind
    card_tail: str
    merchant_name: str
    amount: Money
    available: Money
    reference: str
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise NoticeError(f"kind must be 'debit' or 'refund', not {self.kind!r}")
        try:
            # A plain "debit" is accepted and stored as the enum, so equal notices compare equal.
            object.__setattr__(self, "kind", NoticeKind(self.kind))
        except ValueError:
            raise NoticeError(f"kind must be 'debit' or 'refund', not {self.kind!r}") from None
        _check_text("id", self.id, _TOKEN, "1..128 printable ASCII characters without spaces")
        if not _is_int(self.at_ms) or not 0 <= self.at_ms <= AT_MS_MAX:
            raise NoticeError(f"at_ms must be an int of milliseconds since 1970: {self.at_ms!r}")
        # Four digits and no more: a notice must never be able to carry a card number.
        _check_text("card_tail", self.card_tail, _CARD_TAIL, "exactly 4 digits")
        _check_words("merchant_name", self.merchant_name, MERCHANT_NAME_CHARS_MAX)
        if not isinstance(self.amount, Money) or self.amount.minor <= 0:
            raise NoticeError(f"amount must be a positive Money: {self.amount!r}")
        if not isinstance(self.available, Money):
            raise NoticeError(f"available must be Money: {self.available!r}")
        _check_text("reference", self.reference, _REFERENCE, "0..32 printable ASCII characters")
        _check_words("reason", self.reason, REASON_CHARS_MAX)

    @property
    def text(self) -> str:
        """The notice as the cardholder reads it, in China Standard Time."""
        return render_text(self)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict; :meth:`from_json` reads it back to an equal notice."""
        return {
            "id": self.id,
            "at_ms": self.at_ms,
            "kind": self.kind.value,
            "card_tail": self.card_tail,
            "merchant_name": self.merchant_name,
            "amount": _money_json(self.amount),
            "available": _money_json(self.available),
            "reference": self.reference,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Notice:
        """The notice in ``data``; :class:`NoticeError` names what is missing or wrong."""
        if not isinstance(data, Mapping):
            raise NoticeError(f"a notice must be a JSON object, not {type(data).__name__}")
        missing = sorted(_FIELDS - data.keys())
        unknown = sorted(data.keys() - _FIELDS - _DERIVED)
        if missing or unknown:
            raise NoticeError(f"notice fields: missing {missing}, unknown {unknown}")
        return cls(
            id=_json_str(data, "id"),
            at_ms=_json_int(data, "at_ms"),
            kind=_json_kind(data),
            card_tail=_json_str(data, "card_tail"),
            merchant_name=_json_str(data, "merchant_name"),
            amount=_json_money(data, "amount"),
            available=_json_money(data, "available"),
            reference=_json_str(data, "reference"),
            reason=_json_str(data, "reason"),
        )


# A purchase reads like any bank's debit SMS; other debits (a reversal, a debt) say why.
_PLAIN_DEBITS: Final = frozenset({"sale", "pre-authorisation completion"})


def render_text(notice: Notice, tz: tzinfo = CHINA_STANDARD_TIME) -> str:
    """One line in the manner of a bank SMS, in local time ``tz``, for example::

        [cardtally bank] Card ending 1234: debit CNY 100.00 at LUCKY MART on 2026-11-21 14:32.
        Available balance CNY 900.00. Ref 123456789012.

    (one line; wrapped here). A refund names the merchant with "from" and its reason in
    parentheses: ``refund CNY 100.00 from LUCKY MART (reversal)``; so does a debit that is
    not a purchase: ``debit CNY 100.00 at LUCKY MART (reversal of refund)``.
    """
    # Integer arithmetic from the epoch: no float ever touches the timestamp.
    local = datetime.fromtimestamp(0, tz) + timedelta(milliseconds=notice.at_ms)
    # ISO 8583 field 43 pads name, city and country with spaces; an SMS should not.
    merchant = " ".join(notice.merchant_name.split())
    reason = " ".join(notice.reason.split())
    if notice.kind is NoticeKind.DEBIT:
        what = f"debit {notice.amount}" + (f" at {merchant}" if merchant else "")
        if reason in _PLAIN_DEBITS:
            reason = ""
    else:
        what = f"refund {notice.amount}" + (f" from {merchant}" if merchant else "")
    if reason:
        what += f" ({reason})"
    line = (
        f"{SENDER} Card ending {notice.card_tail}: {what} on {local:%Y-%m-%d %H:%M}. "
        f"Available balance {notice.available}."
    )
    if notice.reference:
        line += f" Ref {notice.reference}."
    return line


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(name: str, value: object, pattern: re.Pattern[str], expected: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise NoticeError(f"{name} must be {expected}: {value!r}")


def _check_words(name: str, value: object, chars_max: int) -> None:
    # The text goes into an SMS and a log line: no control characters, bounded.
    if not isinstance(value, str) or len(value) > chars_max or not value.isprintable():
        raise NoticeError(
            f"{name} must be at most {chars_max} printable characters: {str(value)[:60]!r}"
        )


def _money_json(money: Money) -> dict[str, object]:
    return {"minor": money.minor, "currency": money.currency}


def _json_str(data: Mapping[str, object], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise NoticeError(f"notice field {name} must be a string: {value!r}")
    return value


def _json_int(data: Mapping[str, object], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise NoticeError(f"notice field {name} must be an integer: {value!r}")
    return value


def _json_kind(data: Mapping[str, object]) -> NoticeKind:
    kind = _json_str(data, "kind")
    try:
        return NoticeKind(kind)
    except ValueError:
        raise NoticeError(f"kind must be 'debit' or 'refund', not {kind!r}") from None


def _json_money(data: Mapping[str, object], name: str) -> Money:
    value = data[name]
    if not isinstance(value, Mapping) or set(value.keys()) != {"minor", "currency"}:
        raise NoticeError(f"notice field {name} must be {{'minor': int, 'currency': str}}")
    minor, currency = value["minor"], value["currency"]
    if not isinstance(minor, int) or isinstance(minor, bool) or not isinstance(currency, str):
        raise NoticeError(f"notice field {name} must be {{'minor': int, 'currency': str}}")
    try:
        return Money(minor, currency)
    except MoneyError as exc:
        raise NoticeError(f"notice field {name}: {exc}") from None
