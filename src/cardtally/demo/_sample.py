"""The sample network: a home with an issuer, its cardholders, an acquirer and its merchants.

``cardtally init --sample`` and ``cardtally demo`` build it. The people and shops come from
the simulator's world (:mod:`cardtally.sim._world`): the same kinds of cardholders (two BINs,
debit and credit, a few expired cards and empty accounts), merchants of four categories on
two fee plans (one signed up by an agent, some paid D0) and terminals, so the demo and the
simulator exercise the same network. Everything else is what an operator's commands would
make: a config, fresh keys from the OS's randomness, both databases migrated, cards issued
through :func:`cardtally.issuer.add_card`, merchants, terminals and the issuer link registered
at the switch, every terminal installed with its master key (its journal at batch 1).

The cardholders' card numbers and PINs are written to ``keys/sample-cards.csv`` (mode 0600):
test cards, so that a person exploring the network can swipe them too.
"""

from __future__ import annotations

import csv
import io
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cardtally.config import config_path, default_config_text, load_config
from cardtally.issuer import add_card, open_issuer_database
from cardtally.security import (
    MacAlgorithm,
    create_data_keys,
    create_issuer_keys,
    load_data_keys,
    load_issuer_keys,
)
from cardtally.security._secret_file import write_secret_file
from cardtally.sim._world import (
    ADMIN_PASSWORD,
    BINS,
    LINK_ID,
    UNLOCK_PASSWORD,
    Cardholder,
    TerminalSpec,
    make_cardholders,
    make_merchants,
    make_terminals,
    new_card,
)
from cardtally.storage import transaction
from cardtally.switch._database import open_switch_database
from cardtally.switch._model import Merchant, SettlementCycle
from cardtally.switch._registry import add_issuer_link, add_merchant, add_terminal
from cardtally.terminal import Journal, journal_path
from cardtally.wire import LOCAL_TIME

HOST: Final = "127.0.0.1"
CARDS_FILE: Final = "sample-cards.csv"
ISSUER_TIMEOUT_MS: Final = 1_500
#: Shop names by category (the simulator's four MCCs), so receipts and reports read true.
_NAMES: Final = {
    "5411": ("GREEN LEAF GROCERY", "DAILY FRESH MART", "RIVERSIDE SUPERMARKET"),
    "5812": ("JADE GARDEN RESTAURANT", "NOODLE HOUSE", "HARBOUR CAFE"),
    "5300": ("METRO WAREHOUSE CLUB", "BULK BUY DEPOT", "EAST WAREHOUSE STORE"),
    "5999": ("CORNER GIFT SHOP", "BLUE SKY FLOWERS", "LUCKY STATIONERY"),
}
#: The demo ends its day early (``dayend run --close-now``); a cutoff this close would split
#: the day's swipes across two business days, so the sample home moves it away.
_CUTOFF_MARGIN: Final = timedelta(minutes=30)
_CUTOFF_DEFAULT: Final = "23:00"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SampleSize:
    terminals: int
    merchants: int
    cardholders: int

    @classmethod
    def for_swipes(cls, swipes: int) -> SampleSize:
        """A few dozen terminals and a few hundred cardholders for a day of a few thousand."""
        terminals = max(4, min(48, swipes // 60))
        merchants = max(4, min(12, terminals // 4))
        return cls(terminals, merchants, max(40, min(400, swipes // 8)))


@dataclass(frozen=True, slots=True)
class Ports:
    issuer: int
    switch: int
    issuer_metrics: int = 0
    switch_metrics: int = 0


@dataclass(frozen=True, slots=True)
class SampleNetwork:
    home: Path
    cardholders: tuple[Cardholder, ...]
    merchants: tuple[Merchant, ...]
    terminals: tuple[TerminalSpec, ...]

    @property
    def cards_file(self) -> Path:
        return self.home / "keys" / CARDS_FILE


def free_port() -> int:
    """A loopback port free at this moment (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def create_sample_home(
    home: Path,
    *,
    size: SampleSize,
    seed: int,
    ports: Ports,
    link_port: int | None = None,
    now_ms: int,
    progress: Progress = lambda _: None,
) -> SampleNetwork:
    """Build the sample network in ``home``, which must not hold a config yet.

    ``link_port`` is where the switch reaches the issuer (default: the issuer's own port;
    the demo passes its fault proxy's).
    """
    if config_path(home).exists():
        raise FileExistsError(f"{home} already holds a cardtally home; choose an empty directory")
    rng = random.Random(seed)
    home.mkdir(parents=True, exist_ok=True)
    config_path(home).write_text(sample_config_text(ports, now_ms), encoding="utf-8")
    create_data_keys(home)
    create_issuer_keys(home)
    holders = tuple(make_cardholders(rng, size.cardholders))
    merchants = tuple(_named(make_merchants(rng, size.merchants, now_ms)))
    terminals = tuple(_numbered(make_terminals(rng, list(merchants), size.terminals)))
    progress(f"issuing {len(holders)} cards on BINs {', '.join(BINS)}")
    _issue_cards(home, holders, rng, now_ms)
    progress(f"registering {len(merchants)} merchants and {len(terminals)} terminals")
    _register(home, merchants, terminals, link_port or ports.issuer, now_ms)
    progress(f"installing {len(terminals)} terminals (master keys injected, batch 000001)")
    _install(home, terminals, now_ms)
    network = SampleNetwork(home, holders, merchants, terminals)
    write_secret_file(network.cards_file, cards_csv(holders))
    return network


def sample_config_text(ports: Ports, now_ms: int) -> str:
    """The default config with the sample network's settings written in."""
    overrides: dict[str, dict[str, object]] = {
        "issuer": {"port": ports.issuer, "bins": list(BINS), "metrics_port": ports.issuer_metrics},
        "switch": {
            "port": ports.switch,
            "issuer_timeout_ms": ISSUER_TIMEOUT_MS,
            "advice_backoff_max_ms": 2_000,
            "metrics_port": ports.switch_metrics,
        },
        "dayend": {"cutoff": _cutoff(now_ms)},
    }
    return default_config_text(overrides)


def _cutoff(now_ms: int) -> str:
    """23:00 CST, unless that is within the margin of now: then twelve hours from now."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(LOCAL_TIME)
    cutoff = now.replace(hour=23, minute=0, second=0, microsecond=0)
    if cutoff < now:
        cutoff += timedelta(days=1)
    if cutoff - now > _CUTOFF_MARGIN:
        return _CUTOFF_DEFAULT
    return (now + timedelta(hours=12)).strftime("%H:%M")


def _named(merchants: list[Merchant]) -> list[Merchant]:
    """Shop names by category; at least one merchant paid D0 and one signed by an agent."""
    seen: dict[str, int] = {}
    named = []
    for n, merchant in enumerate(merchants):
        names = _NAMES.get(merchant.mcc, ("SAMPLE SHOP",))
        index = seen.get(merchant.mcc, 0)
        seen[merchant.mcc] = index + 1
        name = names[index % len(names)] + ("" if index < len(names) else f" {index + 1}")
        cycle = SettlementCycle.D0 if n == 1 else merchant.settlement_cycle
        agent = merchant.agent or ("agent-east" if n == len(merchants) - 1 else None)
        named.append(replace(merchant, name=name, settlement_cycle=cycle, agent=agent))
    return named


def _numbered(terminals: list[TerminalSpec]) -> list[TerminalSpec]:
    """Numeric terminal IDs (field 41), as acquirers hand them out."""
    return [replace(t, terminal_id=f"{10300001 + n:08d}") for n, t in enumerate(terminals)]


def _issue_cards(home: Path, holders: tuple[Cardholder, ...], rng: random.Random, at: int) -> None:
    config = load_config(home)
    data_keys, issuer_keys = load_data_keys(home), load_issuer_keys(home)
    engine = open_issuer_database(config.issuer.database, at)
    try:
        with transaction(engine) as conn:
            for holder in holders:
                add_card(conn, data_keys, issuer_keys, new_card(holder, rng), at)
    finally:
        engine.dispose()


def _register(
    home: Path,
    merchants: tuple[Merchant, ...],
    terminals: tuple[TerminalSpec, ...],
    link_port: int,
    at: int,
) -> None:
    config = load_config(home)
    data_keys = load_data_keys(home)
    engine = open_switch_database(config.switch.database, at)
    try:
        with transaction(engine) as conn:
            for m in merchants:
                add_merchant(
                    conn,
                    merchant_id=m.merchant_id,
                    name=m.name,
                    mcc=m.mcc,
                    city=m.city,
                    fee_plan=m.fee_plan,
                    agent=m.agent,
                    settlement_cycle=m.settlement_cycle,
                    at_ms=at,
                )
            for t in terminals:
                add_terminal(
                    conn,
                    data_keys,
                    terminal_id=t.terminal_id,
                    merchant_id=t.merchant_id,
                    master_key=t.master_key,
                    at_ms=at,
                )
            add_issuer_link(
                conn,
                link_id=LINK_ID,
                host=HOST,
                port=link_port,
                timeout_ms=config.switch.issuer_timeout_ms,
                bins=BINS,
                at_ms=at,
            )
    finally:
        engine.dispose()


def _install(home: Path, terminals: tuple[TerminalSpec, ...], at: int) -> None:
    data_keys = load_data_keys(home)
    for t in terminals:
        path = journal_path(home, t.terminal_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = Journal.install(
            path,
            data_keys,
            terminal_id=t.terminal_id,
            merchant_id=t.merchant_id,
            merchant_name=t.merchant_name,
            master_key=t.master_key,
            mac_algorithm=MacAlgorithm.X9_19,
            admin_password=ADMIN_PASSWORD,
            unlock_password=UNLOCK_PASSWORD,
            now_ms=at,
        )
        journal.close()


def cards_csv(holders: tuple[Cardholder, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["pan", "expiry", "pin", "note"])
    for h in holders:
        note = "expired" if h.expired else "empty account" if h.empty else ""
        writer.writerow([h.pan.reveal(), h.expiry, h.pin, note])
    return buffer.getvalue()
