"""SIGKILL the issuer host in the middle of a pipelined stream of sales, then restart it.

Durable before visible, checked from outside: every sale whose approval reached the client is
in the ledger exactly once after the crash, and resending every request (answered, lost in
flight, or never sent) debits each sale once and answers the answered ones as before.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from cardtally.config import load_config, resolve_database_url
from cardtally.issuer import request_key
from cardtally.issuer._schema import txn_table
from cardtally.ledger import ledger_transfer_table
from cardtally.runtime import LinkClosedError
from cardtally.storage import open_engine, transaction
from cardtally.wire import Message, decode_message
from tests.issuer.messages import pan, sale
from tests.issuer.tcp_support import (
    balances,
    issue_cards,
    ledger_verify,
    make_home,
    notice_lines,
    pipeline,
    running_issuer,
    signed,
    wait_for_notices,
    zak_of,
)

SALES: Final = 360
#: Kill once this many answers are in; the window keeps more in flight at that moment.
KILL_AFTER: Final = 150
WINDOW: Final = 16
OPENING_MINOR: Final = 1_000_000
#: Spread over several cards: the daily-limit check reads each card's sales of the day.
CARDS: Final = tuple(pan(f"62258820000000{n}") for n in range(6))
WAIT_S: Final = 60.0


def _requests() -> list[Message]:
    """Distinct STANs, small distinct-ish amounts, cards in turn; no PIN (below the limit)."""
    return [
        sale(CARDS[n % len(CARDS)], 100 + n % 41, n + 1, transmitted="1121120000")
        for n in range(SALES)
    ]


def _ledger_sales(home: Path) -> dict[str, tuple[str, int, int]]:
    """Every sale the issuer recorded: key -> (response code, amount, ledger transfers by key)."""
    engine = open_engine(resolve_database_url(home, load_config(home).issuer.database))
    try:
        with transaction(engine) as conn:
            txns = conn.execute(
                sa.select(
                    txn_table.c.id, txn_table.c.response_code, txn_table.c.amount_minor
                ).where(txn_table.c.kind == "sale")
            ).all()
            moved: dict[str, int] = {}
            for transfer_id, amount in conn.execute(
                sa.select(ledger_transfer_table.c.id, ledger_transfer_table.c.amount_minor)
            ):
                moved[transfer_id] = moved.get(transfer_id, 0) + 1
                assert amount > 0
    finally:
        engine.dispose()
    return {key: (code, amount, moved.get(key, 0)) for key, code, amount in txns}


def _expected_balances(requests: list[Message], keys: set[str]) -> dict[str, int]:
    """What each card holds if exactly the sales with ``keys`` were debited, once each."""
    left = dict.fromkeys(CARDS, OPENING_MINOR)
    for request in requests:
        if request_key(request) in keys:
            left[request.fields[2]] -= int(request.fields[4])
    return left


def _check_answers(requests: list[Message], replies: list[bytes]) -> None:
    for request, raw in zip(requests, replies, strict=False):
        reply = decode_message(raw)
        assert (reply.mti, reply.stan, reply.response_code) == ("0210", request.stan, "00")
        assert reply.auth_code and len(reply.auth_code) == 6


def test_kill_mid_stream_then_resend_everything(db_url: str, tmp_path: Path) -> None:
    home = make_home(tmp_path, db_url, cards=())
    issue_cards(home, CARDS, OPENING_MINOR)
    requests = _requests()
    zak = zak_of(home)
    bodies = [signed(r, zak) for r in requests]
    keys = [request_key(r) for r in requests]
    assert len(set(keys)) == SALES

    # --- stream, and kill the host while answers are still coming -------------------------
    answered: list[bytes] = []
    ended: list[BaseException] = []
    with running_issuer(home) as host:

        def stream() -> None:
            try:
                with host.connect() as client:
                    pipeline(client, bodies, answered, window=WINDOW)
            except (LinkClosedError, OSError) as exc:  # the kill, seen from the client
                ended.append(exc)

        client_thread = threading.Thread(target=stream, name="sales-stream")
        client_thread.start()
        deadline = time.monotonic() + WAIT_S
        while len(answered) < KILL_AFTER and time.monotonic() < deadline:
            assert client_thread.is_alive() or len(answered) >= KILL_AFTER, ended
            time.sleep(0.002)
        assert len(answered) >= KILL_AFTER, f"only {len(answered)} answers in {WAIT_S} s"
        host.kill()
        client_thread.join(timeout=WAIT_S)
        assert not client_thread.is_alive(), "the client did not notice the kill"
    assert len(ended) == 1, "the stream finished before the kill: nothing was in flight"
    assert KILL_AFTER <= len(answered) < SALES
    _check_answers(requests, answered)

    # --- after the crash: every answered sale is in the ledger exactly once ----------------
    with running_issuer(home) as host:
        recorded = _ledger_sales(home)
        for key in keys[: len(answered)]:
            assert recorded.get(key) is not None, f"answered sale {key} lost in the crash"
            code, _amount, transfers = recorded[key]
            assert (code, transfers) == ("00", 1), key
        # Some sales after the last answer may have committed too (their answer was lost);
        # whatever the ledger holds, the balances are exactly those debits, once each.
        committed = {key for key, (code, _a, n) in recorded.items() if code == "00" and n == 1}
        assert set(recorded) == committed
        assert committed <= set(keys)
        expected = _expected_balances(requests, committed)
        for card in CARDS:
            assert balances(home, card) == (expected[card], expected[card])

        # --- resend everything: answered, in flight, never sent -----------------------------
        again: list[bytes] = []
        with host.connect() as client:
            pipeline(client, bodies, again, window=WINDOW)
        assert again[: len(answered)] == answered, "an answered sale was answered differently"
        _check_answers(requests, again)
        auth_codes = [
            (r.fields[2], decode_message(raw).auth_code)
            for r, raw in zip(requests, again, strict=True)
        ]
        assert len(set(auth_codes)) == SALES

        final = _ledger_sales(home)
        assert set(final) == set(keys)
        assert all(entry[0] == "00" and entry[2] == 1 for entry in final.values())
        expected = _expected_balances(requests, set(keys))
        for card in CARDS:
            assert balances(home, card) == (expected[card], expected[card])
        assert sum(OPENING_MINOR - v for v in expected.values()) == sum(
            int(r.fields[4]) for r in requests
        )
        wait_for_notices(home, SALES)

    result = ledger_verify(home)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every sale's notice reached the file, across the crash: at least once, none dropped
    # (a line the kill tore is followed by the same notice delivered again whole).
    delivered = notice_lines(home)
    assert delivered.count(None) <= 1, "more than one torn line"
    assert {str(n["id"]) for n in delivered if n is not None} == {f"notice:{k}" for k in keys}
    assert all(n["kind"] == "debit" for n in delivered if n is not None)
