"""``cardtally lookup``: the hotline's view of a swipe, found by any detail a caller can give."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Final

import typer

from cardtally.cli._output import EXIT_PROBLEM, err, fail, out
from cardtally.cli._state import state_of
from cardtally.config import Config
from cardtally.runtime import wall_clock_ms
from cardtally.security import load_data_keys, pan_fingerprint
from cardtally.wire import Pan

if TYPE_CHECKING:
    # The day end (duckdb, pyarrow, jinja2 behind it) is imported when a look-up runs.
    from cardtally.clearing._lookup import Criteria, Found

#: --limit's default and bound: cardtally.clearing._lookup's LIMIT_DEFAULT and LIMIT_MAX, not
#: imported here to keep the CLI's start light (tests/cli/test_startup.py checks they are equal).
LIMIT_DEFAULT: Final = 20
LIMIT_MAX: Final = 1_000


def lookup_command(  # noqa: PLR0917 - Typer maps each option to a parameter
    ctx: typer.Context,
    merchant: Annotated[
        str | None,
        typer.Option(
            "--merchant",
            metavar="MID",
            help="Merchant ID (field 42), as on the merchant's receipt.",
            show_default=False,
        ),
    ] = None,
    terminal: Annotated[
        str | None,
        typer.Option(
            "--terminal",
            metavar="TID",
            help="Terminal ID (field 41): 8 letters and digits, as on the receipt.",
            show_default=False,
        ),
    ] = None,
    pan: Annotated[
        str | None,
        typer.Option(
            "--pan",
            metavar="CARD",
            help=(
                "The full card number (Luhn-checked; spaces allowed). Matched by its keyed "
                "fingerprint; only the masked number is ever shown."
            ),
            show_default=False,
        ),
    ] = None,
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="YYYY-MM-DD",
            help="Business day of the swipe (it ends at dayend.cutoff, 23:00 CST by default).",
            show_default=False,
        ),
    ] = None,
    amount: Annotated[
        str | None,
        typer.Option(
            "--amount",
            metavar="AMOUNT",
            help="Exact amount in the network currency, e.g. 12.34.",
            show_default=False,
        ),
    ] = None,
    rrn: Annotated[
        str | None,
        typer.Option(
            "--rrn",
            metavar="RRN",
            help="Retrieval reference number (REF NO on the receipt); leading zeros optional.",
            show_default=False,
        ),
    ] = None,
    voucher: Annotated[
        str | None,
        typer.Option(
            "--voucher",
            metavar="NNNNNN",
            help=(
                "Voucher (trace) number printed by the terminal: its STAN, 6 digits; leading "
                "zeros optional."
            ),
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=1, max=LIMIT_MAX, help="Show at most this many swipes, newest first."
        ),
    ] = LIMIT_DEFAULT,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (criteria, count, matches) instead of text.")
    ] = False,
) -> None:
    """Look a swipe up: did it succeed, and where is the money now? For the support hotline.

    Give at least one criterion; all given must hold. For each swipe found, newest first: one
    plain sentence, where the money is (not_taken, awaiting_answer, held,
    debited_awaiting_day_end, reversal_pending, reversed, refunded_at_day_end,
    cleared_awaiting_payout, paid_to_merchant, voided, credited_to_card, exception) and the
    timeline in CST, from the switch, the card's bank and the day end. Card numbers are shown
    masked only.

    Exit 0 when something was found, 1 when nothing matched, 2 on bad input.

    Example:

        cardtally lookup --terminal 10300001 --voucher 12 --date 2026-11-21

        cardtally lookup --pan 6225880000000019 --amount 12.34 --json
    """
    from cardtally.clearing._lookup import (  # noqa: PLC0415 - heavy, lookup only
        LookupInputError,
        parse_criteria,
    )

    config = state_of(ctx).config()
    try:
        criteria = parse_criteria(
            currency=config.currency,
            fingerprint=_fingerprint(config),
            merchant=merchant,
            terminal=terminal,
            pan=pan,
            day=day,
            amount=amount,
            rrn=rrn,
            voucher=voucher,
        )
        found = _find(config, criteria, limit)
    except LookupInputError as exc:
        fail(str(exc))
    shown = criteria.shown(config.currency)
    if as_json:
        doc = {"criteria": shown, "count": len(found), "matches": [f.to_json() for f in found]}
        out.print_json(json.dumps(doc))
    else:
        _print_found(found, shown, limit)
    if not found:
        raise typer.Exit(EXIT_PROBLEM)


def _fingerprint(config: Config) -> Callable[[Pan], str]:
    # Keys are loaded only for a --pan look-up: other look-ups work without the data keys.
    def keyed(card: Pan) -> str:
        return pan_fingerprint(load_data_keys(config.home), card)

    return keyed


def _find(config: Config, criteria: Criteria, limit: int) -> list[Found]:
    from cardtally.clearing._database import (  # noqa: PLC0415 - heavy, lookup only
        close_dayend,
        open_dayend,
    )
    from cardtally.clearing._lookup import find_swipes  # noqa: PLC0415 - heavy, lookup only

    dayend = open_dayend(config, wall_clock_ms())
    try:
        return find_swipes(dayend, criteria, limit=limit)
    finally:
        close_dayend(dayend)


def _said(shown: dict[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in shown.items())


def _print_found(found: list[Found], shown: dict[str, str], limit: int) -> None:
    if not found:
        err.print(f"nothing found for {_said(shown)}", markup=False)
        return
    noun = "swipe" if len(found) == 1 else "swipes"
    out.print(f"{len(found)} {noun} found for {_said(shown)} (newest first)", markup=False)
    if len(found) == limit:
        out.print(f"showing the newest {limit}: narrow the search or raise --limit", markup=False)
    for one in found:
        out.print()
        for line in _lines(one):
            out.print(line, markup=False)


def _lines(one: Found) -> list[str]:
    shown = one.to_json()
    where = f"{shown['merchant_name']} ({shown['merchant_id']}), terminal {shown['terminal_id']}"
    if shown["voucher"]:
        where += f", voucher {shown['voucher']}"
    if shown["batch_no"] is not None:
        where += f", batch {shown['batch_no']:06d}"
    source = "" if one.source == "switch" else f"  [{one.source.replace('_', '-')} record]"
    lines = [
        f"RRN {one.rrn}  {shown['kind']}  {shown['amount']}  card {shown['card'] or '-'}{source}",
        f"  {where}",
        f"  {shown['at']} CST, business day {shown['business_day']}",
        f"  >> {one.verdict.headline}",
        f"  money: {one.verdict.money.value}. {one.verdict.money_detail}",
        "  timeline (CST):",
    ]
    lines += [f"    {step['at']}  {step['text']}" for step in shown["timeline"]]
    return lines
