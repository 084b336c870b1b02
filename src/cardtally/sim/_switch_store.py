"""The switch's store in memory, for the simulator: the SQL store's answers at dict speed.

Every read gives what the SQL store would give for the same calls: ids from 1 in the order of
insertion, lists in the SQL ``ORDER BY`` order, ``None`` for a missing row, no-ops for updates
of rows that are not there. Where the schema would refuse a write, this refuses it before
changing anything: ``KeyError`` for a duplicate key or a reference to a row that does not
exist (the foreign keys), ``ValueError`` for a value a CHECK constraint rejects.

Every change goes through the :class:`UndoLog`, so a rollback (a failed commit, a crash in the
middle of a step) leaves exactly what the last commit left; like SQLite, ids taken by a rolled
back transaction are handed out again.

Keys are held in clear and card numbers as :class:`Pan` objects: nothing here is at rest. The
card fingerprint is the SQL store's (HMAC under the data keys' fingerprint key), so the same
data keys give the same :class:`Txn` rows. Returned objects are shared with the store: treat
them, and the dicts inside them, as read-only (the core does).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from bisect import bisect_left, insort
from collections.abc import Hashable, Iterable, Iterator, Mapping, MutableSet
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, Final, TypeVar

from cardtally.security import DataKeys, WorkingKeys, pan_fingerprint
from cardtally.sim._undo import UndoLog
from cardtally.storage import event_detail_json
from cardtally.switch._model import (
    Advice,
    IssuerRoute,
    Merchant,
    Terminal,
    TerminalKeys,
    Txn,
    TxnKind,
    TxnState,
)
from cardtally.switch._store import BatchRecord, Forwarding, NewTxn, StoredRequest
from cardtally.wire import Pan

_K = TypeVar("_K", bound=Hashable)

#: The event log's limit on a kind (``cardtally.storage.append_event`` checks the same).
_BATCH_RESULTS: Final = frozenset({"balanced", "not_balanced"})
#: States whose forwarded request may still lack a terminal answer (``unanswered_forwards``).
_MAYBE_UNANSWERED: Final = frozenset(
    {TxnState.FORWARDED, TxnState.REVERSAL_PENDING, TxnState.REVERSED, TxnState.REVERSAL_REFUSED}
)


def simulation_data_keys() -> DataKeys:
    """Fixed data keys: the same card gets the same fingerprint in every run of a simulation."""
    return DataKeys(
        hashlib.sha256(b"cardtally.sim encryption").digest(),
        hashlib.sha256(b"cardtally.sim fingerprint").digest(),
    )


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """One batch-upload record (0320) as ``add_upload`` was given it."""

    terminal_id: str
    batch_no: int
    fields: dict[int, str]
    difference: str
    at_ms: int

    # The columns the SQL store derives from the fields, derived the same way.
    @property
    def stan(self) -> str:
        return self.fields.get(11, "")

    @property
    def rrn(self) -> str:
        return self.fields.get(37, "")

    @property
    def amount_minor(self) -> int:
        return _upload_amount(self.fields)

    @property
    def processing_code(self) -> str:
        return self.fields.get(3, "")


#: One event: at_ms, kind, txn id, detail (as read back from JSON).
EventRecord = tuple[int, str, int | None, dict[str, Any]]


class _DueQueue(MutableSet[tuple[int, int]]):
    """One link's unacknowledged advices as ``(next_at_ms, id)``, kept in the queue's order.

    A ``MutableSet`` so that ``UndoLog.add``/``discard`` can record and take back its changes;
    sorted, so that the due ones are a prefix and a merge of the links' queues gives the SQL
    ``ORDER BY next_at_ms, id`` without sorting.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[tuple[int, int]] = []

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple):
            return False
        at = bisect_left(self._items, item)
        return at < len(self._items) and self._items[at] == item

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: tuple[int, int]) -> None:
        if value not in self:
            insort(self._items, value)

    def discard(self, value: tuple[int, int]) -> None:
        at = bisect_left(self._items, value)
        if at < len(self._items) and self._items[at] == value:
            del self._items[at]


def _sorted_fields(fields: Mapping[int, str]) -> dict[int, str]:
    """A private copy in field order, as the SQL store's JSON column reads back."""
    return dict(sorted(fields.items()))


def _upload_amount(fields: Mapping[int, str]) -> int:
    return int(fields.get(4, "0") or "0")


def _event_detail(at_ms: int, kind: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The detail as the event log would read it back, refused as ``append_event`` refuses."""
    decoded: dict[str, Any] = json.loads(event_detail_json(at_ms, kind, None, detail))
    return decoded


class MemorySwitchStore:
    """:class:`cardtally.switch.SwitchStore` over dicts, transactional through ``log``."""

    def __init__(self, log: UndoLog | None = None, *, data_keys: DataKeys | None = None) -> None:
        self.log = UndoLog() if log is None else log
        self._data_keys = simulation_data_keys() if data_keys is None else data_keys
        # Not state, a cache of a pure function: HMAC per card, not per transaction.
        self._fingerprints: dict[str, str] = {}
        self._init_registry()
        self._init_log()

    def _init_registry(self) -> None:
        self._merchants: dict[str, Merchant] = {}
        self._terminals: dict[str, Terminal] = {}
        self._keys: dict[str, TerminalKeys] = {}
        self._links: dict[str, IssuerRoute] = {}
        self._bins: dict[str, str] = {}  # BIN prefix -> link id

    def _init_log(self) -> None:
        self._requests: dict[str, StoredRequest] = {}
        self._responses: dict[str, tuple[str, dict[int, str]]] = {}
        self._txn_seq = [0]
        self._txns: dict[int, Txn] = {}  # in id order: ids only grow and are never deleted
        self._pans: dict[int, Pan] = {}
        # Secondary indexes, each a list of ids in id order (appended as ids are assigned).
        self._by_terminal_key: dict[tuple[str, int, str], list[int]] = {}  # not reversals
        self._reversal_keys: set[tuple[str, int, str]] = set()
        self._by_issuer_key: dict[tuple[str, str], set[int]] = {}  # re-keyed by ``forwarded``
        self._followers: dict[int, list[int]] = {}
        self._by_batch: dict[tuple[str, int], list[int]] = {}
        self._advice_seq = [0]
        self._advices: dict[int, Advice] = {}
        self._advices_by_txn: dict[int, list[int]] = {}
        self._due: dict[str, _DueQueue] = {}  # link id -> its unacknowledged advices
        self._batches: dict[tuple[str, int], BatchRecord] = {}
        self._uploads: dict[tuple[str, int, str], UploadRecord] = {}
        self._upload_counts: dict[tuple[str, int], int] = {}
        self._events: list[EventRecord] = []

    # --- set-up (the simulator builds its network with these) ----------------------------------

    def add_merchant(self, merchant: Merchant) -> None:
        if merchant.merchant_id in self._merchants:
            raise KeyError(f"merchant {merchant.merchant_id} already exists")
        self.log.set(self._merchants, merchant.merchant_id, merchant)

    def add_terminal(self, terminal: Terminal, master_key: bytes) -> None:
        """Register ``terminal`` with its clear master key (and no working keys yet)."""
        tid = terminal.terminal_id
        if tid in self._terminals:
            raise KeyError(f"terminal {tid} already exists")
        self.log.set(self._terminals, tid, terminal)
        self.log.set(self._keys, tid, TerminalKeys(master_key=bytes(master_key), working=None))

    def add_route(self, route: IssuerRoute) -> None:
        """Add an issuer link with its BINs; a BIN must not be routed twice."""
        if route.link_id in self._links:
            raise KeyError(f"issuer link {route.link_id} already exists")
        bins = sorted(route.bins)
        for number, following in pairwise(bins):
            if number == following:
                raise KeyError(f"BIN {number} given twice for issuer link {route.link_id}")
        for number in bins:
            if number in self._bins:
                raise KeyError(f"BIN {number} is already routed to {self._bins[number]}")
        self.log.set(self._links, route.link_id, replace(route, bins=tuple(bins)))
        for number in bins:
            self.log.set(self._bins, number, route.link_id)

    # --- registry ------------------------------------------------------------------------------

    def terminal(self, terminal_id: str) -> Terminal | None:
        return self._terminals.get(terminal_id)

    def terminal_keys(self, terminal: Terminal) -> TerminalKeys:
        """The terminal's keys as they are now (the SQL store reads the row the same way)."""
        keys = self._keys.get(terminal.terminal_id)
        if keys is None:
            raise KeyError(f"terminal {terminal.terminal_id} is not registered")
        return keys

    def sign_on(self, terminal_id: str, keys: WorkingKeys, at_ms: int) -> None:
        terminal = self._terminals.get(terminal_id)
        if terminal is None:
            return  # an UPDATE of no row
        self.log.set(self._terminals, terminal_id, replace(terminal, signed_on_at_ms=at_ms))
        master = self._keys[terminal_id].master_key
        self.log.set(self._keys, terminal_id, TerminalKeys(master_key=master, working=keys))

    def set_batch(self, terminal_id: str, batch_no: int) -> None:
        terminal = self._terminals.get(terminal_id)
        if terminal is not None:
            self.log.set(self._terminals, terminal_id, replace(terminal, batch_no=batch_no))

    def merchant(self, merchant_id: str) -> Merchant | None:
        return self._merchants.get(merchant_id)

    def route(self, pan: Pan) -> IssuerRoute | None:
        """The issuer link of the longest BIN prefix of ``pan`` that is routed."""
        digits = pan.reveal()
        for length in range(len(digits), 0, -1):
            link_id = self._bins.get(digits[:length])
            if link_id is not None:
                return self._links[link_id]
        return None

    def link(self, link_id: str) -> IssuerRoute | None:
        return self._links.get(link_id)

    # --- request log ---------------------------------------------------------------------------

    def request(self, key: str) -> StoredRequest | None:
        return self._requests.get(key)

    def add_request(self, request: StoredRequest, at_ms: int) -> None:
        if request.key in self._requests:
            raise KeyError(f"request {request.key!r} is already logged")
        if request.txn_id is not None and request.txn_id not in self._txns:
            raise KeyError(f"request {request.key!r} names no transaction {request.txn_id}")
        self.log.set(self._requests, request.key, request)

    def response(self, key: str) -> tuple[str, dict[int, str]] | None:
        stored = self._responses.get(key)
        # A fresh dict each time, as each SQL read decodes one: the caller may change it.
        return None if stored is None else (stored[0], dict(stored[1]))

    def save_response(self, key: str, mti: str, fields: Mapping[int, str], at_ms: int) -> None:
        if key in self._responses:
            raise KeyError(f"request {key!r} already has its answer")
        if key not in self._requests:
            raise KeyError(f"no request {key!r} to answer")
        self.log.set(self._responses, key, (mti, _sorted_fields(fields)))

    # --- transactions --------------------------------------------------------------------------

    def add_txn(self, txn: NewTxn) -> Txn:
        if txn.original_id is not None and txn.original_id not in self._txns:
            raise KeyError(f"original transaction {txn.original_id} does not exist")
        if txn.amount_minor < 0:
            raise ValueError(f"amount must not be negative: {txn.amount_minor}")
        txn_id = self._txn_seq[0] + 1
        stored = self._new_txn(txn_id, txn)
        self.log.counter(self._txn_seq, txn_id)
        self.log.set(self._txns, txn_id, stored)
        if txn.pan is not None:
            self.log.set(self._pans, txn_id, txn.pan)
        key = (txn.terminal_id, txn.batch_no, txn.stan)
        if txn.kind is TxnKind.REVERSAL:
            self.log.add(self._reversal_keys, key)
        else:
            self._push(self._by_terminal_key, key, txn_id)
        if txn.original_id is not None:
            self._push(self._followers, txn.original_id, txn_id)
        self._push(self._by_batch, (txn.terminal_id, txn.batch_no), txn_id)
        return stored

    def _new_txn(self, txn_id: int, txn: NewTxn) -> Txn:
        pan = txn.pan
        return Txn(
            id=txn_id,
            request_key=txn.request_key,
            kind=txn.kind,
            state=txn.state,
            terminal_id=txn.terminal_id,
            merchant_id=txn.merchant_id,
            batch_no=txn.batch_no,
            stan=txn.stan,
            local_date=txn.local_date,
            pan_masked="" if pan is None else pan.masked,
            pan_fingerprint="" if pan is None else self._fingerprint(pan),
            processing_code=txn.processing_code,
            amount_minor=txn.amount_minor,
            currency=txn.currency,
            link_id=None,
            issuer_stan=None,
            transmitted=None,
            forwarded_mti=None,
            forwarded_rrn=None,
            response_code=None,
            auth_code=None,
            echo_fields=_sorted_fields(txn.echo_fields),
            original_id=txn.original_id,
            received_at_ms=txn.at_ms,
            updated_at_ms=txn.at_ms,
        )

    def _fingerprint(self, pan: Pan) -> str:
        digits = pan.reveal()
        found = self._fingerprints.get(digits)
        if found is None:
            found = self._fingerprints[digits] = pan_fingerprint(self._data_keys, pan)
        return found

    def _push(self, index: dict[_K, list[int]], key: _K, value: int) -> None:
        """Append ``value`` to ``index[key]``, creating the list; both undone on rollback."""
        items = index.get(key)
        if items is None:
            items = []
            self.log.set(index, key, items)
        self.log.append(items, value)

    def txn(self, txn_id: int) -> Txn | None:
        return self._txns.get(txn_id)

    def txn_by_issuer_key(self, issuer_stan: str, transmitted: str) -> Txn | None:
        """The latest transaction forwarded with this trace number and transmission time."""
        ids = self._by_issuer_key.get((issuer_stan, transmitted))
        return self._txns[max(ids)] if ids else None

    def txn_by_terminal_key(self, terminal_id: str, batch_no: int, stan: str) -> Txn | None:
        """The latest request (not a reversal) with this terminal, batch and STAN."""
        ids = self._by_terminal_key.get((terminal_id, batch_no, stan))
        return self._txns[ids[-1]] if ids else None

    def reversed_before(self, terminal_id: str, batch_no: int, stan: str) -> bool:
        return (terminal_id, batch_no, stan) in self._reversal_keys

    def unanswered_forwards(self) -> list[Txn]:
        """Forwarded transactions whose terminal request has no stored answer (a scan)."""
        return [
            t
            for t in self._txns.values()
            if t.state in _MAYBE_UNANSWERED
            and t.forwarded_mti is not None
            and t.request_key not in self._responses
        ]

    def forwarded(self, txn_id: int, forwarding: Forwarding, at_ms: int) -> None:
        txn = self._txns.get(txn_id)
        if txn is None:
            return  # an UPDATE of no row
        if txn.issuer_stan is not None and txn.transmitted is not None:
            self.log.discard(self._by_issuer_key[(txn.issuer_stan, txn.transmitted)], txn_id)
        changed = replace(
            txn,
            state=TxnState.FORWARDED,
            link_id=forwarding.link_id,
            issuer_stan=forwarding.issuer_stan,
            transmitted=forwarding.transmitted,
            forwarded_mti=forwarding.mti,
            forwarded_rrn=forwarding.rrn,
            updated_at_ms=at_ms,
        )
        self.log.set(self._txns, txn_id, changed)
        key = (forwarding.issuer_stan, forwarding.transmitted)
        ids = self._by_issuer_key.get(key)
        if ids is None:
            ids = set()
            self.log.set(self._by_issuer_key, key, ids)
        self.log.add(ids, txn_id)

    def set_state(
        self,
        txn_id: int,
        state: TxnState,
        at_ms: int,
        *,
        response_code: str | None = None,
        auth_code: str | None = None,
    ) -> None:
        txn = self._txns.get(txn_id)
        if txn is None:
            return  # an UPDATE of no row
        changed = replace(
            txn,
            state=state,
            updated_at_ms=at_ms,
            response_code=txn.response_code if response_code is None else response_code,
            auth_code=txn.auth_code if auth_code is None else auth_code,
        )
        self.log.set(self._txns, txn_id, changed)

    def txns_in_state(self, states: Iterable[TxnState]) -> list[Txn]:
        wanted = frozenset(states)
        return [t for t in self._txns.values() if t.state in wanted]

    def followers(self, original_id: int) -> list[Txn]:
        return [self._txns[i] for i in self._followers.get(original_id, ())]

    def batch_txns(self, terminal_id: str, batch_no: int) -> list[Txn]:
        return [self._txns[i] for i in self._by_batch.get((terminal_id, batch_no), ())]

    def pan_of(self, txn_id: int) -> Pan | None:
        return self._pans.get(txn_id)

    # --- store-and-forward ---------------------------------------------------------------------

    def add_advice(self, txn_id: int, link_id: str, fields: Mapping[int, str], at_ms: int) -> int:
        if txn_id not in self._txns:
            raise KeyError(f"advice for transaction {txn_id}, which does not exist")
        advice_id = self._advice_seq[0] + 1
        advice = Advice(
            id=advice_id,
            txn_id=txn_id,
            link_id=link_id,
            fields=_sorted_fields(fields),
            attempts=0,
            next_at_ms=at_ms,
            created_at_ms=at_ms,
            acked_at_ms=None,
            ack_code=None,
        )
        self.log.counter(self._advice_seq, advice_id)
        self.log.set(self._advices, advice_id, advice)
        self._push(self._advices_by_txn, txn_id, advice_id)
        self.log.add(self._queue(link_id), (at_ms, advice_id))
        return advice_id

    def _queue(self, link_id: str) -> _DueQueue:
        queue = self._due.get(link_id)
        if queue is None:
            queue = _DueQueue()
            self.log.set(self._due, link_id, queue)
        return queue

    def advice(self, advice_id: int) -> Advice | None:
        return self._advices.get(advice_id)

    def advice_for_txn(self, txn_id: int) -> Advice | None:
        """The transaction's latest advice."""
        ids = self._advices_by_txn.get(txn_id)
        return self._advices[ids[-1]] if ids else None

    def due_advices(self, now_ms: int, limit: int, link_ids: Iterable[str]) -> list[Advice]:
        """Unacknowledged advices due by ``now_ms`` on these links, by next try then id."""
        if limit < 0:
            raise ValueError(f"limit must not be negative: {limit}")
        queues = [self._due[link] for link in set(link_ids) if self._due.get(link)]
        due: list[Advice] = []
        for next_at_ms, advice_id in heapq.merge(*queues):
            if next_at_ms > now_ms or len(due) >= limit:
                break
            due.append(self._advices[advice_id])
        return due

    def advice_sent(self, advice_id: int, attempts: int, next_at_ms: int) -> None:
        if attempts < 0:
            raise ValueError(f"attempts must not be negative: {attempts}")
        advice = self._advices.get(advice_id)
        if advice is None:
            return  # an UPDATE of no row
        if advice.acked_at_ms is None:
            queue = self._due[advice.link_id]
            self.log.discard(queue, (advice.next_at_ms, advice_id))
            self.log.add(queue, (next_at_ms, advice_id))
        changed = replace(advice, attempts=attempts, next_at_ms=next_at_ms)
        self.log.set(self._advices, advice_id, changed)

    def ack_advice(self, advice_id: int, code: str, at_ms: int) -> None:
        """Acknowledge once: a second acknowledgement changes nothing (as in SQL)."""
        advice = self._advices.get(advice_id)
        if advice is None or advice.acked_at_ms is not None:
            return
        self.log.discard(self._due[advice.link_id], (advice.next_at_ms, advice_id))
        changed = replace(advice, acked_at_ms=at_ms, ack_code=code)
        self.log.set(self._advices, advice_id, changed)

    # --- batches -------------------------------------------------------------------------------

    def batch(self, terminal_id: str, batch_no: int) -> BatchRecord | None:
        return self._batches.get((terminal_id, batch_no))

    def close_batch(self, record: BatchRecord) -> None:
        key = (record.terminal_id, record.batch_no)
        if key in self._batches:
            raise KeyError(f"batch {record.batch_no} of {record.terminal_id} is already closed")
        if record.result not in _BATCH_RESULTS:
            raise ValueError(f"batch result must be balanced or not_balanced: {record.result!r}")
        self.log.set(self._batches, key, record)

    def add_upload(
        self,
        terminal_id: str,
        batch_no: int,
        fields: Mapping[int, str],
        difference: str,
        at_ms: int,
    ) -> bool:
        """Record one uploaded transaction; False when that STAN was already uploaded."""
        key = (terminal_id, batch_no, fields.get(11, ""))
        if key in self._uploads:
            return False
        _upload_amount(fields)  # refuses what the SQL insert's int() would, before any change
        record = UploadRecord(terminal_id, batch_no, _sorted_fields(fields), difference, at_ms)
        self.log.set(self._uploads, key, record)
        counted = (terminal_id, batch_no)
        self.log.set(self._upload_counts, counted, self._upload_counts.get(counted, 0) + 1)
        return True

    def count_uploads(self, terminal_id: str, batch_no: int) -> int:
        return self._upload_counts.get((terminal_id, batch_no), 0)

    def log_event(
        self, at_ms: int, kind: str, txn_id: int | None, detail: Mapping[str, Any]
    ) -> None:
        self.log.append(self._events, (at_ms, kind, txn_id, _event_detail(at_ms, kind, detail)))

    # --- read-back for the invariant checker and the day end -----------------------------------

    def all_txns(self) -> list[Txn]:
        return list(self._txns.values())

    def txn_count(self) -> int:
        return len(self._txns)

    def all_advices(self) -> list[Advice]:
        return list(self._advices.values())

    def advice_count(self) -> int:
        return len(self._advices)

    def all_batches(self) -> list[BatchRecord]:
        """Closed batches, in the order they were closed."""
        return list(self._batches.values())

    def all_uploads(self) -> list[UploadRecord]:
        """Upload records, in the order they were recorded."""
        return list(self._uploads.values())

    def all_requests(self) -> list[StoredRequest]:
        """The request log, in the order requests were logged."""
        return list(self._requests.values())

    def all_responses(self) -> dict[str, tuple[str, dict[int, str]]]:
        """Stored answers by request key (copies), in the order they were stored."""
        return {key: (mti, dict(fields)) for key, (mti, fields) in self._responses.items()}

    def events(self) -> list[EventRecord]:
        return list(self._events)
