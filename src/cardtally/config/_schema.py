"""Validation of the home's TOML config against a small typed schema.

Every problem is reported as one line naming the dotted key, what was expected
and what was found, so an operator can fix a config without reading code.
Unknown keys are errors too: a typo such as ``prot = 9583`` must not silently
fall back to a default.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A config file that cannot be used, with the offending key."""

    def __init__(self, key: str, message: str, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")
        self.key = key
        self.message = message
        self.path = path


Validator = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class Field:
    validator: Validator
    default: Any
    help: str


def integer(minimum: int, maximum: int) -> Validator:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer {minimum}..{maximum}, got {value!r}")
        if not minimum <= value <= maximum:
            raise ConfigError(key, f"expected an integer {minimum}..{maximum}, got {value}")
        return value

    return check


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"expected a non-empty string, got {value!r}")
    return value


def choice(*options: str) -> Validator:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(key, f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


def database_url(key: str, value: Any) -> str:
    text(key, value)
    if not value.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise ConfigError(
            key,
            f"expected a 'sqlite:///PATH' or 'postgresql+psycopg://...' URL, got {value!r}",
        )
    return str(value)


def optional_text(key: str, value: Any) -> str:
    """A string that may be empty, where empty means "not set" (e.g. no webhook)."""
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string (empty for none), got {value!r}")
    return value.strip()


def digit_strings(length: int) -> Validator:
    """A non-empty list of distinct digit strings of one length (e.g. 6-digit BINs)."""

    def check(key: str, value: Any) -> tuple[str, ...]:
        expected = f"expected a non-empty list of distinct {length}-digit strings"
        if not isinstance(value, list) or not value:
            raise ConfigError(key, f"{expected}, got {value!r}")
        for item in value:
            if not (isinstance(item, str) and len(item) == length and item.isdigit()):
                raise ConfigError(key, f"{expected}, got item {item!r}")
        if len(set(value)) != len(value):
            raise ConfigError(key, f"{expected}, got duplicates in {value!r}")
        return tuple(value)

    return check


def choices(*options: str) -> Validator:
    """A list of distinct names out of ``options`` (possibly empty)."""

    def check(key: str, value: Any) -> tuple[str, ...]:
        expected = f"expected a list of distinct names out of {', '.join(options)}"
        if not isinstance(value, list):
            raise ConfigError(key, f"{expected}, got {value!r}")
        for item in value:
            if item not in options:
                raise ConfigError(key, f"{expected}, got item {item!r}")
        if len(set(value)) != len(value):
            raise ConfigError(key, f"{expected}, got duplicates in {value!r}")
        return tuple(value)

    return check


_PERCENT = re.compile(r"(?:100|[0-9]{1,2})(?:\.[0-9]{1,4})?")
_PLAN_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def percent(key: str, value: Any) -> str:
    """A rate as a percent string ("0.60"): never a TOML float, so no binary rounding."""
    if not isinstance(value, str) or not _PERCENT.fullmatch(value) or float(value) > 100:
        raise ConfigError(
            key, f'expected a percent as a string like "0.60" (0..100, 4 decimals), got {value!r}'
        )
    return value


def rate_table(key: str, value: Any) -> dict[str, str]:
    """A non-empty table of fee plan names to percent strings."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(key, f'expected a table of plan = "percent", got {value!r}')
    for name, rate in value.items():
        if not _PLAN_NAME.fullmatch(name):
            raise ConfigError(key, f"plan name {name!r}: expected 1-32 letters, digits, . _ -")
        percent(f"{key}.{name}", rate)
    return dict(value)


def clock_time(key: str, value: Any) -> int:
    """``HH:MM`` (24-hour), returned as minutes after midnight."""
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(key, f'expected a time "HH:MM" (00:00..23:59), got {value!r}')
    return int(match.group(1)) * 60 + int(match.group(2))


Section = Mapping[str, Field]


def validate(raw: Mapping[str, Any], schema: Mapping[str, Section]) -> dict[str, dict[str, Any]]:
    """Apply defaults and validators; raise :class:`ConfigError` on the first problem."""
    _refuse_unknown("", raw, schema)
    result: dict[str, dict[str, Any]] = {}
    for section_name, section in schema.items():
        given = raw.get(section_name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(section_name, f"expected a [{section_name}] table, got {given!r}")
        _refuse_unknown(section_name + ".", given, section)
        # Defaults go through their validator too, so a default list comes out as
        # the same tuple a written-out value would.
        result[section_name] = {
            name: fld.validator(f"{section_name}.{name}", given.get(name, fld.default))
            for name, fld in section.items()
        }
    return result


def _refuse_unknown(prefix: str, given: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            allowed = ", ".join(prefix + k for k in known)
            raise ConfigError(prefix + key, f"unknown key{hint}; known keys: {allowed}")
