"""Random runs of the ledger against a plain model, with verify() after every step.

The model is a dict of expected balances and the transfers it expects stored; it
predicts, for each request, either success or the one refusal the ledger must
give. Runs cover opens, single transfers, holds, posts (full, partial, too much),
voids, expiry as time advances, repeats and same-id-different-content requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cardtally.ledger import (
    EXPIRE_LIMIT_DEFAULT,
    LEDGER_TREE,
    AccountSpec,
    Ledger,
    LedgerError,
    LedgerErrorCode,
    LedgerStore,
    MemoryLedgerStore,
    Posted,
    SqlLedgerStore,
    Transfer,
    TransferKind,
    TransferSpec,
    verify,
)
from cardtally.storage import migrate, open_engine, sqlite_url

Code = LedgerErrorCode
SINGLE, PENDING, POST, VOID = TransferKind
ACCOUNT_IDS = ("a", "b", "c", "d", "e")
account_ids = st.sampled_from(ACCOUNT_IDS)
# (debit, credit) pairs, weighted towards those that can move money: "a" funds "b"
# and "c", which spend back; the rest are refused (other currency, unopened, same).
pairs = st.sampled_from(
    (
        *(("a", "b"), ("a", "c"), ("b", "c"), ("c", "b"), ("b", "a"), ("c", "a")) * 3,
        ("a", "d"),
        ("d", "a"),
        ("b", "e"),
        ("e", "a"),
        ("c", "c"),
    )
)
currencies = st.sampled_from(("156", "840"))
# None: the debit account's own currency, so that most transfers pass the currency check.
transfer_currencies = st.sampled_from((None, None, None, None, None, "156", "840"))
amounts = st.integers(-1, 1_200)
# Indices into sorted lists of known ids, taken modulo the list's length.
picks = st.integers(0, 10**6)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, store: LedgerStore, close: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.store = store
        self.close = close
        self.ledger = Ledger(store)
        self.now = 1_000
        self.serial = 0
        self.specs: dict[str, AccountSpec] = {}
        # account id -> [debits_posted, credits_posted, debits_pending, credits_pending]
        self.balances: dict[str, list[int]] = {}
        self.stored: dict[str, Transfer] = {}
        self.resolved: dict[str, str] = {}  # pending id -> the id of its post or void
        self.caller_ids: list[str] = []  # ids chosen by callers, repeatable via transfer()

    def teardown(self) -> None:
        self.close()

    # --- rules -----------------------------------------------------------------------

    @initialize()
    def open_the_usual_accounts(self) -> None:
        # A funding account without a floor, a debit account, a credit account and
        # one in another currency; "e" stays unopened until a run opens it.
        for spec in (
            AccountSpec("a", "156", None, "account a"),
            AccountSpec("b", "156", 0, "account b"),
            AccountSpec("c", "156", -300, "account c"),
            AccountSpec("d", "840", None, "account d"),
        ):
            self.open_account(spec.id, spec.currency, spec.floor_minor)

    @rule(
        account_id=account_ids,
        currency=currencies,
        floor=st.sampled_from((None, 0, -300)),
    )
    def open_account(self, account_id: str, currency: str, floor: int | None) -> None:
        spec = AccountSpec(account_id, currency, floor, f"account {account_id}")
        known = self.specs.get(account_id)
        if known is not None and known != spec:
            self._refused(
                lambda: self.ledger.open_account(spec, self.now), Code.ACCOUNT_EXISTS_DIFFERENT
            )
            return
        assert self.ledger.open_account(spec, self.now).spec == spec
        if known is None:
            self.specs[account_id] = spec
            self.balances[account_id] = [0, 0, 0, 0]

    @rule(pair=pairs, amount=amounts, currency=transfer_currencies)
    def single(self, pair: tuple[str, str], amount: int, currency: str | None) -> None:
        debit, credit = pair
        currency = currency or self._currency_of(debit)
        self._attempt(TransferSpec(self._fresh_id(), debit, credit, amount, currency))

    @rule(
        pair=pairs,
        amount=amounts,
        currency=transfer_currencies,
        ttl_ms=st.integers(-5, 2_000),
    )
    def hold(self, pair: tuple[str, str], amount: int, currency: str | None, ttl_ms: int) -> None:
        debit, credit = pair
        self._attempt(
            TransferSpec(
                self._fresh_id(),
                debit,
                credit,
                amount,
                currency or self._currency_of(debit),
                kind=PENDING,
                expires_at_ms=self.now + ttl_ms,
            )
        )

    @precondition(lambda self: any(t.kind is PENDING for t in self.stored.values()))
    @rule(
        kind=st.sampled_from((POST, VOID)),
        pick=picks,
        delta=st.sampled_from((0, 0, 0, -1, -100, 1)),
        swap=st.sampled_from((False, False, False, True)),
    )
    def resolve_hold(self, kind: TransferKind, pick: int, delta: int, swap: bool) -> None:
        holds = sorted(i for i, t in self.stored.items() if t.kind is PENDING)
        hold = self.stored[holds[pick % len(holds)]]
        debit, credit = hold.debit_account_id, hold.credit_account_id
        if swap:
            debit, credit = credit, debit
        amount = hold.amount_minor + delta
        self._attempt(
            TransferSpec(
                self._fresh_id(),
                debit,
                credit,
                amount,
                hold.currency,
                kind=kind,
                pending_id=hold.id,
            )
        )

    @rule(kind=st.sampled_from((POST, VOID)), pick=picks)
    def resolve_something_else(self, kind: TransferKind, pick: int) -> None:
        others = sorted(i for i, t in self.stored.items() if t.kind is not PENDING)
        target = self.stored.get([*others, "nope"][pick % (len(others) + 1)])
        if target is None:
            spec = TransferSpec(self._fresh_id(), "a", "b", 1, "156", kind=kind, pending_id="nope")
        else:
            spec = dataclasses.replace(
                target.spec, id=self._fresh_id(), kind=kind, pending_id=target.id
            )
        self._attempt(spec)

    @rule(ms=st.integers(1, 1_500))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule()
    def expire(self) -> None:
        lapsed = [
            t
            for t in self.stored.values()
            if t.kind is PENDING
            and t.id not in self.resolved
            and t.expires_at_ms is not None
            and t.expires_at_ms <= self.now
        ]
        lapsed.sort(key=lambda t: (t.expires_at_ms, t.id))
        voids = self.ledger.expire_holds(self.now)
        event(f"expire: {min(len(voids), 3)}{'+' if len(voids) > 3 else ''} voided")
        assert [v.pending_id for v in voids] == [t.id for t in lapsed[:EXPIRE_LIMIT_DEFAULT]]
        for void in voids:
            assert void.id == f"expire:{void.pending_id}"
            assert void.kind is VOID and void.at_ms == self.now
            self._record(void)

    @precondition(lambda self: self.caller_ids)
    @rule(pick=picks)
    def repeat(self, pick: int) -> None:
        first = self.stored[self.caller_ids[pick % len(self.caller_ids)]]
        assert self.ledger.transfer(first.spec, self.now) == Posted(first, created=False)

    @precondition(lambda self: self.caller_ids)
    @rule(pick=picks, change=st.sampled_from(("amount", "reference")))
    def conflict(self, pick: int, change: str) -> None:
        first = self.stored[self.caller_ids[pick % len(self.caller_ids)]]
        spec = first.spec
        if change == "amount":
            spec = dataclasses.replace(spec, amount_minor=spec.amount_minor + 1)
        else:
            spec = dataclasses.replace(spec, reference=spec.reference + "!")
        self._refused(lambda: self.ledger.transfer(spec, self.now), Code.EXISTS_DIFFERENT)

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def ledger_verifies(self) -> None:
        assert verify(self.store) == []

    @invariant()
    def store_matches_the_model(self) -> None:
        for account_id in ACCOUNT_IDS:
            account = self.store.account(account_id)
            if account_id not in self.specs:
                assert account is None
                continue
            assert account is not None and account.spec == self.specs[account_id]
            found = [
                account.debits_posted,
                account.credits_posted,
                account.debits_pending,
                account.credits_pending,
            ]
            assert found == self.balances[account_id], (account_id, found)
        assert sorted(t.id for t in self.store.all_transfers()) == sorted(self.stored)

    # --- the model ---------------------------------------------------------------------

    def _attempt(self, spec: TransferSpec) -> None:
        expected = self._predict(spec)
        # Shown by --hypothesis-show-statistics: how often each outcome was exercised.
        event(f"{spec.kind.value}: {expected.value if expected else 'applied'}")
        if expected is not None:
            self._refused(lambda: self.ledger.transfer(spec, self.now), expected)
            return
        posted = self.ledger.transfer(spec, self.now)
        assert posted == Posted(Transfer.of(spec, self.now), created=True)
        self._record(posted.transfer)
        self.caller_ids.append(spec.id)

    def _predict(self, spec: TransferSpec) -> Code | None:
        """The refusal the ledger must give, or None if it must apply the transfer."""
        resolves = spec.kind in (POST, VOID)
        return (
            _first(
                (spec.debit_account_id == spec.credit_account_id, Code.SAME_ACCOUNT),
                (spec.amount_minor <= 0, Code.INVALID_AMOUNT),
            )
            or (self._predict_resolution(spec) if resolves else None)
            or _first(
                (
                    spec.kind is PENDING and (spec.expires_at_ms or 0) <= self.now,
                    Code.INVALID_SPEC,
                )
            )
            or self._predict_accounts(spec)
        )

    def _predict_resolution(self, spec: TransferSpec) -> Code | None:
        hold = self.stored.get(spec.pending_id or "")
        if hold is None:
            return Code.PENDING_NOT_FOUND
        ours = (spec.debit_account_id, spec.credit_account_id, spec.currency)
        return _first(
            (hold.kind is not PENDING, Code.NOT_PENDING),
            (hold.id in self.resolved, Code.PENDING_ALREADY_RESOLVED),
            (spec.kind is POST and self.now >= (hold.expires_at_ms or 0), Code.PENDING_EXPIRED),
            (
                ours != (hold.debit_account_id, hold.credit_account_id, hold.currency),
                Code.INVALID_SPEC,
            ),
            (spec.amount_minor > hold.amount_minor, Code.EXCEEDS_PENDING_AMOUNT),
            (spec.kind is VOID and spec.amount_minor != hold.amount_minor, Code.INVALID_AMOUNT),
        )

    def _predict_accounts(self, spec: TransferSpec) -> Code | None:
        for account_id in sorted((spec.debit_account_id, spec.credit_account_id)):
            if account_id not in self.specs:
                return Code.ACCOUNT_NOT_FOUND
            if self.specs[account_id].currency != spec.currency:
                return Code.CURRENCY_MISMATCH
        sides = (spec.debit_account_id, spec.credit_account_id)
        for account_id, after in zip(sides, self._moved(spec), strict=True):
            floor = self.specs[account_id].floor_minor
            if floor is not None and after[1] - after[0] - after[2] < floor:
                return Code.EXCEEDS_FLOOR
        return None

    def _moved(self, spec: TransferSpec | Transfer) -> tuple[list[int], list[int]]:
        debit = list(self.balances[spec.debit_account_id])
        credit = list(self.balances[spec.credit_account_id])
        amount = spec.amount_minor
        if spec.kind in (POST, VOID):
            held = self.stored[spec.pending_id or ""].amount_minor
            debit[2] -= held
            credit[3] -= held
        if spec.kind in (SINGLE, POST):
            debit[0] += amount
            credit[1] += amount
        if spec.kind is PENDING:
            debit[2] += amount
            credit[3] += amount
        return debit, credit

    def _record(self, transfer: Transfer) -> None:
        debit, credit = self._moved(transfer)
        self.balances[transfer.debit_account_id] = debit
        self.balances[transfer.credit_account_id] = credit
        self.stored[transfer.id] = transfer
        if transfer.pending_id is not None:
            self.resolved[transfer.pending_id] = transfer.id

    def _currency_of(self, account_id: str) -> str:
        spec = self.specs.get(account_id)
        return "156" if spec is None else spec.currency

    def _fresh_id(self) -> str:
        self.serial += 1
        return f"t{self.serial}"

    def _refused(self, call: Callable[[], object], code: Code) -> None:
        try:
            call()
        except LedgerError as error:
            assert error.code is code, f"expected {code}, got {error}"
        else:
            raise AssertionError(f"expected a refusal with {code}")


def _first(*rules: tuple[bool, Code]) -> Code | None:
    """The code of the first broken rule, in the order the ledger checks them."""
    return next((code for broken, code in rules if broken), None)


class MemoryLedgerMachine(LedgerMachine):
    def __init__(self) -> None:
        super().__init__(MemoryLedgerStore())


def test_memory_ledger_against_the_model() -> None:
    run_state_machine_as_test(
        MemoryLedgerMachine,
        settings=settings(max_examples=200, stateful_step_count=50, deadline=None),
    )


def test_sql_ledger_against_the_model(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "ledger.sqlite3"))
    migrate(engine, LEDGER_TREE)

    class SqlLedgerMachine(LedgerMachine):
        def __init__(self) -> None:
            # Each run works in a transaction rolled back at the end, so one migrated
            # database serves every run.
            conn = engine.connect()
            outer = conn.begin()

            def close() -> None:
                outer.rollback()
                conn.close()

            super().__init__(SqlLedgerStore(conn), close)

    try:
        run_state_machine_as_test(
            SqlLedgerMachine,
            settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
        )
    finally:
        engine.dispose()
