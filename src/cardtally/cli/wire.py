"""``cardtally wire``: decode captured bytes and encode messages from JSON."""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from cardtally.cli._output import fail, out
from cardtally.wire import (
    SPEC,
    DecodeError,
    EncodeError,
    LinkProfile,
    Message,
    Tpdu,
    decode_framed,
    decode_message,
    describe,
    describe_mti,
    encode_frame,
    encode_message,
    masked_field,
)

app = typer.Typer(
    help="Decode and encode ISO 8583 messages of the cardtally wire profile.",
    no_args_is_help=True,
)

_HEX_NOISE = re.compile(r"[\s:]|0x", re.IGNORECASE)


def _read_argument(value: str | None, what: str) -> str:
    if value is None or value == "-":
        if sys.stdin.isatty():
            fail(f"give the {what} as an argument or on standard input")
        return sys.stdin.read()
    return value


def parse_hex(text: str) -> bytes:
    """Hex as support staff paste it: spaces, newlines, colons and 0x are ignored."""
    cleaned = _HEX_NOISE.sub("", text)
    bad = re.search(r"[^0-9a-fA-F]", cleaned)
    if bad:
        fail(f"not hex: character {bad.group()!r} at position {bad.start()} of the cleaned input")
    if len(cleaned) % 2:
        fail(f"not hex: {len(cleaned)} digits is an odd count (each byte is two digits)")
    if not cleaned:
        fail("no bytes given")
    return bytes.fromhex(cleaned)


def shown_value(number: int, value: str, show_pan: bool) -> str:
    """Card data masked unless the operator explicitly asks for it."""
    return value if show_pan else masked_field(number, value)


@app.command("decode")
def decode_command(
    hex_bytes: Annotated[
        str | None,
        typer.Argument(
            metavar="HEX",
            help="Message bytes in hex (spaces, colons allowed); '-' or omitted: read stdin.",
        ),
    ] = None,
    framed: Annotated[
        bool,
        typer.Option("--framed", help="The hex starts with the 2-byte length and the 5-byte TPDU."),
    ] = False,
    app_header: Annotated[
        bool,
        typer.Option("--app-header", help="With --framed: a 6-byte application header follows."),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print {"mti": ..., "fields": {"2": ...}} for machines.'),
    ] = False,
    show_pan: Annotated[
        bool,
        typer.Option(
            "--show-pan", help="Show card number, track data and PIN block in clear (careful)."
        ),
    ] = False,
) -> None:
    """Decode captured bytes field by field; errors name the field and byte offset.

    Example: cardtally wire decode --framed "0030 6000010002 0800 ..."
    """
    data = parse_hex(_read_argument(hex_bytes, "hex bytes"))
    try:
        if framed:
            frame = decode_framed(data, LinkProfile(app_header=app_header))
            message, extra = frame.message, _frame_extra(frame.tpdu, frame.header)
        else:
            message, extra = decode_message(data), {}
    except DecodeError as exc:
        fail(f"cannot decode: {exc}")
    if as_json:
        out.print_json(json.dumps(_as_json(message, extra, show_pan)))
    else:
        _print_table(message, extra, show_pan)


def _frame_extra(tpdu: Tpdu, header: bytes) -> dict[str, Any]:
    extra: dict[str, Any] = {"tpdu": {"destination": tpdu.destination, "source": tpdu.source}}
    if header:
        extra["header"] = header.hex().upper()
    return extra


def _as_json(message: Message, extra: dict[str, Any], show_pan: bool) -> dict[str, Any]:
    fields = {str(n): shown_value(n, v, show_pan) for n, v in message.fields.items()}
    return {"mti": message.mti, **extra, "fields": fields}


def _print_table(message: Message, extra: dict[str, Any], show_pan: bool) -> None:
    title = f"{message.mti}  {describe_mti(message.mti)}"
    if "tpdu" in extra:
        title += (
            f"   TPDU dest {extra['tpdu']['destination']:04X} src {extra['tpdu']['source']:04X}"
        )
    table = Table(title=title, title_justify="left")
    table.add_column("field", justify="right")
    table.add_column("name")
    table.add_column("value", overflow="fold")
    for number, value in message.fields.items():
        shown = shown_value(number, value, show_pan)
        if number == 39:
            shown = f"{value} ({describe(value).meaning})"
        table.add_row(str(number), SPEC[str(number)]["desc"], shown)
    out.print(table)


@app.command("encode")
def encode_command(
    message_json: Annotated[
        str | None,
        typer.Argument(
            metavar="JSON",
            help='{"mti": "0200", "fields": {"3": "000000", ...}}; "-" or omitted: read stdin.',
        ),
    ] = None,
    framed: Annotated[
        bool, typer.Option("--framed", help="Add the 2-byte length and a TPDU.")
    ] = False,
    tpdu_destination: Annotated[
        int, typer.Option(help="TPDU destination address (NII), with --framed.", min=0, max=65535)
    ] = 0,
    tpdu_source: Annotated[
        int, typer.Option(help="TPDU source address, with --framed.", min=0, max=65535)
    ] = 0,
) -> None:
    """Encode a message from JSON and print its bytes in hex.

    Numeric fields are digit strings, binary fields (52, 55, 62, 64, 128) hex.
    Example: cardtally wire encode '{"mti": "0800", "fields": {"11": "000001"}}'
    """
    message = _message_from_json(_read_argument(message_json, "message JSON"))
    try:
        raw = encode_message(message)
        if framed:
            raw = encode_frame(Tpdu(tpdu_destination, tpdu_source), raw)
    except EncodeError as exc:
        fail(f"cannot encode: {exc}")
    out.print(raw.hex().upper())


def _message_from_json(text: str) -> Message:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    if not isinstance(doc, dict) or not isinstance(doc.get("mti"), str):
        fail('JSON must be an object with "mti" (a string) and "fields" (an object)')
    fields = doc.get("fields", {})
    if not isinstance(fields, dict):
        fail('"fields" must be an object of field number -> string value')
    unknown = set(doc) - {"mti", "fields", "tpdu", "header"}
    if unknown:
        fail(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    parsed: dict[int, str] = {}
    for key, value in fields.items():
        if not str(key).isdigit():
            fail(f"field key {key!r} is not a field number")
        if not isinstance(value, str):
            fail(f"field {key}: value must be a string, got {type(value).__name__}")
        parsed[int(key)] = value
    return Message(doc["mti"], parsed)
