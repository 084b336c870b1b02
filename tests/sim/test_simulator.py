"""The simulator: determinism, a fixed budget of seeds with every fault kind, and the
invariant checks shown to catch a deliberately broken core with a replayable seed."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import pytest

from cardtally.sim import Fault, FaultPlan, RunResult, simulate
from cardtally.sim._run import Run

#: CI's budget; raise it locally with CARDTALLY_CHAOS_SEEDS for a longer hunt.
BUDGET_SEEDS = int(os.environ.get("CARDTALLY_CHAOS_SEEDS", "24"))
BUDGET_SWIPES = 300


def test_same_seed_same_digest_twice() -> None:
    first = simulate(11, 200)
    second = simulate(11, 200)
    assert first.digest == second.digest
    assert first.events == second.events
    assert first.faults == second.faults


def test_different_seeds_differ() -> None:
    digests = {simulate(seed, 120).digest for seed in (1, 2, 3)}
    assert len(digests) == 3


def test_a_run_with_no_faults_injects_none_and_keeps_the_promise() -> None:
    result = simulate(5, 200, FaultPlan.none())
    assert result.ok, result.violation
    assert not result.faults
    assert result.statuses["approved"] > 100
    assert not result.resolutions


def test_the_budget_keeps_the_promise_with_every_fault_kind_exercised() -> None:
    results = [simulate(seed, BUDGET_SWIPES) for seed in range(1, BUDGET_SEEDS + 1)]
    results += [simulate(seed, BUDGET_SWIPES, swarm=True) for seed in range(1001, 1009)]
    failures = [r for r in results if not r.ok]
    assert not failures, _explain(failures[0])
    kinds = Counter(where.split(" ")[0] for r in results for where in r.faults.elements())
    for fault in Fault:
        assert kinds[fault.value] > 0, f"{fault.value} was never injected"
    seen = _with_kind(results)
    for hop in ("terminal>switch", "switch>issuer", "issuer>switch", "switch>terminal"):
        for fault in ("loss", "delay", "duplicate", "reorder", "corrupt"):
            assert f"{fault} {hop}" in seen, f"{fault} never struck {hop}"
    resolved = Counter[str]()
    for r in results:
        resolved.update(r.resolutions)
    assert resolved["unresolved"] == 0
    assert sum(resolved.values()) > 0


def _with_kind(results: list[RunResult]) -> set[str]:
    return {where for r in results for where in r.faults}


def _explain(result: RunResult) -> str:
    assert result.violation is not None
    timeline = "\n".join(result.timeline[-40:])
    return (
        f"seed {result.seed}: {result.violation.invariant}: {result.violation.detail}\n{timeline}"
    )


# -- mutation checks: a deliberately broken core must be caught, on a replayable seed ---------


def _caught(
    invariant: str,
    mutation: Callable[[Run], None],
    plan: FaultPlan,
    *,
    swipes: int = 200,
    seeds: range = range(1, 9),
) -> RunResult:
    for seed in seeds:
        result = simulate(seed, swipes, plan, mutation=mutation)
        if result.violation is not None:
            assert result.violation.invariant == invariant, _explain(result)
            again = simulate(seed, swipes, plan, mutation=mutation)
            assert again.digest == result.digest
            assert again.violation == result.violation
            return result
    raise AssertionError(f"no seed in {seeds} caught the broken {invariant}")


def _no_mutation(run: Run) -> None:
    del run


def test_a_terminal_that_deletes_its_reversal_after_three_tries_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cardtally.sim import _journal

    def delete_instead(self: _journal.MemoryJournal, reversal_id: int, now_ms: int) -> None:
        del now_ms
        with self.log.transaction():
            self.log.delete(self._reversals, reversal_id)
            self.log.delete(self._pending, _journal._SLOT)

    monkeypatch.setattr(_journal.MemoryJournal, "reversal_flagged", delete_instead)
    found = _caught("reversals_kept", _no_mutation, FaultPlan.parse("loss=0.3"))
    assert "deleted" in found.violation.detail  # type: ignore[union-attr]


def test_an_issuer_that_ignores_duplicates_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.issuer import _core

    seen = Counter[str]()

    def every_request_new(message):  # type: ignore[no-untyped-def]
        key = original(message)
        seen[key] += 1
        return f"{key}|{seen[key]}"

    original = _core.request_key
    monkeypatch.setattr(_core, "request_key", every_request_new)
    _caught("no_double_debit", lambda run: seen.clear(), FaultPlan.parse("duplicate@si=0.3"))


def test_a_switch_that_relays_a_late_approval_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.switch._core import SwitchCore
    from cardtally.switch._effects import Ignored
    from cardtally.switch._model import TxnState

    timed_out, issuer_message = SwitchCore.timed_out, SwitchCore.issuer_message

    def queue_but_keep_waiting(self, txn_id, now_ms, store):  # type: ignore[no-untyped-def]
        # Queues the reversal as it should, but keeps the terminal waiting for the issuer.
        txn = store.txn(txn_id)
        if txn is not None and txn.state is TxnState.FORWARDED:
            self._queue_reversal(txn, TxnState.TIMED_OUT, now_ms, store)
            return Ignored("still waiting", txn_id)
        return timed_out(self, txn_id, now_ms, store)

    def relay_late(self, raw, now_ms, store):  # type: ignore[no-untyped-def]
        from cardtally.wire import DecodeError, decode_message

        try:
            message = decode_message(raw)
        except DecodeError:
            return issuer_message(self, raw, now_ms, store)
        txn = store.txn_by_issuer_key(message.stan or "", message.get(7) or "")
        late = txn is not None and txn.state is TxnState.TIMED_OUT
        if late and message.mti == "0210" and message.response_code:
            return self._relay(txn, message, now_ms, store)  # the bug: relayed after all
        return issuer_message(self, raw, now_ms, store)

    monkeypatch.setattr(SwitchCore, "timed_out", queue_but_keep_waiting)
    monkeypatch.setattr(SwitchCore, "issuer_message", relay_late)
    _caught("receipt_has_settlement", _no_mutation, FaultPlan.parse("delay@is=0.2"))


def test_a_day_end_that_skips_refunds_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.clearing._issuer_leg import Refunded
    from cardtally.issuer import _follow_ups as follow_ups
    from cardtally.sim import _dayend

    def skip(store, original_id, day, now_ms):  # type: ignore[no-untyped-def]
        del store, day, now_ms
        return Refunded("nothing", 0, f"skipped:{original_id}", None, "skipped")

    monkeypatch.setattr(_dayend, "refund_one_sided", skip)
    # The day end is the backstop for what slips past the parties. The issuer refuses a
    # request that arrives after its own reversal ("reversed before it arrived"); with that
    # guard off, such a request debits after the advice found nothing to undo, and only the
    # day end gives that money back.
    monkeypatch.setattr(follow_ups, "_close_the_door", lambda request, store: None)
    _caught("debit_has_receipt_or_refund", _no_mutation, FaultPlan.parse("delay@si=0.3"))


def test_a_ledger_store_that_forgets_a_credit_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from cardtally.sim._ledger_store import UndoableLedgerStore

    save = UndoableLedgerStore.save_balances

    def forget_settlement_credits(self, account):  # type: ignore[no-untyped-def]
        if account.id.startswith("issuer:settlement:") and account.credits_posted:
            account = replace(account, credits_posted=account.credits_posted - 1)
        save(self, account)

    monkeypatch.setattr(UndoableLedgerStore, "save_balances", forget_settlement_credits)
    _caught("ledger_balances", _no_mutation, FaultPlan.none())


def test_a_ledger_without_floors_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.ledger import Account

    monkeypatch.setattr(Account, "below_floor", lambda self: False)
    _caught("balance_floor", _no_mutation, FaultPlan.none(), swipes=300)


def test_an_issuer_that_forgets_refund_notices_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.issuer._core import IssuerCore
    from cardtally.notices import NoticeKind

    notices = IssuerCore._notices

    def no_refund_notices(self, request, decision, txn, store):  # type: ignore[no-untyped-def]
        if decision.notice is not None and decision.notice[0] is NoticeKind.REFUND:
            return ()
        return notices(self, request, decision, txn, store)

    monkeypatch.setattr(IssuerCore, "_notices", no_refund_notices)
    _caught("notices_match_ledger", _no_mutation, FaultPlan.none(), swipes=300)


def test_a_switch_whose_queue_never_sends_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.switch._core import SwitchCore

    monkeypatch.setattr(SwitchCore, "advices_due", lambda self, now_ms, store, links_up: [])
    _caught("queues_drain", _no_mutation, FaultPlan.parse("loss=0.1"))


def test_a_core_that_raises_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtally.issuer._core import IssuerCore

    handle = IssuerCore.handle
    calls = Counter[str]()

    def raise_on_the_twentieth(self, message, now_ms, store, *args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("a bug in the issuer")
        return handle(self, message, now_ms, store, *args)

    monkeypatch.setattr(IssuerCore, "handle", raise_on_the_twentieth)
    found = _caught(
        "no_unexpected_errors", lambda run: calls.clear(), FaultPlan.none(), seeds=range(1, 2)
    )
    assert found.timeline, "the timeline of the transaction is shown"
