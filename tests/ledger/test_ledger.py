"""The ledger's rules, over every store: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from cardtally.ledger import (
    AMOUNT_MINOR_MAX,
    EXPIRED_REFERENCE,
    HISTORY_LIMIT_MAX,
    Account,
    AccountSpec,
    Ledger,
    LedgerError,
    LedgerErrorCode,
    LedgerStore,
    Posted,
    Transfer,
    TransferKind,
    TransferSpec,
    verify,
)
from tests.ledger.conftest import (
    ACCOUNTS,
    CNY,
    HOLD_TTL_MS,
    NOW,
    USD,
    open_all,
    pending,
    resolve,
    single,
)

Code = LedgerErrorCode
POST, VOID = TransferKind.POST, TransferKind.VOID
LOAD = single("load", "funding", "card", 10_000)
HOLD = pending("hold", "card", "merchant", 3_000)
DONE = pending("done", "card", "merchant", 1_000)


def balances(ledger: Ledger, account_id: str) -> tuple[int, int, int, int]:
    a = ledger.account(account_id)
    return a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending


def snapshot(store: LedgerStore) -> tuple[list[Account], list[Transfer]]:
    return list(store.all_accounts()), sorted(store.all_transfers(), key=lambda t: t.id)


@pytest.fixture
def world(ledger: Ledger) -> Ledger:
    """Accounts opened, the card loaded with 100.00, a live 30.00 hold, a voided 10.00 hold."""
    open_all(ledger, NOW - 10)
    ledger.transfer(LOAD, NOW - 4)
    ledger.transfer(HOLD, NOW - 3)
    ledger.transfer(DONE, NOW - 2)
    ledger.transfer(resolve("done-void", DONE, VOID), NOW - 1)
    return ledger


# --- accounts ----------------------------------------------------------------------------


def test_open_account_is_idempotent(ledger: Ledger) -> None:
    first = ledger.open_account(ACCOUNTS[1], NOW)
    assert first == Account("card", CNY, 0, ACCOUNTS[1].label, NOW)
    assert ledger.open_account(ACCOUNTS[1], NOW + 5) == first
    assert ledger.account("card") == first


def test_open_account_with_a_different_spec_is_refused(ledger: Ledger) -> None:
    ledger.open_account(ACCOUNTS[1], NOW)
    changed = dataclasses.replace(ACCOUNTS[1], floor_minor=-100)
    with pytest.raises(LedgerError) as caught:
        ledger.open_account(changed, NOW)
    assert caught.value.code is Code.ACCOUNT_EXISTS_DIFFERENT
    assert "floor_minor" in str(caught.value)
    assert ledger.account("card").floor_minor == 0


@pytest.mark.parametrize(
    "spec",
    [
        AccountSpec("", CNY, 0),
        AccountSpec("x" * 129, CNY, 0),
        AccountSpec("a", "CNY", 0),
        AccountSpec("a", "15", 0),
        AccountSpec("a", CNY, 1),
        AccountSpec("a", CNY, 0, "l" * 201),
    ],
    ids=["empty-id", "long-id", "alpha-currency", "short-currency", "positive-floor", "label"],
)
def test_bad_account_specs_are_refused(
    store: LedgerStore, ledger: Ledger, spec: AccountSpec
) -> None:
    with pytest.raises(LedgerError) as caught:
        ledger.open_account(spec, NOW)
    assert caught.value.code is Code.INVALID_SPEC
    assert list(store.all_accounts()) == []


def test_unknown_account(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no account 'ghost'") as caught:
        ledger.account("ghost")
    assert caught.value.code is Code.ACCOUNT_NOT_FOUND
    with pytest.raises(LedgerError):
        ledger.history("ghost")


# --- single transfers --------------------------------------------------------------------


def test_single_transfer_posts_both_sides(store: LedgerStore, ledger: Ledger) -> None:
    open_all(ledger)
    posted = ledger.transfer(LOAD, NOW)
    assert posted == Posted(Transfer.of(LOAD, NOW), created=True)
    assert balances(ledger, "funding") == (10_000, 0, 0, 0)
    assert balances(ledger, "card") == (0, 10_000, 0, 0)
    assert ledger.account("card").balance_minor == 10_000
    assert ledger.account("funding").balance_minor == -10_000
    assert verify(store) == []


def test_history_is_newest_first_and_bounded(world: Ledger) -> None:
    world.transfer(single("spend", "card", "merchant", 100), NOW + 1)
    assert [t.id for t in world.history("card")] == ["spend", "done-void", "done", "hold", "load"]
    assert [t.id for t in world.history("card", limit=2)] == ["spend", "done-void"]
    assert [t.id for t in world.history("funding")] == ["load"]
    # Within one millisecond the order is by id, the same in every store.
    for transfer_id in ("b", "a", "c"):
        world.transfer(single(transfer_id, "funding", "merchant", 1), NOW + 2)
    assert [t.id for t in world.history("merchant", limit=3)] == ["c", "b", "a"]
    for limit in (0, HISTORY_LIMIT_MAX + 1):
        with pytest.raises(ValueError, match="limit"):
            world.history("card", limit=limit)


def test_repeat_returns_the_first_result_without_revalidating(world: Ledger) -> None:
    spend = single("spend", "card", "merchant", 7_000)
    first = world.transfer(spend, NOW + 1)
    assert first.created
    # The card is now at its floor: the same spend as a new transfer would be refused,
    # but the repeat is the same request and gets the first answer.
    again = world.transfer(spend, NOW + 99)
    assert again == Posted(first.transfer, created=False)
    assert again.transfer.at_ms == NOW + 1
    assert world.account("card").available_minor == 0
    with pytest.raises(LedgerError) as caught:
        world.transfer(dataclasses.replace(spend, id="spend-2"), NOW + 2)
    assert caught.value.code is Code.EXCEEDS_FLOOR


def test_repeat_of_a_pending_after_its_expiry_still_answers(world: Ledger) -> None:
    assert world.transfer(HOLD, NOW + HOLD_TTL_MS + 1) == Posted(Transfer.of(HOLD, NOW - 3), False)


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 1},
        {"reference": "RRN 000000000001"},
        {"credit_account_id": "merchant"},
        {"kind": TransferKind.PENDING, "expires_at_ms": NOW + 10},
    ],
    ids=["amount", "reference", "account", "kind"],
)
def test_same_id_different_content_is_refused(
    store: LedgerStore, world: Ledger, change: dict[str, object]
) -> None:
    before = snapshot(store)
    with pytest.raises(LedgerError) as caught:
        world.transfer(dataclasses.replace(LOAD, **change), NOW + 1)  # type: ignore[arg-type]
    assert caught.value.code is Code.EXISTS_DIFFERENT
    assert "'load' exists with a different" in str(caught.value)
    assert snapshot(store) == before


# --- refusals ----------------------------------------------------------------------------

REFUSALS: list[tuple[str, Callable[[], TransferSpec], Code]] = [
    ("unknown-credit", lambda: single("x", "funding", "ghost", 1), Code.ACCOUNT_NOT_FOUND),
    ("unknown-debit", lambda: single("x", "ghost", "card", 1), Code.ACCOUNT_NOT_FOUND),
    ("other-currency", lambda: single("x", "funding", "usd", 1), Code.CURRENCY_MISMATCH),
    ("spec-currency", lambda: single("x", "usd", "funding", 1, USD), Code.CURRENCY_MISMATCH),
    ("same-account", lambda: single("x", "card", "card", 1), Code.SAME_ACCOUNT),
    ("zero", lambda: single("x", "funding", "card", 0), Code.INVALID_AMOUNT),
    ("negative", lambda: single("x", "funding", "card", -5), Code.INVALID_AMOUNT),
    (
        "too-large",
        lambda: single("x", "funding", "card", AMOUNT_MINOR_MAX + 1),
        Code.INVALID_AMOUNT,
    ),
    ("not-int", lambda: single("x", "funding", "card", True), Code.INVALID_AMOUNT),
    ("partial-void", lambda: resolve("x", HOLD, VOID, 2_999), Code.INVALID_AMOUNT),
    # 100.00 loaded, 30.00 held: 70.00 is available.
    ("debit-floor", lambda: single("x", "card", "merchant", 7_001), Code.EXCEEDS_FLOOR),
    ("pending-floor", lambda: pending("x", "card", "merchant", 7_001), Code.EXCEEDS_FLOOR),
    ("credit-limit", lambda: single("x", "credit", "merchant", 5_001), Code.EXCEEDS_FLOOR),
    ("exists", lambda: dataclasses.replace(LOAD, amount_minor=1), Code.EXISTS_DIFFERENT),
    (
        "no-pending",
        lambda: dataclasses.replace(resolve("x", HOLD, POST), pending_id="nope"),
        Code.PENDING_NOT_FOUND,
    ),
    ("posted-twice", lambda: resolve("x", DONE, POST), Code.PENDING_ALREADY_RESOLVED),
    ("voided-twice", lambda: resolve("x", DONE, VOID), Code.PENDING_ALREADY_RESOLVED),
    ("over-post", lambda: resolve("x", HOLD, POST, 3_001), Code.EXCEEDS_PENDING_AMOUNT),
    ("over-void", lambda: resolve("x", HOLD, VOID, 3_001), Code.EXCEEDS_PENDING_AMOUNT),
    ("post-a-single", lambda: resolve("x", LOAD, POST), Code.NOT_PENDING),
    (
        "pending-id-on-single",
        lambda: dataclasses.replace(LOAD, id="x", pending_id="hold"),
        Code.INVALID_SPEC,
    ),
    (
        "pending-without-expiry",
        lambda: dataclasses.replace(HOLD, id="x", expires_at_ms=None),
        Code.INVALID_SPEC,
    ),
    ("expiry-in-past", lambda: pending("x", "card", "merchant", 1, NOW), Code.INVALID_SPEC),
    (
        "expiry-on-single",
        lambda: dataclasses.replace(LOAD, id="x", expires_at_ms=NOW + 5),
        Code.INVALID_SPEC,
    ),
    (
        "post-without-pending-id",
        lambda: dataclasses.replace(resolve("x", HOLD, POST), pending_id=None),
        Code.INVALID_SPEC,
    ),
    (
        "post-other-accounts",
        lambda: dataclasses.replace(resolve("x", HOLD, POST), credit_account_id="funding"),
        Code.INVALID_SPEC,
    ),
    (
        "post-other-currency",
        lambda: dataclasses.replace(resolve("x", HOLD, POST), currency=USD),
        Code.INVALID_SPEC,
    ),
    ("reserved-id", lambda: single("expire:x", "funding", "card", 1), Code.INVALID_SPEC),
    ("empty-id", lambda: single("", "funding", "card", 1), Code.INVALID_SPEC),
    ("long-id", lambda: single("x" * 129, "funding", "card", 1), Code.INVALID_SPEC),
    ("bad-currency", lambda: single("x", "funding", "card", 1, "CNY"), Code.INVALID_SPEC),
    (
        "long-reference",
        lambda: dataclasses.replace(LOAD, id="x", reference="r" * 65),
        Code.INVALID_SPEC,
    ),
    (
        "unknown-kind",
        lambda: dataclasses.replace(LOAD, id="x", kind="refund"),  # type: ignore[arg-type]
        Code.INVALID_SPEC,
    ),
]


@pytest.mark.parametrize(("make", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_transfer_changes_nothing(
    store: LedgerStore, world: Ledger, make: Callable[[], TransferSpec], code: Code
) -> None:
    before = snapshot(store)
    with pytest.raises(LedgerError) as caught:
        world.transfer(make(), NOW + 1)
    assert caught.value.code is code, caught.value
    assert snapshot(store) == before
    assert verify(store) == []


def test_every_error_code_is_reachable() -> None:
    reached = {code for _, _, code in REFUSALS} | {
        Code.ACCOUNT_EXISTS_DIFFERENT,
        Code.PENDING_EXPIRED,
    }
    assert reached == set(Code)


def test_error_is_one_clear_line_with_its_code(world: Ledger) -> None:
    with pytest.raises(LedgerError) as caught:
        world.transfer(single("x", "card", "merchant", 7_001), NOW)
    error = caught.value
    assert str(error) == (
        "transfer 'x' would take account 'card' to an available -1, below its floor 0 "
        "(available now 7000) (exceeds_floor)"
    )
    assert "\n" not in str(error)
    assert error.args == (Code.EXCEEDS_FLOOR, error.message)


@pytest.mark.parametrize("now_ms", [-1, True])
def test_time_must_be_a_non_negative_integer(ledger: Ledger, now_ms: int) -> None:
    with pytest.raises(ValueError, match="now_ms"):
        ledger.open_account(ACCOUNTS[0], now_ms)


# --- two-phase transfers -----------------------------------------------------------------


def test_pending_holds_then_full_post(store: LedgerStore, world: Ledger) -> None:
    assert balances(world, "card") == (0, 10_000, 3_000, 0)
    assert balances(world, "merchant") == (0, 0, 0, 3_000)
    assert world.account("card").available_minor == 7_000
    assert world.account("card").balance_minor == 10_000
    posted = world.transfer(resolve("capture", HOLD, POST), NOW + 1)
    assert posted.created and posted.transfer.pending_id == "hold"
    assert balances(world, "card") == (3_000, 10_000, 0, 0)
    assert balances(world, "merchant") == (0, 3_000, 0, 0)
    assert verify(store) == []


def test_partial_post_releases_the_rest(store: LedgerStore, world: Ledger) -> None:
    world.transfer(resolve("capture", HOLD, POST, 1_200), NOW + 1)
    assert balances(world, "card") == (1_200, 10_000, 0, 0)
    assert balances(world, "merchant") == (0, 1_200, 0, 0)
    assert world.account("card").available_minor == 8_800
    assert verify(store) == []


def test_void_releases_the_hold(world: Ledger) -> None:
    world.transfer(resolve("release", HOLD, VOID), NOW + 1)
    assert balances(world, "card") == (0, 10_000, 0, 0)
    assert balances(world, "merchant") == (0, 0, 0, 0)
    assert world.account("card").available_minor == 10_000


def test_a_hold_is_resolved_at_most_once(world: Ledger) -> None:
    world.transfer(resolve("capture", HOLD, POST, 1_000), NOW + 1)
    for kind in (POST, VOID):
        with pytest.raises(LedgerError, match="resolved by post 'capture'") as caught:
            world.transfer(resolve(f"again-{kind}", HOLD, kind, 1_000), NOW + 2)
        assert caught.value.code is Code.PENDING_ALREADY_RESOLVED
    # The first resolution's repeat is still answered.
    assert not world.transfer(resolve("capture", HOLD, POST, 1_000), NOW + 3).created


def test_post_at_expiry_is_refused_but_void_is_allowed(world: Ledger) -> None:
    expires = HOLD.expires_at_ms
    assert expires is not None
    assert world.transfer(resolve("early", HOLD, POST, 1), expires - 1).created is True
    late = pending("late", "card", "merchant", 500, NOW + 10)
    world.transfer(late, NOW)
    with pytest.raises(LedgerError, match="expired at") as caught:
        world.transfer(resolve("late-post", late, POST), NOW + 10)
    assert caught.value.code is Code.PENDING_EXPIRED
    assert world.transfer(resolve("late-void", late, VOID), NOW + 10).created


def test_expire_holds_voids_lapsed_holds_once(store: LedgerStore, world: Ledger) -> None:
    soon = pending("soon", "credit", "merchant", 4_000, NOW + 10)
    world.transfer(soon, NOW)
    assert world.account("credit").available_minor == -4_000
    assert world.expire_holds(NOW + 9) == []
    voids = world.expire_holds(NOW + HOLD_TTL_MS)
    assert [(v.id, v.pending_id, v.kind, v.reference) for v in voids] == [
        ("expire:soon", "soon", VOID, EXPIRED_REFERENCE),
        ("expire:hold", "hold", VOID, EXPIRED_REFERENCE),
    ]
    assert all(v.at_ms == NOW + HOLD_TTL_MS for v in voids)
    assert voids[0].amount_minor == 4_000
    assert world.account("credit").available_minor == 0
    assert balances(world, "card") == (0, 10_000, 0, 0)
    assert balances(world, "merchant") == (0, 0, 0, 0)
    assert world.expire_holds(NOW + 2 * HOLD_TTL_MS) == []
    with pytest.raises(LedgerError) as caught:
        world.transfer(resolve("too-late", soon, POST), NOW + HOLD_TTL_MS)
    assert caught.value.code is Code.PENDING_ALREADY_RESOLVED
    assert verify(store) == []


def test_expire_holds_is_bounded(world: Ledger) -> None:
    for n in range(3):
        world.transfer(pending(f"h{n}", "card", "merchant", 10, NOW + 5 + n), NOW)
    assert [v.pending_id for v in world.expire_holds(NOW + 100, limit=2)] == ["h0", "h1"]
    assert [v.pending_id for v in world.expire_holds(NOW + 100, limit=2)] == ["h2"]
    with pytest.raises(ValueError, match="limit"):
        world.expire_holds(NOW, limit=0)


# --- floors ------------------------------------------------------------------------------


def test_debit_account_spends_down_to_zero_and_no_further(world: Ledger) -> None:
    world.transfer(single("all", "card", "merchant", 7_000), NOW)
    assert world.account("card").available_minor == 0
    with pytest.raises(LedgerError) as caught:
        world.transfer(pending("one-more", "card", "merchant", 1), NOW)
    assert caught.value.code is Code.EXCEEDS_FLOOR


def test_credit_account_spends_down_to_its_limit(world: Ledger) -> None:
    world.transfer(pending("auth", "credit", "merchant", 2_000), NOW)
    world.transfer(single("buy", "credit", "merchant", 3_000), NOW)
    credit = world.account("credit")
    assert (credit.balance_minor, credit.available_minor) == (-3_000, -5_000)
    with pytest.raises(LedgerError, match="below its floor -5000") as caught:
        world.transfer(single("over", "credit", "merchant", 1), NOW)
    assert caught.value.code is Code.EXCEEDS_FLOOR
    # Paying the card back makes room again.
    world.transfer(single("repay", "funding", "credit", 1_000), NOW)
    assert world.transfer(single("over", "credit", "merchant", 1), NOW).created


def test_accounts_without_a_floor_go_negative(store: LedgerStore, world: Ledger) -> None:
    world.transfer(single("big", "funding", "merchant", AMOUNT_MINOR_MAX), NOW)
    assert world.account("funding").balance_minor == -AMOUNT_MINOR_MAX - 10_000
    assert verify(store) == []
