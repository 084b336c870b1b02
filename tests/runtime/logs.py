"""Reading a host's stderr: JSON log lines (the hosts' default format), found by event.

Tests name what they look for the way the text format writes it, ``event=link.connected`` or
``event=switch.recovered reversals_queued=1``: :func:`count_events` reads that as an event
name and fields, and matches it against the JSON lines, comparing each field as text (as
the text format would print it), so a needle means the same in either format.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

#: ``key=value`` or ``key="quoted value"``, as the text format writes a field.
_FIELD: Final = re.compile(r'([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of ``log`` as a JSON object; fails on the first line that is not one."""
    lines = []
    for number, line in enumerate(log.splitlines(), 1):
        try:
            parsed = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
        assert isinstance(parsed, dict), f"log line {number} is not an object: {line!r}"
        lines.append(parsed)
    return lines


def events(log: str, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON lines of ``log`` (others skipped: a crash's traceback) for event ``name``."""
    found = []
    for line in log.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and (name is None or parsed.get("event") == name):
            found.append(parsed)
    return found


def as_text(value: object) -> str:
    """A JSON field value as the text format prints it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_needle(needle: str) -> tuple[str, dict[str, str]]:
    """``event=NAME k=v ...`` as the event name and the fields (values as text)."""
    fields = {}
    for key, raw in _FIELD.findall(needle):
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
    name = fields.pop("event", None)
    assert name, f"a needle names its event: {needle!r}"
    return name, fields


def count_events(log: str, needle: str) -> int:
    """How many JSON lines of ``log`` are the event ``needle`` names, with its fields."""
    name, fields = parse_needle(needle)
    return sum(
        1
        for line in events(log, name)
        if all(key in line and as_text(line[key]) == value for key, value in fields.items())
    )
