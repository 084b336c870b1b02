"""Property: whatever the faults, a receipt at the terminal means money at the switch, and
money at the switch means a receipt at the terminal, once the pending reversal has gone.

Random cashier sessions (sales, balance inquiries, voids, settlements) run against the real
switch core with random faults on each send (answer lost, switch unreachable, answer with a
broken MAC). Then one clean exchange lets the pending reversal through, and:

- the terminal holds at most one pending reversal at every step;
- every sale or void the terminal approved (printed) is approved at the switch, under the
  same RRN, and every sale or void the switch holds approved for the terminal was printed;
- a clean settlement of the last batch balances.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardtally.storage import transaction
from cardtally.terminal import Balance, Command, Sale, Settle, SignOn, Status, Void
from cardtally.terminal._model import TxnState
from tests.switch.support import CARD, TERMINAL
from tests.terminal.support import ADMIN, BAD_MAC, LOSE_ANSWER, UNREACHABLE, Rig, build

FAULTS = st.sampled_from([None, None, None, LOSE_ANSWER, UNREACHABLE, BAD_MAC])
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), st.integers(1, 100_000)),
        st.tuples(st.just("balance"), st.just(0)),
        st.tuples(st.just("void"), st.just(0)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


def _command(rig: Rig, action: tuple[str, int]) -> Command:
    kind, amount = action
    if kind == "sale":
        return Sale(CARD, amount)
    if kind == "void":
        batch = rig.journal.profile().batch_no
        sales = [t for t in rig.journal.txns(batch) if t.kind == "sale" and t.approved]
        live = [t for t in sales if not t.voided]
        return Void(live[-1].stan if live else 999_999, ADMIN)
    if kind == "settle":
        return Settle(ADMIN)
    return Balance(CARD)


def _switch_approved(rig: Rig) -> set[tuple[str, str, int]]:
    with transaction(rig.switch.engine) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, kind, amount_minor FROM switch_txn WHERE terminal_id = :t"
                " AND state = 'approved' AND kind IN ('sale', 'void')"
            ),
            {"t": TERMINAL},
        )
        return {(f"{row.id:012d}", row.kind, int(row.amount_minor)) for row in rows}


def _terminal_approved(rig: Rig) -> set[tuple[str, str, int]]:
    batches = range(1, rig.journal.profile().batch_no + 1)
    txns = [t for b in batches for t in rig.journal.txns(b)]
    return {
        (t.rrn or "", t.kind.value, t.amount_minor or 0)
        for t in txns
        if t.state is TxnState.APPROVED and t.kind.value in ("sale", "void")
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(actions=ACTIONS, faults=st.lists(FAULTS, min_size=60, max_size=60))
def test_receipts_and_switch_agree_whatever_the_faults(
    actions: list[tuple[str, int]], faults: list[str | None]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        rig = build(Path(folder))
        assert rig.run(SignOn()).status is Status.APPROVED
        schedule = iter(faults)
        for action in actions:
            rig.run(_command(rig, action), lambda _n, _b: next(schedule, None))
            pending = rig.journal.pending_reversal()
            assert pending is None or pending.cleared_at_ms is None
        if rig.journal.batch(rig.journal.profile().batch_no).state == "settling":
            # An interrupted settlement holds the batch: the cashier finishes it first.
            assert rig.run(Settle(ADMIN)).status is Status.APPROVED
        cleared = rig.run(Balance(CARD))
        assert cleared.status is Status.APPROVED, cleared.screen
        assert rig.journal.pending_reversal() is None
        assert _terminal_approved(rig) == _switch_approved(rig)
        settled = rig.run(Settle(ADMIN))
        assert settled.status is Status.APPROVED, settled.screen
        assert settled.data["result"] == "balanced", settled.printout
        rig.journal.close()
