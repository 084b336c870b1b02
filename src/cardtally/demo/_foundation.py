"""The foundation walk-through: every floor-level piece, used for real, over loopback TCP.

This is what ``cardtally demo`` runs until the payment network (issuer, switch,
terminal) exists. It does not pretend to be that network: a *key host* that
speaks the wire profile answers a *test terminal* over a real TCP socket on
127.0.0.1, and each step checks one promise of the floor:

- sign-on delivers working keys under the terminal master key, with check values;
- a sale carries an ISO 9564 PIN block and a MAC that the host verifies, and
  the answer carries a MAC that the terminal verifies and matches to its request;
- a wrong PIN is declined (55); a bit flipped in transit is caught by the MAC (A0);
- garbage is refused with the field and byte offset, and the link is closed;
- the database is migrated, its event log refuses updates, and card numbers
  never appear in clear in it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from cardtally.money import Money
from cardtally.security import (
    DataKeys,
    MacAlgorithm,
    PinVerification,
    WorkingKeys,
    create_data_keys,
    data_keys_path,
    decode_signon_keys,
    decrypt_pin_block,
    encode_signon_keys,
    encrypt_pin_block,
    generate_master_key,
    generate_working_keys,
    load_data_keys,
    make_pin_verification,
    message_mac_ok,
    pan_fingerprint,
    sign_message,
    verify_pin,
)
from cardtally.storage import (
    append_event,
    events,
    is_up_to_date,
    migrate,
    open_engine,
    sqlite_url,
    transaction,
)
from cardtally.wire import (
    DecodeError,
    Frame,
    FrameDecoder,
    Message,
    Pan,
    PanError,
    Tpdu,
    decode_frame,
    encode_frame,
    encode_message,
    luhn_check_digit,
    pad_merchant_id,
    pad_terminal_id,
    response_mti,
)

TERMINAL_ID: Final = "T0000001"
MERCHANT_ID: Final = "898310048990001"
CARD_PIN: Final = "123456"
EXCHANGE_TIMEOUT_S: Final = 5.0
MAC_ALGORITHM: Final = MacAlgorithm.CUP_ECB


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    shown: str
    ok: bool


@dataclass
class DemoResult:
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _demo_pan() -> Pan:
    partial = "622588000001234"
    return Pan(partial + luhn_check_digit(partial))


class KeyHost:
    """The answering side: keys, MAC and PIN checks, and a durable event log.

    Durable before visible: each answer's event is committed before the answer
    is returned to the connection handler that writes it.
    """

    def __init__(self, engine: Engine, data_keys: DataKeys, master_key: bytes) -> None:
        self._engine = engine
        self._data_keys = data_keys
        self._master_key = master_key
        self._pvk = generate_master_key()  # the issuer's PIN verification key
        self._keys: WorkingKeys | None = None
        self._cards: dict[str, PinVerification] = {}

    def enrol(self, pan: Pan, pin: str) -> str:
        fingerprint = pan_fingerprint(self._data_keys, pan)
        self._cards[fingerprint] = make_pin_verification(self._pvk, pan, pin)
        self._record("card enrolled", None, {"card": pan.masked, "fingerprint": fingerprint})
        return fingerprint

    def answer(self, frame: Frame) -> Message:
        request = frame.message
        if request.mti == "0800":
            return self._sign_on(request)
        if self._keys is None:
            return request.response("A0")
        if not message_mac_ok(frame.raw_message, request, MAC_ALGORITHM, self._keys.mac_key):
            self._record("mac rejected", _txn_key(request), {"mti": request.mti})
            return request.response("A0")
        return self._sale(request)

    def sign(self, message: Message) -> bytes:
        if message.mti == "0810" or self._keys is None or message.response_code == "A0":
            return encode_message(message)
        return sign_message(message, MAC_ALGORITHM, self._keys.mac_key)

    def _sign_on(self, request: Message) -> Message:
        self._keys = generate_working_keys()
        field62 = encode_signon_keys(self._master_key, self._keys).hex().upper()
        self._record("signed on", _txn_key(request), {"terminal": request.terminal_id})
        return request.response("00", {62: field62, 63: None})

    def _sale(self, request: Message) -> Message:
        assert self._keys is not None
        try:
            pan = request.pan
        except PanError:
            return request.response("14")
        stored = self._cards.get(pan_fingerprint(self._data_keys, pan)) if pan else None
        if pan is None or stored is None or request.pin_block is None:
            return request.response("14")
        pin = decrypt_pin_block(self._keys.pin_key, request.pin_block, pan)
        code = "00" if verify_pin(self._pvk, pan, pin, stored) else "55"
        self._record(
            "sale answered",
            _txn_key(request),
            {
                "card": pan.masked,
                "amount_minor": request.amount.minor if request.amount else 0,
                "response_code": code,
            },
        )
        extra = {37: "000000000001", 38: "A12345"} if code == "00" else {37: "000000000002"}
        return request.response(code, extra)

    def _record(self, kind: str, txn_key: str | None, detail: dict[str, object]) -> None:
        with transaction(self._engine) as conn:
            append_event(conn, _now_ms(), kind, txn_key, detail)


def _txn_key(message: Message) -> str:
    return f"{message.terminal_id}/{message.merchant_id}/{message.stan}"


async def _serve(
    host: KeyHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refusals: list[str]
) -> None:
    decoder = FrameDecoder()
    try:
        while data := await reader.read(4096):
            for body in decoder.feed(data):
                frame = decode_frame(body, base_offset=2)
                reply = host.sign(host.answer(frame))
                writer.write(encode_frame(frame.tpdu.reply(), reply))
                await writer.drain()
    except DecodeError as exc:
        refusals.append(str(exc))  # garbage gets no answer: the link is closed
    finally:
        writer.close()


class TestTerminal:
    """The calling side: signs on, builds requests, checks every answer."""

    def __init__(self, master_key: bytes, port: int) -> None:
        self.master_key = master_key
        self._port = port
        self.keys: WorkingKeys | None = None
        self._stan = 0

    def next_stan(self) -> str:
        self._stan += 1
        return f"{self._stan:06d}"

    def sign_on_request(self) -> Message:
        return Message(
            "0800",
            {
                11: self.next_stan(),
                41: pad_terminal_id(TERMINAL_ID),
                42: pad_merchant_id(MERCHANT_ID),
                60: "00000001003",
                63: "001",
            },
        )

    def sale_request(self, pan: Pan, pin: str, amount: Money) -> Message:
        assert self.keys is not None
        pin_block = encrypt_pin_block(self.keys.pin_key, pin, pan)
        return Message(
            "0200",
            {
                2: pan.reveal(),
                3: "000000",
                4: f"{amount.minor:012d}",
                11: self.next_stan(),
                22: "021",
                25: "00",
                26: "06",
                41: pad_terminal_id(TERMINAL_ID),
                42: pad_merchant_id(MERCHANT_ID),
                49: amount.currency,
                52: pin_block.hex().upper(),
                60: "22000001000",
            },
        )

    def signed(self, message: Message) -> bytes:
        assert self.keys is not None
        return sign_message(message, MAC_ALGORITHM, self.keys.mac_key)

    def response_problem(self, request: Message, frame: Frame) -> str | None:
        """Why an answer does not check out (domain brief: response matching), or None."""
        answer = frame.message
        for label, ours, theirs in (
            ("MTI", response_mti(request.mti), answer.mti),
            ("processing code", request.processing_code, answer.processing_code),
            ("STAN", request.stan, answer.stan),
            ("terminal", request.terminal_id, answer.terminal_id),
            ("merchant", request.merchant_id, answer.merchant_id),
            ("amount", request.amount, answer.amount),
        ):
            if ours != theirs:
                return f"{label} differs: sent {ours}, got {theirs}"
        if answer.response_code == "00" and answer.mti != "0810":
            assert self.keys is not None
            if not message_mac_ok(frame.raw_message, answer, MAC_ALGORITHM, self.keys.mac_key):
                return "response MAC does not verify"
        return None

    async def exchange(self, raw: bytes) -> Frame | None:
        """One request on a fresh connection; None when the host closed without answering."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        try:
            writer.write(encode_frame(Tpdu(0x0001, 0x0002), raw))
            await writer.drain()
            decoder = FrameDecoder()
            while data := await asyncio.wait_for(reader.read(4096), EXCHANGE_TIMEOUT_S):
                bodies = decoder.feed(data)
                if bodies:
                    return decode_frame(bodies[0], base_offset=2)
            return None
        finally:
            writer.close()


async def _walk(home: Path, report: Callable[[Step], None]) -> DemoResult:
    result = DemoResult()

    def check(name: str, shown: str, ok: bool) -> None:
        step = Step(name, shown, ok)
        result.steps.append(step)
        report(step)

    data_keys = _data_keys(home)
    db_path = home / "foundation-demo.db"
    engine = open_engine(sqlite_url(db_path))
    revision = migrate(engine, "core")
    check(
        "storage",
        f"SQLite (WAL, synchronous=FULL) migrated to core@{revision}",
        is_up_to_date(engine, "core"),
    )

    master_key = generate_master_key()
    key_host = KeyHost(engine, data_keys, master_key)
    pan = _demo_pan()
    key_host.enrol(pan, CARD_PIN)
    refusals: list[str] = []
    server = await asyncio.start_server(
        lambda r, w: _serve(key_host, r, w, refusals), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    terminal = TestTerminal(master_key, port)
    async with server:
        await _sign_on(terminal, check)
        if terminal.keys is not None:  # without working keys no sale can be MACed
            await _sales(terminal, pan, check)
        await _garbage(terminal, refusals, check)
    _storage_checks(engine, db_path, pan, check)
    engine.dispose()
    return result


def _data_keys(home: Path) -> DataKeys:
    if not data_keys_path(home).exists():
        create_data_keys(home)
    return load_data_keys(home)


async def _sign_on(terminal: TestTerminal, check: Callable[[str, str, bool], None]) -> None:
    request = terminal.sign_on_request()
    frame = await terminal.exchange(encode_message(request))
    if frame is None or 62 not in frame.message:
        check("sign-on 0800 -> 0810", "the key host sent no working keys", False)
        return
    terminal.keys = decode_signon_keys(terminal.master_key, bytes.fromhex(frame.message.fields[62]))
    problem = terminal.response_problem(request, frame)
    check(
        "sign-on 0800 -> 0810",
        f"working keys under the master key, check values verified: {terminal.keys!r}",
        problem is None and frame.message.response_code == "00",
    )


async def _sales(terminal: TestTerminal, pan: Pan, check: Callable[[str, str, bool], None]) -> None:
    amount = Money.parse("88.00")
    request = terminal.sale_request(pan, CARD_PIN, amount)
    frame = await terminal.exchange(terminal.signed(request))
    problem = frame and terminal.response_problem(request, frame)
    code = frame.message.response_code if frame else None
    check(
        "sale 0200 -> 0210",
        f"{pan} {amount}: PIN block + {MAC_ALGORITHM} MAC verified by host, "
        f"answer {code}, response MAC and matching verified by terminal",
        frame is not None and problem is None and code == "00",
    )

    wrong = terminal.sale_request(pan, "654321", amount)
    frame = await terminal.exchange(terminal.signed(wrong))
    code = frame.message.response_code if frame else None
    check("wrong PIN", f"IBM 3624 offset check fails, answer {code} (incorrect PIN)", code == "55")

    tampered = bytearray(terminal.signed(terminal.sale_request(pan, CARD_PIN, amount)))
    amount_at = tampered.find(bytes.fromhex(f"{amount.minor:012d}"))
    tampered[amount_at + 5] ^= 0x01  # 88.00 arrives as 88.01: one bit flipped in transit
    frame = await terminal.exchange(bytes(tampered))
    code = frame.message.response_code if frame else None
    check(
        "bit flipped in transit",
        f"MAC check fails, answer {code} (MAC error, sign on again)",
        code == "A0",
    )


async def _garbage(
    terminal: TestTerminal, refusals: list[str], check: Callable[[str, str, bool], None]
) -> None:
    garbage = bytes.fromhex("0200") + bytes.fromhex("0800000000000000") + b"\x00" * 6
    frame = await terminal.exchange(garbage)
    await asyncio.sleep(0)
    shown = refusals[-1] if refusals else "no refusal recorded"
    check(
        "garbage bytes",
        f"no answer, link closed; host logged: {shown}",
        frame is None and bool(refusals),
    )


def _storage_checks(
    engine: Engine, db_path: Path, pan: Pan, check: Callable[[str, str, bool], None]
) -> None:
    with engine.connect() as conn:
        logged = events(conn, limit=100)
    details = json.dumps([dict(e.detail) for e in logged])
    disk = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    clear_found = pan.reveal() in details or pan.reveal().encode() in disk
    check(
        "card numbers at rest",
        f"{len(logged)} events logged; card shown as {pan}; "
        f"clear card number in the database file: {'YES' if clear_found else 'no'}",
        not clear_found,
    )
    try:
        with transaction(engine) as conn:
            conn.execute(text("UPDATE event_log SET kind = 'edited'"))
        refused = False
    except DBAPIError:
        refused = True
    check(
        "event log is append-only",
        "UPDATE refused by a database trigger" if refused else "UPDATE went through",
        refused,
    )


def run_foundation_demo(home: Path, report: Callable[[Step], None]) -> DemoResult:
    home.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_walk(home, report))
