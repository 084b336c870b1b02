"""The issuer host over real TCP: ``cardtally issuer serve`` in a child process, on SQLite and
PostgreSQL.

Every answer is checked against the money it moved (or did not move), read back from the
database after the answer arrived: durable before visible, seen from outside.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from cardtally.wire import Message, decode_message, encode_frame
from tests.issuer.messages import (
    CREDIT_PAN,
    DEBIT_PAN,
    PIN,
    TERMINAL,
    UNKNOWN_PAN,
    completion,
    pan,
    preauth,
    refund,
    reversal,
    sale,
    void,
)
from tests.issuer.tcp_support import (
    CREDIT,
    DEBIT,
    LIMITED,
    LIMITED_PAN,
    REPLY_TIMEOUT_MS,
    TPDU,
    balances,
    closed_by_peer,
    exchange,
    issue_cards,
    ledger_verify,
    make_home,
    notice_lines,
    pipeline,
    running_issuer,
    show_card,
    signed,
    wait_for_notices,
    zak_of,
    zpk_of,
)
from tests.runtime.logs import count_events

ALL_PANS = (DEBIT_PAN, CREDIT_PAN, LIMITED_PAN)
DEBIT_OPENING = 50_000
CREDIT_LINE = 30_000


def approved(reply: Message, mti: str) -> str:
    """Assert ``reply`` approves with ``mti``; its auth code (empty when it carries none)."""
    assert reply.mti == mti, reply
    assert reply.response_code == "00", reply
    return reply.auth_code or ""


def test_money_paths_over_tcp(db_url: str, tmp_path: Path) -> None:
    home = make_home(tmp_path, db_url, (DEBIT, CREDIT, LIMITED))
    zpk, zak = zpk_of(home), zak_of(home)
    with running_issuer(home) as host, host.connect() as client:
        # A sale: approved, and the money is gone by the time the answer is read.
        first = sale(DEBIT_PAN, 12_345, 1, pin=PIN, zpk=zpk)
        first_raw = client.request(signed(first, zak), REPLY_TIMEOUT_MS)
        first_reply = decode_message(first_raw)
        auth = approved(first_reply, "0210")
        assert len(auth) == 6 and auth.isdigit()
        assert first_reply.stan == "000001" and first_reply.rrn == first.rrn
        shown = show_card(home, DEBIT_PAN)
        assert shown["balance_minor"] == shown["available_minor"] == DEBIT_OPENING - 12_345
        assert DEBIT_PAN not in json.dumps(shown)
        balance = DEBIT_OPENING - 12_345

        # A repeat: the very same answer, byte for byte, and no second debit.
        assert client.request(signed(first, zak), REPLY_TIMEOUT_MS) == first_raw
        assert balances(home, DEBIT_PAN) == (balance, balance)
        # The same key saying something else: refused, nothing moves.
        changed = exchange(client, sale(DEBIT_PAN, 99, 1, pin=PIN, zpk=zpk), zak)
        assert (changed.mti, changed.response_code) == ("0210", "94")
        assert balances(home, DEBIT_PAN) == (balance, balance)

        # Declines: each answered with its code, and no card's money moves.
        before = {card: balances(home, card) for card in ALL_PANS}
        declines = [
            ("14", sale(UNKNOWN_PAN, 100, 2)),
            ("55", sale(DEBIT_PAN, 100, 3, pin="654321", zpk=zpk)),
            ("51", sale(DEBIT_PAN, 90_000, 4)),
            ("51", sale(CREDIT_PAN, CREDIT_LINE + 1, 5)),
            ("61", sale(LIMITED_PAN, 6_000, 6)),
            ("12", sale(DEBIT_PAN, 100, 7, processing_code="990000")),
        ]
        for code, request in declines:
            reply = exchange(client, request, zak)
            assert (reply.mti, reply.response_code) == ("0210", code), (code, reply)
            assert reply.auth_code is None
            assert {card: balances(home, card) for card in ALL_PANS} == before, code

        # Void on the day of the sale: the debit comes back.
        to_void = sale(DEBIT_PAN, 2_000, 8)
        void_auth = approved(exchange(client, to_void, zak), "0210")
        assert balances(home, DEBIT_PAN)[0] == balance - 2_000
        approved(exchange(client, void(DEBIT_PAN, to_void, void_auth, 9), zak), "0210")
        assert balances(home, DEBIT_PAN) == (balance, balance)

        # A partial refund (advice, 0220 -> 0230).
        to_refund = sale(DEBIT_PAN, 3_000, 10)
        approved(exchange(client, to_refund, zak), "0210")
        approved(exchange(client, refund(DEBIT_PAN, to_refund, 1_000, 11), zak), "0230")
        balance -= 2_000
        assert balances(home, DEBIT_PAN) == (balance, balance)

        # Pre-authorisation holds on the credit line; completion takes less than the hold.
        hold_auth = approved(exchange(client, preauth(CREDIT_PAN, 10_000, 12), zak), "0110")
        assert balances(home, CREDIT_PAN) == (0, CREDIT_LINE - 10_000)
        approved(exchange(client, completion(CREDIT_PAN, 8_000, hold_auth, 13), zak), "0210")
        assert balances(home, CREDIT_PAN) == (-8_000, CREDIT_LINE - 8_000)

        # A reversal undoes a sale; its repeat (0401) gets the first answer again.
        reversed_sale = sale(DEBIT_PAN, 4_000, 14)
        approved(exchange(client, reversed_sale, zak), "0210")
        assert balances(home, DEBIT_PAN)[0] == balance - 4_000
        first_reversal = exchange(client, reversal(reversed_sale), zak)
        approved(first_reversal, "0410")
        assert balances(home, DEBIT_PAN) == (balance, balance)
        repeated = exchange(client, reversal(reversed_sale, mti="0401"), zak)
        assert repeated == first_reversal
        assert balances(home, DEBIT_PAN) == (balance, balance)

        # Network management: an echo test is answered and moves nothing.
        echo = Message("0800", {7: "1121103600", 11: "000015", 41: TERMINAL, 60: "00000001003"})
        echoed = exchange(client, echo, zak)
        assert (echoed.mti, echoed.response_code, echoed.stan) == ("0810", "00", "000015")
        # One notice per movement of a cardholder's money (the hold moved none).
        wait_for_notices(home, 8)

    assert ledger_verify(home).returncode == 0
    log, output = host.log(), host.output()
    assert count_events(log, "event=issuer.answer") >= 16
    for card in ALL_PANS:
        assert card not in log
        assert card not in output
    # Each notice exactly once, even after the stop.
    notices = [n for n in notice_lines(home) if n is not None]
    assert len(notices) == len(notice_lines(home))
    assert len({n["id"] for n in notices}) == len(notices)
    debit_tail, credit_tail = DEBIT_PAN[-4:], CREDIT_PAN[-4:]
    assert sorted((n["kind"], n["card_tail"], n["amount"]["minor"]) for n in notices) == sorted(
        [
            ("debit", credit_tail, 8_000),
            ("debit", debit_tail, 2_000),
            ("debit", debit_tail, 3_000),
            ("debit", debit_tail, 4_000),
            ("debit", debit_tail, 12_345),
            ("refund", debit_tail, 1_000),
            ("refund", debit_tail, 2_000),
            ("refund", debit_tail, 4_000),
        ]
    )


def _sales(card: str, first_stan: int, count: int, amount_minor: int, zak: bytes) -> list[bytes]:
    return [signed(sale(card, amount_minor, s), zak) for s in range(first_stan, first_stan + count)]


def _auth_codes(replies: list[bytes], first_stan: int) -> list[str]:
    """Each reply approves the sale whose STAN is in its place; the auth codes, in order."""
    codes = []
    for offset, raw in enumerate(replies):
        reply = decode_message(raw)
        assert reply.stan == f"{first_stan + offset:06d}", reply
        codes.append(approved(reply, "0210"))
    return codes


def test_pipelining_concurrency_and_bad_input(db_url: str, tmp_path: Path) -> None:
    home = make_home(tmp_path, db_url, (DEBIT,))
    # Each concurrent link pays with its own card, as a real terminal population would.
    link_cards = [pan(f"62258810000000{n}") for n in range(4)]
    issue_cards(home, link_cards, DEBIT_OPENING)
    zak = zak_of(home)
    with running_issuer(home) as host:
        # 50 sales written back to back before reading a single answer.
        with host.connect() as client:
            bodies = _sales(DEBIT_PAN, 1, 50, 100, zak)
            for body in bodies:
                client.send(body)
            replies = [client.receive(REPLY_TIMEOUT_MS) for _ in bodies]
        codes = _auth_codes(replies, 1)

        # Four connections at once, each pipelining its own sales.
        per_link, links = 25, len(link_cards)
        results: dict[int, list[bytes]] = {n: [] for n in range(links)}
        errors: list[BaseException] = []

        def run(n: int) -> None:
            try:
                with host.connect() as link:
                    bodies = _sales(link_cards[n], 101 + n * per_link, per_link, 100, zak)
                    pipeline(link, bodies, results[n], window=8)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(links)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a pipelining client hung"
        assert not errors, errors
        for n in range(links):
            codes += _auth_codes(results[n], 101 + n * per_link)
        assert len(codes) == len(set(codes)) == 150
        expected = DEBIT_OPENING - 50 * 100
        assert balances(home, DEBIT_PAN) == (expected, expected)
        for card in link_cards:
            left = DEBIT_OPENING - per_link * 100
            assert balances(home, card) == (left, left)

        with host.connect() as live:
            approved(exchange(live, sale(DEBIT_PAN, 100, 500), zak), "0210")
            # Bytes that are not a frame (an HTTP request) cost that connection only.
            with socket.create_connection(("127.0.0.1", host.port), timeout=5) as garbage:
                garbage.sendall(b"GET / HTTP/1.1\r\nHost: issuer\r\n\r\n")
                assert closed_by_peer(garbage, timeout_s=10)
            # A frame whose message cannot be decoded, but whose MTI can: answered 30.
            live.send(bytes.fromhex("0200") + b"\xff\x00\x01")
            malformed = decode_message(live.receive(REPLY_TIMEOUT_MS))
            assert (malformed.mti, dict(malformed.fields)) == ("0210", {39: "30"})
            # ...and a frame with no MTI worth answering closes its own connection.
            with socket.create_connection(("127.0.0.1", host.port), timeout=5) as hopeless:
                hopeless.sendall(encode_frame(TPDU, b"\x99\x99garbage"))
                assert closed_by_peer(hopeless, timeout_s=10)
            approved(exchange(live, sale(DEBIT_PAN, 100, 501), zak), "0210")
        expected -= 200
        assert balances(home, DEBIT_PAN) == (expected, expected)

    assert ledger_verify(home).returncode == 0
    log = host.log()
    assert count_events(log, "event=frame.rejected") == 1
    assert count_events(log, "event=issuer.malformed") == 2
    assert DEBIT_PAN not in log
