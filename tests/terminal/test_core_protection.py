"""Protection mode (domain brief: "after tampering or a blow the terminal locks itself and needs
the unlock password; its data must survive"; docs/terminal.md "Protection mode")."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtally.terminal import (
    Balance,
    Command,
    Complete,
    Detail,
    Done,
    PreAuth,
    Refund,
    Reprint,
    Sale,
    Settle,
    SignOn,
    Status,
    Tamper,
    TerminalCore,
    Unlock,
    Void,
)
from cardtally.terminal._model import Protection
from tests.switch.support import CARD
from tests.terminal.support import (
    ADMIN,
    LOSE_ANSWER,
    UNLOCK,
    Rig,
    build,
    faults_on,
    journal_rows,
    reopen,
)

WRONG = "000000"
LOCKED_BY_TAMPER = (
    "TERMINAL LOCKED (PROTECTION MODE: TAMPER SIGNAL). NO TRANSACTIONS UNTIL UNLOCKED WITH THE "
    "UNLOCK PASSWORD",
)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    """Signed on, with one approved sale (voucher 2) and one approved pre-auth (voucher 3)."""
    built = build(tmp_path)
    assert built.run(SignOn()).status is Status.APPROVED
    assert built.run(Sale(CARD, 1000)).status is Status.APPROVED
    assert built.run(PreAuth(CARD, 5000)).status is Status.APPROVED
    return built


def rrn_of(rig: Rig, voucher: int) -> str:
    txn = rig.journal.txn_by_voucher(1, voucher)
    assert txn is not None and txn.rrn is not None
    return txn.rrn


def every_command(rig: Rig) -> dict[str, Command]:
    return {
        "sale": Sale(CARD, 100),
        "balance": Balance(CARD),
        "preauth": PreAuth(CARD, 100),
        "void": Void(2, ADMIN),
        "refund": Refund(CARD, rrn_of(rig, 2), 100, ADMIN),
        "complete": Complete(3),
        "settle": Settle(ADMIN),
        "sign-on": SignOn(),
        "reprint last": Reprint(),
        "reprint voucher": Reprint(2),
        "detail": Detail(),
        "detail of a batch": Detail(1),
    }


COMMANDS = [
    "sale",
    "balance",
    "preauth",
    "void",
    "refund",
    "complete",
    "settle",
    "sign-on",
    "reprint last",
    "reprint voucher",
    "detail",
    "detail of a batch",
]


def test_tamper_locks_the_terminal(rig: Rig) -> None:
    outcome = rig.run(Tamper())
    assert outcome.status is Status.DONE
    assert outcome.screen == ("TAMPER DETECTED: TERMINAL LOCKED (PROTECTION MODE)",)
    state = rig.journal.protection()
    assert state.mode is Protection.LOCKED and state.locked
    assert state.reason == "TAMPER SIGNAL"
    assert state.since_ms == rig.now_ms
    assert any(kind == "protection.locked" for _, kind, _ in rig.journal.events())


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_refused_while_locked(rig: Rig, name: str) -> None:
    command = every_command(rig)[name]
    rig.run(Tamper())
    before = len(rig.sends)
    outcome = rig.run(command)
    assert outcome.status is Status.REFUSED
    assert outcome.screen == LOCKED_BY_TAMPER
    assert outcome.printout == ()
    assert len(rig.sends) == before


@pytest.mark.parametrize("name", ["sale", "settle", "reprint voucher", "detail"])
def test_the_same_commands_go_again_once_unlocked(rig: Rig, name: str) -> None:
    command = every_command(rig)[name]
    rig.run(Tamper())
    assert rig.run(Unlock(UNLOCK)).status is Status.DONE
    outcome = rig.run(command)
    assert outcome.status in (Status.APPROVED, Status.DONE), outcome.screen


def test_a_locked_terminal_does_not_send_its_pending_reversal(rig: Rig) -> None:
    assert rig.run(Sale(CARD, 900), faults_on(len(rig.sends) + 1, what=LOSE_ANSWER)).code == "98"
    rig.run(Tamper())
    before = len(rig.sends)
    assert rig.run(Balance(CARD)).status is Status.REFUSED
    assert len(rig.sends) == before
    pending = rig.journal.pending_reversal()
    assert pending is not None and pending.sends == 0


def test_the_lock_survives_reopening_the_journal(rig: Rig) -> None:
    rig.run(Tamper())
    journal = reopen(rig)
    try:
        state = journal.protection()
        assert state.locked and state.reason == "TAMPER SIGNAL"
        core = TerminalCore(journal)
        step = core.start(Sale(CARD, 100), rig.now_ms + 5000)
        assert isinstance(step, Done), "a locked terminal sends nothing"
        assert step.outcome.status is Status.REFUSED
        assert step.outcome.screen == LOCKED_BY_TAMPER
        # the data survived too
        assert [t.stan for t in journal.txns(1)] == [2, 3]
    finally:
        journal.close()


def test_a_new_core_over_the_same_journal_is_still_locked(rig: Rig) -> None:
    rig.run(Tamper())
    rig.core = TerminalCore(rig.journal)
    assert rig.journal.protection().locked
    assert rig.run(Detail()).status is Status.REFUSED


# -- wrong administrator passwords ----------------------------------------------------------------


def test_three_wrong_admin_passwords_lock_the_terminal(rig: Rig) -> None:
    before = len(rig.sends)
    screens = [rig.run(Void(2, WRONG)).screen for _ in range(3)]
    assert screens == [
        ("WRONG ADMINISTRATOR PASSWORD (1 OF 3)",),
        ("WRONG ADMINISTRATOR PASSWORD (2 OF 3)",),
        ("WRONG ADMINISTRATOR PASSWORD. TERMINAL LOCKED (3 WRONG ADMINISTRATOR PASSWORDS)",),
    ]
    assert len(rig.sends) == before
    state = rig.journal.protection()
    assert state.locked and state.reason == "3 WRONG ADMINISTRATOR PASSWORDS"
    assert state.admin_failures == 3
    refused = rig.run(Sale(CARD, 100))
    assert refused.status is Status.REFUSED
    assert refused.screen[0].startswith(
        "TERMINAL LOCKED (PROTECTION MODE: 3 WRONG ADMINISTRATOR PASSWORDS)"
    )
    # the right password no longer helps: only the unlock password does
    assert rig.run(Void(2, ADMIN)).status is Status.REFUSED
    assert not rig.journal.txn_by_voucher(1, 2).voided  # type: ignore[union-attr]


def test_wrong_passwords_count_across_void_refund_and_settle(rig: Rig) -> None:
    rig.run(Void(2, WRONG))
    rig.run(Refund(CARD, rrn_of(rig, 2), 100, WRONG))
    assert not rig.journal.protection().locked
    outcome = rig.run(Settle(WRONG))
    assert outcome.status is Status.REFUSED
    assert rig.journal.protection().locked
    assert rig.journal.batch(1).state.value == "open"


def test_a_right_password_resets_the_count(rig: Rig) -> None:
    rig.run(Void(2, WRONG))
    rig.run(Void(2, WRONG))
    assert rig.journal.protection().admin_failures == 2
    assert rig.run(Refund(CARD, rrn_of(rig, 2), 100, ADMIN)).status is Status.APPROVED
    state = rig.journal.protection()
    assert state.admin_failures == 0 and not state.locked
    assert rig.run(Void(2, WRONG)).screen == ("WRONG ADMINISTRATOR PASSWORD (1 OF 3)",)
    assert rig.run(Void(2, WRONG)).screen == ("WRONG ADMINISTRATOR PASSWORD (2 OF 3)",)
    assert not rig.journal.protection().locked


# -- unlock ---------------------------------------------------------------------------------------


def test_a_wrong_unlock_password_leaves_it_locked(rig: Rig) -> None:
    rig.run(Tamper())
    outcome = rig.run(Unlock("99999999"))
    assert outcome.status is Status.REFUSED
    assert outcome.screen == ("WRONG UNLOCK PASSWORD: TERMINAL STAYS LOCKED",)
    assert rig.journal.protection().locked
    assert rig.run(Sale(CARD, 100)).status is Status.REFUSED
    assert any(kind == "protection.unlock_refused" for _, kind, _ in rig.journal.events())


def test_the_admin_password_does_not_unlock(rig: Rig) -> None:
    rig.run(Tamper())
    assert rig.run(Unlock(ADMIN)).status is Status.REFUSED
    assert rig.journal.protection().locked


def test_the_unlock_password_unlocks_and_clears_the_count(rig: Rig) -> None:
    for _ in range(3):
        rig.run(Void(2, WRONG))
    assert rig.journal.protection().locked
    outcome = rig.run(Unlock(UNLOCK))
    assert outcome.status is Status.DONE
    assert outcome.screen == ("TERMINAL UNLOCKED",)
    state = rig.journal.protection()
    assert state.mode is Protection.OFF and state.admin_failures == 0
    assert state.reason is None
    sold = rig.run(Sale(CARD, 100))
    assert sold.status is Status.APPROVED
    assert rig.run(Void(2, WRONG)).screen == ("WRONG ADMINISTRATOR PASSWORD (1 OF 3)",)


def test_unlock_when_not_locked_changes_nothing(rig: Rig) -> None:
    outcome = rig.run(Unlock(UNLOCK))
    assert outcome.status is Status.DONE
    assert outcome.screen == ("TERMINAL IS NOT LOCKED",)
    assert rig.journal.protection().mode is Protection.OFF


def test_tamper_and_unlock_work_before_sign_on(tmp_path: Path) -> None:
    fresh = build(tmp_path)
    assert fresh.run(Tamper()).status is Status.DONE
    assert fresh.run(SignOn()).status is Status.REFUSED
    assert fresh.run(Unlock(UNLOCK)).status is Status.DONE
    assert fresh.run(SignOn()).status is Status.APPROVED
    assert len(fresh.sends) == 1


# -- the data is untouched ------------------------------------------------------------------------


def test_protection_never_changes_transactions_reversals_or_batches(rig: Rig) -> None:
    assert rig.run(Sale(CARD, 900), faults_on(len(rig.sends) + 1, what=LOSE_ANSWER)).code == "98"
    tables = ("terminal_txn", "terminal_reversal", "terminal_batch")
    before = {table: journal_rows(rig, table) for table in tables}
    txns_before = rig.journal.txns(1)
    pending_before = rig.journal.pending_reversal()
    rig.run(Tamper())
    for name in COMMANDS:
        rig.run(every_command(rig)[name])
    rig.run(Unlock("99999999"))
    rig.run(Tamper())
    rig.run(Unlock(UNLOCK))
    for _ in range(3):
        rig.run(Settle(WRONG))  # locks again by passwords
    rig.run(Unlock(UNLOCK))
    assert {table: journal_rows(rig, table) for table in tables} == before
    assert rig.journal.txns(1) == txns_before
    assert rig.journal.pending_reversal() == pending_before
    assert len(before["terminal_txn"]) == 3 and before["terminal_reversal"][-1]["pending_slot"] == 1
