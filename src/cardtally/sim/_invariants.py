"""The promise, as checks: some after every step, the rest once the cycle's faults stop.

After every step (they must hold at every instant):
- ``ledger_balances``: every account's stored balances equal what its transfers imply, so
  debits equal credits;
- ``balance_floor``: no account is below its floor;
- ``no_double_debit``: no swipe (terminal, batch, STAN) has more than one approved debit;
- ``reversals_kept``: a terminal's reversal record is never deleted, and is cleared only by
  an answer that checks out (00 or 25 once sent; the original's own answer before that); a
  switch advice is never deleted and acknowledged only with a final answer;
- ``no_unexpected_errors``: no core raised an exception that no injected fault explains.

At the end of the cycle (faults stopped, queues drained, day ends run):
- ``queues_drain``: no reversal pending at any terminal, no advice waiting at the switch,
  every batch settled;
- ``debit_has_receipt_or_refund``: every debit still in effect has the terminal's receipt for
  that amount; every debit undone (reversed or refunded at day end) has its notice;
- ``receipt_has_settlement``: every receipt the terminals printed is cleared to its merchant
  by a day end, with the cardholder's money still taken;
- ``notices_match_ledger``: one notice per cardholder money movement, none without one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cardtally.issuer._history import standing
from cardtally.issuer._model import TxnKind, TxnRecord
from cardtally.ledger import Transfer, TransferAudit, TransferKind
from cardtally.sim._issuer_store import MemoryIssuerStore
from cardtally.sim._journal import MemoryJournal
from cardtally.sim._switch_store import MemorySwitchStore
from cardtally.switch._model import Txn, txn_id_of
from cardtally.terminal._model import MONEY_KINDS, BatchState, JournalTxn, PendingReversal
from cardtally.terminal._model import TxnState as TerminalState

INVARIANTS: Final = (
    "ledger_balances",
    "balance_floor",
    "no_double_debit",
    "reversals_kept",
    "no_unexpected_errors",
    "queues_drain",
    "debit_has_receipt_or_refund",
    "receipt_has_settlement",
    "notices_match_ledger",
)
_DEBITS: Final = frozenset({TxnKind.SALE, TxnKind.COMPLETION, TxnKind.PREAUTH})
#: What a day end clears to a merchant (a pre-authorisation is a hold, cleared at completion).
_CLEARED_KINDS: Final = frozenset({TxnKind.SALE, TxnKind.COMPLETION, TxnKind.VOID, TxnKind.REFUND})
_REVERSAL_CLEAR_CODES: Final = frozenset({"00", "25"})
_ADVICE_RETRY_CODES: Final = frozenset({"96", "98"})
_CARD_ACCOUNT_PREFIX: Final = "account:card-"


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str
    tags: tuple[str, ...] = ()
    rrns: tuple[int, ...] = ()


class ViolationFound(Exception):  # noqa: N818 - it is the finding, not an error of the run
    def __init__(self, violation: Violation) -> None:
        super().__init__(f"{violation.invariant}: {violation.detail}")
        self.violation = violation


class LedgerWatch:
    """Feeds each new transfer to the ledger's own audit and checks the accounts it touched."""

    def __init__(self, store: MemoryIssuerStore) -> None:
        self._store = store
        self._audit = TransferAudit(store.ledger)
        self._seen = 0

    def check(self) -> Violation | None:
        ledger = self._store.ledger
        count = ledger.transfer_count()
        if count == self._seen:
            return None
        touched: set[str] = set()
        for transfer in ledger.transfers_since(self._seen):
            self._audit.feed(transfer)
            touched.update((transfer.debit_account_id, transfer.credit_account_id))
        self._seen = count
        if self._audit.violations:
            v = self._audit.violations[0]
            return Violation("ledger_balances", f"transfer {v.subject}: {v.kind}: {v.detail}")
        return self._accounts(sorted(touched))

    def _accounts(self, account_ids: Iterable[str]) -> Violation | None:
        for account_id in account_ids:
            account = self._store.ledger.account(account_id)
            if account is None:
                return Violation("ledger_balances", f"account {account_id} has transfers, no row")
            mismatch = self._audit.mismatch(account)
            if mismatch is not None:
                return Violation("ledger_balances", f"account {account_id}: {mismatch.detail}")
            # Worked out here, not asked of the account: the check must not share the
            # ledger's own code, or a bug there would hide itself.
            if account.floor_minor is not None and account.available_minor < account.floor_minor:
                return Violation(
                    "balance_floor",
                    f"account {account_id}: available {account.available_minor} is below its "
                    f"floor {account.floor_minor}",
                )
        return None


class Checker:
    """Runs the checks; raises :class:`ViolationFound` at the first broken one."""

    def __init__(
        self,
        issuer: MemoryIssuerStore,
        switch: MemorySwitchStore,
        journals: dict[str, MemoryJournal],
        txn_tags: dict[int, str],
    ) -> None:
        self.issuer = issuer
        self.switch = switch
        self.journals = journals
        self.txn_tags = txn_tags
        self.ledger = LedgerWatch(issuer)
        self._issuer_seen = issuer.txn_count()
        self._debits: dict[tuple[str, int, str], list[str]] = {}
        self._pending: dict[str, PendingReversal | None] = {t: None for t in journals}
        self._advices = 0
        self.steps = 0

    def fail(self, violation: Violation) -> None:
        raise ViolationFound(violation)

    # -- after every step ------------------------------------------------------------------

    def after_issuer_step(self, tag: str) -> None:
        self.steps += 1
        problem = self.ledger.check()
        if problem is not None:
            self.fail(_with_tag(problem, tag))
        count = self.issuer.txn_count()
        if count != self._issuer_seen:
            for txn in self.issuer.txns_since(self._issuer_seen):
                self._debit_once(txn, tag)
            self._issuer_seen = count

    def _debit_once(self, txn: TxnRecord, tag: str) -> None:
        if txn.kind not in _DEBITS or not txn.approved or txn.transfer_id is None:
            return
        switch_txn = self._switch_txn_of_rrn(txn.rrn)
        key = (
            (switch_txn.terminal_id, switch_txn.batch_no, switch_txn.stan)
            if switch_txn is not None
            else (txn.terminal_id, -1, txn.rrn)
        )
        debits = self._debits.setdefault(key, [])
        debits.append(txn.id)
        if len(debits) > 1:
            rrns = tuple(r for r in (txn_id_of(txn.rrn),) if r is not None)
            self.fail(
                Violation(
                    "no_double_debit",
                    f"swipe {key[0]} batch {key[1]} STAN {key[2]} debited {len(debits)} times "
                    f"at the issuer: {', '.join(debits)}",
                    (tag,),
                    rrns,
                )
            )

    def after_switch_step(self, tag: str) -> None:
        self.steps += 1
        advices = self.switch.advice_count()
        if advices < self._advices:
            self.fail(
                Violation("reversals_kept", "an advice vanished from the switch's queue", (tag,))
            )
        self._advices = advices

    def after_terminal_step(self, terminal_id: str, tag: str) -> None:
        self.steps += 1
        journal = self.journals[terminal_id]
        pending = journal.pending_reversal()
        before = self._pending[terminal_id]
        if before is not None and (pending is None or pending.id != before.id):
            self._cleared_properly(journal, before, tag)
        self._pending[terminal_id] = pending

    def _cleared_properly(self, journal: MemoryJournal, was: PendingReversal, tag: str) -> None:
        found = {r.id: r for r in journal.all_reversals()}.get(was.id)
        if found is None:
            self.fail(
                Violation(
                    "reversals_kept",
                    f"terminal {journal.terminal_id}: the reversal of STAN {was.stan:06d} "
                    f"(batch {was.batch_no:06d}) was deleted",
                    (tag,),
                )
            )
            return
        if found.cleared_at_ms is None:
            return  # still pending (flagged, or another step's view)
        if found.sends and found.cleared_code not in _REVERSAL_CLEAR_CODES:
            self.fail(
                Violation(
                    "reversals_kept",
                    f"terminal {journal.terminal_id}: the reversal of STAN {found.stan:06d} was "
                    f"sent {found.sends} times and cleared with {found.cleared_code!r}, not by an "
                    "answer that undoes or finds nothing to undo",
                    (tag,),
                )
            )

    def unexpected(self, party: str, what: str, error: str, tag: str) -> None:
        self.fail(Violation("no_unexpected_errors", f"{party} failed in {what}: {error}", (tag,)))

    # -- end of the cycle ------------------------------------------------------------------

    def end_of_cycle(self, matched: set[int]) -> None:
        """``matched``: the switch transactions the day ends matched (cleared, or a same-day
        sale and its void, which clear nothing and are settled by that)."""
        self._queues_drained()
        receipts = self._receipts()
        notices = {n.id for n in self.issuer.notices()}
        self._debits_accounted(receipts, notices)
        self._receipts_settled(receipts, matched)
        self._notices_match(notices)

    def _queues_drained(self) -> None:
        for terminal_id, journal in self.journals.items():
            pending = journal.pending_reversal()
            if pending is not None:
                self.fail(
                    Violation(
                        "queues_drain",
                        f"terminal {terminal_id} still has the reversal of STAN "
                        f"{pending.stan:06d} pending after the faults stopped",
                    )
                )
            for batch in journal.all_batches():
                # An open batch with no approved money in it has nothing to settle.
                stuck = batch.state is BatchState.SETTLING or (
                    batch.state is BatchState.OPEN and _has_money(journal.txns(batch.batch_no))
                )
                if stuck:
                    self.fail(
                        Violation(
                            "queues_drain",
                            f"terminal {terminal_id} batch {batch.batch_no:06d} is "
                            f"{batch.state.value}, not settled",
                        )
                    )
        for advice in self.switch.all_advices():
            if advice.ack_code in _ADVICE_RETRY_CODES:
                self.fail(
                    Violation(
                        "reversals_kept",
                        f"advice {advice.id} acknowledged with {advice.ack_code}, which asks "
                        "for a resend",
                        tuple(t for t in (self.txn_tags.get(advice.txn_id),) if t),
                        (advice.txn_id,),
                    )
                )
            if advice.acked_at_ms is None:
                self.fail(
                    Violation(
                        "queues_drain",
                        f"advice {advice.id} (RRN {advice.txn_id:012d}) still waits after "
                        f"{advice.attempts} sends",
                        tuple(t for t in (self.txn_tags.get(advice.txn_id),) if t),
                        (advice.txn_id,),
                    )
                )

    def _receipts(self) -> dict[tuple[str, int, str], JournalTxn]:
        """Approved money transactions at the terminals, by (terminal, batch, STAN)."""
        receipts = {}
        for terminal_id, journal in self.journals.items():
            for txn in journal.all_txns():
                if txn.kind in _CLEARED_KINDS and txn.state is TerminalState.APPROVED:
                    receipts[(terminal_id, txn.batch_no, f"{txn.stan:06d}")] = txn
        return receipts

    def _debits_accounted(
        self, receipts: dict[tuple[str, int, str], JournalTxn], notices: set[str]
    ) -> None:
        for txn in self.issuer.all_txns():
            if txn.kind not in (TxnKind.SALE, TxnKind.COMPLETION) or not txn.approved:
                continue
            if txn.transfer_id is None or txn.id.startswith("dayend:"):
                continue
            switch_txn = self._switch_txn_of_rrn(txn.rrn)
            key = _key(switch_txn) if switch_txn is not None else None
            receipt = receipts.get(key) if key is not None else None
            now = standing(txn, self.issuer)
            left = txn.amount_minor - now.refunded_minor if now.in_effect else 0
            refunded = self._dayend_refund(txn)
            if refunded is not None:
                left -= refunded.amount_minor
            where = self._describe(txn, switch_txn)
            if left > 0 and not now.voided and (receipt is None or receipt.voided):
                self.fail(
                    Violation(
                        "debit_has_receipt_or_refund",
                        f"{where}: {left} still debited with no receipt at the terminal and "
                        "no refund",
                        self._tags(switch_txn),
                        _rrns(switch_txn),
                    )
                )
            if receipt is not None and receipt.amount_minor != txn.amount_minor:
                self.fail(
                    Violation(
                        "debit_has_receipt_or_refund",
                        f"{where}: the receipt says {receipt.amount_minor}, the issuer debited "
                        f"{txn.amount_minor}",
                        self._tags(switch_txn),
                        _rrns(switch_txn),
                    )
                )
            self._undo_noticed(txn, switch_txn, now.in_effect, refunded, notices)

    def _undo_noticed(
        self,
        txn: TxnRecord,
        switch_txn: Txn | None,
        in_effect: bool,
        refunded: TxnRecord | None,
        notices: set[str],
    ) -> None:
        undo_ids = [
            f.transfer_id
            for f in self.issuer.followers(txn.id)
            if f.kind is TxnKind.REVERSAL and f.approved and f.transfer_id
        ]
        if refunded is not None and refunded.transfer_id:
            undo_ids.append(refunded.transfer_id)
        if not in_effect and not undo_ids:
            return
        for transfer_id in undo_ids:
            if f"notice:{transfer_id}" not in notices:
                self.fail(
                    Violation(
                        "debit_has_receipt_or_refund",
                        f"{self._describe(txn, switch_txn)}: money given back by {transfer_id} "
                        "with no notice to the cardholder",
                        self._tags(switch_txn),
                        _rrns(switch_txn),
                    )
                )

    def _receipts_settled(
        self, receipts: dict[tuple[str, int, str], JournalTxn], settled: set[int]
    ) -> None:
        for key, receipt in receipts.items():
            switch_txn = self.switch.txn_by_terminal_key(*key)
            if switch_txn is None:
                self.fail(
                    Violation(
                        "receipt_has_settlement",
                        f"terminal {key[0]} STAN {key[2]} (batch {key[1]:06d}): a receipt for "
                        f"{receipt.amount_minor} the switch never logged",
                    )
                )
                return
            if switch_txn.id not in settled:
                self.fail(
                    Violation(
                        "receipt_has_settlement",
                        f"{self._describe_switch(switch_txn)}: the terminal printed a receipt "
                        f"for {receipt.amount_minor} but no day end cleared it to the merchant "
                        f"(switch state {switch_txn.state.value})",
                        self._tags(switch_txn),
                        _rrns(switch_txn),
                    )
                )

    def _notices_match(self, notices: set[str]) -> None:
        moving = {
            f"notice:{t.id}" for t in self.issuer.ledger.transfers_since(0) if _needs_notice(t)
        }
        missing = sorted(moving - notices)
        extra = sorted(notices - moving)
        if missing:
            self.fail(
                Violation(
                    "notices_match_ledger",
                    f"{len(missing)} cardholder money movement(s) without a notice, first "
                    f"{missing[0].removeprefix('notice:')}",
                )
            )
        if extra:
            self.fail(
                Violation(
                    "notices_match_ledger",
                    f"{len(extra)} notice(s) with no money movement behind, first {extra[0]}",
                )
            )

    # -- helpers -----------------------------------------------------------------------------

    def _dayend_refund(self, txn: TxnRecord) -> TxnRecord | None:
        for follower in self.issuer.followers(txn.id):
            if follower.id.startswith("dayend:") and follower.transfer_id:
                return follower
        return None

    def _switch_txn_of_rrn(self, rrn: str) -> Txn | None:
        txn_id = txn_id_of(rrn)
        return None if txn_id is None else self.switch.txn(txn_id)

    def _tags(self, switch_txn: Txn | None) -> tuple[str, ...]:
        if switch_txn is None:
            return ()
        tag = self.txn_tags.get(switch_txn.id)
        return (tag,) if tag else ()

    def _describe(self, txn: TxnRecord, switch_txn: Txn | None) -> str:
        if switch_txn is not None:
            return self._describe_switch(switch_txn)
        return f"issuer {txn.kind.value} {txn.id} (RRN {txn.rrn})"

    @staticmethod
    def _describe_switch(txn: Txn) -> str:
        return (
            f"{txn.kind.value} RRN {txn.rrn} at terminal {txn.terminal_id} STAN {txn.stan} "
            f"batch {txn.batch_no:06d}, {txn.amount_minor}"
        )


def _key(txn: Txn) -> tuple[str, int, str]:
    return (txn.terminal_id, txn.batch_no, txn.stan)


def _rrns(txn: Txn | None) -> tuple[int, ...]:
    return () if txn is None else (txn.id,)


def _with_tag(violation: Violation, tag: str) -> Violation:
    if not tag:
        return violation
    return Violation(violation.invariant, violation.detail, (tag, *violation.tags), violation.rrns)


def _has_money(txns: list[JournalTxn]) -> bool:
    return any(t.kind in MONEY_KINDS and t.state is TerminalState.APPROVED for t in txns)


def _needs_notice(transfer: Transfer) -> bool:
    """A posted movement of a cardholder's money (holds and opening deposits tell no one)."""
    if transfer.kind not in (TransferKind.SINGLE, TransferKind.POST):
        return False
    sides = (transfer.debit_account_id, transfer.credit_account_id)
    if any(side.startswith("issuer:funding:") for side in sides):
        return False
    return any(side.startswith(_CARD_ACCOUNT_PREFIX) for side in sides)
