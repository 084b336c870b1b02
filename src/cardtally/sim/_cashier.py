"""The people at a terminal: what they do next, given what the terminal showed them.

A cashier sells, checks balances, voids and refunds, takes pre-authorisations and
completes them, reprints when the paper ran out, settles at the end; a customer whose sale
came back without an answer often swipes again. Amounts follow a shop's day: mostly small,
some large. A few cardholders type the wrong PIN, some cards are expired, some accounts empty.
All choices come from the run's workload stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cardtally.sim._world import ADMIN_PASSWORD, Cardholder
from cardtally.terminal import (
    Balance,
    Command,
    Complete,
    Outcome,
    PreAuth,
    Refund,
    Reprint,
    Sale,
    Settle,
    SignOn,
    Status,
    Void,
)
from cardtally.terminal._model import JournalTxn
from cardtally.terminal._requests import Card
from cardtally.wire import TxnKind

NO_PIN_LIMIT_MINOR: Final = 100_000
WRONG_PIN_RATE: Final = 0.03
SWIPE_AGAIN_RATE: Final = 0.5
SETTLE_MIDDAY_RATE: Final = 0.01
_KEY_TROUBLE: Final = frozenset({"A0"})


@dataclass
class Budget:
    """Swipes left for the whole network (shared by every cashier)."""

    remaining: int

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


@dataclass(frozen=True, slots=True)
class _Sold:
    rrn: str
    holder: Cardholder
    amount_minor: int


@dataclass
class Cashier:
    rng: random.Random
    holders: list[Cardholder]
    budget: Budget
    paper_out: Callable[[], bool] = lambda: False  # the fault plan decides
    need_sign_on: bool = True
    settle_wanted: bool = False
    again: Command | None = None
    reprint: int | None = None
    sold: list[_Sold] = field(default_factory=list)  # refundable sales, any batch
    sales_now: list[tuple[int, Cardholder, str]] = field(default_factory=list)  # voidable
    holds: list[tuple[int, int, int]] = field(default_factory=list)  # voucher, batch, amount
    swipes: int = 0
    _by_pan: dict[str, Cardholder] = field(default_factory=dict)

    # -- what next -------------------------------------------------------------------------

    def next_command(self) -> Command | None:
        if self.need_sign_on:
            return SignOn()
        if self.settle_wanted:
            return Settle(ADMIN_PASSWORD)
        if self.reprint is not None:
            return Reprint(self.reprint)
        if self.again is not None:
            command, self.again = self.again, None
            self.swipes += 1
            return command
        if not self.budget.take():
            return None
        self.swipes += 1
        if self.rng.random() < SETTLE_MIDDAY_RATE:
            self.settle_wanted = True
        return self._swipe()

    def _swipe(self) -> Command:
        roll = self.rng.random()
        if roll < 0.08:
            return Balance(self._card(self._holder(), pin=True))
        if roll < 0.15 and self.sales_now:
            voucher, holder, _rrn = self.sales_now[self.rng.randrange(len(self.sales_now))]
            return Void(voucher, ADMIN_PASSWORD, card=self._card(holder, pin=False))
        if roll < 0.21 and self.sold:
            return self._refund()
        if roll < 0.27:
            holder = self._holder()
            return PreAuth(self._card(holder, pin=True), self._amount())
        if roll < 0.32 and self.holds:
            voucher, batch_no, held = self.holds[self.rng.randrange(len(self.holds))]
            amount = held if self.rng.random() < 0.7 else max(1, held * 9 // 10)
            return Complete(voucher, batch_no=batch_no, amount_minor=amount)
        return self._sale()

    def _sale(self) -> Sale:
        holder, amount = self._holder(), self._amount()
        pin = amount > NO_PIN_LIMIT_MINOR or self.rng.random() < 0.3
        paper_out = self.paper_out()
        return Sale(self._card(holder, pin=pin), amount, paper_out=paper_out)

    def _refund(self) -> Refund:
        sold = self.sold[self.rng.randrange(len(self.sold))]
        amount = sold.amount_minor if self.rng.random() < 0.6 else max(1, sold.amount_minor // 3)
        return Refund(self._card(sold.holder, pin=False), sold.rrn, amount, ADMIN_PASSWORD)

    def _holder(self) -> Cardholder:
        return self.holders[self.rng.randrange(len(self.holders))]

    def _card(self, holder: Cardholder, *, pin: bool) -> Card:
        if not pin:
            return Card(holder.pan, holder.expiry)
        typed = holder.pin
        if self.rng.random() < WRONG_PIN_RATE:
            typed = f"{(int(holder.pin) + 1) % 10**6:06d}"
        return Card(holder.pan, holder.expiry, typed)

    def _amount(self) -> int:
        roll = self.rng.random()
        if roll < 0.6:
            return self.rng.randint(500, 20_000)  # 5.00 to 200.00
        if roll < 0.9:
            return self.rng.randint(20_000, 200_000)
        return self.rng.randint(200_000, 2_000_000)

    # -- what the terminal showed ------------------------------------------------------------

    def done(self, command: Command, outcome: Outcome) -> None:
        if (
            outcome.code in _KEY_TROUBLE
            or outcome.auto_reversal == "unsuccessful"
            or any("SIGN ON" in line for line in outcome.screen)
        ):
            # What the help desk says to a terminal whose reversal keeps failing (a MAC error,
            # keys out of step after a lost sign-on answer): sign on again.
            self.need_sign_on = True
        match command:
            case SignOn():
                self.need_sign_on = outcome.status is not Status.APPROVED
            case Settle():
                self._settled(outcome)
            case Reprint():
                self.reprint = None
            case _:
                self._swiped(command, outcome)

    def interrupted(self, command: Command) -> None:
        """The terminal died during ``command``: the customer may try again."""
        if isinstance(command, Sale) and self.rng.random() < SWIPE_AGAIN_RATE:
            self.again = Sale(command.card, command.amount_minor)

    def _settled(self, outcome: Outcome) -> None:
        if outcome.status is Status.APPROVED or outcome.status is Status.DONE:
            self.settle_wanted = False
            self.sales_now.clear()

    def _swiped(self, command: Command, outcome: Outcome) -> None:
        if outcome.status in (Status.REVERSAL_PENDING, Status.NO_ANSWER):
            self.interrupted(command)
            return
        if any("SETTLEMENT OF BATCH" in line for line in outcome.screen):
            self.settle_wanted = True
        if any("REVERSAL IS PENDING" in line for line in outcome.screen):
            # The customer checks the balance: the pending reversal goes first.
            self.again = Balance(self._card(self._holder(), pin=True))
        txn = outcome.txn
        if outcome.status is not Status.APPROVED or txn is None:
            return
        self._approved(command, txn)

    def _approved(self, command: Command, txn: JournalTxn) -> None:
        kind, stan, batch_no, rrn = txn.kind, txn.stan, txn.batch_no, txn.rrn or ""
        if isinstance(command, Sale):
            holder = self._holder_of(command.card)
            self.sold.append(_Sold(rrn, holder, command.amount_minor))
            self.sales_now.append((stan, holder, rrn))
            if command.paper_out:
                self.reprint = stan
        elif isinstance(command, Void):
            voided = {s[2] for s in self.sales_now if s[0] == command.voucher}
            self.sales_now = [s for s in self.sales_now if s[0] != command.voucher]
            self.sold = [s for s in self.sold if s.rrn not in voided]
        elif isinstance(command, PreAuth) and kind is TxnKind.PREAUTH:
            self.holds.append((stan, batch_no, command.amount_minor))
        elif isinstance(command, Complete):
            self.holds = [h for h in self.holds if h[0] != command.voucher]

    def _holder_of(self, card: Card) -> Cardholder:
        if not self._by_pan:
            self._by_pan = {h.pan.reveal(): h for h in self.holders}
        return self._by_pan[card.pan.reveal()]
