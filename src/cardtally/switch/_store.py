"""The switch's store port, and its SQL implementation.

The core sees only :class:`SwitchStore`: reads and writes, no logic. Keys and card numbers
cross the port in clear; the SQL store seals them under the data keys on the way in and opens
them on the way out. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from cardtally.security import (
    DataKeys,
    MacAlgorithm,
    ProtectedPan,
    WorkingKeys,
    open_secret,
    protect_pan,
    reveal_pan,
    seal_secret,
)
from cardtally.storage import append_event
from cardtally.switch._model import (
    Advice,
    IssuerRoute,
    Merchant,
    SettlementCycle,
    Terminal,
    TerminalKeys,
    TerminalStatus,
    Txn,
    TxnKind,
    TxnState,
)
from cardtally.switch._schema import (
    advice_table,
    batch_table,
    bin_table,
    link_table,
    merchant_table,
    request_table,
    response_table,
    terminal_table,
    txn_table,
    upload_table,
)
from cardtally.wire import Pan


@dataclass(frozen=True, slots=True)
class NewTxn:
    """What the core knows of a transaction when it takes it on; the store assigns the id."""

    request_key: str
    kind: TxnKind
    state: TxnState
    terminal_id: str
    merchant_id: str
    batch_no: int
    stan: str
    local_date: str
    pan: Pan | None
    processing_code: str
    amount_minor: int
    currency: str
    echo_fields: Mapping[int, str]
    original_id: int | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class Forwarding:
    """How a transaction went to its issuer: the fields that find its answer and undo it."""

    link_id: str
    issuer_stan: str
    transmitted: str
    mti: str
    rrn: str


@dataclass(frozen=True, slots=True)
class StoredRequest:
    key: str
    content_sha256: str
    txn_id: int | None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    terminal_id: str
    batch_no: int
    result: str  # "balanced" | "not_balanced"
    terminal_totals: str  # field 48's 30 digits as the terminal sent them
    switch_totals: str
    closed_at_ms: int


class SwitchStore(Protocol):
    """What the switch core reads and writes, inside one transaction its caller owns."""

    # registry
    def terminal(self, terminal_id: str) -> Terminal | None: ...
    def terminal_keys(self, terminal: Terminal) -> TerminalKeys: ...
    def sign_on(self, terminal_id: str, keys: WorkingKeys, at_ms: int) -> None: ...
    def set_batch(self, terminal_id: str, batch_no: int) -> None: ...
    def merchant(self, merchant_id: str) -> Merchant | None: ...
    def route(self, pan: Pan) -> IssuerRoute | None: ...

    # request log
    def request(self, key: str) -> StoredRequest | None: ...
    def add_request(self, request: StoredRequest, at_ms: int) -> None: ...
    def response(self, key: str) -> tuple[str, dict[int, str]] | None: ...
    def save_response(self, key: str, mti: str, fields: Mapping[int, str], at_ms: int) -> None: ...

    # transactions
    def add_txn(self, txn: NewTxn) -> Txn: ...
    def txn(self, txn_id: int) -> Txn | None: ...
    def txn_by_issuer_key(self, issuer_stan: str, transmitted: str) -> Txn | None: ...
    def txn_by_terminal_key(self, terminal_id: str, batch_no: int, stan: str) -> Txn | None: ...
    def reversed_before(self, terminal_id: str, batch_no: int, stan: str) -> bool: ...
    def unanswered_forwards(self) -> list[Txn]: ...
    def forwarded(self, txn_id: int, forwarding: Forwarding, at_ms: int) -> None: ...
    def set_state(
        self,
        txn_id: int,
        state: TxnState,
        at_ms: int,
        *,
        response_code: str | None = None,
        auth_code: str | None = None,
    ) -> None: ...
    def txns_in_state(self, states: Iterable[TxnState]) -> list[Txn]: ...
    def followers(self, original_id: int) -> list[Txn]: ...
    def batch_txns(self, terminal_id: str, batch_no: int) -> list[Txn]: ...
    def pan_of(self, txn_id: int) -> Pan | None: ...

    # store-and-forward
    def add_advice(
        self, txn_id: int, link_id: str, fields: Mapping[int, str], at_ms: int
    ) -> int: ...
    def advice(self, advice_id: int) -> Advice | None: ...
    def advice_for_txn(self, txn_id: int) -> Advice | None: ...
    def due_advices(self, now_ms: int, limit: int, link_ids: Iterable[str]) -> list[Advice]: ...
    def advice_sent(self, advice_id: int, attempts: int, next_at_ms: int) -> None: ...
    def ack_advice(self, advice_id: int, code: str, at_ms: int) -> None: ...

    # batches
    def batch(self, terminal_id: str, batch_no: int) -> BatchRecord | None: ...
    def close_batch(self, record: BatchRecord) -> None: ...
    def add_upload(
        self,
        terminal_id: str,
        batch_no: int,
        fields: Mapping[int, str],
        difference: str,
        at_ms: int,
    ) -> bool: ...
    def count_uploads(self, terminal_id: str, batch_no: int) -> int: ...

    def log_event(
        self, at_ms: int, kind: str, txn_id: int | None, detail: Mapping[str, Any]
    ) -> None: ...


# The statements of a purchase, built once. SQLAlchemy caches the compiled SQL, but building a
# statement anew for every call (select(), where(), values()) and computing its cache key cost
# several times the execution itself: about 100 µs against 30 µs per SELECT, 225 µs against
# 22 µs per 20-column INSERT (docs/benchmarks.md). Values are bound per call; a bound name
# differs from the column names, which SQLAlchemy keeps for SET and VALUES.
_TERMINAL: Final = sa.select(terminal_table).where(
    terminal_table.c.terminal_id == sa.bindparam("b_terminal_id")
)
_REQUEST: Final = sa.select(request_table).where(request_table.c.key == sa.bindparam("b_key"))
_ADD_REQUEST: Final = sa.insert(request_table)
_RESPONSE: Final = sa.select(response_table).where(response_table.c.key == sa.bindparam("b_key"))
_SAVE_RESPONSE: Final = sa.insert(response_table)
_ADD_TXN: Final = sa.insert(txn_table).returning(*txn_table.c)
_TXN: Final = sa.select(txn_table).where(txn_table.c.id == sa.bindparam("b_id"))
_TXN_BY_ISSUER_KEY: Final = (
    sa.select(txn_table)
    .where(
        txn_table.c.issuer_stan == sa.bindparam("b_issuer_stan"),
        txn_table.c.transmitted == sa.bindparam("b_transmitted"),
    )
    .order_by(txn_table.c.id.desc())
    .limit(1)
)
_TXN_BY_TERMINAL_KEY: Final = (
    sa.select(txn_table)
    .where(
        txn_table.c.terminal_id == sa.bindparam("b_terminal_id"),
        txn_table.c.batch_no == sa.bindparam("b_batch_no"),
        txn_table.c.stan == sa.bindparam("b_stan"),
        txn_table.c.kind != TxnKind.REVERSAL.value,
    )
    .order_by(txn_table.c.id.desc())
    .limit(1)
)
_REVERSED_BEFORE: Final = (
    sa.select(txn_table.c.id)
    .where(
        txn_table.c.terminal_id == sa.bindparam("b_terminal_id"),
        txn_table.c.batch_no == sa.bindparam("b_batch_no"),
        txn_table.c.stan == sa.bindparam("b_stan"),
        txn_table.c.kind == TxnKind.REVERSAL.value,
    )
    .limit(1)
)
_UPDATE_TXN: Final = sa.update(txn_table).where(txn_table.c.id == sa.bindparam("b_id"))


def _fields_json(fields: Mapping[int, str]) -> str:
    return json.dumps({str(n): v for n, v in sorted(fields.items())}, separators=(",", ":"))


def _fields_of(text: str) -> dict[int, str]:
    return {int(n): v for n, v in json.loads(text).items()}


def _txn(row: RowMapping) -> Txn:
    return Txn(
        id=int(row["id"]),
        request_key=row["request_key"],
        kind=TxnKind(row["kind"]),
        state=TxnState(row["state"]),
        terminal_id=row["terminal_id"],
        merchant_id=row["merchant_id"],
        batch_no=int(row["batch_no"]),
        stan=row["stan"],
        local_date=row["local_date"],
        pan_masked=row["pan_masked"],
        pan_fingerprint=row["pan_fingerprint"],
        processing_code=row["processing_code"],
        amount_minor=int(row["amount_minor"]),
        currency=row["currency"],
        link_id=row["link_id"],
        issuer_stan=row["issuer_stan"],
        transmitted=row["transmitted"],
        forwarded_mti=row["forwarded_mti"],
        forwarded_rrn=row["forwarded_rrn"],
        response_code=row["response_code"],
        auth_code=row["auth_code"],
        echo_fields=_fields_of(row["echo_fields"]),
        original_id=None if row["original_id"] is None else int(row["original_id"]),
        received_at_ms=int(row["received_at_ms"]),
        updated_at_ms=int(row["updated_at_ms"]),
    )


def _advice(row: RowMapping) -> Advice:
    return Advice(
        id=int(row["id"]),
        txn_id=int(row["txn_id"]),
        link_id=row["link_id"],
        fields=_fields_of(row["fields"]),
        attempts=int(row["attempts"]),
        next_at_ms=int(row["next_at_ms"]),
        created_at_ms=int(row["created_at_ms"]),
        acked_at_ms=None if row["acked_at_ms"] is None else int(row["acked_at_ms"]),
        ack_code=row["ack_code"],
    )


def terminal_of(row: RowMapping) -> Terminal:
    return Terminal(
        terminal_id=row["terminal_id"],
        merchant_id=row["merchant_id"],
        mac_algorithm=MacAlgorithm(row["mac_algorithm"]),
        mac_required=bool(row["mac_required"]),
        status=TerminalStatus(row["status"]),
        batch_no=int(row["batch_no"]),
        master_key_kcv=row["master_key_kcv"],
        signed_on_at_ms=None if row["signed_on_at_ms"] is None else int(row["signed_on_at_ms"]),
        created_at_ms=int(row["created_at_ms"]),
    )


def merchant_of(row: RowMapping) -> Merchant:
    return Merchant(
        merchant_id=row["merchant_id"],
        name=row["name"],
        mcc=row["mcc"],
        city=row["city"],
        fee_plan=row["fee_plan"],
        agent=row["agent"],
        settlement_cycle=SettlementCycle(row["settlement_cycle"]),
        settlement_account=row["settlement_account"],
        created_at_ms=int(row["created_at_ms"]),
    )


def tmk_purpose(terminal_id: str) -> str:
    return f"tmk:{terminal_id}"


@dataclass
class RegistryCache:
    """Registry facts that do not change while a switch runs, kept across transactions.

    Master keys and merchants are never edited in place; working keys are cached under the
    sign-on instant they belong to, so a new sign-on is seen at once; BIN routes are read
    once (issuer links are also only connected at start: adding one needs a restart).
    Opening sealed keys and reading the same rows for every request was most of the
    switch's time per purchase.
    """

    masters: dict[str, bytes] = field(default_factory=dict)
    working: dict[tuple[str, int], WorkingKeys] = field(default_factory=dict)
    merchants: dict[str, Merchant] = field(default_factory=dict)
    bins: dict[str, str] | None = None
    links: dict[str, IssuerRoute] = field(default_factory=dict)


class SqlSwitchStore:
    """:class:`SwitchStore` over one connection inside its caller's transaction."""

    def __init__(
        self, conn: Connection, data_keys: DataKeys, cache: RegistryCache | None = None
    ) -> None:
        self._conn = conn
        self._keys = data_keys
        self._cache = cache if cache is not None else RegistryCache()

    # --- registry ------------------------------------------------------------

    def terminal(self, terminal_id: str) -> Terminal | None:
        row = self._conn.execute(_TERMINAL, {"b_terminal_id": terminal_id}).mappings().first()
        return None if row is None else terminal_of(row)

    def terminal_keys(self, terminal: Terminal) -> TerminalKeys:
        tid = terminal.terminal_id
        master = self._cache.masters.get(tid)
        working_key = (tid, terminal.signed_on_at_ms or 0)
        working = self._cache.working.get(working_key)
        if master is not None and (working is not None or terminal.signed_on_at_ms is None):
            return TerminalKeys(master_key=master, working=working)
        row = (
            self._conn.execute(
                sa.select(
                    terminal_table.c.master_key_sealed,
                    terminal_table.c.pin_key_sealed,
                    terminal_table.c.mac_key_sealed,
                    terminal_table.c.signed_on_at_ms,
                ).where(terminal_table.c.terminal_id == tid)
            )
            .mappings()
            .one()
        )
        master = open_secret(self._keys, tmk_purpose(tid), row["master_key_sealed"])
        self._cache.masters[tid] = master
        working = None
        if row["pin_key_sealed"] is not None and row["mac_key_sealed"] is not None:
            working = WorkingKeys(
                pin_key=open_secret(self._keys, f"pik:{tid}", row["pin_key_sealed"]),
                mac_key=open_secret(self._keys, f"mak:{tid}", row["mac_key_sealed"]),
            )
            if row["signed_on_at_ms"] == terminal.signed_on_at_ms:
                self._cache.working[working_key] = working
        return TerminalKeys(master_key=master, working=working)

    def sign_on(self, terminal_id: str, keys: WorkingKeys, at_ms: int) -> None:
        # Forget this terminal's cached keys: two sign-ons in one millisecond share the key
        # the cache would find them under.
        for cached in [k for k in self._cache.working if k[0] == terminal_id]:
            del self._cache.working[cached]
        self._conn.execute(
            sa.update(terminal_table)
            .where(terminal_table.c.terminal_id == terminal_id)
            .values(
                pin_key_sealed=seal_secret(self._keys, f"pik:{terminal_id}", keys.pin_key),
                mac_key_sealed=seal_secret(self._keys, f"mak:{terminal_id}", keys.mac_key),
                signed_on_at_ms=at_ms,
            )
        )

    def set_batch(self, terminal_id: str, batch_no: int) -> None:
        self._conn.execute(
            sa.update(terminal_table)
            .where(terminal_table.c.terminal_id == terminal_id)
            .values(batch_no=batch_no)
        )

    def merchant(self, merchant_id: str) -> Merchant | None:
        cached = self._cache.merchants.get(merchant_id)
        if cached is not None:
            return cached
        row = (
            self._conn.execute(
                sa.select(merchant_table).where(merchant_table.c.merchant_id == merchant_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        merchant = self._cache.merchants[merchant_id] = merchant_of(row)
        return merchant

    def route(self, pan: Pan) -> IssuerRoute | None:
        """The issuer link of the longest BIN prefix of ``pan`` that is routed."""
        if self._cache.bins is None:
            rows = self._conn.execute(sa.select(bin_table.c.bin, bin_table.c.link_id))
            self._cache.bins = {row.bin: row.link_id for row in rows}
        digits = pan.reveal()
        for length in range(len(digits), 0, -1):
            link_id = self._cache.bins.get(digits[:length])
            if link_id is not None:
                return self.link(link_id)
        return None

    def link(self, link_id: str) -> IssuerRoute | None:
        cached = self._cache.links.get(link_id)
        if cached is not None:
            return cached
        row = (
            self._conn.execute(sa.select(link_table).where(link_table.c.link_id == link_id))
            .mappings()
            .first()
        )
        if row is None:
            return None
        bins = self._conn.execute(
            sa.select(bin_table.c.bin).where(bin_table.c.link_id == link_id).order_by("bin")
        ).scalars()
        route = IssuerRoute(
            link_id=row["link_id"],
            host=row["host"],
            port=int(row["port"]),
            timeout_ms=int(row["timeout_ms"]),
            bins=tuple(bins),
        )
        self._cache.links[link_id] = route
        return route

    # --- request log ---------------------------------------------------------

    def request(self, key: str) -> StoredRequest | None:
        row = self._conn.execute(_REQUEST, {"b_key": key}).mappings().first()
        if row is None:
            return None
        txn_id = None if row["txn_id"] is None else int(row["txn_id"])
        return StoredRequest(row["key"], row["content_sha256"], txn_id)

    def add_request(self, request: StoredRequest, at_ms: int) -> None:
        self._conn.execute(
            _ADD_REQUEST,
            {
                "key": request.key,
                "content_sha256": request.content_sha256,
                "txn_id": request.txn_id,
                "at_ms": at_ms,
            },
        )

    def response(self, key: str) -> tuple[str, dict[int, str]] | None:
        row = self._conn.execute(_RESPONSE, {"b_key": key}).mappings().first()
        return None if row is None else (row["mti"], _fields_of(row["fields"]))

    def save_response(self, key: str, mti: str, fields: Mapping[int, str], at_ms: int) -> None:
        self._conn.execute(
            _SAVE_RESPONSE, {"key": key, "mti": mti, "fields": _fields_json(fields), "at_ms": at_ms}
        )

    # --- transactions --------------------------------------------------------

    def add_txn(self, txn: NewTxn) -> Txn:
        protected = None if txn.pan is None else protect_pan(self._keys, txn.pan)
        values: dict[str, Any] = {
            "request_key": txn.request_key,
            "kind": txn.kind.value,
            "state": txn.state.value,
            "terminal_id": txn.terminal_id,
            "merchant_id": txn.merchant_id,
            "batch_no": txn.batch_no,
            "stan": txn.stan,
            "local_date": txn.local_date,
            "pan_masked": "" if txn.pan is None else txn.pan.masked,
            "pan_fingerprint": "" if protected is None else protected.fingerprint,
            "pan_sealed": None if protected is None else protected.ciphertext,
            "processing_code": txn.processing_code,
            "amount_minor": txn.amount_minor,
            "currency": txn.currency,
            "echo_fields": _fields_json(txn.echo_fields),
            "original_id": txn.original_id,
            "received_at_ms": txn.at_ms,
            "updated_at_ms": txn.at_ms,
        }
        # The row as stored (id assigned) in the same statement: no read-back on the hot path.
        row = self._conn.execute(_ADD_TXN, values).mappings().one()
        return _txn(row)

    def txn(self, txn_id: int) -> Txn | None:
        row = self._conn.execute(_TXN, {"b_id": txn_id}).mappings().first()
        return None if row is None else _txn(row)

    def txn_by_issuer_key(self, issuer_stan: str, transmitted: str) -> Txn | None:
        params = {"b_issuer_stan": issuer_stan, "b_transmitted": transmitted}
        row = self._conn.execute(_TXN_BY_ISSUER_KEY, params).mappings().first()
        return None if row is None else _txn(row)

    def txn_by_terminal_key(self, terminal_id: str, batch_no: int, stan: str) -> Txn | None:
        """The latest request (not a reversal) with this terminal, batch and STAN."""
        params = {"b_terminal_id": terminal_id, "b_batch_no": batch_no, "b_stan": stan}
        row = self._conn.execute(_TXN_BY_TERMINAL_KEY, params).mappings().first()
        return None if row is None else _txn(row)

    def unanswered_forwards(self) -> list[Txn]:
        """Forwarded transactions whose terminal request has no stored answer (start-up)."""
        answered = sa.exists().where(response_table.c.key == txn_table.c.request_key)
        rows = self._conn.execute(
            sa.select(txn_table)
            .where(
                txn_table.c.state.in_(
                    [
                        TxnState.FORWARDED.value,
                        TxnState.REVERSAL_PENDING.value,
                        TxnState.REVERSED.value,
                        TxnState.REVERSAL_REFUSED.value,
                    ]
                ),
                txn_table.c.forwarded_mti.is_not(None),
                ~answered,
            )
            .order_by(txn_table.c.id)
        ).mappings()
        return [_txn(row) for row in rows]

    def reversed_before(self, terminal_id: str, batch_no: int, stan: str) -> bool:
        """Whether the terminal already sent a reversal for this batch and STAN."""
        params = {"b_terminal_id": terminal_id, "b_batch_no": batch_no, "b_stan": stan}
        found = self._conn.execute(_REVERSED_BEFORE, params).first()
        return found is not None

    def forwarded(self, txn_id: int, forwarding: Forwarding, at_ms: int) -> None:
        self._conn.execute(
            _UPDATE_TXN,
            {
                "b_id": txn_id,
                "state": TxnState.FORWARDED.value,
                "link_id": forwarding.link_id,
                "issuer_stan": forwarding.issuer_stan,
                "transmitted": forwarding.transmitted,
                "forwarded_mti": forwarding.mti,
                "forwarded_rrn": forwarding.rrn,
                "updated_at_ms": at_ms,
            },
        )

    def set_state(
        self,
        txn_id: int,
        state: TxnState,
        at_ms: int,
        *,
        response_code: str | None = None,
        auth_code: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"b_id": txn_id, "state": state.value, "updated_at_ms": at_ms}
        if response_code is not None:
            values["response_code"] = response_code
        if auth_code is not None:
            values["auth_code"] = auth_code
        self._conn.execute(_UPDATE_TXN, values)

    def txns_in_state(self, states: Iterable[TxnState]) -> list[Txn]:
        rows = self._conn.execute(
            sa.select(txn_table)
            .where(txn_table.c.state.in_([s.value for s in states]))
            .order_by(txn_table.c.id)
        ).mappings()
        return [_txn(row) for row in rows]

    def followers(self, original_id: int) -> list[Txn]:
        rows = self._conn.execute(
            sa.select(txn_table)
            .where(txn_table.c.original_id == original_id)
            .order_by(txn_table.c.id)
        ).mappings()
        return [_txn(row) for row in rows]

    def batch_txns(self, terminal_id: str, batch_no: int) -> list[Txn]:
        rows = self._conn.execute(
            sa.select(txn_table)
            .where(txn_table.c.terminal_id == terminal_id, txn_table.c.batch_no == batch_no)
            .order_by(txn_table.c.id)
        ).mappings()
        return [_txn(row) for row in rows]

    def pan_of(self, txn_id: int) -> Pan | None:
        row = (
            self._conn.execute(
                sa.select(txn_table.c.pan_sealed, txn_table.c.pan_fingerprint).where(
                    txn_table.c.id == txn_id
                )
            )
            .mappings()
            .first()
        )
        if row is None or row["pan_sealed"] is None:
            return None
        return reveal_pan(self._keys, ProtectedPan(row["pan_sealed"], row["pan_fingerprint"]))

    # --- store-and-forward ---------------------------------------------------

    def add_advice(self, txn_id: int, link_id: str, fields: Mapping[int, str], at_ms: int) -> int:
        advice_id = self._conn.execute(
            sa.insert(advice_table)
            .values(
                txn_id=txn_id,
                link_id=link_id,
                fields=_fields_json(fields),
                attempts=0,
                next_at_ms=at_ms,
                created_at_ms=at_ms,
            )
            .returning(advice_table.c.id)
        ).scalar_one()
        return int(advice_id)

    def advice(self, advice_id: int) -> Advice | None:
        row = (
            self._conn.execute(sa.select(advice_table).where(advice_table.c.id == advice_id))
            .mappings()
            .first()
        )
        return None if row is None else _advice(row)

    def advice_for_txn(self, txn_id: int) -> Advice | None:
        row = (
            self._conn.execute(
                sa.select(advice_table)
                .where(advice_table.c.txn_id == txn_id)
                .order_by(advice_table.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return None if row is None else _advice(row)

    def due_advices(self, now_ms: int, limit: int, link_ids: Iterable[str]) -> list[Advice]:
        rows = self._conn.execute(
            sa.select(advice_table)
            .where(
                advice_table.c.acked_at_ms.is_(None),
                advice_table.c.next_at_ms <= now_ms,
                advice_table.c.link_id.in_(list(link_ids)),
            )
            .order_by(advice_table.c.next_at_ms, advice_table.c.id)
            .limit(limit)
        ).mappings()
        return [_advice(row) for row in rows]

    def advice_sent(self, advice_id: int, attempts: int, next_at_ms: int) -> None:
        self._conn.execute(
            sa.update(advice_table)
            .where(advice_table.c.id == advice_id)
            .values(attempts=attempts, next_at_ms=next_at_ms)
        )

    def ack_advice(self, advice_id: int, code: str, at_ms: int) -> None:
        self._conn.execute(
            sa.update(advice_table)
            .where(advice_table.c.id == advice_id, advice_table.c.acked_at_ms.is_(None))
            .values(acked_at_ms=at_ms, ack_code=code)
        )

    # --- batches -------------------------------------------------------------

    def batch(self, terminal_id: str, batch_no: int) -> BatchRecord | None:
        row = (
            self._conn.execute(
                sa.select(batch_table).where(
                    batch_table.c.terminal_id == terminal_id, batch_table.c.batch_no == batch_no
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return BatchRecord(
            terminal_id=row["terminal_id"],
            batch_no=int(row["batch_no"]),
            result=row["result"],
            terminal_totals=row["terminal_totals"],
            switch_totals=row["switch_totals"],
            closed_at_ms=int(row["closed_at_ms"]),
        )

    def close_batch(self, record: BatchRecord) -> None:
        self._conn.execute(
            sa.insert(batch_table).values(
                terminal_id=record.terminal_id,
                batch_no=record.batch_no,
                result=record.result,
                terminal_totals=record.terminal_totals,
                switch_totals=record.switch_totals,
                uploaded=0,
                closed_at_ms=record.closed_at_ms,
            )
        )

    def add_upload(
        self,
        terminal_id: str,
        batch_no: int,
        fields: Mapping[int, str],
        difference: str,
        at_ms: int,
    ) -> bool:
        """Record one uploaded transaction; False when that STAN was already uploaded."""
        stan = fields.get(11, "")
        exists = self._conn.execute(
            sa.select(sa.func.count()).where(
                upload_table.c.terminal_id == terminal_id,
                upload_table.c.batch_no == batch_no,
                upload_table.c.stan == stan,
            )
        ).scalar_one()
        if exists:
            return False
        self._conn.execute(
            sa.insert(upload_table).values(
                terminal_id=terminal_id,
                batch_no=batch_no,
                stan=stan,
                rrn=fields.get(37, ""),
                amount_minor=int(fields.get(4, "0") or "0"),
                processing_code=fields.get(3, ""),
                difference=difference,
                at_ms=at_ms,
            )
        )
        self._conn.execute(
            sa.update(batch_table)
            .where(batch_table.c.terminal_id == terminal_id, batch_table.c.batch_no == batch_no)
            .values(uploaded=batch_table.c.uploaded + 1)
        )
        return True

    def count_uploads(self, terminal_id: str, batch_no: int) -> int:
        return int(
            self._conn.execute(
                sa.select(sa.func.count()).where(
                    upload_table.c.terminal_id == terminal_id,
                    upload_table.c.batch_no == batch_no,
                )
            ).scalar_one()
        )

    def log_event(
        self, at_ms: int, kind: str, txn_id: int | None, detail: Mapping[str, Any]
    ) -> None:
        append_event(self._conn, at_ms, kind, None if txn_id is None else str(txn_id), detail)
