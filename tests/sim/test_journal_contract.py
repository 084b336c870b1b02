"""The simulator's MemoryJournal against the SQLite Journal: the same core, the same answers,
the same outcomes and the same journal, call for call.

The contract tests run two real TerminalCores in lockstep, one over each journal: every
step must be the same (the same request bytes, so the same STANs, keys and fields), the
answer of the real switch core to the SQLite side's request is fed to both, and after
every command both journals must hold the same transactions, reversals, batches and
events. The memory-only tests cover what the simulator adds: commit faults and rollback.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa

from cardtally.security import DataKeys, MacAlgorithm, WorkingKeys, generate_master_key
from cardtally.sim._journal import MemoryJournal
from cardtally.sim._undo import CommitFailedError, CommitFault, CrashError, UndoLog
from cardtally.storage import open_engine, sqlite_url, transaction
from cardtally.terminal import (
    AUTO_REVERSAL_FAILED,
    AUTO_REVERSAL_OK,
    Balance,
    Command,
    Complete,
    Detail,
    Done,
    Journal,
    Outcome,
    PreAuth,
    Refund,
    Reprint,
    Sale,
    Send,
    Settle,
    SignOn,
    Status,
    Tamper,
    TerminalCore,
    TerminalError,
    TerminalIdentity,
    TxnState,
    Unlock,
    Void,
    balance_inquiry,
    sale,
    void,
)
from cardtally.terminal._journal import _batch_of, _reversal_of
from cardtally.terminal._model import Protection, ProtectionState
from cardtally.terminal._passwords import hash_password
from cardtally.wire import Message, TxnKind
from tests.switch.support import CARD, MERCHANT, NOW_MS, TERMINAL, build_rig
from tests.terminal.support import (
    ADMIN,
    BAD_MAC,
    LOSE_ANSWER,
    PIN_CARD,
    UNLOCK,
    UNREACHABLE,
    Fault,
    Issuer,
    Rig,
    both,
    build,
    faults_for,
    faults_on,
    sent_mtis,
)

WRONG: Final = "000000"
REVERSALS: Final = faults_for("0400", "0401")
WHO: Final = TerminalIdentity(TERMINAL, MERCHANT)
HOST_AT: Final = "2026/11/18 10:11:12"


@functools.cache
def password_hashes() -> tuple[str, str]:
    """scrypt is slow: hashed once for every memory journal of the module, as the simulator
    does for all its terminals."""
    return hash_password(ADMIN), hash_password(UNLOCK)


def install_memory(master_key: bytes, log: UndoLog | None = None) -> MemoryJournal:
    admin_hash, unlock_hash = password_hashes()
    return MemoryJournal.install(
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        merchant_name="COFFEE SHOP",
        master_key=master_key,
        mac_algorithm=MacAlgorithm.X9_19,
        admin_hash=admin_hash,
        unlock_hash=unlock_hash,
        now_ms=NOW_MS,
        log=log,
    )


# -- comparing the two journals ---------------------------------------------------------------


def assert_same(sql: Journal, journal_file: Path, memory: MemoryJournal) -> None:
    """Both journals hold the same, through every read the core and the simulator use."""
    txns = [sql.txn(int(str(row["id"]))) for row in read_rows(journal_file, "terminal_txn")]
    assert memory.all_txns() == txns
    reversals = [_reversal_of(row) for row in read_rows(journal_file, "terminal_reversal")]
    assert memory.all_reversals() == reversals
    batches = [_batch_of(row) for row in read_rows(journal_file, "terminal_batch")]
    assert memory.all_batches() == batches
    for limit in (-1, 0, 3):
        assert memory.events(limit) == sql.events(limit)
    assert memory.profile() == sql.profile()
    assert memory.protection() == sql.protection()
    assert memory.pending_reversal() == sql.pending_reversal()
    assert memory.last_receipted() == sql.last_receipted()
    for batch in batches:
        assert memory.batch(batch.batch_no) == batch
        assert memory.txns(batch.batch_no) == sql.txns(batch.batch_no)
    for txn in txns:
        assert memory.txn_by_voucher(txn.batch_no, txn.stan) == txn


def read_rows(journal_file: Path, table: str) -> list[dict[str, Any]]:
    """Raw rows of the SQLite journal, by rowid (journal_rows, without a rig)."""
    engine = open_engine(sqlite_url(journal_file))
    try:
        with transaction(engine) as conn:
            query = sa.text(f"SELECT * FROM {table} ORDER BY rowid")
            return [dict(row) for row in conn.execute(query).mappings()]
    finally:
        engine.dispose()


# -- two cores in lockstep ------------------------------------------------------------------------


@dataclass
class Twin:
    """The SQLite rig (journal, core, switch) and a second core over a MemoryJournal."""

    rig: Rig
    memory: MemoryJournal
    core: TerminalCore

    def run(self, command: Command, fault: Fault | None = None) -> Outcome:
        rig = self.rig
        rig.now_ms += 1000
        sql_step = rig.core.start(command, rig.now_ms)
        memory_step = self.core.start(command, rig.now_ms)
        while not isinstance(sql_step, Done):
            assert memory_step == sql_step
            assert isinstance(sql_step, Send), sql_step
            rig.sends.append(sql_step.body)
            event = rig._deliver(sql_step.body, fault)
            sql_step = rig.core.on_event(event, rig.now_ms)
            memory_step = self.core.on_event(event, rig.now_ms)
        assert memory_step == sql_step
        self.assert_same()
        return sql_step.outcome

    def assert_same(self) -> None:
        assert self.rig.journal_file is not None
        assert_same(self.rig.journal, self.rig.journal_file, self.memory)

    def crash_after_send(self, command: Command) -> None:
        """Both terminals send ``command``'s request (it reaches the switch) and lose power."""
        rig = self.rig
        rig.now_ms += 1000
        step = rig.core.start(command, rig.now_ms)
        assert isinstance(step, Send)
        assert self.core.start(command, rig.now_ms) == step
        rig.sends.append(step.body)
        rig.host(step.body)
        rig.core = TerminalCore(rig.journal, timeout_ms=rig.core.timeout_ms)
        self.core = TerminalCore(self.memory, timeout_ms=self.core.timeout_ms)


@pytest.fixture
def twin(tmp_path: Path) -> Twin:
    """Both terminals installed with the same master key and signed on (the same keys)."""
    rig = build(tmp_path)
    memory = install_memory(rig.switch.devices[TERMINAL].master_key)
    pair = Twin(rig, memory, TerminalCore(memory, timeout_ms=rig.core.timeout_ms))
    assert pair.run(SignOn()).status is Status.APPROVED
    return pair


def lost(twin: Twin, command: Command) -> Outcome:
    """``command`` reaches the switch; its answer never comes back."""
    outcome = twin.run(command, faults_on(len(twin.rig.sends) + 1, what=LOSE_ANSWER))
    assert outcome.status is Status.REVERSAL_PENDING, outcome.screen
    return outcome


def voucher_of(outcome: Outcome) -> int:
    assert outcome.txn is not None, outcome.screen
    return outcome.txn.stan


# -- contract: the core over either journal -------------------------------------------------------


def test_sign_on_stores_the_same_keys_and_batch(twin: Twin) -> None:
    assert twin.memory.profile().keys is not None
    again = twin.run(SignOn())
    assert again.status is Status.APPROVED
    assert [kind for _, kind, _ in twin.memory.events(-1)][:2] == ["signed_on", "stan"]


def test_an_approved_sale_with_a_pin(twin: Twin) -> None:
    outcome = twin.run(Sale(PIN_CARD, 1234))
    assert outcome.status is Status.APPROVED and len(outcome.printout) == 2
    txn = twin.memory.all_txns()[-1]
    assert txn.printed == 1 and 52 not in txn.request and 2 not in txn.request
    assert twin.memory.all_reversals()[-1].cleared_code == "00"


def test_a_declined_sale_a_balance_and_a_lost_balance(twin: Twin) -> None:
    twin.rig.issuer.code = "51"
    assert twin.run(Sale(CARD, 5000)).status is Status.DECLINED
    twin.rig.issuer.code = "00"
    assert twin.run(Balance(CARD)).status is Status.APPROVED
    unanswered = twin.run(Balance(CARD), faults_on(len(twin.rig.sends) + 1, what=UNREACHABLE))
    assert unanswered.status is Status.NO_ANSWER
    assert twin.memory.all_txns()[-1].state is TxnState.NO_ANSWER
    assert twin.memory.pending_reversal() is None


def test_a_lost_sale_is_reversed_first_by_the_next_command(twin: Twin) -> None:
    stan = voucher_of(lost(twin, Sale(CARD, 5000)))
    pending = twin.memory.pending_reversal()
    assert pending is not None and (pending.stan, pending.reason) == (stan, "98")
    before = len(twin.rig.sends)
    outcome = twin.run(Sale(CARD, 700))
    assert outcome.status is Status.APPROVED and outcome.screen[0] == AUTO_REVERSAL_OK
    assert sent_mtis(twin.rig, before) == ["0400", "0200"]
    assert twin.memory.pending_reversal() is None
    assert twin.memory.all_reversals()[-2].cleared_code == "00"


def test_three_failed_reversal_sends_flag_it_and_keep_it_pending(twin: Twin) -> None:
    lost(twin, Sale(CARD, 5000))
    before = len(twin.rig.sends)
    outcome = twin.run(Sale(CARD, 700), REVERSALS)
    assert outcome.status is Status.REFUSED and outcome.screen[0] == AUTO_REVERSAL_FAILED
    assert sent_mtis(twin.rig, before) == ["0400", "0401", "0401"]
    pending = twin.memory.pending_reversal()
    assert pending is not None and pending.flagged and pending.sends == 3


def test_an_answer_with_a_bad_mac_leaves_an_a0_reversal(twin: Twin) -> None:
    outcome = twin.run(Sale(CARD, 5000), faults_on(len(twin.rig.sends) + 1, what=BAD_MAC))
    assert outcome.status is Status.REVERSAL_PENDING and outcome.code == "A0"
    assert twin.run(Balance(CARD)).screen[0] == AUTO_REVERSAL_OK


def test_a_void_marks_its_sale(twin: Twin) -> None:
    stan = voucher_of(twin.run(Sale(CARD, 1000)))
    outcome = twin.run(Void(stan, ADMIN))
    assert outcome.status is Status.APPROVED
    assert twin.memory.txn_by_voucher(1, stan).voided  # type: ignore[union-attr]
    assert twin.run(Void(stan, ADMIN)).status is Status.REFUSED


def test_a_refund(twin: Twin) -> None:
    sold = twin.run(Sale(CARD, 4000))
    assert sold.txn is not None and sold.txn.rrn is not None
    outcome = twin.run(Refund(CARD, sold.txn.rrn, 250, ADMIN))
    assert outcome.status is Status.APPROVED
    assert twin.memory.all_txns()[-1].original_rrn == sold.txn.rrn


def test_a_pre_authorisation_and_its_completion(twin: Twin) -> None:
    hold = voucher_of(twin.run(PreAuth(PIN_CARD, 9000)))
    outcome = twin.run(Complete(hold, amount_minor=8000))
    assert outcome.status is Status.APPROVED
    assert twin.memory.txn_by_voucher(1, hold).completed  # type: ignore[union-attr]
    assert twin.run(Complete(hold)).status is Status.REFUSED


def test_a_balanced_settlement_opens_the_next_batch(twin: Twin) -> None:
    twin.run(Sale(CARD, 1000))
    twin.run(Sale(CARD, 2500))
    outcome = twin.run(Settle(ADMIN))
    assert outcome.data == {"batch": 1, "result": "balanced", "next_batch": 2}
    assert twin.run(Sale(CARD, 700)).txn.batch_no == 2  # type: ignore[union-attr]
    assert twin.run(Settle(ADMIN)).data["next_batch"] == 3


def test_a_settlement_with_an_upload_and_a_flagged_reversal(twin: Twin) -> None:
    twin.run(Sale(CARD, 1000))
    twin.run(Sale(CARD, 2000))
    lost(twin, Sale(CARD, 4000))
    outcome = twin.run(Settle(ADMIN), REVERSALS)
    assert outcome.data == {"batch": 1, "result": "not_balanced", "next_batch": 2}
    assert twin.memory.batch(1).uploaded == 2
    assert [t.uploaded for t in twin.memory.txns(1)] == [True, True, False]


def test_an_interrupted_settlement_and_upload_resume(twin: Twin) -> None:
    twin.run(Sale(CARD, 1000))
    twin.run(Sale(CARD, 2000))
    lost(twin, Sale(CARD, 3000))
    n = len(twin.rig.sends)
    # reversal x3, 0500, first record (ok), second record (unreachable)
    first = twin.run(Settle(ADMIN), both(REVERSALS, faults_on(n + 6, what=UNREACHABLE)))
    assert first.status is Status.NO_ANSWER
    assert twin.run(Sale(CARD, 100)).status is Status.REFUSED  # the batch is settling
    assert twin.run(Settle(ADMIN), REVERSALS).status is Status.APPROVED


def test_reprints_and_the_detail_list(twin: Twin) -> None:
    stan = voucher_of(twin.run(Sale(CARD, 1000, paper_out=True)))
    twin.run(Balance(CARD))
    assert twin.run(Reprint()).status is Status.DONE
    assert twin.run(Reprint(stan)).status is Status.DONE
    assert twin.memory.txn_by_voucher(1, stan).printed == 2  # type: ignore[union-attr]
    assert twin.run(Reprint(999)).status is Status.REFUSED
    assert twin.run(Detail()).status is Status.DONE


def test_three_wrong_admin_passwords_lock_until_unlocked(twin: Twin) -> None:
    stan = voucher_of(twin.run(Sale(CARD, 1000)))
    for _ in range(3):
        assert twin.run(Void(stan, WRONG)).status is Status.REFUSED
    assert twin.memory.protection().locked
    assert twin.run(Sale(CARD, 100)).status is Status.REFUSED
    assert twin.run(Unlock(WRONG)).status is Status.REFUSED
    assert twin.run(Unlock(UNLOCK)).status is Status.DONE
    assert twin.run(Void(stan, ADMIN)).status is Status.APPROVED
    assert twin.run(Tamper()).status is Status.DONE
    kinds = [kind for _, kind, _ in twin.memory.events(-1)]
    assert "protection.unlock_refused" in kinds and kinds[0] == "protection.locked"


def test_a_killed_sale_is_recovered_by_the_next_command(twin: Twin) -> None:
    twin.crash_after_send(Sale(CARD, 8000))
    assert twin.memory.all_txns()[-1].state is TxnState.SENDING
    twin.assert_same()
    before = len(twin.rig.sends)
    outcome = twin.run(Balance(CARD))
    assert outcome.screen[0].endswith("NO ANSWER BEFORE THE TERMINAL STOPPED")
    assert sent_mtis(twin.rig, before) == ["0400", "0200"]
    assert twin.memory.all_reversals()[-1].reason == "06"


# -- contract: direct calls, edges the core rarely reaches ----------------------------------------


@dataclass
class Pair:
    sql: Journal
    journal_file: Path
    memory: MemoryJournal

    def both(self, call: Callable[[Any], object]) -> object:
        """``call`` on each journal; the same result (or the same kind of refusal)."""
        sql_result, memory_result = _outcome(call, self.sql), _outcome(call, self.memory)
        assert memory_result == sql_result
        assert_same(self.sql, self.journal_file, self.memory)
        return sql_result


def _outcome(call: Callable[[Any], object], journal: object) -> object:
    """What ``call`` returned, or the refusal it raised, comparable across the journals:
    a unique index violation is IntegrityError in SQL and KeyError in memory."""
    try:
        return call(journal)
    except (KeyError, sa.exc.IntegrityError):
        return "unique constraint"
    except TerminalError as refused:
        return refused.args


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    master_key = generate_master_key()
    path = tmp_path / "terminal.journal.sqlite3"
    sql = Journal.install(
        path,
        DataKeys(secrets.token_bytes(32), secrets.token_bytes(32)),
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        merchant_name="COFFEE SHOP",
        master_key=master_key,
        mac_algorithm=MacAlgorithm.X9_19,
        admin_password=ADMIN,
        unlock_password=UNLOCK,
        now_ms=NOW_MS,
    )
    yield Pair(sql, path, install_memory(master_key))
    sql.close()


KEYS: Final = WorkingKeys(generate_master_key(), generate_master_key())
OTHER_KEYS: Final = WorkingKeys(generate_master_key(), generate_master_key())


def sale_of(amount: int) -> Callable[[int, int], Message]:
    return lambda stan, batch_no: sale(WHO, stan, batch_no, card=CARD, amount_minor=amount)


def answer(stan: int, code: str = "00") -> Message:
    return Message("0210", {11: f"{stan:06d}", 37: f"{stan:012d}", 38: "654321", 39: code})


def sold(journal: Any, amount: int, at_ms: int = NOW_MS) -> int:
    """An approved sale, straight through the journal; its STAN."""
    txn, _ = journal.begin(TxnKind.SALE, sale_of(amount), CARD.pan, at_ms)
    journal.finish(txn.id, answer(txn.stan), at_ms, host_at=HOST_AT)
    return int(txn.stan)


def set_stan(pair: Pair, stan: int) -> None:
    """Move both STAN counters (a million sales would take too long to get there)."""
    engine = open_engine(sqlite_url(pair.journal_file))
    try:
        with transaction(engine) as conn:
            conn.execute(sa.text("UPDATE terminal_profile SET stan = :s"), {"s": stan})
    finally:
        engine.dispose()
    memory = pair.memory
    memory.log.set(memory._profile, 1, replace(memory.profile(), stan=stan))


def test_the_stan_wraps_and_a_taken_voucher_is_refused(pair: Pair) -> None:
    assert pair.both(lambda j: sold(j, 100)) == 1
    set_stan(pair, 999_998)
    assert pair.both(lambda j: sold(j, 100)) == 999_999
    assert pair.both(lambda j: j.take_stan(NOW_MS, "sign-on")) == 1
    assert pair.both(lambda j: sold(j, 100)) == 2
    set_stan(pair, 999_999)
    assert pair.both(lambda j: sold(j, 100)) == "unique constraint"  # voucher 1 is taken
    assert pair.memory.profile().stan == 999_999  # nothing was taken


def begun(journal: Any, kind: TxnKind, build: Callable[[int, int], Message]) -> int:
    """Begin and leave 'sending'; the STAN taken."""
    txn, _ = journal.begin(kind, build, CARD.pan, NOW_MS)
    return int(txn.stan)


def balance_of(stan: int, batch_no: int) -> Message:
    return balance_inquiry(WHO, stan, batch_no, card=CARD)


def test_a_second_pending_reversal_is_refused(pair: Pair) -> None:
    assert pair.both(lambda j: begun(j, TxnKind.SALE, sale_of(100))) == 1
    assert pair.both(lambda j: begun(j, TxnKind.SALE, sale_of(200))) == "unique constraint"
    assert [t.stan for t in pair.memory.all_txns()] == [1]
    # A balance inquiry moves no money: it has no reversal record, so it may go.
    assert pair.both(lambda j: begun(j, TxnKind.BALANCE, balance_of)) == 2


def test_sign_on_takes_the_host_batch_only_for_an_empty_batch(pair: Pair) -> None:
    assert pair.both(lambda j: j.signed_on(KEYS, 0, NOW_MS + 1)) == 1  # no host batch
    assert pair.both(lambda j: j.signed_on(KEYS, 7, NOW_MS + 2)) == 7  # empty: taken
    assert pair.memory.batch(7).opened_at_ms == NOW_MS + 2
    pair.both(lambda j: sold(j, 100))
    assert pair.both(lambda j: j.signed_on(KEYS, 9, NOW_MS + 3)) == 7  # in use: kept
    assert pair.both(lambda j: j.close_batch(7, NOW_MS + 4)) == 8
    assert pair.both(lambda j: j.signed_on(KEYS, 7, NOW_MS + 5)) == 8  # a batch we had


def test_a_host_batch_number_going_backwards_is_not_taken(pair: Pair) -> None:
    # Batch 1 is renumbered to 7 and settled; a host that then says 2 (its counter reset)
    # must not be followed: closing 2..6 would open 7 again, which exists, for ever.
    assert pair.both(lambda j: j.signed_on(KEYS, 7, NOW_MS + 1)) == 7
    pair.both(lambda j: sold(j, 100))
    assert pair.both(lambda j: j.close_batch(7, NOW_MS + 2)) == 8
    assert pair.both(lambda j: j.signed_on(KEYS, 2, NOW_MS + 3)) == 8
    for step, batch_no in enumerate(range(8, 12)):
        assert pair.both(lambda j, b=batch_no, t=step: j.close_batch(b, NOW_MS + 4 + t)) == (
            batch_no + 1
        )
    assert pair.both(lambda j: j.signed_on(KEYS, 20, NOW_MS + 9)) == 20  # forward: taken


def test_batch_numbers_end_at_999999(pair: Pair) -> None:
    assert pair.both(lambda j: j.signed_on(KEYS, 999_999, NOW_MS)) == 999_999
    refused = pair.both(lambda j: j.close_batch(999_999, NOW_MS + 1))
    assert refused == ("batch numbers are exhausted (999999): reinstall the terminal",)


def test_a_lower_host_batch_never_makes_close_batch_collide(pair: Pair) -> None:
    """An empty batch once took a lower host number, and settling walked into a batch
    that already existed; both journals now keep their own number instead."""
    assert pair.both(lambda j: j.signed_on(KEYS, 3, NOW_MS)) == 3
    assert pair.both(lambda j: j.close_batch(3, NOW_MS + 1)) == 4
    assert pair.both(lambda j: j.signed_on(KEYS, 2, NOW_MS + 2)) == 4
    assert pair.both(lambda j: j.close_batch(4, NOW_MS + 3)) == 5
    assert pair.memory.batch(4).state.value == "settled"


def test_updates_of_what_is_not_there_change_nothing_in_both(pair: Pair) -> None:
    pair.both(lambda j: j.settling(42, "0" * 31, NOW_MS))
    pair.both(lambda j: j.settlement_result(42, "balanced", "", HOST_AT))
    pair.both(lambda j: j.uploaded(42, 42))
    pair.both(lambda j: j.reversal_flagged(42, NOW_MS))
    pair.both(lambda j: j.log_event(NOW_MS, "note", {"n": [1, 2], "t": (3,)}))
    assert pair.memory.events(1)[0][2] == {"n": [1, 2], "t": [3]}


# -- memory only: commit faults and rollback ------------------------------------------------------

T1: Final = NOW_MS + 60_000


def prepared() -> MemoryJournal:
    """Signed on; sale 1 approved; a void of it written ('sending', its reversal pending)."""
    journal = install_memory(KEYS.pin_key)
    journal.signed_on(KEYS, 1, NOW_MS)
    stan = sold(journal, 1000)
    sale_txn = journal.txn_by_voucher(1, stan)
    assert sale_txn is not None
    original = Message("0200", sale_txn.request)

    def build(new_stan: int, batch_no: int) -> Message:
        return void(
            WHO, new_stan, batch_no, card=CARD, original=original, original_answer=answer(stan)
        )

    journal.begin(TxnKind.VOID, build, CARD.pan, NOW_MS, original_stan=stan, original_batch=1)
    return journal


def snapshot(journal: MemoryJournal) -> tuple[object, ...]:
    """Everything a reader can see, indexes included (by voucher, by batch, the newest)."""
    batches = [b.batch_no for b in journal.all_batches()]
    txns = journal.all_txns()
    return (
        journal.profile(),
        journal.protection(),
        txns,
        journal.all_reversals(),
        journal.all_batches(),
        journal.events(-1),
        journal.pending_reversal(),
        journal.last_receipted(),
        [journal.txns(b) for b in batches],
        [journal.txn_by_voucher(t.batch_no, t.stan) for t in txns],
    )


MUTATIONS: Final[dict[str, Callable[[MemoryJournal], object]]] = {
    "take_stan": lambda j: j.take_stan(T1, "sign-on"),
    "signed_on": lambda j: j.signed_on(OTHER_KEYS, 9, T1),
    "set_protection": lambda j: j.set_protection(
        ProtectionState(Protection.LOCKED, "TAMPER SIGNAL", T1), T1
    ),
    "log_event": lambda j: j.log_event(T1, "protection.unlock_refused", {}),
    "begin": lambda j: j.begin(TxnKind.BALANCE, balance_of, CARD.pan, T1),
    "finish (marks the sale voided)": lambda j: j.finish(2, answer(2), T1, host_at=HOST_AT),
    "fail": lambda j: j.fail(2, "98", T1, "timeout"),
    "recover": lambda j: j.recover(T1),
    "mark_printed": lambda j: j.mark_printed(1),
    "reversal_sent": lambda j: j.reversal_sent(2, T1),
    "reversal_cleared": lambda j: j.reversal_cleared(2, "25", T1),
    "reversal_flagged": lambda j: j.reversal_flagged(2, T1),
    "settling": lambda j: j.settling(1, "0" * 31, T1),
    "settlement_result": lambda j: j.settlement_result(1, "balanced", "", HOST_AT),
    "uploaded": lambda j: j.uploaded(1, 1),
    "close_batch": lambda j: j.close_batch(1, T1),
}


def always(fault: CommitFault) -> Callable[[], CommitFault]:
    return lambda: fault


@pytest.mark.parametrize("name", MUTATIONS)
def test_a_failed_commit_undoes_the_whole_method(name: str) -> None:
    journal = prepared()
    before = snapshot(journal)
    journal.log.commit_fault = always(CommitFault.FAIL)
    with pytest.raises(CommitFailedError):
        MUTATIONS[name](journal)
    journal.log.commit_fault = None
    assert not journal.log.in_transaction
    assert snapshot(journal) == before
    # The 'sending' index was rolled back too: recovery still finds the void.
    assert [t.id for t in journal.recover(T1)] == [2]


@pytest.mark.parametrize("name", MUTATIONS)
def test_a_crash_after_the_commit_keeps_the_whole_method(name: str) -> None:
    crashed, clean = prepared(), prepared()
    crashed.log.commit_fault = always(CommitFault.CRASH_AFTER)
    with pytest.raises(CrashError):
        MUTATIONS[name](crashed)
    crashed.log.commit_fault = None
    MUTATIONS[name](clean)
    assert snapshot(crashed) == snapshot(clean) != snapshot(prepared())
    assert crashed.recover(T1) == clean.recover(T1)


def test_a_method_that_raises_midway_is_rolled_back() -> None:
    journal = prepared()
    journal.finish(2, answer(2), T1, host_at=HOST_AT)
    before = snapshot(journal)

    def broken(stan: int, batch_no: int) -> Message:
        raise RuntimeError("the PIN pad died")

    with pytest.raises(RuntimeError):
        journal.begin(TxnKind.SALE, broken, CARD.pan, T1)
    assert snapshot(journal) == before


def test_a_second_pending_reversal_is_a_key_error_and_changes_nothing() -> None:
    journal = prepared()
    before = snapshot(journal)
    with pytest.raises(KeyError, match="already pending"):
        journal.begin(TxnKind.SALE, sale_of(100), CARD.pan, T1)
    assert snapshot(journal) == before


def test_reads_never_commit() -> None:
    journal = prepared()
    journal.finish(2, answer(2), T1, host_at=HOST_AT)

    def no_commit() -> CommitFault:
        raise AssertionError("a read committed")

    journal.log.commit_fault = no_commit
    snapshot(journal)
    journal.password_hashes()
    journal.txn(1)
    journal.batch(1)
    assert journal.recover(T1) == []  # nothing 'sending': nothing to write


def test_the_hashes_must_be_hashes() -> None:
    with pytest.raises(ValueError, match="hash_password"):
        MemoryJournal.install(
            terminal_id=TERMINAL,
            merchant_id=MERCHANT,
            merchant_name="COFFEE SHOP",
            master_key=KEYS.pin_key,
            mac_algorithm=MacAlgorithm.X9_19,
            admin_hash=ADMIN,
            unlock_hash=password_hashes()[1],
            now_ms=NOW_MS,
        )


# -- memory only: the core over a memory journal meets a commit fault ------------------------------


@pytest.fixture
def memory_rig(tmp_path: Path) -> Rig:
    """The rig of tests/terminal with a MemoryJournal in place of the SQLite one."""
    switch = build_rig(sqlite_url(tmp_path / "switch.sqlite3"))
    memory = install_memory(switch.devices[TERMINAL].master_key)
    rig = Rig(switch, memory, TerminalCore(memory, timeout_ms=1000), Issuer())  # type: ignore[arg-type]
    assert rig.run(SignOn()).status is Status.APPROVED
    assert rig.run(Sale(CARD, 1000)).status is Status.APPROVED
    return rig


def test_a_failed_commit_of_begin_sends_nothing_and_takes_no_stan(memory_rig: Rig) -> None:
    memory: MemoryJournal = memory_rig.journal  # type: ignore[assignment]
    before, sends = snapshot(memory), len(memory_rig.sends)
    # Nothing pending and nothing 'sending': begin makes the sale's first commit.
    memory.log.commit_fault = always(CommitFault.FAIL)
    with pytest.raises(CommitFailedError):
        memory_rig.core.start(Sale(CARD, 200), memory_rig.now_ms)
    memory.log.commit_fault = None
    assert snapshot(memory) == before and len(memory_rig.sends) == sends
    outcome = memory_rig.run(Sale(CARD, 200))
    assert outcome.txn is not None and outcome.txn.stan == memory.profile().stan == 3


def test_a_crash_after_begin_is_recovered_and_reversed(memory_rig: Rig) -> None:
    memory: MemoryJournal = memory_rig.journal  # type: ignore[assignment]
    memory.log.commit_fault = always(CommitFault.CRASH_AFTER)
    with pytest.raises(CrashError):
        memory_rig.core.start(Sale(CARD, 300), memory_rig.now_ms)
    memory.log.commit_fault = None
    stranded = memory.txn_by_voucher(1, 3)
    assert stranded is not None and stranded.state is TxnState.SENDING
    memory_rig.core = TerminalCore(memory, timeout_ms=1000)  # the terminal restarts
    before = len(memory_rig.sends)
    outcome = memory_rig.run(Balance(CARD))
    assert outcome.screen[:2] == (
        "VOUCHER 000003: NO ANSWER BEFORE THE TERMINAL STOPPED",
        AUTO_REVERSAL_OK,
    )
    assert sent_mtis(memory_rig, before) == ["0400", "0200"]
    reversal = memory.all_reversals()[-1]
    # The switch never saw the sale; it acknowledges the reversal anyway (and keeps it, so a
    # late original would be undone).
    assert (reversal.reason, reversal.cleared_code) == ("06", "00")
    assert memory.txn(stranded.id).state is TxnState.FAILED
