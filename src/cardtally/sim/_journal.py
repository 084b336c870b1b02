"""A terminal's journal in memory, for the simulator: the SQLite journal's behaviour, at speed.

:class:`MemoryJournal` answers every call exactly as
:class:`~cardtally.terminal._journal.Journal` does (same STAN cycle, ids from 1, same
values, same events, same refusals), so the real :class:`~cardtally.terminal.TerminalCore`
runs on it unchanged. What differs is only what cannot be seen through the API:

- nothing is sealed (nothing is at rest), and the password hashes come ready-made, so
  one scrypt run serves every simulated terminal;
- each method that changes something is one :class:`~cardtally.sim._undo.UndoLog`
  transaction, so an injected commit fault undoes it (FAIL) or keeps it and "kills" the
  terminal (CRASH_AFTER), as a failed flash write or a power cut would;
- the SQL constraints are checks here: a second pending reversal, a voucher or batch
  number already present raise :class:`KeyError` (the unique index's refusal), a reversal
  reason outside 98/A0/06 or an amount of zero :class:`ValueError` (the check
  constraint's); either way the method changes nothing;
- the values are kept as the frozen records the API returns, with indexes by voucher and
  batch, and returned as they are: the ``request`` dict of a :class:`JournalTxn` is shared
  between the values returned for one transaction, so callers must not change it (the core
  never does);
- columns no reader sees (finish time, the host's field 48 of a settlement) are not kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from cardtally.security import MacAlgorithm, WorkingKeys
from cardtally.sim._undo import UndoLog
from cardtally.terminal._errors import TerminalError

# One definition of the STAN cycle and of the fields never kept, shared with the SQLite
# journal, so the two cannot drift apart.
from cardtally.terminal._journal import _NOT_KEPT, _next_stan
from cardtally.terminal._model import (
    MONEY_KINDS,
    STAN_MAX,
    Batch,
    BatchState,
    JournalTxn,
    PendingReversal,
    Profile,
    Protection,
    ProtectionState,
    TxnState,
)
from cardtally.wire import Message, Pan, TxnKind

#: The key of the one-row tables (profile, protection), as their SQL ``id = 1``.
_ROW: Final = 1
#: The pending reversal's slot: one key, so a second pending reversal has nowhere to go.
_SLOT: Final = 1
_REASONS: Final = frozenset({"98", "A0", "06"})
_RECOVERED_WHY: Final = "terminal stopped before the answer"

EventRow = tuple[int, str, dict[str, Any]]


class MemoryJournal:
    """The journal of one simulated terminal (see the module docstring)."""

    __slots__ = (
        "_batches",
        "_by_batch",
        "_by_voucher",
        "_events",
        "_hashes",
        "_pending",
        "_profile",
        "_protection",
        "_reversal_ids",
        "_reversals",
        "_sending",
        "_txn_ids",
        "_txns",
        "log",
        "terminal_id",
    )

    def __init__(self, terminal_id: str, hashes: tuple[str, str], log: UndoLog) -> None:
        """An empty journal; :meth:`install` is the way to get a usable one."""
        self.log = log
        self.terminal_id = terminal_id
        self._hashes = hashes
        self._profile: dict[int, Profile] = {}
        self._protection: dict[int, ProtectionState] = {}
        self._txns: dict[int, JournalTxn] = {}  # by id, in id order
        self._txn_ids = [0]  # the last id given
        self._by_voucher: dict[tuple[int, int], int] = {}  # (batch_no, stan) -> txn id
        self._by_batch: dict[int, list[int]] = {}  # batch_no -> txn ids, in id order
        self._sending: set[int] = set()  # ids still 'sending': what recover() fails
        self._reversals: dict[int, PendingReversal] = {}  # every one ever written, by id
        self._reversal_ids = [0]
        self._pending: dict[int, int] = {}  # _SLOT -> id of the pending reversal
        self._batches: dict[int, Batch] = {}
        self._events: list[EventRow] = []

    @classmethod
    def install(
        cls,
        *,
        terminal_id: str,
        merchant_id: str,
        merchant_name: str,
        master_key: bytes,
        mac_algorithm: MacAlgorithm,
        admin_hash: str,
        unlock_hash: str,
        now_ms: int,
        operator: str = "001",
        currency: str = "156",
        log: UndoLog | None = None,
    ) -> MemoryJournal:
        """A new terminal, as ``Journal.install`` makes it; the passwords come as hashes
        from ``hash_password`` (scrypt is slow: hash once, install many)."""
        for what, stored in (("admin", admin_hash), ("unlock", unlock_hash)):
            if not stored.startswith("scrypt$"):
                raise ValueError(f"{what}_hash must come from hash_password, not be a password")
        journal = cls(terminal_id, (admin_hash, unlock_hash), log or UndoLog())
        profile = Profile(
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            merchant_name=merchant_name,
            operator=operator,
            currency=currency,
            mac_algorithm=mac_algorithm,
            master_key=master_key,
            keys=None,
            batch_no=1,
            stan=0,
            signed_on_at_ms=None,
        )
        with journal.log.transaction():
            journal._set_profile(profile)
            journal.log.set(journal._protection, _ROW, ProtectionState(Protection.OFF))
            journal.log.set(journal._batches, 1, Batch(1, BatchState.OPEN, now_ms))
            journal._event(now_ms, "installed", {"merchant": merchant_id})
        return journal

    # -- the simulator's view: everything, for the invariant checker -------------------------

    def all_txns(self) -> list[JournalTxn]:
        return list(self._txns.values())

    def all_reversals(self) -> list[PendingReversal]:
        """Every reversal record ever written, cleared ones included, in id order."""
        return list(self._reversals.values())

    def all_batches(self) -> list[Batch]:
        """Every batch, by number (the SQL table's order: the number is its rowid)."""
        return [self._batches[n] for n in sorted(self._batches)]

    # -- events --------------------------------------------------------------------------------

    def _event(self, at_ms: int, kind: str, detail: dict[str, Any]) -> None:
        self.log.append(self._events, (at_ms, kind, detail))

    def log_event(self, at_ms: int, kind: str, detail: dict[str, Any]) -> None:
        # Kept as the SQL journal keeps it: as JSON, so a later change to the caller's dict
        # does not reach the log and a value JSON cannot hold is refused here too.
        kept = json.loads(json.dumps(detail))
        with self.log.transaction():
            self._event(at_ms, kind, kept)

    def events(self, limit: int = 50) -> list[EventRow]:
        """The newest ``limit`` events, newest first (a negative limit: all, as in SQL)."""
        chosen = self._events if limit < 0 else self._events[max(len(self._events) - limit, 0) :]
        # Fresh copies, as each SQL read decodes its own: the log stays as written.
        return [(at, kind, json.loads(json.dumps(d))) for at, kind, d in reversed(chosen)]

    # -- profile, keys, counters -----------------------------------------------------------

    def _set_profile(self, profile: Profile) -> None:
        self.log.set(self._profile, _ROW, profile)

    def profile(self) -> Profile:
        return self._profile[_ROW]

    def password_hashes(self) -> tuple[str, str]:
        """(administrator, unlock) password hashes."""
        return self._hashes

    def take_stan(self, now_ms: int, what: str) -> int:
        """The next STAN, committed, for a message that is not a journalled transaction."""
        with self.log.transaction():
            profile = self._profile[_ROW]
            stan = _next_stan(profile.stan)
            self._set_profile(replace(profile, stan=stan))
            self._event(now_ms, "stan", {"stan": stan, "for": what})
        return stan

    def signed_on(self, keys: WorkingKeys, host_batch: int, now_ms: int) -> int:
        """Store the new working keys; take the host's batch if ours is still empty."""
        with self.log.transaction():
            profile = self._profile[_ROW]
            ours = batch_no = profile.batch_no
            # As in the SQL journal: only an empty batch takes the host's number (a batch
            # with transactions keeps its number until settled), and only forward.
            if host_batch > max(self._batches, default=0) and not self._by_batch.get(ours):
                batch_no = host_batch
                self._renumber_batch(ours, host_batch, now_ms)
            self._set_profile(
                replace(profile, keys=keys, signed_on_at_ms=now_ms, batch_no=batch_no)
            )
            self._event(now_ms, "signed_on", {"batch": batch_no, "host_batch": host_batch})
        return batch_no

    def _renumber_batch(self, old: int, new: int, now_ms: int) -> None:
        batch = self._batches.get(old)
        if batch is not None:
            self.log.delete(self._batches, old)
            self.log.set(self._batches, new, replace(batch, batch_no=new, opened_at_ms=now_ms))

    # -- protection ----------------------------------------------------------------------

    def protection(self) -> ProtectionState:
        return self._protection[_ROW]

    def set_protection(self, state: ProtectionState, now_ms: int) -> None:
        with self.log.transaction():
            self.log.set(self._protection, _ROW, state)
            self._event(
                now_ms,
                f"protection.{state.mode.value}",
                {"reason": state.reason, "admin_failures": state.admin_failures},
            )

    # -- transactions --------------------------------------------------------------------

    def begin(
        self,
        kind: TxnKind,
        build: Callable[[int, int], Message],
        pan: Pan,
        now_ms: int,
        *,
        original_stan: int | None = None,
        original_batch: int | None = None,
        original_rrn: str | None = None,
    ) -> tuple[JournalTxn, Message]:
        """Take the next STAN, build the request, write it and (if it moves money) its
        reversal record, all in one commit. Only then may the request be sent."""
        with self.log.transaction():
            profile = self._profile[_ROW]
            stan = _next_stan(profile.stan)
            message = build(stan, profile.batch_no)
            txn = _txn_of(
                self._txn_ids[0] + 1,
                kind,
                message,
                voucher=(profile.batch_no, stan),
                pan=pan,
                now_ms=now_ms,
                originals=(original_stan, original_batch, original_rrn),
            )
            self._add_txn(txn)
            self._set_profile(replace(profile, stan=stan))
            if kind in MONEY_KINDS:
                self._new_reversal(txn, now_ms)
            self._event(now_ms, "txn.begin", {"kind": kind.value, "stan": stan})
        return txn, message

    def _add_txn(self, txn: JournalTxn) -> None:
        voucher = (txn.batch_no, txn.stan)
        if voucher in self._by_voucher:  # the SQL unique (batch_no, stan)
            raise KeyError(f"voucher {txn.voucher} of batch {txn.batch_no:06d} already exists")
        if txn.amount_minor is not None and txn.amount_minor <= 0:  # the SQL check
            raise ValueError(f"a journalled amount must be above zero, not {txn.amount_minor}")
        self.log.counter(self._txn_ids, txn.id)
        self._put_txn(txn)
        self.log.set(self._by_voucher, voucher, txn.id)
        ids = self._by_batch.get(txn.batch_no)
        if ids is None:
            self.log.set(self._by_batch, txn.batch_no, [txn.id])
        else:
            self.log.append(ids, txn.id)

    def _put_txn(self, txn: JournalTxn) -> None:
        """Store a new or changed transaction, keeping the 'sending' index right."""
        self.log.set(self._txns, txn.id, txn)
        if txn.state is TxnState.SENDING:
            self.log.add(self._sending, txn.id)
        else:
            self.log.discard(self._sending, txn.id)

    def _new_reversal(self, txn: JournalTxn, now_ms: int) -> None:
        if _SLOT in self._pending:  # the SQL unique pending_slot
            raise KeyError(f"a reversal is already pending; voucher {txn.voucher} cannot add one")
        reversal_id = self._reversal_ids[0] + 1
        self.log.counter(self._reversal_ids, reversal_id)
        # Reason 06 until we know better: "failed before finishing".
        reversal = PendingReversal(
            reversal_id, txn.id, txn.batch_no, txn.stan, "06", 0, False, now_ms
        )
        self.log.set(self._reversals, reversal_id, reversal)
        self.log.set(self._pending, _SLOT, reversal_id)

    def finish(
        self,
        txn_id: int,
        answer: Message,
        now_ms: int,
        *,
        host_at: str,
        balance_minor: int | None = None,
    ) -> JournalTxn:
        """A valid answer: record it, clear the reversal, and mark what an approval changes."""
        approved = answer.response_code == "00"
        with self.log.transaction():
            txn = self._txns[txn_id]
            done = replace(
                txn,
                state=TxnState.APPROVED if approved else TxnState.DECLINED,
                response_code=answer.response_code,
                rrn=answer.rrn,
                auth_code=(answer.auth_code or None) if approved else None,
                host_at=host_at,
                balance_minor=balance_minor,
            )
            self._put_txn(done)
            self._clear_reversal_of(txn_id, answer.response_code or "", now_ms)
            if approved:
                self._mark_original(txn)
            self._event(
                now_ms,
                "txn.answered",
                {"stan": txn.stan, "code": answer.response_code, "rrn": answer.rrn},
            )
        return done

    def _mark_original(self, txn: JournalTxn) -> None:
        """An approved void marks its sale voided, a completion its pre-authorisation
        completed: only an approved original of the right kind, as the SQL update does."""
        if txn.kind is TxnKind.VOID:
            original_kind = TxnKind.SALE
        elif txn.kind is TxnKind.COMPLETION:
            original_kind = TxnKind.PREAUTH
        else:
            return
        if txn.original_stan is None or txn.original_batch is None:
            return
        original_id = self._by_voucher.get((txn.original_batch, txn.original_stan))
        if original_id is None:
            return
        original = self._txns[original_id]
        if original.kind is not original_kind or original.state is not TxnState.APPROVED:
            return
        if txn.kind is TxnKind.VOID:
            self._put_txn(replace(original, voided=True))
        else:
            self._put_txn(replace(original, completed=True))

    def fail(self, txn_id: int, reason: str, now_ms: int, why: str) -> JournalTxn:
        """No valid answer: a money-moving request keeps its reversal, now with its reason."""
        with self.log.transaction():
            txn = self._txns[txn_id]
            state = TxnState.FAILED if txn.kind in MONEY_KINDS else TxnState.NO_ANSWER
            failed = replace(txn, state=state)
            self._put_txn(failed)
            reversal = self._pending_of(txn_id)
            if reversal is not None:
                if reason not in _REASONS:  # the SQL check on the reason
                    raise ValueError(f"not a reversal reason: {reason!r}")
                self.log.set(self._reversals, reversal.id, replace(reversal, reason=reason))
            self._event(now_ms, "txn.failed", {"txn": txn_id, "reason": reason, "why": why})
        return failed

    def recover(self, now_ms: int) -> list[JournalTxn]:
        """Transactions a killed process left 'sending': failed now; their reversal stays.
        One commit per transaction, as in the SQL journal."""
        return [self.fail(i, "06", now_ms, _RECOVERED_WHY) for i in sorted(self._sending)]

    def mark_printed(self, txn_id: int) -> JournalTxn:
        with self.log.transaction():
            txn = self._txns[txn_id]
            printed = replace(txn, printed=txn.printed + 1)
            self._put_txn(printed)
        return printed

    def txn(self, txn_id: int) -> JournalTxn:
        return self._txns[txn_id]

    def txn_by_voucher(self, batch_no: int, stan: int) -> JournalTxn | None:
        txn_id = self._by_voucher.get((batch_no, stan))
        return None if txn_id is None else self._txns[txn_id]

    def txns(self, batch_no: int) -> list[JournalTxn]:
        return [self._txns[i] for i in self._by_batch.get(batch_no, ())]

    def last_receipted(self) -> JournalTxn | None:
        """The newest approved transaction that has a receipt (for "reprint last")."""
        # Newest first: in a running terminal the answer is almost always a few steps back.
        for txn in reversed(self._txns.values()):
            if txn.state is TxnState.APPROVED and txn.kind in MONEY_KINDS:
                return txn
        return None

    # -- the pending reversal ------------------------------------------------------------

    def pending_reversal(self) -> PendingReversal | None:
        reversal_id = self._pending.get(_SLOT)
        return None if reversal_id is None else self._reversals[reversal_id]

    def _pending_of(self, txn_id: int) -> PendingReversal | None:
        """The pending reversal, if it is ``txn_id``'s."""
        pending = self.pending_reversal()
        return pending if pending is not None and pending.txn_id == txn_id else None

    def reversal_sent(self, reversal_id: int, now_ms: int) -> PendingReversal:
        """Count a send before it happens: a crash after it still counts the try."""
        with self.log.transaction():
            reversal = self._reversals[reversal_id]
            sent = replace(reversal, sends=reversal.sends + 1)
            self.log.set(self._reversals, reversal_id, sent)
            self._event(now_ms, "reversal.send", {"reversal": reversal_id})
        return sent

    def reversal_cleared(self, reversal_id: int, code: str, now_ms: int) -> None:
        with self.log.transaction():
            self._clear_reversal_of(self._reversals[reversal_id].txn_id, code, now_ms)

    def _clear_reversal_of(self, txn_id: int, code: str, now_ms: int) -> None:
        pending = self._pending_of(txn_id)
        if pending is None:
            return
        cleared = replace(pending, cleared_at_ms=now_ms, cleared_code=code)
        self.log.set(self._reversals, pending.id, cleared)
        self.log.delete(self._pending, _SLOT)
        self._event(now_ms, "reversal.cleared", {"txn": txn_id, "code": code})

    def reversal_flagged(self, reversal_id: int, now_ms: int) -> None:
        with self.log.transaction():
            reversal = self._reversals.get(reversal_id)
            if reversal is not None:
                self.log.set(self._reversals, reversal_id, replace(reversal, flagged=True))
            self._event(now_ms, "reversal.flagged", {"reversal": reversal_id})

    # -- batches and settlement ----------------------------------------------------------

    def batch(self, batch_no: int) -> Batch:
        return self._batches[batch_no]

    def _change_batch(self, batch_no: int, **changes: Any) -> None:
        """Like an SQL update by batch number: a batch that is not there is left alone."""
        batch = self._batches.get(batch_no)
        if batch is not None:
            self.log.set(self._batches, batch_no, replace(batch, **changes))

    def settling(self, batch_no: int, field48: str, now_ms: int) -> None:
        """The 0500 is about to go: the batch takes no new transactions from here."""
        with self.log.transaction():
            self._change_batch(batch_no, state=BatchState.SETTLING, totals_field48=field48)
            self._event(now_ms, "batch.settling", {"batch": batch_no, "totals": field48})

    def settlement_result(self, batch_no: int, result: str, host48: str, host_at: str) -> None:
        del host48  # no reader: Batch does not carry it (see the module docstring)
        with self.log.transaction():
            self._change_batch(batch_no, result=result, host_at=host_at)

    def uploaded(self, txn_id: int, batch_no: int) -> None:
        with self.log.transaction():
            txn = self._txns.get(txn_id)
            if txn is not None:
                self._put_txn(replace(txn, uploaded=True))
            batch = self._batches.get(batch_no)
            if batch is not None:
                self._change_batch(batch_no, uploaded=batch.uploaded + 1)

    def close_batch(self, batch_no: int, now_ms: int) -> int:
        """Settled: the batch closes and the next one opens. Returns the new batch number."""
        following = batch_no + 1
        if following > STAN_MAX:
            raise TerminalError("batch numbers are exhausted (999999): reinstall the terminal")
        with self.log.transaction():
            self._change_batch(batch_no, state=BatchState.SETTLED, settled_at_ms=now_ms)
            if following in self._batches:  # the SQL primary key
                raise KeyError(f"batch {following:06d} already exists")
            self.log.set(self._batches, following, Batch(following, BatchState.OPEN, now_ms))
            self._set_profile(replace(self._profile[_ROW], batch_no=following))
            self._event(now_ms, "batch.closed", {"batch": batch_no, "next": following})
        return following


def _txn_of(
    txn_id: int,
    kind: TxnKind,
    message: Message,
    *,
    voucher: tuple[int, int],
    pan: Pan,
    now_ms: int,
    originals: tuple[int | None, int | None, str | None],
) -> JournalTxn:
    """A new transaction as the SQL journal writes and then reads it back."""
    amount = message.get(4)
    original_stan, original_batch, original_rrn = originals
    return JournalTxn(
        id=txn_id,
        batch_no=voucher[0],
        stan=voucher[1],
        kind=kind,
        state=TxnState.SENDING,
        amount_minor=int(amount) if amount else None,
        currency=message.get(49) or "156",
        pan=pan,
        expiry=message.get(14),
        entry_mode=message.get(22) or "022",
        request={n: v for n, v in message.fields.items() if n not in _NOT_KEPT},
        started_at_ms=now_ms,
        original_stan=original_stan,
        original_batch=original_batch,
        original_rrn=original_rrn,
    )


if TYPE_CHECKING:
    from cardtally.terminal import JournalPort

    # Checked here, so the simulator's journal cannot drift from what the core needs.
    _MEMORY_JOURNAL: type[JournalPort] = MemoryJournal
