"""The simulator's issuer store: :class:`IssuerStore` over dicts, with undoable changes.

It answers every question the way :class:`SqlIssuerStore` does on SQLite, so the issuer core
cannot tell them apart (``tests/sim/test_issuer_store_contract.py`` holds them to that):

* It refuses what the schema's keys refuse, with :class:`KeyError`: a second card with the
  same id, fingerprint or account, a second response or transaction record under one key,
  and a record naming a card or an original that does not exist (the foreign keys). Like
  ``MemoryLedgerStore`` it does not copy the CHECK constraints: the core's checks come first.
* Lists of records come newest first (``ORDER BY at_ms DESC``). Ties (one core step writes
  every record with the same ``at_ms``) come in the order SQLite gives, which was checked
  against SQLite 3.40: each query is a search of one index followed by a sort, and SQLite's
  sorter is stable, so ties keep the order the index yields them in. With every indexed
  column fixed by the query (card and RRN, card and auth code, the acquirer key, the
  original), that is the order the rows were written; for a search by card alone the plan
  walks ``issuer_txn_card_day``, so ties come by local date, then as written. PostgreSQL
  promises no order for ties; the simulator follows SQLite.
* ``spent_on`` is the SQL query's rule: approved, posted, of the given kinds, that card and
  local date, and not undone by an approved reversal that posted.
* Notices behave like the outbox: the same notice again is ignored, the same id with other
  content is refused with :class:`NoticeError`.
* Events are checked as ``append_event`` checks them and kept as the log reads them back.

Every change goes through the :class:`UndoLog`, so ``log.rollback()`` restores exactly the
state before ``log.begin()``; outside a transaction (setting up cards) changes simply apply.
Each look-up the core makes on a request is a dict access; ``spent_on`` reads only the card's
records of that day.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from cardtally.issuer._cards import NewCard, issue_card_on
from cardtally.issuer._model import Card, CardStatus, StoredResponse, TxnKind, TxnRecord
from cardtally.notices import Notice, NoticeError
from cardtally.security import DataKeys, IssuerKeys
from cardtally.sim._ledger_store import UndoableLedgerStore
from cardtally.sim._undo import UndoLog
from cardtally.storage import event_detail_json

#: One event as the log keeps it: (at_ms, kind, txn_key, detail).
EventRow = tuple[int, str, str | None, dict[str, Any]]
_Index = dict[Any, list[TxnRecord]]

_APPROVED: Final = "00"


class MemoryIssuerStore:
    """An :class:`~cardtally.issuer.IssuerStore` in memory, its changes undoable by ``log``."""

    def __init__(self, log: UndoLog | None = None) -> None:
        self.log = log if log is not None else UndoLog()
        self._ledger = UndoableLedgerStore(self.log)
        self._cards: dict[str, Card] = {}
        self._card_by_fingerprint: dict[str, str] = {}
        self._card_by_account: dict[str, str] = {}
        self._responses: dict[str, StoredResponse] = {}
        self._txns: dict[str, TxnRecord] = {}
        self._txn_order: list[TxnRecord] = []
        # Each index lists records as written; queries sort them newest first (stable).
        self._by_card: _Index = {}
        self._by_rrn: _Index = {}
        self._by_auth_code: _Index = {}
        self._by_card_day: _Index = {}
        self._by_acquirer_key: _Index = {}
        self._followers: _Index = {}
        self._notices: list[Notice] = []
        self._notice_by_id: dict[str, Notice] = {}
        self._events: list[EventRow] = []

    @property
    def ledger(self) -> UndoableLedgerStore:
        return self._ledger

    # --- cards ---------------------------------------------------------------------------------

    def card_by_fingerprint(self, fingerprint: str) -> Card | None:
        card_id = self._card_by_fingerprint.get(fingerprint)
        return None if card_id is None else self._cards[card_id]

    def card(self, card_id: str) -> Card | None:
        return self._cards.get(card_id)

    def set_card_state(self, card_id: str, status: CardStatus, pin_tries: int) -> None:
        card = self._cards.get(card_id)
        if card is None:
            return  # an UPDATE that matches no row changes nothing, and says nothing
        changed = dataclasses.replace(card, status=CardStatus(status), pin_tries=pin_tries)
        self.log.set(self._cards, card_id, changed)

    # --- request log ---------------------------------------------------------------------------

    def response_for(self, key: str) -> StoredResponse | None:
        stored = self._responses.get(key)
        return None if stored is None else _copied(stored)

    def save_response(self, response: StoredResponse) -> None:
        if response.key in self._responses:
            raise KeyError(f"a response to {response.key!r} exists")
        self.log.set(self._responses, response.key, _as_stored(response))

    # --- transaction record --------------------------------------------------------------------

    def txn(self, txn_id: str) -> TxnRecord | None:
        return self._txns.get(txn_id)

    def record_txn(self, txn: TxnRecord) -> None:
        self._check_keys(txn)
        self.log.set(self._txns, txn.id, txn)
        self.log.append(self._txn_order, txn)
        for index, key in self._index_keys(txn):
            if key not in index:
                self.log.set(index, key, [])
            self.log.append(index[key], txn)

    def txns_by_reference(
        self, card_id: str, *, rrn: str | None = None, auth_code: str | None = None
    ) -> list[TxnRecord]:
        if rrn is not None:
            found = self._by_rrn.get((card_id, rrn), [])
            if auth_code is not None:
                found = [t for t in found if t.auth_code == auth_code]
            return _newest_first(found)
        if auth_code is not None:
            return _newest_first(self._by_auth_code.get((card_id, auth_code), []))
        # SQLite walks the (card, local date) index here, so equal times come by local date.
        found = self._by_card.get(card_id, [])
        return sorted(found, key=lambda t: (-t.at_ms, t.local_date))

    def txns_by_acquirer_key(
        self, acquirer_id: str, terminal_id: str, merchant_id: str, stan: str
    ) -> list[TxnRecord]:
        key = (acquirer_id, terminal_id, merchant_id, stan)
        return _newest_first(self._by_acquirer_key.get(key, []))

    def followers(self, original_id: str) -> list[TxnRecord]:
        return _newest_first(self._followers.get(original_id, []))

    def spent_on(self, card_id: str, local_date: str, kinds: Iterable[TxnKind]) -> int:
        wanted = frozenset(kinds)  # TxnKind is a StrEnum: a plain 'sale' matches too, as in SQL
        return sum(
            t.amount_minor
            for t in self._by_card_day.get((card_id, local_date), [])
            if t.kind in wanted and _moved(t) and not self._undone(t.id)
        )

    def _undone(self, txn_id: str) -> bool:
        return any(
            f.kind is TxnKind.REVERSAL and _moved(f) for f in self._followers.get(txn_id, [])
        )

    def _check_keys(self, txn: TxnRecord) -> None:
        """The primary key and the two foreign keys of ``issuer_txn``."""
        if txn.id in self._txns:
            raise KeyError(f"transaction record {txn.id!r} exists")
        if txn.card_id is not None and txn.card_id not in self._cards:
            raise KeyError(f"transaction record {txn.id!r} names no card: {txn.card_id!r}")
        if txn.original_id is not None and txn.original_id not in self._txns:
            raise KeyError(f"transaction record {txn.id!r} names no original: {txn.original_id!r}")

    def _index_keys(self, txn: TxnRecord) -> Iterator[tuple[_Index, Any]]:
        # A NULL card or original matches no "= ?" in SQL, so such a record is not indexed.
        if txn.card_id is not None:
            yield self._by_card, txn.card_id
            yield self._by_rrn, (txn.card_id, txn.rrn)
            yield self._by_auth_code, (txn.card_id, txn.auth_code)
            yield self._by_card_day, (txn.card_id, txn.local_date)
        yield (
            self._by_acquirer_key,
            (txn.acquirer_id, txn.terminal_id, txn.merchant_id, txn.stan),
        )
        if txn.original_id is not None:
            yield self._followers, txn.original_id

    # --- notices and events --------------------------------------------------------------------

    def add_notice(self, notice: Notice) -> None:
        if not isinstance(notice, Notice):
            raise NoticeError(f"not a Notice: {type(notice).__name__}")
        stored = _notice_as_stored(notice)
        existing = self._notice_by_id.get(stored.id)
        if existing is not None:
            # The outbox's rule: a repeat is a no-op, a changed repeat is refused.
            if existing != stored:
                raise NoticeError(f"notice {stored.id} already exists with different content")
            return
        self.log.set(self._notice_by_id, stored.id, stored)
        self.log.append(self._notices, stored)

    def log_event(
        self, at_ms: int, kind: str, txn_key: str | None, detail: Mapping[str, Any]
    ) -> None:
        self.log.append(
            self._events, (at_ms, kind, txn_key, _event_detail(at_ms, kind, txn_key, detail))
        )

    # --- setting up ----------------------------------------------------------------------------

    def issue_card(self, new: NewCard, data_keys: DataKeys, keys: IssuerKeys, now_ms: int) -> Card:
        """Issue a card exactly as the operator's ``add_card`` does, minus the encrypted PAN."""
        return issue_card_on(self, data_keys, keys, new, now_ms, insert=self._insert_card)

    def _insert_card(self, card: Card) -> None:
        # The primary key and the two UNIQUE columns of ``issuer_card``.
        if card.id in self._cards:
            raise KeyError(f"card {card.id!r} exists")
        if card.pan_fingerprint in self._card_by_fingerprint:
            raise KeyError(f"a card with fingerprint {card.pan_fingerprint[:12]}... exists")
        if card.account_id in self._card_by_account:
            raise KeyError(f"a card on account {card.account_id!r} exists")
        self.log.set(self._cards, card.id, card)
        self.log.set(self._card_by_fingerprint, card.pan_fingerprint, card.id)
        self.log.set(self._card_by_account, card.account_id, card.id)

    # --- reading, for the simulator ------------------------------------------------------------

    def all_cards(self) -> list[Card]:
        """Every card, in the order issued."""
        return list(self._cards.values())

    def all_responses(self) -> list[StoredResponse]:
        """Every stored answer, in the order given (copies, as ``response_for`` gives)."""
        return [_copied(stored) for stored in self._responses.values()]

    def all_txns(self) -> list[TxnRecord]:
        """Every transaction record, in the order written."""
        return list(self._txn_order)

    def txn_count(self) -> int:
        return len(self._txn_order)

    def txns_since(self, n: int) -> list[TxnRecord]:
        """Records in the order written, from the ``n``-th (0-based) on."""
        if n < 0:
            raise ValueError(f"n must not be negative: {n}")
        return self._txn_order[n:]

    def notices(self) -> list[Notice]:
        """Every notice, in the order written."""
        return list(self._notices)

    def events(self) -> list[EventRow]:
        """Every event, in the order logged."""
        return list(self._events)

    def snapshot(self) -> dict[str, object]:
        """A deep copy of all state, the ledger's included: equal snapshots, equal stores.

        Indexes are part of it, so a rollback that left an empty list behind shows.
        """
        issuer = {f"issuer.{k}": v for k, v in vars(self).items() if k not in ("log", "_ledger")}
        ledger = {f"ledger.{k}": v for k, v in vars(self._ledger).items() if k != "_log"}
        return copy.deepcopy(issuer | ledger)


def _moved(txn: TxnRecord) -> bool:
    """Approved, and posted (or held) money: what the SQL spells response 00, transfer set."""
    return txn.response_code == _APPROVED and txn.transfer_id is not None


def _newest_first(txns: list[TxnRecord]) -> list[TxnRecord]:
    # sorted() is stable: equal times keep the order written, as SQLite's sorter does.
    return sorted(txns, key=lambda t: -t.at_ms)


def _copied(stored: StoredResponse) -> StoredResponse:
    # The fields are a dict: a caller changing its copy must not change the log.
    return dataclasses.replace(stored, fields=dict(stored.fields))


def _as_stored(response: StoredResponse) -> StoredResponse:
    """The response as the SQL store reads it back: fields through JSON, in field order."""
    text = json.dumps({str(n): v for n, v in sorted(response.fields.items())})
    fields = {int(n): v for n, v in json.loads(text).items()}
    return dataclasses.replace(response, fields=fields)


def _notice_as_stored(notice: Notice) -> Notice:
    """The notice as the outbox reads it back from its JSON payload."""
    return Notice.from_json(json.loads(json.dumps(notice.to_json(), sort_keys=True)))


def _event_detail(
    at_ms: int, kind: str, txn_key: str | None, detail: Mapping[str, Any]
) -> dict[str, Any]:
    """Refuse what ``append_event`` refuses; return the detail as the log reads it back."""
    decoded: dict[str, Any] = json.loads(event_detail_json(at_ms, kind, txn_key, detail))
    return decoded
