"""The issuer under group commit: one transaction per batch, a savepoint per request."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import Connection, Engine

from cardtally.issuer import IssuerService, Outcome
from cardtally.runtime import Counters, Request
from cardtally.storage import _group_commit as group_commit
from cardtally.wire import Message, decode_message, encode_message
from tests.issuer.bank import NOON, Bank
from tests.issuer.messages import DEBIT_PAN, sale


def _service(bank: Bank, counters: Counters, woken: list[int]) -> IssuerService:
    return IssuerService(
        bank.engine,
        bank.core,
        counters=counters,
        logger=logging.getLogger("test.issuer"),
        clock_ms=lambda: NOON,
        notices_written=lambda: woken.append(1),
    )


def _request(body: bytes) -> Request:
    return Request(connection_id=1, peer="127.0.0.1:1", body=body, received_at_ms=NOON)


def test_a_batch_is_answered_in_order_after_one_commit(bank: Bank) -> None:
    counters, woken = Counters(), []
    service = _service(bank, counters, woken)
    bodies = [encode_message(sale(DEBIT_PAN, 1_000, stan)) for stan in (1, 2, 3)]
    replies = service.handle_batch([_request(b) for b in bodies])
    answers = [decode_message(r.body or b"") for r in replies]
    assert [a.stan for a in answers] == ["000001", "000002", "000003"]
    assert {a.response_code for a in answers} == {"00"}
    assert bank.money(DEBIT_PAN)[0] == 97_000
    assert woken == [1]
    assert counters.get("approved", "sale") == 3


def test_bad_bytes_get_30_or_a_closed_connection_and_change_nothing(bank: Bank) -> None:
    service = _service(bank, Counters(), [])
    before = bank.snapshot()
    good = encode_message(sale(DEBIT_PAN, 1_000, 1))
    truncated, garbage = good[:20], b"\xff\xfe\x00\x01"
    replies = service.handle_batch([_request(truncated), _request(garbage)])
    assert decode_message(replies[0].body or b"").fields == {39: "30"}
    assert replies[1].body is None and replies[1].close
    assert bank.snapshot() == before


def test_a_request_that_fails_is_undone_alone_and_answered_96(
    bank: Bank, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = bank.core.handle

    def flaky(message: Message, now_ms: int, store: object, raw: bytes | None = None) -> Outcome:
        outcome = real(message, now_ms, store, raw)  # type: ignore[arg-type]
        if message.stan == "000002":
            raise RuntimeError("disk on fire")  # after the core wrote its postings
        return outcome

    monkeypatch.setattr(bank.core, "handle", flaky)
    service = _service(bank, Counters(), [])
    bodies = [encode_message(sale(DEBIT_PAN, 1_000, stan)) for stan in (1, 2, 3)]
    replies = service.handle_batch([_request(b) for b in bodies])
    codes = [decode_message(r.body or b"").response_code for r in replies]
    assert codes == ["00", "96", "00"]
    # Only the two answered 00 were debited: the failed one's postings rolled back.
    assert bank.money(DEBIT_PAN)[0] == 98_000
    assert len(bank.notices()) == 2
    assert DEBIT_PAN not in caplog.text


def test_nothing_is_answered_when_the_commit_fails(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = group_commit.transaction

    @contextmanager
    def commit_fails(engine: Engine) -> Iterator[Connection]:
        with real(engine) as conn:
            yield conn
            raise OSError("disk full at commit")

    # The batch's transaction is opened by the shared group-commit mechanism.
    monkeypatch.setattr(group_commit, "transaction", commit_fails)
    service = _service(bank, Counters(), [])
    with pytest.raises(OSError, match="disk full"):
        service.handle_batch([_request(encode_message(sale(DEBIT_PAN, 1_000, 1)))])
    # The runtime closes the batch's connections unanswered; nothing was kept.
    assert bank.money(DEBIT_PAN)[0] == 100_000
    assert bank.notices() == []
