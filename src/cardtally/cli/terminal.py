"""``cardtally terminal``: a POS terminal at the command line, behaving like the device.

Each command opens the terminal's journal (``<home>/terminals/<TID>.journal.sqlite3``),
runs one command of the terminal core against the switch, prints the screen and the
slips, and exits with a code that says how it ended (see ``cardtally terminal --help``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.panel import Panel

from cardtally.cli._output import cst, fail, out
from cardtally.cli._state import state_of
from cardtally.money import Money, MoneyError
from cardtally.runtime import wall_clock_ms
from cardtally.runtime.terminal_device import (
    SwitchAddress,
    TerminalBusyError,
    TerminalDevice,
    device_lock,
)
from cardtally.security import MacAlgorithm, load_data_keys
from cardtally.terminal import (
    TIMEOUT_MS_DEFAULT,
    Balance,
    Card,
    Command,
    Complete,
    Detail,
    Done,
    Journal,
    JournalTxn,
    Outcome,
    PreAuth,
    Refund,
    Reprint,
    Sale,
    Settle,
    SignOn,
    Status,
    Tamper,
    TerminalCore,
    Unlock,
    Void,
    installed_terminals,
    journal_path,
)
from cardtally.terminal._journal import require_installed
from cardtally.terminal._passwords import check_password_text
from cardtally.wire import Pan, PanError

#: How each outcome ends the process. 2 stays "usage error" as everywhere in cardtally.
EXIT_CODES: Final = {
    Status.APPROVED: 0,
    Status.DONE: 0,
    Status.DECLINED: 1,
    Status.REVERSAL_PENDING: 3,
    Status.REFUSED: 4,
    Status.NO_ANSWER: 5,
}
_TIMEOUT_S_MAX: Final = 300

app = typer.Typer(
    help=(
        "A POS terminal: sign on, sell, inquire, void, refund, pre-authorise and complete, "
        "settle the batch, reprint, print the detail list, and protection mode. "
        "Install a terminal first (terminal install) with the master key from "
        "'switch terminals add'. Exit codes: 0 approved or done, 1 declined, 2 usage error, "
        "3 failed with a reversal pending, 4 refused by the terminal (locked, not signed on, "
        "settlement in progress, bad voucher), 5 no valid answer (nothing to reverse)."
    ),
    no_args_is_help=True,
)

TerminalOpt = Annotated[
    str, typer.Option("--terminal", "-t", help="Terminal ID (field 41), as installed.")
]
SwitchOpt = Annotated[
    str | None,
    typer.Option(
        "--switch",
        help="Switch address HOST:PORT (default: switch.host and switch.port of the config).",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout-s",
        min=0.1,
        max=_TIMEOUT_S_MAX,
        help="How long to wait for each answer before counting it lost, in seconds.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the structured outcome as JSON.")]
PanOpt = Annotated[
    str | None, typer.Option("--pan", help="Card number (as keyed or read).", show_default=False)
]
ExpiryOpt = Annotated[
    str | None, typer.Option("--expiry", help="Card expiry YYMM.", show_default=False)
]
Track2Opt = Annotated[
    str | None,
    typer.Option(
        "--track2",
        help="Track 2 as swiped: PAN=YYMM... ('D' also accepted as the separator).",
        show_default=False,
    ),
]
PinOpt = Annotated[
    str | None,
    typer.Option("--pin", help="Cardholder PIN (4-12 digits); see --ask-pin.", show_default=False),
]
AskPinOpt = Annotated[
    bool, typer.Option("--ask-pin", help="Prompt for the PIN without echo, as a PIN pad does.")
]
AmountOpt = Annotated[str, typer.Option("--amount", help="Amount in major units, e.g. 12.34.")]
PaperOutOpt = Annotated[
    bool,
    typer.Option(
        "--paper-out", help="Simulate a printer out of paper: no receipt until a reprint."
    ),
]
AdminOpt = Annotated[
    str | None,
    typer.Option(
        "--admin-password",
        help="Administrator password (prompted without echo if absent). 3 wrong ones lock it.",
        show_default=False,
    ),
]


# -- plumbing ------------------------------------------------------------------------------


@contextmanager
def _journal(ctx: typer.Context, terminal_id: str, *, lock: bool = True) -> Iterator[Journal]:
    """The terminal's journal, held for this command (``lock``) so no other runs beside it;
    ``status`` only reads, so it may look while another command waits on the host."""
    home = state_of(ctx).home
    path = require_installed(home, terminal_id)  # before the keys: "unknown terminal" says more
    try:
        with device_lock(path) if lock else nullcontext():
            journal = Journal.open(home, terminal_id, load_data_keys(home))
            try:
                yield journal
            finally:
                journal.close()
    except TerminalBusyError as exc:
        fail(str(exc), EXIT_CODES[Status.REFUSED])


def _address(ctx: typer.Context, switch: str | None) -> SwitchAddress:
    if switch is not None:
        try:
            return SwitchAddress.parse(switch)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--switch") from None
    config = state_of(ctx).config()
    return SwitchAddress(config.switch.host, config.switch.port)


def _run(
    ctx: typer.Context,
    terminal_id: str,
    command: Command,
    *,
    switch: str | None = None,
    timeout_s: float = TIMEOUT_MS_DEFAULT / 1000,
    as_json: bool = False,
) -> None:
    address = _address(ctx, switch)
    with _journal(ctx, terminal_id) as journal:
        core = TerminalCore(journal, timeout_ms=max(1, int(timeout_s * 1000)))
        outcome = TerminalDevice(core, address).run(command)
    _show(outcome, terminal_id, as_json)
    raise typer.Exit(EXIT_CODES[outcome.status])


def _show(outcome: Outcome, terminal_id: str, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(_outcome_json(outcome)))
        return
    screen = "\n".join(outcome.screen) or outcome.status.value
    out.print(Panel(screen, title=f"TERMINAL {terminal_id}", expand=False), markup=False)
    for slip in outcome.printout:
        out.print(slip, markup=False)
        out.print()


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status.value,
        "code": outcome.code,
        "auto_reversal": outcome.auto_reversal,
        "screen": list(outcome.screen),
        "printout": list(outcome.printout),
        "txn": None if outcome.txn is None else _txn_json(outcome.txn),
        **outcome.data,
    }


def _txn_json(txn: JournalTxn) -> dict[str, Any]:
    return {
        "batch": txn.batch_no,
        "voucher": txn.voucher,
        "kind": txn.kind.value,
        "state": txn.state.value,
        "amount_minor": txn.amount_minor,
        "currency": txn.currency,
        "card": txn.pan.masked,
        "response_code": txn.response_code,
        "rrn": txn.rrn,
        "auth_code": txn.auth_code,
        "host_at": txn.host_at,
        "balance_minor": txn.balance_minor,
        "voided": txn.voided,
        "printed": txn.printed,
    }


def _card(
    pan: str | None, expiry: str | None, track2: str | None, pin: str | None, ask_pin: bool
) -> Card:
    if track2 is not None:
        if pan is not None:
            raise typer.BadParameter("give --pan or --track2, not both", param_hint="--track2")
        number, sep, rest = track2.upper().replace("D", "=").partition("=")
        if not sep or not _is_yymm(rest[:4]):
            raise typer.BadParameter("expected PAN=YYMM...", param_hint="--track2")
        pan, expiry = number, expiry or rest[:4]
    if pan is None:
        raise typer.BadParameter("the card is needed: --pan (and --expiry) or --track2")
    if expiry is not None and not _is_yymm(expiry):
        raise typer.BadParameter(f"expected YYMM, got {expiry!r}", param_hint="--expiry")
    if ask_pin:
        if pin is not None:
            raise typer.BadParameter("give --pin or --ask-pin, not both", param_hint="--ask-pin")
        pin = typer.prompt("PIN", hide_input=True)
    try:
        return Card(Pan(pan), expiry, pin)
    except PanError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pan") from None


def _is_yymm(text: str) -> bool:
    return len(text) == 4 and text.isdigit() and 1 <= int(text[2:]) <= 12


def _amount(text: str) -> int:
    try:
        money = Money.parse(text)
    except MoneyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--amount") from None
    if money.minor <= 0:
        raise typer.BadParameter("the amount must be above zero", param_hint="--amount")
    return money.minor


def _admin(password: str | None) -> str:
    if password is not None:
        return password
    return str(typer.prompt("Administrator password", hide_input=True))


# -- installation and status ---------------------------------------------------------------


@app.command("install")
def install_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    merchant_id: Annotated[str, typer.Option("--merchant", help="Merchant ID (field 42).")],
    merchant_name: Annotated[
        str | None,
        typer.Option("--merchant-name", help="Name printed on slips (default: the merchant ID)."),
    ] = None,
    master_key_file: Annotated[
        Path | None,
        typer.Option(
            "--master-key-file",
            help="File with the TMK in hex (default: keys/terminals/<TID>.tmk in the home).",
            show_default=False,
        ),
    ] = None,
    mac_algorithm: Annotated[
        MacAlgorithm, typer.Option("--mac-algorithm", help="As registered at the switch.")
    ] = MacAlgorithm.X9_19,
    operator: Annotated[str, typer.Option("--operator", help="Operator ID (field 63).")] = "001",
    admin_password: Annotated[
        str | None,
        typer.Option("--admin-password", help="Administrator password (prompted if absent)."),
    ] = None,
    unlock_password: Annotated[
        str | None,
        typer.Option("--unlock-password", help="Protection-mode unlock password (prompted)."),
    ] = None,
) -> None:
    """Install a terminal in this home: inject its master key, create its journal (batch 1)."""
    home = state_of(ctx).home
    key_file = master_key_file or home / "keys" / "terminals" / f"{terminal_id}.tmk"
    master_key = _read_master_key(key_file)
    passwords = {}
    for what, given in (("administrator", admin_password), ("unlock", unlock_password)):
        value = given or str(
            typer.prompt(f"New {what} password", hide_input=True, confirmation_prompt=True)
        )
        try:
            check_password_text(value, what)
        except ValueError as exc:
            fail(str(exc))
        passwords[what] = value
    if not (operator.isascii() and operator.isprintable() and 0 < len(operator) <= 3):
        fail(f"operator ID must be 1-3 printable characters, not {operator!r}")
    path = journal_path(home, terminal_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal.install(
        path,
        load_data_keys(home),
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        merchant_name=merchant_name or merchant_id,
        master_key=master_key,
        mac_algorithm=mac_algorithm,
        admin_password=passwords["administrator"],
        unlock_password=passwords["unlock"],
        now_ms=wall_clock_ms(),
        operator=operator,
    )
    journal.close()
    out.print(f"terminal {terminal_id} installed: journal {path}; next: cardtally terminal signon")


def _read_master_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the master key file {path}: {exc}")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        fail(f"{path} does not hold a hex key")
    if len(key) != 16:
        fail(f"{path} holds {len(key)} bytes; a master key is 16 (32 hex digits)")
    return key


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """List the terminals installed in this home."""
    terminals = installed_terminals(state_of(ctx).home)
    if not terminals:
        out.print("no terminal installed (cardtally terminal install --help)")
    for terminal_id in terminals:
        out.print(terminal_id)


@app.command("status")
def status_command(ctx: typer.Context, terminal_id: TerminalOpt, as_json: JsonOpt = False) -> None:
    """Show batch, trace number, signed-on state, pending reversal and protection state."""
    with _journal(ctx, terminal_id, lock=False) as journal:
        status = _status(journal)
    if as_json:
        out.print_json(json.dumps(status))
        return
    for key, value in status.items():
        out.print(f"{key:<18} {_status_text(value)}", markup=False)


def _status(journal: Journal) -> dict[str, Any]:
    profile = journal.profile()
    protection = journal.protection()
    pending = journal.pending_reversal()
    batch = journal.batch(profile.batch_no)
    txns = journal.txns(profile.batch_no)
    return {
        "terminal": profile.terminal_id,
        "merchant": f"{profile.merchant_id} {profile.merchant_name}",
        "signed_on": f"{cst(profile.signed_on_at_ms)} CST" if profile.signed_on_at_ms else None,
        "batch": f"{profile.batch_no:06d}",
        "batch_state": batch.state.value,
        "batch_txns": len(txns),
        "trace": f"{profile.stan:06d}",
        "pending_reversal": None
        if pending is None
        else {
            "voucher": f"{pending.stan:06d}",
            "batch": f"{pending.batch_no:06d}",
            "reason": pending.reason,
            "sends": pending.sends,
            "flagged": pending.flagged,
        },
        "protection": protection.mode.value
        if not protection.locked
        else f"locked ({protection.reason})",
        "admin_failures": protection.admin_failures,
    }


def _status_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


# -- online commands -----------------------------------------------------------------------


@app.command("signon")
def signon_command(
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Sign on (0800): new PIN and MAC keys under the master key, the host's batch number.
    A pending reversal goes first."""
    _run(ctx, terminal_id, SignOn(), switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("sale")
def sale_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    amount: AmountOpt,
    pan: PanOpt = None,
    expiry: ExpiryOpt = None,
    track2: Track2Opt = None,
    pin: PinOpt = None,
    ask_pin: AskPinOpt = False,
    paper_out: PaperOutOpt = False,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Sale (0200/000000). A pending reversal goes first; no valid answer leaves one."""
    card = _card(pan, expiry, track2, pin, ask_pin)
    command = Sale(card, _amount(amount), paper_out)
    _run(ctx, terminal_id, command, switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("balance")
def balance_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    pan: PanOpt = None,
    expiry: ExpiryOpt = None,
    track2: Track2Opt = None,
    pin: PinOpt = None,
    ask_pin: AskPinOpt = False,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Balance inquiry (0200/310000). Moves no money, but a pending reversal goes first."""
    card = _card(pan, expiry, track2, pin, ask_pin)
    _run(ctx, terminal_id, Balance(card), switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("void")
def void_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    voucher: Annotated[int, typer.Option("--voucher", min=1, max=999999, help="The sale's.")],
    pan: PanOpt = None,
    expiry: ExpiryOpt = None,
    admin_password: AdminOpt = None,
    paper_out: PaperOutOpt = False,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Void a sale of the current batch by its voucher number (0200/200000).
    With --pan, the card must be the sale's."""
    card = None if pan is None else _card(pan, expiry, None, None, ask_pin=False)
    command = Void(voucher, _admin(admin_password), card, paper_out)
    _run(ctx, terminal_id, command, switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("refund")
def refund_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    rrn: Annotated[str, typer.Option("--rrn", help="The original sale's RRN (12 digits).")],
    amount: AmountOpt,
    pan: PanOpt = None,
    expiry: ExpiryOpt = None,
    track2: Track2Opt = None,
    admin_password: AdminOpt = None,
    paper_out: PaperOutOpt = False,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Refund an earlier sale of this merchant by its RRN (0220/200000), any batch."""
    card = _card(pan, expiry, track2, None, ask_pin=False)
    command = Refund(card, rrn, _amount(amount), _admin(admin_password), paper_out)
    _run(ctx, terminal_id, command, switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("preauth")
def preauth_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    amount: AmountOpt,
    pan: PanOpt = None,
    expiry: ExpiryOpt = None,
    track2: Track2Opt = None,
    pin: PinOpt = None,
    ask_pin: AskPinOpt = False,
    paper_out: PaperOutOpt = False,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Pre-authorisation (0100/030000): a hold on the card, completed later."""
    card = _card(pan, expiry, track2, pin, ask_pin)
    command = PreAuth(card, _amount(amount), paper_out)
    _run(ctx, terminal_id, command, switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("complete")
def complete_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    voucher: Annotated[
        int, typer.Option("--voucher", min=1, max=999999, help="The pre-authorisation's.")
    ],
    batch: Annotated[
        int | None,
        typer.Option("--batch", min=1, max=999999, help="Its batch (default: current)."),
    ] = None,
    amount: Annotated[
        str | None, typer.Option("--amount", help="Up to the hold (default: the hold).")
    ] = None,
    paper_out: PaperOutOpt = False,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Complete a pre-authorisation (0200/000000, 60.1 = 20) by its voucher number."""
    minor = None if amount is None else _amount(amount)
    command = Complete(voucher, batch, minor, paper_out)
    _run(ctx, terminal_id, command, switch=switch, timeout_s=timeout_s, as_json=as_json)


@app.command("settle")
def settle_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    admin_password: AdminOpt = None,
    switch: SwitchOpt = None,
    timeout_s: TimeoutOpt = TIMEOUT_MS_DEFAULT / 1000,
    as_json: JsonOpt = False,
) -> None:
    """Settle the batch (0500): if the host says not balanced, upload every transaction
    (0320) and the closing count; print the settlement slip; open the next batch."""
    command = Settle(_admin(admin_password))
    _run(ctx, terminal_id, command, switch=switch, timeout_s=timeout_s, as_json=as_json)


# -- local commands ------------------------------------------------------------------------


def _local(ctx: typer.Context, terminal_id: str, command: Command, as_json: bool) -> None:
    """A command that needs no host: the core finishes it without a send."""
    with _journal(ctx, terminal_id) as journal:
        step = TerminalCore(journal).start(command, wall_clock_ms())
    assert isinstance(step, Done), "local commands never send"
    _show(step.outcome, terminal_id, as_json)
    raise typer.Exit(EXIT_CODES[step.outcome.status])


@app.command("reprint")
def reprint_command(
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    voucher: Annotated[
        int | None,
        typer.Option("--voucher", min=1, max=999999, help="Of the current batch (default: last)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reprint the last receipt, or one of the batch by voucher number, marked REPRINT."""
    _local(ctx, terminal_id, Reprint(voucher), as_json)


@app.command("detail")
def detail_command(
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    batch: Annotated[
        int | None, typer.Option("--batch", min=1, max=999999, help="Default: the current one.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the detail list of the batch: successful transactions only, with totals.
    A sale missing from it did not succeed."""
    _local(ctx, terminal_id, Detail(batch), as_json)


@app.command("tamper")
def tamper_command(ctx: typer.Context, terminal_id: TerminalOpt, as_json: JsonOpt = False) -> None:
    """Simulate the tamper switch: the terminal enters protection mode and refuses
    everything until unlocked. The journal is kept as it is."""
    _local(ctx, terminal_id, Tamper(), as_json)


@app.command("unlock")
def unlock_command(
    ctx: typer.Context,
    terminal_id: TerminalOpt,
    password: Annotated[
        str | None,
        typer.Option("--password", help="The unlock password (prompted without echo)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Leave protection mode with the unlock password."""
    given = (
        password if password is not None else str(typer.prompt("Unlock password", hide_input=True))
    )
    _local(ctx, terminal_id, Unlock(given), as_json)


__all__ = ["EXIT_CODES", "app"]
