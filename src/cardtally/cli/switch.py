"""``cardtally switch``: the acquirer switch's merchants, terminals, issuer routes and queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Connection

from cardtally.cli._output import cst, fail, out
from cardtally.cli._state import state_of
from cardtally.config import Config
from cardtally.money import Money
from cardtally.runtime import wall_clock_ms
from cardtally.security import MacAlgorithm, load_data_keys
from cardtally.security._secret_file import write_secret_file
from cardtally.storage import transaction
from cardtally.switch._database import open_switch_database
from cardtally.switch._model import (
    Advice,
    IssuerRoute,
    Merchant,
    SettlementCycle,
    Terminal,
    TerminalStatus,
    Txn,
    rrn_of,
)
from cardtally.switch._registry import (
    QueueStatus,
    add_issuer_link,
    add_merchant,
    add_terminal,
    check_terminal_id,
    issuer_link,
    list_advices,
    list_issuer_links,
    list_merchants,
    list_terminals,
    queue_status,
    set_terminal_status,
    txn_log,
)

#: Times are shown in China Standard Time, as on receipts (fixed +08:00, no tzdata needed).
_MASTER_KEY_HEX_DIGITS: Final = 32
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_PIPE_WIDTH: Final = 240

app = typer.Typer(
    help=(
        "The acquirer switch: merchants, terminals and their master keys, BIN routes to "
        "issuers, the reversal queue, the transaction log, and the switch host (serve)."
    ),
    no_args_is_help=True,
)
merchants_app = typer.Typer(
    help="Register and list merchants (merchant ID = field 42, name = field 43).",
    no_args_is_help=True,
)
terminals_app = typer.Typer(
    help=(
        "Register terminals with their master keys (TMK), list them, disable and enable them "
        "(terminal ID = field 41)."
    ),
    no_args_is_help=True,
)
issuers_app = typer.Typer(
    help="Issuer links: where the switch forwards each card BIN, and how long it waits.",
    no_args_is_help=True,
)
app.add_typer(merchants_app, name="merchants")
app.add_typer(terminals_app, name="terminals")
app.add_typer(issuers_app, name="issuers")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TerminalIdOption = Annotated[
    str,
    typer.Option(
        "--id", metavar="TID", help="Terminal ID: exactly 8 letters and digits.", show_default=False
    ),
]


@contextmanager
def _database(config: Config) -> Iterator[Connection]:
    """One transaction on the switch database: committed if the block succeeds."""
    engine = open_switch_database(config.switch.database, wall_clock_ms())
    try:
        with transaction(engine) as conn:
            yield conn
    finally:
        engine.dispose()


def _config(ctx: typer.Context) -> Config:
    return state_of(ctx).config()


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


#: Columns kept on one line while others wrap: identifiers, codes and amounts.
_WHOLE: Final = frozenset(
    {"merchant", "terminal", "RRN", "txn", "STAN", "batch", "MCC", "TMK KCV", "card", "amount"}
    | {"code", "port", "attempts"}
)


def _print_table(table: Table) -> None:
    """On a terminal, fit its width; into a pipe or file, keep each row on one line."""
    if out.is_terminal:
        out.print(table)
    else:
        Console(highlight=False, soft_wrap=True, width=_PIPE_WIDTH).print(table)


def _table(title: str, columns: tuple[str, ...], right: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        # Fold rather than truncate when even that does not fit: "103000…" would be useless.
        table.add_column(
            column,
            justify="right" if column in right else "left",
            no_wrap=column in _WHOLE,
            overflow="fold",
        )
    return table


# --- merchants -----------------------------------------------------------------------------


def _merchant_json(merchant: Merchant) -> dict[str, Any]:
    return {
        "merchant_id": merchant.merchant_id,
        "name": merchant.name,
        "mcc": merchant.mcc,
        "city": merchant.city,
        "fee_plan": merchant.fee_plan,
        "agent": merchant.agent,
        "settlement_cycle": merchant.settlement_cycle.value,
        "settlement_account": merchant.settlement_account,
        "created_at_ms": merchant.created_at_ms,
    }


@merchants_app.command("add")
def merchants_add_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    merchant_id: Annotated[
        str,
        typer.Option(
            "--id",
            metavar="MID",
            help="Merchant ID (field 42): 1-15 letters and digits; trailing spaces are dropped.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Name printed on receipts and SMS (field 43): 1-40 printable ASCII characters.",
            show_default=False,
        ),
    ],
    mcc: Annotated[
        str,
        typer.Option(
            "--mcc",
            metavar="NNNN",
            help="Merchant category code, 4 digits (e.g. 5411 supermarkets).",
            show_default=False,
        ),
    ],
    city: Annotated[str, typer.Option("--city", help="City, up to 40 characters.")] = "",
    fee_plan: Annotated[
        str, typer.Option("--fee-plan", help="Fee plan name applied at merchant settlement.")
    ] = "standard",
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="Agent who signed the merchant (earns the spread)."),
    ] = None,
    settlement: Annotated[
        SettlementCycle,
        typer.Option(
            "--settlement",
            case_sensitive=False,
            help="When the merchant is paid: d0 the same day, t1 the next business day.",
        ),
    ] = SettlementCycle.T1,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            metavar="ACCT",
            help="Settlement account paid to (default: merchant:<MID>).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Register a merchant that terminals can belong to.

    Example:

        cardtally switch merchants add --id 898440358120001 --name "LUCKY MART" --mcc 5411

        cardtally switch merchants add --id M002 --name "CLUB" --mcc 5300 --settlement d0
    """
    config = _config(ctx)
    with _database(config) as conn:
        merchant = add_merchant(
            conn,
            merchant_id=merchant_id,
            name=name,
            mcc=mcc,
            city=city,
            fee_plan=fee_plan,
            agent=agent,
            settlement_cycle=settlement,
            settlement_account=account,
            at_ms=wall_clock_ms(),
        )
    out.print(
        f"merchant {merchant.merchant_id} added: {merchant.name!r}, MCC {merchant.mcc}, "
        f"fee plan {merchant.fee_plan}, settled {merchant.settlement_cycle.value.upper()} "
        f"to {merchant.settlement_account}"
    )


@merchants_app.command("list")
def merchants_list_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every merchant, by merchant ID.

    Example:

        cardtally switch merchants list --json
    """
    with _database(_config(ctx)) as conn:
        merchants = list_merchants(conn)
    if as_json:
        out.print_json(json.dumps([_merchant_json(m) for m in merchants]))
        return
    table = _table(
        f"merchants ({len(merchants)})",
        ("merchant", "name", "MCC", "city", "fee plan", "agent", "settlement", "account"),
    )
    for m in merchants:
        table.add_row(
            m.merchant_id,
            m.name,
            m.mcc,
            m.city,
            m.fee_plan,
            m.agent or "",
            m.settlement_cycle.value.upper(),
            m.settlement_account,
        )
    _print_table(table)


# --- terminals -----------------------------------------------------------------------------


def tmk_file(home: Path, terminal_id: str) -> Path:
    """Where ``switch terminals add`` leaves a terminal's clear master key for injection."""
    return home / "keys" / "terminals" / f"{check_terminal_id(terminal_id)}.tmk"


def _master_key(text: str | None) -> bytes | None:
    if text is None:
        return None
    value = text.strip()
    if len(value) != _MASTER_KEY_HEX_DIGITS or not _HEX.issuperset(value):
        fail(
            f"--master-key: expected {_MASTER_KEY_HEX_DIGITS} hex digits "
            f"(a double-length TDES key), got {len(value)} characters"
            + ("" if _HEX.issuperset(value) else " that are not all hex digits")
        )
    return bytes.fromhex(value)


def _terminal_json(terminal: Terminal) -> dict[str, Any]:
    return {
        "terminal_id": terminal.terminal_id,
        "merchant_id": terminal.merchant_id,
        "status": terminal.status.value,
        "mac_required": terminal.mac_required,
        "mac_algorithm": terminal.mac_algorithm.value,
        "batch_no": terminal.batch_no,
        "master_key_kcv": terminal.master_key_kcv,
        "signed_on_at_ms": terminal.signed_on_at_ms,
        "created_at_ms": terminal.created_at_ms,
    }


def _write_new_tmk(path: Path, key: bytes) -> None:
    (path.parent.parent).mkdir(mode=0o700, parents=True, exist_ok=True)
    write_secret_file(path, key.hex().upper() + "\n")


@terminals_app.command("add")
def terminals_add_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalIdOption,
    merchant_id: Annotated[
        str,
        typer.Option(
            "--merchant", metavar="MID", help="The merchant it belongs to.", show_default=False
        ),
    ],
    no_mac: Annotated[
        bool,
        typer.Option(
            "--no-mac",
            help="Accept this terminal's requests without a MAC (field 64/128). Test rigs only.",
        ),
    ] = False,
    mac_algorithm: Annotated[
        MacAlgorithm,
        typer.Option(
            "--mac-algorithm",
            case_sensitive=False,
            help="MAC the terminal computes: x9.19 (ANSI retail MAC) or cup-ecb (UnionPay ECB).",
        ),
    ] = MacAlgorithm.X9_19,
    master_key: Annotated[
        str | None,
        typer.Option(
            "--master-key",
            metavar="HEX",
            help=(
                "The terminal's master key (TMK), 32 hex digits, when it already has one. "
                "Default: a fresh random key."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Register a terminal and give it a master key (TMK) for key injection.

    The switch keeps the master key sealed under the data keys. The clear key is written once
    to <home>/keys/terminals/<TID>.tmk (32 hex digits, mode 0600, directory 0700) for loading
    into the terminal; an existing file is never overwritten. Load it, then delete the file.
    The printed check value (KCV) lets the terminal confirm it loaded the same key.

    Example:

        cardtally switch terminals add --id 10300001 --merchant 898440358120001
    """
    config = _config(ctx)
    path = tmk_file(config.home, terminal_id)
    given = _master_key(master_key)
    if path.exists():
        fail(f"{path} already exists; refusing to overwrite a terminal master key file")
    data_keys = load_data_keys(config.home)
    written = False
    try:
        with _database(config) as conn:
            terminal, key = add_terminal(
                conn,
                data_keys,
                terminal_id=terminal_id,
                merchant_id=merchant_id,
                mac_required=not no_mac,
                mac_algorithm=mac_algorithm,
                master_key=given,
                at_ms=wall_clock_ms(),
            )
            # Written before the commit: if writing fails, the terminal is not registered.
            _write_new_tmk(path, key)
            written = True
    except BaseException:
        if written:  # the commit failed: the key file names a terminal that does not exist
            path.unlink(missing_ok=True)
        raise
    mac = f"MAC {terminal.mac_algorithm.value}" if terminal.mac_required else "no MAC"
    out.print(
        f"terminal {terminal.terminal_id} added for merchant {terminal.merchant_id}: "
        f"{terminal.status.value}, batch {terminal.batch_no:06d}, {mac}"
    )
    out.print(f"master key KCV {terminal.master_key_kcv}")
    out.print(
        f"master key written to {path} (mode 0600): load it into the terminal, then delete it"
    )


@terminals_app.command("list")
def terminals_list_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every terminal: merchant, status, MAC, batch, master key check value, last sign-on.

    Example:

        cardtally switch terminals list --json
    """
    with _database(_config(ctx)) as conn:
        terminals = list_terminals(conn)
    if as_json:
        out.print_json(json.dumps([_terminal_json(t) for t in terminals]))
        return
    table = _table(
        f"terminals ({len(terminals)})",
        ("terminal", "merchant", "status", "MAC", "batch", "TMK KCV", "signed on (CST)"),
        right=("batch",),
    )
    for t in terminals:
        table.add_row(
            t.terminal_id,
            t.merchant_id,
            t.status.value,
            t.mac_algorithm.value if t.mac_required else "off",
            f"{t.batch_no:06d}",
            t.master_key_kcv,
            cst(t.signed_on_at_ms),
        )
    _print_table(table)


def _set_status(ctx: typer.Context, terminal_id: str, status: TerminalStatus) -> None:
    with _database(_config(ctx)) as conn:
        terminal = set_terminal_status(conn, terminal_id, status, wall_clock_ms())
    out.print(f"terminal {terminal.terminal_id} is now {terminal.status.value}")


@terminals_app.command("disable")
def terminals_disable_command(ctx: typer.Context, terminal_id: TerminalIdOption) -> None:
    """Stop a terminal: the switch refuses its requests (58) until it is enabled again.

    Reversals and batch settlement of what it already did are still taken.

    Example:

        cardtally switch terminals disable --id 10300001
    """
    _set_status(ctx, terminal_id, TerminalStatus.DISABLED)


@terminals_app.command("enable")
def terminals_enable_command(ctx: typer.Context, terminal_id: TerminalIdOption) -> None:
    """Let a disabled terminal transact again.

    Example:

        cardtally switch terminals enable --id 10300001
    """
    _set_status(ctx, terminal_id, TerminalStatus.ACTIVE)


# --- issuer links --------------------------------------------------------------------------


def _route_json(route: IssuerRoute) -> dict[str, Any]:
    return {
        "link_id": route.link_id,
        "host": route.host,
        "port": route.port,
        "timeout_ms": route.timeout_ms,
        "bins": list(route.bins),
    }


@issuers_app.command("add")
def issuers_add_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    bins: Annotated[
        list[str],
        typer.Option(
            "--bin",
            metavar="NNNNNN",
            help="Card BIN (6-11 leading PAN digits) routed to this issuer; repeat for more.",
            show_default=False,
        ),
    ],
    host: Annotated[
        str, typer.Option("--host", help="The issuer host's address.", show_default=False)
    ],
    port: Annotated[
        int,
        typer.Option(
            "--port", min=1, max=65535, help="The issuer host's port.", show_default=False
        ),
    ],
    timeout_ms: Annotated[
        int | None,
        typer.Option(
            "--timeout-ms",
            min=100,
            max=120_000,
            help=(
                "How long to wait for the issuer's answer before answering the terminal 98 and "
                "queueing a reversal (default: the link's, else switch.issuer_timeout_ms)."
            ),
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="LINK",
            help="Link name (default: issuer-<host>-<port>).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Route card BINs to an issuer host. Adding BINs to an existing link is allowed.

    The longest matching BIN wins. A BIN already routed to another link is refused; repeating
    a command is harmless.

    Example:

        cardtally switch issuers add --bin 622588 --bin 625807 --host 127.0.0.1 --port 9583
    """
    config = _config(ctx)
    link_id = name or f"issuer-{host}-{port}"
    with _database(config) as conn:
        if timeout_ms is None:
            existing = issuer_link(conn, link_id)
            timeout_ms = (
                config.switch.issuer_timeout_ms if existing is None else existing.timeout_ms
            )
        route = add_issuer_link(
            conn,
            link_id=link_id,
            host=host,
            port=port,
            timeout_ms=timeout_ms,
            bins=bins,
            at_ms=wall_clock_ms(),
        )
    out.print(
        f"issuer link {route.link_id} -> {route.host}:{route.port}, timeout {route.timeout_ms} ms, "
        f"BINs {', '.join(route.bins)}"
    )


@issuers_app.command("list")
def issuers_list_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every issuer link with its address, timeout and BINs.

    Example:

        cardtally switch issuers list --json
    """
    with _database(_config(ctx)) as conn:
        routes = list_issuer_links(conn)
    if as_json:
        out.print_json(json.dumps([_route_json(r) for r in routes]))
        return
    table = _table(
        f"issuer links ({len(routes)})",
        ("link", "host", "port", "timeout ms", "BINs"),
        right=("port", "timeout ms"),
    )
    for r in routes:
        table.add_row(r.link_id, r.host, str(r.port), str(r.timeout_ms), ", ".join(r.bins))
    _print_table(table)


# --- queue ---------------------------------------------------------------------------------


def _advice_json(advice: Advice, now_ms: int) -> dict[str, Any]:
    return {
        "advice_id": advice.id,
        "txn_id": advice.txn_id,
        "rrn": rrn_of(advice.txn_id),
        "link_id": advice.link_id,
        "attempts": advice.attempts,
        "created_at_ms": advice.created_at_ms,
        "age_ms": max(0, now_ms - advice.created_at_ms),
        "next_at_ms": advice.next_at_ms,
    }


def _queue_json(status: QueueStatus, advices: list[Advice], now_ms: int) -> dict[str, Any]:
    return {
        "depth": status.depth,
        "oldest_age_ms": status.oldest_age_ms,
        "by_link": status.by_link,
        "acked_total": status.acked_total,
        "pending": [_advice_json(a, now_ms) for a in advices],
    }


@app.command("queue")
def queue_command(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Pending advices listed at most.")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """The store-and-forward queue: reversal advices (0420/0421) not yet acknowledged.

    When an issuer does not answer in time the switch answers the terminal 98 and queues a
    reversal advice, repeated until the issuer acknowledges it, across restarts. Shows the
    depth, the oldest advice's age, the depth per issuer link, and each pending advice with
    its transaction (RRN), attempts so far and next try (CST).

    Example:

        cardtally switch queue --json
    """
    with _database(_config(ctx)) as conn:
        now_ms = wall_clock_ms()
        status = queue_status(conn, now_ms)
        advices = list_advices(conn, pending_only=True, limit=limit)
    if as_json:
        out.print_json(json.dumps(_queue_json(status, advices, now_ms)))
        return
    out.print(
        f"reversal queue: depth {status.depth}, oldest {_duration(status.oldest_age_ms)}, "
        f"acknowledged {status.acked_total}"
    )
    for link_id, depth in status.by_link.items():
        out.print(f"  {link_id}: {depth} pending")
    if not advices:
        return
    shown = f"{len(advices)} of {status.depth}" if len(advices) < status.depth else len(advices)
    table = _table(
        f"pending advices ({shown})",
        ("txn", "RRN", "link", "attempts", "age", "next try (CST)"),
        right=("txn", "attempts", "age"),
    )
    for a in advices:
        table.add_row(
            str(a.txn_id),
            rrn_of(a.txn_id),
            a.link_id,
            str(a.attempts),
            _duration(max(0, now_ms - a.created_at_ms)),
            cst(a.next_at_ms),
        )
    _print_table(table)


# --- transaction log -----------------------------------------------------------------------


def _txn_json(txn: Txn) -> dict[str, Any]:
    return {
        "rrn": txn.rrn,
        "kind": txn.kind.value,
        "state": txn.state.value,
        "terminal_id": txn.terminal_id,
        "merchant_id": txn.merchant_id,
        "stan": txn.stan,
        "batch_no": txn.batch_no,
        "local_date": txn.local_date,
        "card": txn.pan_masked,
        "amount_minor": txn.amount_minor,
        "amount": _amount(txn),
        "currency": txn.currency,
        "response_code": txn.response_code,
        "auth_code": txn.auth_code,
        "link_id": txn.link_id,
        "original_rrn": None if txn.original_id is None else rrn_of(txn.original_id),
        "received_at_ms": txn.received_at_ms,
        "updated_at_ms": txn.updated_at_ms,
    }


def _amount(txn: Txn) -> str:
    try:
        return Money(txn.amount_minor, txn.currency).decimal_text()
    except ValueError:  # a currency the network does not know: show minor units as they are
        return str(txn.amount_minor)


@app.command("txns")
def txns_command(
    ctx: typer.Context,
    terminal: Annotated[
        str | None,
        typer.Option(
            "--terminal",
            metavar="TID",
            help="Only this terminal's transactions.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="How many, newest first.")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """The switch's transaction log, newest first. Card numbers are always masked.

    Shows each transaction's RRN (retrieval reference number), kind, state, terminal, STAN
    (trace number), batch, card, amount and response code.

    Example:

        cardtally switch txns --terminal 10300001 --limit 20
    """
    with _database(_config(ctx)) as conn:
        txns = txn_log(conn, terminal_id=terminal, limit=limit)
    if as_json:
        out.print_json(json.dumps([_txn_json(t) for t in txns]))
        return
    table = _table(
        f"transactions ({len(txns)}, newest first)",
        (
            "RRN",
            "time (CST)",
            "kind",
            "state",
            "terminal",
            "STAN",
            "batch",
            "card",
            "amount",
            "code",
        ),
        right=("amount",),
    )
    for t in txns:
        table.add_row(
            t.rrn,
            cst(t.received_at_ms),
            t.kind.value,
            t.state.value,
            t.terminal_id,
            t.stan,
            f"{t.batch_no:06d}",
            t.pan_masked or "-",
            _amount(t),
            t.response_code or "-",
        )
    _print_table(table)


# --- serve ---------------------------------------------------------------------------------


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default: switch.host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port; 0 picks a free one (default: switch.port)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Port of GET /metrics on the same host; 0: none (default: switch.metrics_port).",
        ),
    ] = None,
) -> None:
    """Run the acquirer switch: terminals in, issuers out, ISO 8583 over TCP.

    Verifies each terminal's MAC, assigns RRNs, routes by BIN, answers 98 and queues a
    reversal when an issuer is late, and repeats queued reversals until acknowledged. Logs
    structured lines on stderr (JSON by default, [log] format; no card numbers), serves
    Prometheus metrics when a metrics port is set, and prints 'listening on HOST:PORT' once
    ready. Stops gracefully on SIGTERM or Ctrl-C.

    Example:

        cardtally switch serve --port 9584 --metrics-port 9109
    """
    from cardtally.runtime.switch_process import serve_switch  # noqa: PLC0415 - serve only

    serve_switch(_config(ctx), host=host, port=port, metrics_port=metrics_port)
