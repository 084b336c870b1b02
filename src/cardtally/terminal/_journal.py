"""The terminal's journal: one SQLite file per terminal, every change committed before use.

Each method is one transaction. The core calls them in the order the reversal
discipline needs: the transaction row, the next STAN and the reversal record in
one commit before the request is sent; the outcome and the cleared reversal in one
commit before anything is printed. A process killed between any two of these finds
a journal that says exactly how far it got (:meth:`Journal.recover`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from cardtally.security import DataKeys, MacAlgorithm, WorkingKeys, open_secret, seal_secret
from cardtally.storage import check_reachable, is_up_to_date, migrate, open_engine, sqlite_url
from cardtally.storage import transaction as db_transaction
from cardtally.terminal._errors import TerminalError
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
from cardtally.terminal._passwords import hash_password
from cardtally.wire import Message, Pan, TxnKind

TREE: Final = "terminal"
JOURNAL_SUFFIX: Final = ".journal.sqlite3"
#: Fields never kept in the journal: the card number is sealed apart; track, PIN block and
#: MAC are not needed after the send.
_NOT_KEPT: Final = frozenset({2, 35, 36, 52, 53, 55, 64})

_meta = sa.MetaData()
_profile = sa.Table(
    "terminal_profile",
    _meta,
    *(
        sa.Column(name)
        for name in [
            "id",
            "terminal_id",
            "merchant_id",
            "merchant_name",
            "operator",
            "currency",
            "mac_algorithm",
            "master_key_sealed",
            "pin_key_sealed",
            "mac_key_sealed",
            "signed_on_at_ms",
            "batch_no",
            "stan",
            "admin_hash",
            "unlock_hash",
            "installed_at_ms",
        ]
    ),
)
_protection = sa.Table(
    "terminal_protection",
    _meta,
    *(sa.Column(n) for n in ["id", "mode", "reason", "since_ms", "admin_failures"]),
)
_txn = sa.Table(
    "terminal_txn",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    *(
        sa.Column(name)
        for name in [
            "batch_no",
            "stan",
            "kind",
            "state",
            "amount_minor",
            "currency",
            "pan_sealed",
            "expiry",
            "entry_mode",
            "request",
            "started_at_ms",
            "finished_at_ms",
            "response_code",
            "rrn",
            "auth_code",
            "host_at",
            "balance_minor",
            "original_stan",
            "original_batch",
            "original_rrn",
            "voided",
            "completed",
            "uploaded",
            "printed",
        ]
    ),
)
_reversal = sa.Table(
    "terminal_reversal",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    *(
        sa.Column(name)
        for name in [
            "txn_id",
            "batch_no",
            "stan",
            "reason",
            "sends",
            "flagged",
            "pending_slot",
            "created_at_ms",
            "cleared_at_ms",
            "cleared_code",
        ]
    ),
)
_batch = sa.Table(
    "terminal_batch",
    _meta,
    *(
        sa.Column(name)
        for name in [
            "batch_no",
            "state",
            "opened_at_ms",
            "result",
            "totals_field48",
            "host_field48",
            "uploaded",
            "settled_at_ms",
            "host_at",
        ]
    ),
)
_event = sa.Table(
    "terminal_event",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    *(sa.Column(n) for n in ["at_ms", "kind", "detail"]),
)


def journal_path(home: Path, terminal_id: str) -> Path:
    return home / "terminals" / f"{terminal_id}{JOURNAL_SUFFIX}"


def installed_terminals(home: Path) -> list[str]:
    folder = home / "terminals"
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(JOURNAL_SUFFIX) for p in folder.glob(f"*{JOURNAL_SUFFIX}"))


def require_installed(home: Path, terminal_id: str) -> Path:
    """The journal's path; a clear error naming the installed terminals if there is none."""
    path = journal_path(home, terminal_id)
    if not path.is_file():
        known = ", ".join(installed_terminals(home)) or "none"
        raise TerminalError(
            f"unknown terminal {terminal_id!r} in this home (installed: {known}); "
            f"install it with: cardtally terminal install --terminal {terminal_id} ..."
        )
    return path


def _next_stan(stan: int) -> int:
    return 1 if stan >= STAN_MAX else stan + 1


class Journal:
    """The journal of one terminal (see the module docstring)."""

    def __init__(self, engine: Engine, data_keys: DataKeys, terminal_id: str) -> None:
        self._engine = engine
        self._keys = data_keys
        self.terminal_id = terminal_id

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, home: Path, terminal_id: str, data_keys: DataKeys) -> Journal:
        path = require_installed(home, terminal_id)
        engine = open_engine(sqlite_url(path))
        check_reachable(engine)
        if not is_up_to_date(engine, TREE):
            migrate(engine, TREE)
        journal = cls(engine, data_keys, terminal_id)
        journal.profile()  # a file without a profile row is not a journal
        return journal

    @classmethod
    def install(
        cls,
        path: Path,
        data_keys: DataKeys,
        *,
        terminal_id: str,
        merchant_id: str,
        merchant_name: str,
        master_key: bytes,
        mac_algorithm: MacAlgorithm,
        admin_password: str,
        unlock_password: str,
        now_ms: int,
        operator: str = "001",
        currency: str = "156",
    ) -> Journal:
        """Create the journal of a new terminal: key injection and first batch."""
        if path.exists():
            raise TerminalError(f"terminal {terminal_id} is already installed ({path})")
        engine = open_engine(sqlite_url(path))
        migrate(engine, TREE)
        journal = cls(engine, data_keys, terminal_id)
        with journal._tx() as conn:
            conn.execute(
                _profile.insert().values(
                    id=1,
                    terminal_id=terminal_id,
                    merchant_id=merchant_id,
                    merchant_name=merchant_name,
                    operator=operator,
                    currency=currency,
                    mac_algorithm=mac_algorithm.value,
                    master_key_sealed=journal._seal("tmk", master_key),
                    batch_no=1,
                    stan=0,
                    admin_hash=hash_password(admin_password),
                    unlock_hash=hash_password(unlock_password),
                    installed_at_ms=now_ms,
                )
            )
            conn.execute(
                _protection.insert().values(id=1, mode=Protection.OFF.value, admin_failures=0)
            )
            conn.execute(_batch.insert().values(_new_batch(1, now_ms)))
            journal._event(conn, now_ms, "installed", {"merchant": merchant_id})
        return journal

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with db_transaction(self._engine) as conn:
            yield conn

    def _seal(self, what: str, secret: bytes) -> bytes:
        return seal_secret(self._keys, f"terminal-{what}:{self.terminal_id}", secret)

    def _open(self, what: str, sealed: bytes) -> bytes:
        return open_secret(self._keys, f"terminal-{what}:{self.terminal_id}", sealed)

    @staticmethod
    def _event(conn: Connection, at_ms: int, kind: str, detail: dict[str, Any]) -> None:
        conn.execute(_event.insert().values(at_ms=at_ms, kind=kind, detail=json.dumps(detail)))

    def log_event(self, at_ms: int, kind: str, detail: dict[str, Any]) -> None:
        with self._tx() as conn:
            self._event(conn, at_ms, kind, detail)

    # -- profile, keys, counters -----------------------------------------------------------

    def profile(self) -> Profile:
        with self._tx() as conn:
            row = conn.execute(sa.select(_profile)).mappings().one_or_none()
        if row is None:
            raise TerminalError(f"the journal of terminal {self.terminal_id} has no profile")
        keys = None
        if row["pin_key_sealed"] is not None:
            keys = WorkingKeys(
                self._open("pik", row["pin_key_sealed"]), self._open("mak", row["mac_key_sealed"])
            )
        return Profile(
            terminal_id=row["terminal_id"],
            merchant_id=row["merchant_id"],
            merchant_name=row["merchant_name"],
            operator=row["operator"],
            currency=row["currency"],
            mac_algorithm=MacAlgorithm(row["mac_algorithm"]),
            master_key=self._open("tmk", row["master_key_sealed"]),
            keys=keys,
            batch_no=int(row["batch_no"]),
            stan=int(row["stan"]),
            signed_on_at_ms=row["signed_on_at_ms"],
        )

    def password_hashes(self) -> tuple[str, str]:
        """(administrator, unlock) password hashes."""
        with self._tx() as conn:
            row = conn.execute(sa.select(_profile.c.admin_hash, _profile.c.unlock_hash)).one()
        return str(row[0]), str(row[1])

    def take_stan(self, now_ms: int, what: str) -> int:
        """The next STAN, committed, for a message that is not a journalled transaction."""
        with self._tx() as conn:
            stan = _next_stan(int(conn.execute(sa.select(_profile.c.stan)).scalar_one()))
            conn.execute(_profile.update().values(stan=stan))
            self._event(conn, now_ms, "stan", {"stan": stan, "for": what})
        return stan

    def signed_on(self, keys: WorkingKeys, host_batch: int, now_ms: int) -> int:
        """Store the new working keys; take the host's batch if ours is still empty."""
        with self._tx() as conn:
            ours = int(conn.execute(sa.select(_profile.c.batch_no)).scalar_one())
            used = conn.execute(
                sa.select(sa.func.count()).select_from(_txn).where(_txn.c.batch_no == ours)
            ).scalar_one()
            highest = int(conn.execute(sa.select(sa.func.max(_batch.c.batch_no))).scalar_one())
            # The host's batch is taken only by an empty batch: a batch with transactions
            # keeps its number until it is settled, so its totals stay together. And only
            # forward: a host number below one we had would, batches later, make a close
            # open a number that already exists, and the terminal could never settle again.
            batch = host_batch if (used == 0 and host_batch > highest) else ours
            if batch != ours:
                conn.execute(
                    _batch.update()
                    .where(_batch.c.batch_no == ours)
                    .values(batch_no=batch, opened_at_ms=now_ms)
                )
            conn.execute(
                _profile.update().values(
                    pin_key_sealed=self._seal("pik", keys.pin_key),
                    mac_key_sealed=self._seal("mak", keys.mac_key),
                    signed_on_at_ms=now_ms,
                    batch_no=batch,
                )
            )
            self._event(conn, now_ms, "signed_on", {"batch": batch, "host_batch": host_batch})
        return batch

    # -- protection ----------------------------------------------------------------------

    def protection(self) -> ProtectionState:
        with self._tx() as conn:
            row = conn.execute(sa.select(_protection)).mappings().one()
        return ProtectionState(
            Protection(row["mode"]), row["reason"], row["since_ms"], int(row["admin_failures"])
        )

    def set_protection(self, state: ProtectionState, now_ms: int) -> None:
        with self._tx() as conn:
            conn.execute(
                _protection.update().values(
                    mode=state.mode.value,
                    reason=state.reason,
                    since_ms=state.since_ms,
                    admin_failures=state.admin_failures,
                )
            )
            self._event(
                conn,
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
        with self._tx() as conn:
            profile = conn.execute(sa.select(_profile.c.stan, _profile.c.batch_no)).one()
            stan, batch_no = _next_stan(int(profile[0])), int(profile[1])
            message = build(stan, batch_no)
            kept = {n: v for n, v in message.fields.items() if n not in _NOT_KEPT}
            amount = message.get(4)
            txn_id = conn.execute(
                _txn.insert().values(
                    batch_no=batch_no,
                    stan=stan,
                    kind=kind.value,
                    state=TxnState.SENDING.value,
                    amount_minor=int(amount) if amount else None,
                    currency=message.get(49) or "156",
                    pan_sealed=self._seal("pan", pan.reveal().encode()),
                    expiry=message.get(14),
                    entry_mode=message.get(22) or "022",
                    request=json.dumps({str(n): v for n, v in kept.items()}),
                    started_at_ms=now_ms,
                    original_stan=original_stan,
                    original_batch=original_batch,
                    original_rrn=original_rrn,
                    voided=False,
                    completed=False,
                    uploaded=False,
                    printed=0,
                )
            ).inserted_primary_key
            assert txn_id is not None
            conn.execute(_profile.update().values(stan=stan))
            if kind in MONEY_KINDS:
                conn.execute(
                    _reversal.insert().values(
                        txn_id=txn_id[0],
                        batch_no=batch_no,
                        stan=stan,
                        reason="06",  # until we know better: "failed before finishing"
                        sends=0,
                        flagged=False,
                        pending_slot=1,
                        created_at_ms=now_ms,
                    )
                )
            self._event(conn, now_ms, "txn.begin", {"kind": kind.value, "stan": stan})
        return self.txn(int(txn_id[0])), message

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
        with self._tx() as conn:
            row = conn.execute(sa.select(_txn).where(_txn.c.id == txn_id)).mappings().one()
            conn.execute(
                _txn.update()
                .where(_txn.c.id == txn_id)
                .values(
                    state=(TxnState.APPROVED if approved else TxnState.DECLINED).value,
                    finished_at_ms=now_ms,
                    response_code=answer.response_code,
                    rrn=answer.rrn,
                    auth_code=(answer.auth_code or None) if approved else None,
                    host_at=host_at,
                    balance_minor=balance_minor,
                )
            )
            self._clear_reversal_of(conn, txn_id, answer.response_code or "", now_ms)
            if approved:
                self._mark_original(conn, row)
            self._event(
                conn,
                now_ms,
                "txn.answered",
                {"stan": row["stan"], "code": answer.response_code, "rrn": answer.rrn},
            )
        return self.txn(txn_id)

    @staticmethod
    def _mark_original(conn: Connection, row: RowMapping) -> None:
        kind = TxnKind(row["kind"])
        if kind not in (TxnKind.VOID, TxnKind.COMPLETION) or row["original_stan"] is None:
            return
        flag = {"voided": True} if kind is TxnKind.VOID else {"completed": True}
        conn.execute(
            _txn.update()
            .where(_txn.c.batch_no == row["original_batch"])
            .where(_txn.c.stan == row["original_stan"])
            .where(_txn.c.kind == (TxnKind.SALE if kind is TxnKind.VOID else TxnKind.PREAUTH))
            .where(_txn.c.state == TxnState.APPROVED.value)
            .values(**flag)
        )

    def fail(self, txn_id: int, reason: str, now_ms: int, why: str) -> JournalTxn:
        """No valid answer: a money-moving request keeps its reversal, now with its reason."""
        with self._tx() as conn:
            kind = TxnKind(conn.execute(sa.select(_txn.c.kind).where(_txn.c.id == txn_id)).one()[0])
            state = TxnState.FAILED if kind in MONEY_KINDS else TxnState.NO_ANSWER
            conn.execute(
                _txn.update()
                .where(_txn.c.id == txn_id)
                .values(state=state.value, finished_at_ms=now_ms)
            )
            conn.execute(
                _reversal.update()
                .where(_reversal.c.txn_id == txn_id, _reversal.c.pending_slot == 1)
                .values(reason=reason)
            )
            self._event(conn, now_ms, "txn.failed", {"txn": txn_id, "reason": reason, "why": why})
        return self.txn(txn_id)

    def recover(self, now_ms: int) -> list[JournalTxn]:
        """Transactions a killed process left 'sending': failed now; their reversal stays."""
        with self._tx() as conn:
            ids = list(
                conn.execute(
                    sa.select(_txn.c.id).where(_txn.c.state == TxnState.SENDING.value)
                ).scalars()
            )
        return [self.fail(int(i), "06", now_ms, "terminal stopped before the answer") for i in ids]

    def mark_printed(self, txn_id: int) -> JournalTxn:
        with self._tx() as conn:
            conn.execute(
                _txn.update().where(_txn.c.id == txn_id).values(printed=_txn.c.printed + 1)
            )
        return self.txn(txn_id)

    def txn(self, txn_id: int) -> JournalTxn:
        with self._tx() as conn:
            row = conn.execute(sa.select(_txn).where(_txn.c.id == txn_id)).mappings().one()
        return self._txn_of(row)

    def txn_by_voucher(self, batch_no: int, stan: int) -> JournalTxn | None:
        with self._tx() as conn:
            row = (
                conn.execute(
                    sa.select(_txn).where(_txn.c.batch_no == batch_no, _txn.c.stan == stan)
                )
                .mappings()
                .one_or_none()
            )
        return None if row is None else self._txn_of(row)

    def txns(self, batch_no: int) -> list[JournalTxn]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(_txn).where(_txn.c.batch_no == batch_no).order_by(_txn.c.id)
            ).mappings()
            return [self._txn_of(row) for row in rows]

    def all_txns(self) -> list[JournalTxn]:
        """Every transaction of every batch, in the order begun (for tallies)."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(_txn).order_by(_txn.c.id)).mappings()
            return [self._txn_of(row) for row in rows]

    def last_receipted(self) -> JournalTxn | None:
        """The newest approved transaction that has a receipt (for "reprint last")."""
        kinds = [k.value for k in MONEY_KINDS]
        with self._tx() as conn:
            row = (
                conn.execute(
                    sa.select(_txn)
                    .where(_txn.c.state == TxnState.APPROVED.value, _txn.c.kind.in_(kinds))
                    .order_by(_txn.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .one_or_none()
            )
        return None if row is None else self._txn_of(row)

    def _txn_of(self, row: RowMapping) -> JournalTxn:
        request = {int(k): str(v) for k, v in json.loads(row["request"]).items()}
        return JournalTxn(
            id=int(row["id"]),
            batch_no=int(row["batch_no"]),
            stan=int(row["stan"]),
            kind=TxnKind(row["kind"]),
            state=TxnState(row["state"]),
            amount_minor=row["amount_minor"],
            currency=row["currency"],
            pan=Pan(self._open("pan", row["pan_sealed"]).decode()),
            expiry=row["expiry"],
            entry_mode=row["entry_mode"],
            request=request,
            started_at_ms=int(row["started_at_ms"]),
            response_code=row["response_code"],
            rrn=row["rrn"],
            auth_code=row["auth_code"],
            host_at=row["host_at"],
            balance_minor=row["balance_minor"],
            original_stan=row["original_stan"],
            original_batch=row["original_batch"],
            original_rrn=row["original_rrn"],
            voided=bool(row["voided"]),
            completed=bool(row["completed"]),
            uploaded=bool(row["uploaded"]),
            printed=int(row["printed"]),
        )

    # -- the pending reversal ------------------------------------------------------------

    def pending_reversal(self) -> PendingReversal | None:
        with self._tx() as conn:
            row = (
                conn.execute(sa.select(_reversal).where(_reversal.c.pending_slot == 1))
                .mappings()
                .one_or_none()
            )
        return None if row is None else _reversal_of(row)

    def reversal_sent(self, reversal_id: int, now_ms: int) -> PendingReversal:
        """Count a send before it happens: a crash after it still counts the try."""
        with self._tx() as conn:
            conn.execute(
                _reversal.update()
                .where(_reversal.c.id == reversal_id)
                .values(sends=_reversal.c.sends + 1)
            )
            self._event(conn, now_ms, "reversal.send", {"reversal": reversal_id})
            row = conn.execute(sa.select(_reversal).where(_reversal.c.id == reversal_id))
            return _reversal_of(row.mappings().one())

    def reversal_cleared(self, reversal_id: int, code: str, now_ms: int) -> None:
        with self._tx() as conn:
            txn_id = conn.execute(
                sa.select(_reversal.c.txn_id).where(_reversal.c.id == reversal_id)
            ).scalar_one()
            self._clear_reversal_of(conn, int(txn_id), code, now_ms)

    def _clear_reversal_of(self, conn: Connection, txn_id: int, code: str, now_ms: int) -> None:
        cleared = conn.execute(
            _reversal.update()
            .where(_reversal.c.txn_id == txn_id, _reversal.c.pending_slot == 1)
            .values(pending_slot=None, cleared_at_ms=now_ms, cleared_code=code)
        ).rowcount
        if cleared:
            self._event(conn, now_ms, "reversal.cleared", {"txn": txn_id, "code": code})

    def reversal_flagged(self, reversal_id: int, now_ms: int) -> None:
        with self._tx() as conn:
            conn.execute(
                _reversal.update().where(_reversal.c.id == reversal_id).values(flagged=True)
            )
            self._event(conn, now_ms, "reversal.flagged", {"reversal": reversal_id})

    # -- batches and settlement ----------------------------------------------------------

    def batch(self, batch_no: int) -> Batch:
        with self._tx() as conn:
            row = conn.execute(sa.select(_batch).where(_batch.c.batch_no == batch_no)).mappings()
            return _batch_of(row.one())

    def settling(self, batch_no: int, field48: str, now_ms: int) -> None:
        """The 0500 is about to go: the batch takes no new transactions from here."""
        with self._tx() as conn:
            conn.execute(
                _batch.update()
                .where(_batch.c.batch_no == batch_no)
                .values(state=BatchState.SETTLING.value, totals_field48=field48)
            )
            self._event(conn, now_ms, "batch.settling", {"batch": batch_no, "totals": field48})

    def settlement_result(self, batch_no: int, result: str, host48: str, host_at: str) -> None:
        with self._tx() as conn:
            conn.execute(
                _batch.update()
                .where(_batch.c.batch_no == batch_no)
                .values(result=result, host_field48=host48, host_at=host_at)
            )

    def uploaded(self, txn_id: int, batch_no: int) -> None:
        with self._tx() as conn:
            conn.execute(_txn.update().where(_txn.c.id == txn_id).values(uploaded=True))
            conn.execute(
                _batch.update()
                .where(_batch.c.batch_no == batch_no)
                .values(uploaded=_batch.c.uploaded + 1)
            )

    def close_batch(self, batch_no: int, now_ms: int) -> int:
        """Settled: the batch closes and the next one opens. Returns the new batch number."""
        following = batch_no + 1
        if following > STAN_MAX:
            raise TerminalError("batch numbers are exhausted (999999): reinstall the terminal")
        with self._tx() as conn:
            conn.execute(
                _batch.update()
                .where(_batch.c.batch_no == batch_no)
                .values(state=BatchState.SETTLED.value, settled_at_ms=now_ms)
            )
            conn.execute(_batch.insert().values(_new_batch(following, now_ms)))
            conn.execute(_profile.update().values(batch_no=following))
            self._event(conn, now_ms, "batch.closed", {"batch": batch_no, "next": following})
        return following

    def events(self, limit: int = 50) -> list[tuple[int, str, dict[str, Any]]]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(_event).order_by(_event.c.id.desc()).limit(limit))
            return [(int(r.at_ms), str(r.kind), json.loads(r.detail)) for r in rows]


def _new_batch(batch_no: int, now_ms: int) -> dict[str, Any]:
    return {
        "batch_no": batch_no,
        "state": BatchState.OPEN.value,
        "opened_at_ms": now_ms,
        "uploaded": 0,
    }


def _reversal_of(row: RowMapping) -> PendingReversal:
    return PendingReversal(
        id=int(row["id"]),
        txn_id=int(row["txn_id"]),
        batch_no=int(row["batch_no"]),
        stan=int(row["stan"]),
        reason=row["reason"],
        sends=int(row["sends"]),
        flagged=bool(row["flagged"]),
        created_at_ms=int(row["created_at_ms"]),
        cleared_at_ms=row["cleared_at_ms"],
        cleared_code=row["cleared_code"],
    )


def _batch_of(row: RowMapping) -> Batch:
    return Batch(
        batch_no=int(row["batch_no"]),
        state=BatchState(row["state"]),
        opened_at_ms=int(row["opened_at_ms"]),
        result=row["result"],
        totals_field48=row["totals_field48"],
        uploaded=int(row["uploaded"]),
        settled_at_ms=row["settled_at_ms"],
        host_at=row["host_at"],
    )
