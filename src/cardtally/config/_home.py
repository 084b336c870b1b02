"""The home directory: where a deployment keeps its config, databases and keys.

Chosen by ``--home``, else ``$CARDTALLY_HOME``, else ``./.cardtally``. The
config is ``<home>/cardtally.toml``; a missing file means the defaults below,
so a fresh home works without editing anything.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cardtally.config._schema import (
    ConfigError,
    Field,
    Section,
    boolean,
    choice,
    choices,
    clock_time,
    database_url,
    digit_strings,
    integer,
    optional_text,
    percent,
    rate_table,
    text,
    validate,
)
from cardtally.money import CURRENCIES

HOME_ENV: Final = "CARDTALLY_HOME"
DEFAULT_HOME: Final = Path(".cardtally")
CONFIG_FILE: Final = "cardtally.toml"
PORT: Final = integer(1, 65535)
#: A port that may be 0, meaning "do not listen at all".
OPTIONAL_PORT: Final = integer(0, 65535)
AMOUNT_MINOR: Final = integer(0, 10**12)
NOTICE_SINKS: Final = ("console", "jsonl", "webhook")
#: JSON by default: a host's stderr goes to a log shipper more often than to a person's eyes.
LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

SCHEMA: Final[dict[str, Section]] = {
    "network": {
        "currency": Field(choice(*CURRENCIES), "156", "ISO 4217 numeric currency of the network"),
        "acquirer_id": Field(text, "48020000", "acquiring institution ID sent in field 32"),
    },
    "wire": {
        "frame_bytes_max": Field(integer(64, 65535), 4096, "largest frame accepted on a link"),
        "app_header": Field(boolean, False, "6-byte application header after the TPDU"),
    },
    "issuer": {
        "host": Field(text, "127.0.0.1", "address the issuer host listens on"),
        "port": Field(PORT, 9583, "TCP port of the issuer host"),
        "database": Field(database_url, "sqlite:///issuer.db", "issuer database URL"),
        "bins": Field(
            digit_strings(6), ["622588", "625807"], "card BINs (first 6 PAN digits) issued here"
        ),
        "no_pin_limit_minor": Field(
            AMOUNT_MINOR, 100_000, "new cards: largest sale without a PIN, minor units"
        ),
        "per_txn_limit_minor": Field(
            AMOUNT_MINOR, 5_000_000, "new cards: largest single debit, minor units"
        ),
        "daily_limit_minor": Field(
            AMOUNT_MINOR, 20_000_000, "new cards: debits per local day, minor units"
        ),
        "pin_tries_max": Field(integer(1, 9), 3, "wrong PINs in a row before a card locks (75)"),
        "hold_days": Field(integer(1, 90), 30, "days a pre-authorisation hold lasts"),
        "connections_max": Field(integer(1, 10_000), 256, "TCP connections served at once"),
        "in_flight_max": Field(
            integer(1, 1024), 32, "requests awaiting an answer per connection before reading pauses"
        ),
        "batch_max": Field(integer(1, 4096), 128, "requests committed in one transaction"),
        "notice_sinks": Field(
            choices(*NOTICE_SINKS), ["console", "jsonl"], "where cardholder notices are delivered"
        ),
        "notice_jsonl": Field(text, "notices.jsonl", "JSON-lines notice file (relative: in home)"),
        "notice_webhook": Field(optional_text, "", "URL notices are POSTed to ('' for none)"),
        "metrics_port": Field(
            OPTIONAL_PORT, 0, "port of the Prometheus /metrics endpoint on issuer.host (0: off)"
        ),
    },
    "switch": {
        "host": Field(text, "127.0.0.1", "address the acquirer switch listens on"),
        "port": Field(PORT, 9584, "TCP port of the acquirer switch"),
        "database": Field(database_url, "sqlite:///switch.db", "switch database URL"),
        "connections_max": Field(
            integer(1, 10_000), 256, "terminal TCP connections served at once"
        ),
        "in_flight_per_connection_max": Field(
            integer(1, 1024), 64, "requests awaiting an answer per terminal connection"
        ),
        "link_in_flight_max": Field(
            integer(1, 10_000), 512, "requests awaiting an issuer's answer per issuer link"
        ),
        "batch_max": Field(integer(1, 4096), 128, "requests committed in one transaction"),
        "issuer_timeout_ms": Field(
            integer(100, 120_000), 5000, "default issuer answer timeout for 'switch issuers add'"
        ),
        "advice_backoff_min_ms": Field(
            integer(10, 3_600_000), 500, "first wait before a reversal advice is repeated"
        ),
        "advice_backoff_max_ms": Field(
            integer(10, 3_600_000), 30_000, "longest wait between repeats of a reversal advice"
        ),
        "advice_batch_max": Field(
            integer(1, 4096), 64, "reversal advices sent per round of the store-and-forward queue"
        ),
        "echo_idle_ms": Field(
            integer(1000, 3_600_000), 30_000, "an idle issuer link is echo-tested after this long"
        ),
        "metrics_port": Field(
            OPTIONAL_PORT, 0, "port of the Prometheus /metrics endpoint on switch.host (0: off)"
        ),
    },
    "log": {
        "format": Field(
            choice(*LOG_FORMATS), "json", "host log lines on stderr: one JSON object each, or text"
        ),
        "level": Field(choice(*LOG_LEVELS), "info", "least severe log level written"),
    },
    "dayend": {
        "cutoff": Field(
            clock_time, "23:00", "business day cutoff, HH:MM CST; later swipes go to the next day"
        ),
        "grace_ms": Field(
            integer(0, 3_600_000),
            120_000,
            "issuer postings this long after the cutoff still match the day's switch records",
        ),
        "clearing_dir": Field(text, "clearing", "where clearing files go (relative: in home)"),
        "issuer_reads": Field(
            choice("csv", "parquet"), "csv", "which clearing file the issuer side reads"
        ),
        "fee_plans": Field(
            rate_table,
            {"standard": "0.60", "warehouse": "0.38"},
            "merchant discount rate per fee plan, percent of the day's sales",
        ),
        "agent_share": Field(
            percent, "0.08", "an agent's share of the rate (percent of sales), taken out of it"
        ),
    },
}


@dataclass(frozen=True, slots=True)
class WireConfig:
    frame_bytes_max: int
    app_header: bool


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    host: str
    port: int
    database: str  # absolute URL: relative SQLite paths are resolved against the home
    connections_max: int
    in_flight_per_connection_max: int
    link_in_flight_max: int
    batch_max: int
    issuer_timeout_ms: int
    advice_backoff_min_ms: int
    advice_backoff_max_ms: int
    advice_batch_max: int
    echo_idle_ms: int
    metrics_port: int = 0  # 0: no metrics endpoint


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    host: str
    port: int
    database: str
    bins: tuple[str, ...]
    no_pin_limit_minor: int
    per_txn_limit_minor: int
    daily_limit_minor: int
    pin_tries_max: int
    hold_days: int
    connections_max: int
    in_flight_max: int
    batch_max: int
    notice_sinks: tuple[str, ...]
    notice_jsonl: Path
    notice_webhook: str
    metrics_port: int = 0  # 0: no metrics endpoint


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = "json"  # json | text
    level: str = "info"


@dataclass(frozen=True, slots=True)
class DayendConfig:
    cutoff_minutes: int  # after midnight, China Standard Time
    grace_ms: int
    clearing_dir: Path
    issuer_reads: str
    fee_plans: tuple[tuple[str, str], ...]  # (plan, percent string), sorted by plan
    agent_share: str


@dataclass(frozen=True, slots=True)
class Config:
    home: Path
    currency: str
    acquirer_id: str
    wire: WireConfig
    issuer: IssuerConfig
    switch: SwitchConfig
    dayend: DayendConfig
    log: LogConfig = LogConfig()


def resolve_home(option: str | Path | None, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    chosen = option or env.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().absolute()


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def resolve_database_url(home: Path, url: str) -> str:
    """``sqlite:///issuer.db`` lives in the home; ``sqlite:////abs/x.db`` stays put."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(home / url[len(prefix) :])
    return url


def load_config(home: Path) -> Config:
    """Read and validate ``<home>/cardtally.toml``; raise :class:`ConfigError` on any problem."""
    path = config_path(home)
    raw = _read_toml(path)
    try:
        values = validate(raw, SCHEMA)
        _check_across_keys(values)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.message, str(path)) from None
    return Config(
        home=home,
        currency=values["network"]["currency"],
        acquirer_id=values["network"]["acquirer_id"],
        wire=WireConfig(**values["wire"]),
        issuer=_issuer(home, values["issuer"]),
        switch=_switch(home, values["switch"]),
        dayend=_dayend(home, values["dayend"]),
        log=LogConfig(**values["log"]),
    )


def _check_across_keys(values: dict[str, dict[str, Any]]) -> None:
    """Rules between keys, each reported against the key named last in the rule."""
    switch = values["switch"]
    if switch["advice_backoff_max_ms"] < switch["advice_backoff_min_ms"]:
        raise ConfigError(
            "switch.advice_backoff_max_ms",
            f"must be at least switch.advice_backoff_min_ms "
            f"({switch['advice_backoff_min_ms']}), got {switch['advice_backoff_max_ms']}",
        )


def _switch(home: Path, values: dict[str, Any]) -> SwitchConfig:
    fields = dict(values)
    fields["database"] = resolve_database_url(home, values["database"])
    return SwitchConfig(**fields)


def _issuer(home: Path, values: dict[str, Any]) -> IssuerConfig:
    fields = dict(values)
    fields["database"] = resolve_database_url(home, values["database"])
    fields["notice_jsonl"] = home / Path(values["notice_jsonl"]).expanduser()
    return IssuerConfig(**fields)


def _dayend(home: Path, values: dict[str, Any]) -> DayendConfig:
    return DayendConfig(
        cutoff_minutes=values["cutoff"],
        grace_ms=values["grace_ms"],
        clearing_dir=home / Path(values["clearing_dir"]).expanduser(),
        issuer_reads=values["issuer_reads"],
        fee_plans=tuple(sorted(values["fee_plans"].items())),
        agent_share=values["agent_share"],
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read config: {exc}", str(path)) from None


def default_config_text(values: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """The config ``cardtally init`` writes: every key, its default and what it means.

    ``values`` (section -> key -> value) are written instead of those keys' defaults, as
    ``cardtally init --sample`` does; a key the schema does not know is a ``ValueError``.
    """
    given = values or {}
    unknown = [f"{s}.{k}" for s, keys in given.items() for k in keys if k not in SCHEMA.get(s, {})]
    if unknown:
        raise ValueError(f"not config keys: {', '.join(unknown)}")
    lines = ["# cardtally configuration. Every key is optional; shown here with its default.", ""]
    for section_name, section in SCHEMA.items():
        lines.append(f"[{section_name}]")
        for name, fld in section.items():
            value = given.get(section_name, {}).get(name, fld.default)
            lines.append(f"# {fld.help}")
            lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if value >= 100_000 else str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
