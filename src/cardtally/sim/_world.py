"""The simulated network of one run: an issuer with its cardholders, an acquirer switch with
merchants and terminals, all built from the run's seed.

Everything secret is drawn from the seed too (keys, salts), so a replay is byte for byte the
same run; the simulator never touches the operating system's randomness or clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Final

import psec

from cardtally.clearing._calendar import BusinessDay, business_day
from cardtally.issuer import CardLimits, IssuerCore, IssuerPolicy, NewCard
from cardtally.security import DataKeys, IssuerKeys, MacAlgorithm, WorkingKeys, kcv_hex
from cardtally.switch import SwitchCore, SwitchPolicy
from cardtally.switch._forward import SwitchIdentity
from cardtally.switch._model import (
    IssuerRoute,
    Merchant,
    SettlementCycle,
    Terminal,
    TerminalStatus,
)
from cardtally.terminal._passwords import hash_password
from cardtally.wire import Pan
from cardtally.wire._pan import luhn_check_digit

CURRENCY: Final = "156"
ACQUIRER_ID: Final = "48020000"
LINK_ID: Final = "cup-issuer"
BINS: Final = ("622848", "621700")
ISSUER_TIMEOUT_MS: Final = 5_000  # the switch's default answer timeout for an issuer link
TERMINAL_TIMEOUT_MS: Final = 30_000  # the terminal's default
# The simulated terminals' keypad passwords: test data, guarding nothing.
ADMIN_PASSWORD: Final = "123456"  # noqa: S105
UNLOCK_PASSWORD: Final = "888888"  # noqa: S105
CUTOFF_MINUTES: Final = 23 * 60
FIRST_DAY: Final = date(2026, 11, 2)
#: The cashiers start at 21:00 CST, two hours before the day's cutoff.
OPENING_MINUTES: Final = 21 * 60
_MCCS: Final = (
    ("5411", "standard"),
    ("5812", "standard"),
    ("5300", "warehouse"),
    ("5999", "standard"),
)
_DOUBLE_KEY_BYTES: Final = 16
#: scrypt at its least cost: the simulator checks an admin password on every void and refund.
_SIM_SCRYPT_N: Final = 2


@dataclass(frozen=True, slots=True)
class Cardholder:
    pan: Pan
    expiry: str
    pin: str
    expired: bool
    empty: bool


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    terminal_id: str
    merchant_id: str
    merchant_name: str
    master_key: bytes


@dataclass(frozen=True, slots=True)
class Sizes:
    terminals: int
    merchants: int
    cardholders: int

    @classmethod
    def for_swipes(cls, swipes: int) -> Sizes:
        """About forty swipes per terminal, so a day of any size spans minutes, not hours."""
        terminals = max(4, min(400, swipes // 40))
        return cls(terminals, max(2, terminals // 3), max(40, min(2000, swipes // 3)))


def seeded_key(rng: random.Random) -> bytes:
    key: bytes = psec.des.adjust_key_parity(rng.randbytes(_DOUBLE_KEY_BYTES))
    return key


def working_keys_source(rng: random.Random) -> Callable[[], WorkingKeys]:
    return lambda: WorkingKeys(seeded_key(rng), seeded_key(rng))


def first_day() -> BusinessDay:
    return business_day(FIRST_DAY, CUTOFF_MINUTES)


def opening_ms(day: BusinessDay) -> int:
    return day.end_ms - (CUTOFF_MINUTES - OPENING_MINUTES) * 60_000


@cache
def password_hashes(salt: bytes) -> tuple[str, str]:
    return (
        hash_password(ADMIN_PASSWORD, cost_n=_SIM_SCRYPT_N, salt=salt),
        hash_password(UNLOCK_PASSWORD, cost_n=_SIM_SCRYPT_N, salt=salt),
    )


def make_cardholders(rng: random.Random, count: int) -> list[Cardholder]:
    holders = []
    for n in range(count):
        partial = f"{BINS[n % len(BINS)]}{rng.randrange(10**9):09d}"
        pan = Pan(partial + luhn_check_digit(partial))
        expired = rng.random() < 0.03
        holders.append(
            Cardholder(
                pan=pan,
                expiry="2409" if expired else f"{rng.randint(27, 31)}{rng.randint(1, 12):02d}",
                pin=f"{rng.randrange(10**6):06d}",
                expired=expired,
                empty=rng.random() < 0.05,
            )
        )
    return holders


def new_card(holder: Cardholder, rng: random.Random) -> NewCard:
    credit = 0 if rng.random() < 0.8 else rng.choice((500_000, 2_000_000))
    balance = 0 if holder.empty else rng.choice((20_000, 100_000, 500_000, 3_000_000))
    return NewCard(
        pan=holder.pan,
        expiry=holder.expiry,
        currency=CURRENCY,
        balance_minor=balance,
        credit_limit_minor=0 if holder.empty else credit,
        pin=holder.pin,
        limits=CardLimits(
            no_pin_limit_minor=100_000,
            per_txn_limit_minor=5_000_000,
            daily_limit_minor=10_000_000,
        ),
    )


def make_merchants(rng: random.Random, count: int, at_ms: int) -> list[Merchant]:
    merchants = []
    for n in range(count):
        mcc, plan = _MCCS[n % len(_MCCS)]
        merchant_id = f"8980001{n:08d}"
        merchants.append(
            Merchant(
                merchant_id=merchant_id,
                name=f"SIM MERCHANT {n:03d}",
                mcc=mcc,
                city="SHANGHAI",
                fee_plan=plan,
                agent="agent-east" if n % 5 == 4 else None,
                settlement_cycle=SettlementCycle.D0 if rng.random() < 0.2 else SettlementCycle.T1,
                settlement_account=f"6222{n:012d}",
                created_at_ms=at_ms,
            )
        )
    return merchants


def make_terminals(rng: random.Random, merchants: list[Merchant], count: int) -> list[TerminalSpec]:
    return [
        TerminalSpec(
            terminal_id=f"S{n:07d}",
            merchant_id=merchants[n % len(merchants)].merchant_id,
            merchant_name=merchants[n % len(merchants)].name,
            master_key=seeded_key(rng),
        )
        for n in range(count)
    ]


def switch_terminal(spec: TerminalSpec, at_ms: int) -> Terminal:
    return Terminal(
        terminal_id=spec.terminal_id,
        merchant_id=spec.merchant_id,
        mac_algorithm=MacAlgorithm.X9_19,
        mac_required=True,
        status=TerminalStatus.ACTIVE,
        batch_no=1,
        master_key_kcv=kcv_hex(spec.master_key),
        signed_on_at_ms=None,
        created_at_ms=at_ms,
    )


def issuer_route() -> IssuerRoute:
    return IssuerRoute(LINK_ID, "sim-issuer", 0, ISSUER_TIMEOUT_MS, BINS)


def make_keys(rng: random.Random) -> tuple[IssuerKeys, DataKeys]:
    # PIN verification key, zone PIN key, zone MAC key (the switch-issuer link's MAC).
    issuer_keys = IssuerKeys(seeded_key(rng), seeded_key(rng), seeded_key(rng))
    return issuer_keys, DataKeys(rng.randbytes(32), rng.randbytes(32))


def make_issuer_core(keys: IssuerKeys, data_keys: DataKeys) -> IssuerCore:
    return IssuerCore(keys, data_keys, IssuerPolicy())


def make_switch_core(keys: IssuerKeys, rng: random.Random) -> SwitchCore:
    identity = SwitchIdentity(ACQUIRER_ID, ACQUIRER_ID, CURRENCY)
    policy = SwitchPolicy(identity, new_working_keys=working_keys_source(rng))
    return SwitchCore(keys.zpk, policy, keys.zak)
