"""The switch's registry: merchants, terminals and issuer links, and what operators read back.

Plain functions on a connection inside the caller's transaction, used by the operator commands
outside the authorisation path. Every change is checked first (a :class:`RegistryError` with one
precise line, nothing written) and then recorded in the event log, without any key material.

IDs are compared as the wire carries them without padding: field 42 (merchant ID, ans15) arrives
space-padded to 15 characters, so a merchant ID is stored without its trailing spaces; field 41
(terminal ID, ans8) is exactly 8 characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cardtally.security import (
    DataKeys,
    MacAlgorithm,
    generate_master_key,
    kcv_hex,
    seal_secret,
)
from cardtally.storage import append_event
from cardtally.switch._errors import RegistryError
from cardtally.switch._model import (
    Advice,
    IssuerRoute,
    Merchant,
    SettlementCycle,
    Terminal,
    TerminalStatus,
    Txn,
)
from cardtally.switch._schema import (
    advice_table,
    bin_table,
    link_table,
    merchant_table,
    terminal_table,
    txn_table,
)
from cardtally.switch._store import _advice, _txn, merchant_of, terminal_of, tmk_purpose

MERCHANT_ID_CHARS_MAX: Final = 15
TERMINAL_ID_CHARS: Final = 8
MERCHANT_NAME_CHARS_MAX: Final = 40  # field 43, ans40
CITY_CHARS_MAX: Final = 40
MASTER_KEY_BYTES: Final = 16  # double-length TDES
FIRST_BATCH_NO: Final = 1
PORT_MIN: Final = 1
PORT_MAX: Final = 65535
TIMEOUT_MS_MIN: Final = 100
TIMEOUT_MS_MAX: Final = 120_000
LIST_LIMIT_MAX: Final = 10_000

# ASCII only: \d and str.isdigit() would also accept other scripts' digits.
_MERCHANT_ID: Final = re.compile(r"[A-Za-z0-9]{1,15}")
_TERMINAL_ID: Final = re.compile(r"[A-Za-z0-9]{8}")
_MCC: Final = re.compile(r"[0-9]{4}")
_BIN: Final = re.compile(r"[0-9]{6,11}")
_TOKEN: Final = re.compile(r"[A-Za-z0-9._-]{1,32}")
_ACCOUNT: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_LINK_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HOST: Final = re.compile(r"[A-Za-z0-9._:-]{1,253}")


# --- checks --------------------------------------------------------------------------------


def normalise_merchant_id(text: str) -> str:
    """A merchant ID as stored and compared: without field 42's trailing space padding.

    >>> normalise_merchant_id("898440358120001")
    '898440358120001'
    >>> normalise_merchant_id("M001           ")
    'M001'
    """
    stripped = text.rstrip(" ")
    if not _MERCHANT_ID.fullmatch(stripped):
        raise RegistryError(
            f"merchant ID must be 1-{MERCHANT_ID_CHARS_MAX} ASCII letters and digits "
            f"(field 42), got {text!r}"
        )
    return stripped


def check_terminal_id(text: str) -> str:
    """A terminal ID: exactly 8 ASCII letters and digits (field 41, ans8)."""
    if not _TERMINAL_ID.fullmatch(text):
        raise RegistryError(
            f"terminal ID must be exactly {TERMINAL_ID_CHARS} ASCII letters and digits "
            f"(field 41), got {text!r}"
        )
    return text


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def _check_text(what: str, text: str, chars_min: int, chars_max: int) -> str:
    value = text.strip()
    if not (chars_min <= len(value) <= chars_max and _printable(value)):
        raise RegistryError(
            f"{what} must be {chars_min}-{chars_max} printable ASCII characters, got {text!r}"
        )
    return value


def _check_token(what: str, text: str, pattern: re.Pattern[str], allowed: str) -> str:
    if not pattern.fullmatch(text):
        raise RegistryError(f"{what} must be {allowed}, got {text!r}")
    return text


def _check_range(what: str, value: int, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not minimum <= value <= maximum:
        raise RegistryError(f"{what} must be {minimum}..{maximum}, got {value}")
    return value


def _check_bins(bins: Sequence[str]) -> list[str]:
    if isinstance(bins, str) or not bins:
        raise RegistryError("give at least one BIN (6-11 leading card digits)")
    wanted: list[str] = []
    for item in bins:
        if not _BIN.fullmatch(item):
            raise RegistryError(f"BIN must be 6-11 digits, got {item!r}")
        if item not in wanted:
            wanted.append(item)
    return wanted


# --- merchants -----------------------------------------------------------------------------


def _merchant(conn: Connection, merchant_id: str) -> Merchant | None:
    row = (
        conn.execute(sa.select(merchant_table).where(merchant_table.c.merchant_id == merchant_id))
        .mappings()
        .first()
    )
    return None if row is None else merchant_of(row)


def add_merchant(
    conn: Connection,
    *,
    merchant_id: str,
    name: str,
    mcc: str,
    city: str = "",
    fee_plan: str = "standard",
    agent: str | None = None,
    settlement_cycle: SettlementCycle = SettlementCycle.T1,
    settlement_account: str | None = None,
    at_ms: int,
) -> Merchant:
    """Register a merchant; its settlement account defaults to ``merchant:<id>``."""
    mid = normalise_merchant_id(merchant_id)
    shown_name = _check_text("merchant name (field 43)", name, 1, MERCHANT_NAME_CHARS_MAX)
    if not _MCC.fullmatch(mcc):
        raise RegistryError(f"MCC must be exactly 4 digits (ISO 18245), got {mcc!r}")
    shown_city = _check_text("city", city, 0, CITY_CHARS_MAX)
    plan = _check_token("fee plan", fee_plan, _TOKEN, "1-32 letters, digits, '.', '_' or '-'")
    if agent is not None:
        _check_token("agent", agent, _TOKEN, "1-32 letters, digits, '.', '_' or '-'")
    account = f"merchant:{mid}" if settlement_account is None else settlement_account
    _check_token(
        "settlement account", account, _ACCOUNT, "1-64 letters, digits, '.', '_', ':' or '-'"
    )
    cycle = SettlementCycle(settlement_cycle)
    if _merchant(conn, mid) is not None:
        raise RegistryError(f"merchant {mid} already exists")
    conn.execute(
        sa.insert(merchant_table).values(
            merchant_id=mid,
            name=shown_name,
            mcc=mcc,
            city=shown_city,
            fee_plan=plan,
            agent=agent,
            settlement_cycle=cycle.value,
            settlement_account=account,
            created_at_ms=at_ms,
        )
    )
    detail = {
        "merchant_id": mid,
        "name": shown_name,
        "mcc": mcc,
        "city": shown_city,
        "fee_plan": plan,
        "agent": agent,
        "settlement_cycle": cycle.value,
        "settlement_account": account,
    }
    append_event(conn, at_ms, "switch.merchant_added", None, detail)
    added = _merchant(conn, mid)
    assert added is not None
    return added


def list_merchants(conn: Connection) -> list[Merchant]:
    rows = conn.execute(sa.select(merchant_table).order_by(merchant_table.c.merchant_id))
    return [merchant_of(row) for row in rows.mappings()]


# --- terminals -----------------------------------------------------------------------------


def _terminal(conn: Connection, terminal_id: str) -> Terminal | None:
    row = (
        conn.execute(sa.select(terminal_table).where(terminal_table.c.terminal_id == terminal_id))
        .mappings()
        .first()
    )
    return None if row is None else terminal_of(row)


def add_terminal(
    conn: Connection,
    data_keys: DataKeys,
    *,
    terminal_id: str,
    merchant_id: str,
    mac_required: bool = True,
    mac_algorithm: MacAlgorithm = MacAlgorithm.X9_19,
    master_key: bytes | None = None,
    at_ms: int,
) -> tuple[Terminal, bytes]:
    """Register a terminal of a merchant with its master key (TMK), sealed at rest.

    Returns the terminal and the clear master key, which the caller provisions to the device
    once ("key injection"); the switch keeps only the sealed key and its check value.
    """
    tid = check_terminal_id(terminal_id)
    mid = normalise_merchant_id(merchant_id)
    algorithm = MacAlgorithm(mac_algorithm)
    if master_key is not None and len(master_key) != MASTER_KEY_BYTES:
        raise RegistryError(
            f"master key must be {MASTER_KEY_BYTES} bytes (double-length TDES, "
            f"{2 * MASTER_KEY_BYTES} hex digits), got {len(master_key)}"
        )
    if _merchant(conn, mid) is None:
        raise RegistryError(f"unknown merchant {mid}: add the merchant first")
    if _terminal(conn, tid) is not None:
        raise RegistryError(f"terminal {tid} already exists")
    key = generate_master_key() if master_key is None else bytes(master_key)
    kcv = kcv_hex(key)
    conn.execute(
        sa.insert(terminal_table).values(
            terminal_id=tid,
            merchant_id=mid,
            master_key_sealed=seal_secret(data_keys, tmk_purpose(tid), key),
            master_key_kcv=kcv,
            pin_key_sealed=None,
            mac_key_sealed=None,
            mac_algorithm=algorithm.value,
            mac_required=bool(mac_required),
            status=TerminalStatus.ACTIVE.value,
            batch_no=FIRST_BATCH_NO,
            signed_on_at_ms=None,
            created_at_ms=at_ms,
        )
    )
    detail = {
        "terminal_id": tid,
        "merchant_id": mid,
        "mac_required": bool(mac_required),
        "mac_algorithm": algorithm.value,
        "master_key_kcv": kcv,
        "master_key_source": "generated" if master_key is None else "given",
    }
    append_event(conn, at_ms, "switch.terminal_added", None, detail)
    added = _terminal(conn, tid)
    assert added is not None
    return added, key


def list_terminals(conn: Connection) -> list[Terminal]:
    rows = conn.execute(sa.select(terminal_table).order_by(terminal_table.c.terminal_id))
    return [terminal_of(row) for row in rows.mappings()]


def set_terminal_status(
    conn: Connection, terminal_id: str, status: TerminalStatus, at_ms: int
) -> Terminal:
    """Enable or disable a terminal; setting the status it already has changes nothing."""
    tid = check_terminal_id(terminal_id)
    wanted = TerminalStatus(status)
    terminal = _terminal(conn, tid)
    if terminal is None:
        raise RegistryError(f"unknown terminal {tid}")
    if terminal.status is wanted:
        return terminal
    conn.execute(
        sa.update(terminal_table)
        .where(terminal_table.c.terminal_id == tid)
        .values(status=wanted.value)
    )
    detail = {"terminal_id": tid, "from": terminal.status.value, "to": wanted.value}
    append_event(conn, at_ms, "switch.terminal_status", None, detail)
    changed = _terminal(conn, tid)
    assert changed is not None
    return changed


# --- issuer links --------------------------------------------------------------------------


def _link(conn: Connection, link_id: str) -> IssuerRoute | None:
    row = (
        conn.execute(sa.select(link_table).where(link_table.c.link_id == link_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    bins = conn.execute(
        sa.select(bin_table.c.bin).where(bin_table.c.link_id == link_id).order_by(bin_table.c.bin)
    ).scalars()
    return IssuerRoute(
        link_id=row["link_id"],
        host=row["host"],
        port=int(row["port"]),
        timeout_ms=int(row["timeout_ms"]),
        bins=tuple(bins),
    )


def issuer_link(conn: Connection, link_id: str) -> IssuerRoute | None:
    """One issuer link with its BINs, or ``None``."""
    return _link(conn, link_id)


def add_issuer_link(
    conn: Connection,
    *,
    link_id: str,
    host: str,
    port: int,
    timeout_ms: int,
    bins: Sequence[str],
    at_ms: int,
) -> IssuerRoute:
    """Route ``bins`` to the issuer at ``host:port``; the link is created on first use.

    Adding to an existing link is allowed when host, port and timeout are the same, and BINs
    it already has are skipped (so repeating a command is harmless). A BIN routed to another
    link is refused: a card must have exactly one issuer.
    """
    _check_token("link name", link_id, _LINK_ID, "1-64 letters, digits, '.', '_', ':' or '-'")
    _check_token("host", host, _HOST, "a host name or IP address")
    _check_range("port", port, PORT_MIN, PORT_MAX)
    _check_range("timeout (ms)", timeout_ms, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX)
    wanted = _check_bins(bins)
    existing = _link(conn, link_id)
    if existing is not None:
        if (existing.host, existing.port) != (host, port):
            raise RegistryError(
                f"issuer link {link_id} already exists for {existing.host}:{existing.port}, "
                f"not {host}:{port}"
            )
        if existing.timeout_ms != timeout_ms:
            raise RegistryError(
                f"issuer link {link_id} already exists with timeout {existing.timeout_ms} ms, "
                f"not {timeout_ms} ms"
            )
    routed: dict[str, str] = {
        number: owner
        for number, owner in conn.execute(
            sa.select(bin_table.c.bin, bin_table.c.link_id).where(bin_table.c.bin.in_(wanted))
        )
    }
    for number in wanted:
        owner = routed.get(number)
        if owner is not None and owner != link_id:
            raise RegistryError(f"BIN {number} is already routed to issuer link {owner}")
    added = [number for number in wanted if number not in routed]
    if existing is None:
        conn.execute(
            sa.insert(link_table).values(
                link_id=link_id, host=host, port=port, timeout_ms=timeout_ms, created_at_ms=at_ms
            )
        )
    if added:
        conn.execute(sa.insert(bin_table), [{"bin": b, "link_id": link_id} for b in added])
    if existing is None or added:
        detail = {
            "link_id": link_id,
            "host": host,
            "port": port,
            "timeout_ms": timeout_ms,
            "bins_added": added,
            "new_link": existing is None,
        }
        append_event(conn, at_ms, "switch.issuer_link_added", None, detail)
    route = _link(conn, link_id)
    assert route is not None
    return route


def list_issuer_links(conn: Connection) -> list[IssuerRoute]:
    links = conn.execute(sa.select(link_table).order_by(link_table.c.link_id)).mappings().all()
    bins: dict[str, list[str]] = {}
    for number, link_id in conn.execute(
        sa.select(bin_table.c.bin, bin_table.c.link_id).order_by(bin_table.c.bin)
    ):
        bins.setdefault(link_id, []).append(number)
    return [
        IssuerRoute(
            link_id=row["link_id"],
            host=row["host"],
            port=int(row["port"]),
            timeout_ms=int(row["timeout_ms"]),
            bins=tuple(bins.get(row["link_id"], ())),
        )
        for row in links
    ]


# --- store-and-forward queue and transaction log -------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """The reversal-advice queue at a glance."""

    depth: int  # advices not yet acknowledged by their issuer
    oldest_age_ms: int  # now minus the oldest unacknowledged advice's creation; 0 when empty
    by_link: dict[str, int]  # link_id -> unacknowledged advices
    acked_total: int  # advices acknowledged, ever


def queue_status(conn: Connection, now_ms: int) -> QueueStatus:
    pending = advice_table.c.acked_at_ms.is_(None)
    by_link = {
        link_id: int(count)
        for link_id, count in conn.execute(
            sa.select(advice_table.c.link_id, sa.func.count())
            .where(pending)
            .group_by(advice_table.c.link_id)
            .order_by(advice_table.c.link_id)
        )
    }
    oldest = conn.execute(
        sa.select(sa.func.min(advice_table.c.created_at_ms)).where(pending)
    ).scalar_one()
    acked = conn.execute(
        sa.select(sa.func.count()).where(advice_table.c.acked_at_ms.is_not(None))
    ).scalar_one()
    return QueueStatus(
        depth=sum(by_link.values()),
        oldest_age_ms=0 if oldest is None else max(0, now_ms - int(oldest)),
        by_link=by_link,
        acked_total=int(acked),
    )


def _check_limit(limit: int) -> int:
    return _check_range("limit", limit, 1, LIST_LIMIT_MAX)


def list_advices(conn: Connection, *, pending_only: bool = True, limit: int = 50) -> list[Advice]:
    """Unacknowledged advices, oldest first (the head of the queue); or, with
    ``pending_only=False``, the most recent advices of any state, newest first."""
    query = sa.select(advice_table).limit(_check_limit(limit))
    if pending_only:
        query = query.where(advice_table.c.acked_at_ms.is_(None)).order_by(advice_table.c.id)
    else:
        query = query.order_by(advice_table.c.id.desc())
    return [_advice(row) for row in conn.execute(query).mappings()]


def txn_log(conn: Connection, *, terminal_id: str | None = None, limit: int = 50) -> list[Txn]:
    """The transaction log, newest first, optionally of one terminal."""
    query = sa.select(txn_table).order_by(txn_table.c.id.desc()).limit(_check_limit(limit))
    if terminal_id is not None:
        query = query.where(txn_table.c.terminal_id == check_terminal_id(terminal_id))
    return [_txn(row) for row in conn.execute(query).mappings()]
