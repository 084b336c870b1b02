"""A switch in one process for core tests: registry, core, store, and a terminal that signs."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from sqlalchemy.engine import Engine

from cardtally.security import (
    DataKeys,
    MacAlgorithm,
    WorkingKeys,
    decode_signon_keys,
    generate_master_key,
)
from cardtally.storage import transaction
from cardtally.switch import SqlSwitchStore, SwitchCore, SwitchIdentity, SwitchPolicy
from cardtally.switch._database import open_switch_database
from cardtally.switch._registry import add_issuer_link, add_merchant, add_terminal
from cardtally.terminal import Card, TerminalIdentity, sign, sign_on
from cardtally.wire import Message, Pan, decode_message, luhn_check_digit

T = TypeVar("T")

ACQUIRER: Final = "48020000"
MERCHANT: Final = "898310048160001"
TERMINAL: Final = "10300001"
OTHER_TERMINAL: Final = "10300002"
LINK: Final = "issuer_a"
TIMEOUT_MS: Final = 2000
NOW_MS: Final = 1_795_000_000_000  # a fixed instant in 2026


def pan(prefix: str) -> Pan:
    body = prefix.ljust(15, "0")
    return Pan(body + luhn_check_digit(body))


CARD: Final = Card(pan("622588000000001"), expiry="2812")
NO_ROUTE_CARD: Final = Card(pan("999999000000001"))


@dataclass
class Device:
    """A terminal as the tests drive it: identity, master key, keys after sign-on, STAN."""

    who: TerminalIdentity
    master_key: bytes
    algorithm: MacAlgorithm = MacAlgorithm.X9_19
    keys: WorkingKeys | None = None
    stan: int = 0
    batch_no: int = 1

    def next_stan(self) -> int:
        self.stan += 1
        return self.stan

    def raw(self, message: Message) -> bytes:
        return sign(message, self.algorithm, self.keys)


@dataclass
class SwitchRig:
    engine: Engine
    core: SwitchCore
    data_keys: DataKeys
    zpk: bytes
    devices: dict[str, Device] = field(default_factory=dict)
    #: The zone MAC key the core signs and checks the issuer link with (None: no link MAC).
    zak: bytes | None = None

    def run(self, fn: Callable[[SqlSwitchStore], T]) -> T:
        with transaction(self.engine) as conn:
            return fn(SqlSwitchStore(conn, self.data_keys))

    def terminal(self, raw: bytes, now_ms: int = NOW_MS):  # type: ignore[no-untyped-def]
        return self.run(lambda store: self.core.terminal_request(raw, now_ms, store))

    def issuer(self, raw: bytes, now_ms: int = NOW_MS):  # type: ignore[no-untyped-def]
        return self.run(lambda store: self.core.issuer_message(raw, now_ms, store))

    def sign_on(self, device: Device) -> Message:
        answer = self.terminal(device.raw(sign_on(device.who, device.next_stan(), 1)))
        response = decode_message(answer.body)
        device.keys = decode_signon_keys(device.master_key, bytes.fromhex(response.fields[62]))
        device.batch_no = int(response.fields[60][2:8])
        return response


def build_rig(url: str, *, mac_required: bool = True, zak: bytes | None = None) -> SwitchRig:
    """A switch on ``url``; with ``zak``, its issuer link is MACed under that zone MAC key."""
    engine = open_switch_database(url, NOW_MS)
    data_keys = DataKeys(secrets.token_bytes(32), secrets.token_bytes(32))
    zpk = generate_master_key()
    core = SwitchCore(
        zpk,
        SwitchPolicy(SwitchIdentity(ACQUIRER, ACQUIRER, "156"), advice_backoff_min_ms=1000),
        zak,
    )
    rig = SwitchRig(engine, core, data_keys, zpk, zak=zak)
    with transaction(engine) as conn:
        add_merchant(conn, merchant_id=MERCHANT, name="COFFEE SHOP", mcc="5812", at_ms=NOW_MS)
        add_issuer_link(
            conn,
            link_id=LINK,
            host="127.0.0.1",
            port=9583,
            timeout_ms=TIMEOUT_MS,
            bins=["622588"],
            at_ms=NOW_MS,
        )
        for tid in (TERMINAL, OTHER_TERMINAL):
            _, tmk = add_terminal(
                conn,
                data_keys,
                terminal_id=tid,
                merchant_id=MERCHANT,
                mac_required=mac_required,
                at_ms=NOW_MS,
            )
            rig.devices[tid] = Device(TerminalIdentity(tid, MERCHANT), tmk)
    return rig


def issuer_answer(forwarded: bytes, code: str, *, zak: bytes | None = None, **extra: str) -> bytes:
    """The issuer's answer to a forwarded request, echoing what the link rules say.

    Signed (X9.19, as the issuer signs) under ``zak`` when given, else unsigned.
    """
    from cardtally.security import sign_message
    from cardtally.wire import encode_message

    request = decode_message(forwarded)
    echoed = {n: v for n, v in request.fields.items() if n in (3, 4, 7, 11, 32, 37, 41, 42, 49)}
    fields = echoed | {39: code} | {int(k[1:]): v for k, v in extra.items()}
    answer = Message(request.mti[:2] + str(int(request.mti[2]) + 1) + "0", fields)
    if zak is None:
        return encode_message(answer)
    return sign_message(answer, MacAlgorithm.X9_19, zak)


# -- helpers for the core tests (tests/switch/test_core_*.py) ----------------------------------

#: The switch's own tables that a request can write to (the registry aside).
LOG_TABLES: Final = (
    "switch_request",
    "switch_response",
    "switch_txn",
    "switch_advice",
    "switch_batch",
    "switch_upload",
)


def decoded(body: bytes | None) -> Message:
    """An answer's, forward's or advice's bytes, decoded (they must be there)."""
    assert body is not None, "expected bytes to decode"
    return decode_message(body)


def mac_ok(device: Device, body: bytes) -> bool:
    """Whether ``body`` carries a MAC that verifies under ``device``'s current MAC key."""
    from cardtally.security import message_mac_ok

    assert device.keys is not None, "the device has not signed on"
    return message_mac_ok(body, decode_message(body), device.algorithm, device.keys.mac_key)


def snapshot(rig: SwitchRig) -> dict[str, object]:
    """Row counts of the log tables and each terminal's batch: what "nothing changed" compares."""
    import sqlalchemy as sa

    with transaction(rig.engine) as conn:
        counts: dict[str, object] = {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in LOG_TABLES
        }
        rows = conn.execute(
            sa.text("SELECT terminal_id, batch_no FROM switch_terminal ORDER BY terminal_id")
        )
        counts["batches"] = [tuple(row) for row in rows]
    return counts


def uploads(rig: SwitchRig, terminal_id: str, batch_no: int) -> list[dict[str, object]]:
    """The batch-upload records the switch holds for a terminal's batch, by STAN."""
    import sqlalchemy as sa

    with transaction(rig.engine) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT stan, rrn, amount_minor, processing_code, difference FROM switch_upload"
                " WHERE terminal_id = :tid AND batch_no = :batch ORDER BY stan"
            ),
            {"tid": terminal_id, "batch": batch_no},
        ).mappings()
        return [dict(row) for row in rows]


def txn_ids(rig: SwitchRig) -> list[int]:
    """Every transaction the switch logged, oldest first."""
    import sqlalchemy as sa

    with transaction(rig.engine) as conn:
        return [
            int(n) for n in conn.execute(sa.text("SELECT id FROM switch_txn ORDER BY id")).scalars()
        ]


def upload_record(
    who: TerminalIdentity, batch_no: int, *, pan: Pan, txn: Message, answer: Message
) -> Message:
    """A 0320 batch-upload record of one transaction (wire profile 6.8): its own 3/4/11/37/38."""
    from cardtally.wire import pad_merchant_id, pad_terminal_id

    fields = {
        2: pan.reveal(),
        3: txn.fields[3],
        4: txn.fields[4],
        11: txn.fields[11],
        12: answer.fields.get(12, "120000"),
        13: answer.fields.get(13, "0101"),
        37: answer.fields[37],
        38: answer.fields.get(38, "000000"),
        41: pad_terminal_id(who.terminal_id),
        42: pad_merchant_id(who.merchant_id),
        49: who.currency,
        60: f"00{batch_no:06d}202",
    }
    return Message("0320", fields)


def upload_closing(who: TerminalIdentity, stan: int, batch_no: int, count: int) -> Message:
    """The 0320 that closes a batch upload: the record count in 48 (wire profile 6.8)."""
    from cardtally.wire import pad_merchant_id, pad_terminal_id

    fields = {
        11: f"{stan:06d}",
        41: pad_terminal_id(who.terminal_id),
        42: pad_merchant_id(who.merchant_id),
        48: f"{count:04d}",
        60: f"00{batch_no:06d}207",
    }
    return Message("0320", fields)
