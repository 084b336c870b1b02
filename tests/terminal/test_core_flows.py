"""The terminal core against the real switch core: the stories of the seeds, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtally.terminal import (
    AUTO_REVERSAL_OK,
    Balance,
    Reprint,
    Sale,
    SignOn,
    Status,
    TxnState,
)
from tests.switch.support import CARD
from tests.terminal.support import LOSE_ANSWER, UNREACHABLE, Rig, build, faults_on


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    built = build(tmp_path)
    assert built.run(SignOn()).status is Status.APPROVED
    return built


def test_sale_approved_prints_both_copies(rig: Rig) -> None:
    outcome = rig.run(Sale(CARD, 1234))
    assert outcome.status is Status.APPROVED, outcome.screen
    assert len(outcome.printout) == 2
    assert "MERCHANT COPY" in outcome.printout[0]
    assert outcome.txn is not None and outcome.txn.state is TxnState.APPROVED
    assert rig.journal.pending_reversal() is None


def test_lost_answer_leaves_reversal_that_goes_first(rig: Rig) -> None:
    lost = rig.run(Sale(CARD, 5000), faults_on(2, what=LOSE_ANSWER))
    assert lost.status is Status.REVERSAL_PENDING, lost.screen
    assert rig.journal.pending_reversal() is not None
    nxt = rig.run(Balance(CARD))
    assert AUTO_REVERSAL_OK in nxt.screen
    assert nxt.status is Status.APPROVED
    assert rig.journal.pending_reversal() is None


def test_unreachable_switch_reversal_cleared_as_nothing_to_undo(rig: Rig) -> None:
    failed = rig.run(Sale(CARD, 5000), faults_on(2, what=UNREACHABLE))
    assert failed.status is Status.REVERSAL_PENDING
    nxt = rig.run(Balance(CARD))
    assert AUTO_REVERSAL_OK in nxt.screen


def test_reprint_last(rig: Rig) -> None:
    sold = rig.run(Sale(CARD, 1234, paper_out=True))
    assert sold.printout == ()
    again = rig.run(Reprint())
    assert "*** REPRINT ***" in again.printout[0]
