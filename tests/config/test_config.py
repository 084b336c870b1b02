"""The home's TOML config: defaults, validation with the offending key, precedence."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cardtally.config import (
    ConfigError,
    config_path,
    default_config_text,
    load_config,
    resolve_home,
)


def write(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config_path(home).write_text(text, encoding="utf-8")


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.issuer.port == 9583
    assert config.currency == "156"
    assert config.issuer.database == f"sqlite:///{tmp_path}/issuer.db"


def test_default_text_is_valid_toml_and_loads_to_the_defaults(tmp_path: Path) -> None:
    tomllib.loads(default_config_text())
    write(tmp_path, default_config_text())
    written = load_config(tmp_path)
    config_path(tmp_path).unlink()
    assert written == load_config(tmp_path)


def test_default_text_can_carry_chosen_values_and_refuses_unknown_keys(tmp_path: Path) -> None:
    chosen = {"issuer": {"port": 19583, "bins": ["621700"]}, "dayend": {"cutoff": "11:30"}}
    write(tmp_path, default_config_text(chosen))
    config = load_config(tmp_path)
    assert (config.issuer.port, config.issuer.bins) == (19583, ("621700",))
    assert config.dayend.cutoff_minutes == 11 * 60 + 30
    assert config.switch.port == 9584
    with pytest.raises(ValueError, match=r"issuer\.prot"):
        default_config_text({"issuer": {"prot": 1}})


def test_values_override_defaults(tmp_path: Path) -> None:
    write(tmp_path, '[switch]\nport = 10000\ndatabase = "postgresql+psycopg://u@h/db"\n')
    config = load_config(tmp_path)
    assert config.switch.port == 10000
    assert config.switch.database == "postgresql+psycopg://u@h/db"
    assert config.issuer.port == 9583


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[issuer]\nport = 'abc'\n", "issuer.port", "expected an integer 1..65535"),
        ("[issuer]\nport = 70000\n", "issuer.port", "got 70000"),
        ("[issuer]\nprot = 9583\n", "issuer.prot", "did you mean 'issuer.port'"),
        ("[isuer]\nport = 1\n", "isuer", "did you mean 'issuer'"),
        ("[wire]\napp_header = 'yes'\n", "wire.app_header", "true or false"),
        ("[network]\ncurrency = '999'\n", "network.currency", "expected one of"),
        ("[switch]\ndatabase = 'mysql://x'\n", "switch.database", "sqlite:///PATH"),
        ("issuer = 3\n", "issuer", "expected a [issuer] table"),
        ("[dayend]\ncutoff = '25:00'\n", "dayend.cutoff", "HH:MM"),
        ("[dayend]\ncutoff = 2300\n", "dayend.cutoff", "HH:MM"),
        ("[dayend]\nagent_share = 0.08\n", "dayend.agent_share", "as a string"),
        ("[dayend]\nagent_share = '101'\n", "dayend.agent_share", "0..100"),
        ("[dayend]\nfee_plans = { gold = 'abc' }\n", "dayend.fee_plans.gold", "percent"),
        ("[dayend]\nfee_plans = { 'a b' = '0.5' }\n", "dayend.fee_plans", "plan name"),
        ("[dayend]\nfee_plans = {}\n", "dayend.fee_plans", "table of plan"),
        ("[dayend]\nissuer_reads = 'xml'\n", "dayend.issuer_reads", "expected one of"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(config_path(tmp_path)) in str(info.value)
    assert "\n" not in str(info.value)


def test_broken_toml_is_one_line_with_position(tmp_path: Path) -> None:
    write(tmp_path, "[issuer\nport = 1\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 1"):
        load_config(tmp_path)


def test_home_precedence(tmp_path: Path) -> None:
    assert resolve_home(tmp_path / "a", {"CARDTALLY_HOME": str(tmp_path / "b")}) == tmp_path / "a"
    assert resolve_home(None, {"CARDTALLY_HOME": str(tmp_path / "b")}) == tmp_path / "b"
    assert resolve_home(None, {}) == Path(".cardtally").absolute()


def test_issuer_lists_and_limits(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[issuer]\nbins = ["622588"]\nnotice_sinks = []\nnotice_webhook = "http://127.0.0.1:1/n"\n',
    )
    issuer = load_config(tmp_path).issuer
    assert issuer.bins == ("622588",)
    assert issuer.notice_sinks == ()
    assert issuer.notice_webhook == "http://127.0.0.1:1/n"
    assert issuer.no_pin_limit_minor == 100_000
    assert issuer.notice_jsonl == tmp_path / "notices.jsonl"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('bins = ["62258"]', "6-digit strings, got item '62258'"),
        ('bins = ["622588", "622588"]', "duplicates"),
        ("bins = []", "non-empty list"),
        ('notice_sinks = ["sms"]', "console, jsonl, webhook, got item 'sms'"),
        ("no_pin_limit_minor = -1", "expected an integer 0..1000000000000"),
    ],
)
def test_issuer_list_errors_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    write(tmp_path, f"[issuer]\n{line}\n")
    with pytest.raises(ConfigError, match="issuer\\.") as caught:
        load_config(tmp_path)
    assert message in str(caught.value)


def test_switch_defaults(tmp_path: Path) -> None:
    switch = load_config(tmp_path).switch
    assert (switch.host, switch.port) == ("127.0.0.1", 9584)
    assert switch.database == f"sqlite:///{tmp_path}/switch.db"
    assert (switch.connections_max, switch.in_flight_per_connection_max) == (256, 64)
    assert (switch.link_in_flight_max, switch.batch_max) == (512, 128)
    assert switch.issuer_timeout_ms == 5000
    assert (switch.advice_backoff_min_ms, switch.advice_backoff_max_ms) == (500, 30_000)
    assert (switch.advice_batch_max, switch.echo_idle_ms) == (64, 30_000)


def test_switch_values_override_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "[switch]\nissuer_timeout_ms = 100\nadvice_backoff_min_ms = 2000\n"
        "advice_backoff_max_ms = 2000\nlink_in_flight_max = 1\necho_idle_ms = 1000\n",
    )
    switch = load_config(tmp_path).switch
    assert switch.issuer_timeout_ms == 100
    assert switch.advice_backoff_min_ms == switch.advice_backoff_max_ms == 2000
    assert (switch.link_in_flight_max, switch.echo_idle_ms) == (1, 1000)


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("issuer_timeout_ms = 99", "switch.issuer_timeout_ms", "expected an integer 100..120000"),
        ("issuer_timeout_ms = 120001", "switch.issuer_timeout_ms", "got 120001"),
        ("connections_max = 0", "switch.connections_max", "expected an integer 1..10000"),
        ("in_flight_per_connection_max = true", "switch.in_flight_per_connection_max", "got True"),
        ("batch_max = '128'", "switch.batch_max", "got '128'"),
        ("advice_batch_max = 0", "switch.advice_batch_max", "expected an integer 1..4096"),
        ("echo_idle_ms = 10", "switch.echo_idle_ms", "expected an integer 1000..3600000"),
        ("in_flight_max = 1", "switch.in_flight_max", "did you mean"),
    ],
)
def test_switch_errors_name_the_key(tmp_path: Path, line: str, key: str, message: str) -> None:
    write(tmp_path, f"[switch]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.key == key
    assert message in str(caught.value)


def test_advice_backoff_max_below_min_names_both_keys(tmp_path: Path) -> None:
    write(tmp_path, "[switch]\nadvice_backoff_min_ms = 5000\nadvice_backoff_max_ms = 4000\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.key == "switch.advice_backoff_max_ms"
    text = str(caught.value)
    assert "switch.advice_backoff_max_ms" in text and "switch.advice_backoff_min_ms" in text
    assert "(5000), got 4000" in text
    assert text.startswith(str(config_path(tmp_path)))
    assert "\n" not in text


def test_default_text_spells_out_every_switch_key() -> None:
    section = tomllib.loads(default_config_text())["switch"]
    assert section["advice_backoff_max_ms"] == 30_000
    assert set(section) >= {"issuer_timeout_ms", "echo_idle_ms", "link_in_flight_max"}


def test_dayend_values_are_read_as_minutes_and_percent_strings(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[dayend]\ncutoff = "02:30"\nfee_plans = { gold = "1.25", standard = "0.6" }\n'
        'agent_share = "0.0825"\nclearing_dir = "out"\n',
    )
    dayend = load_config(tmp_path).dayend
    assert dayend.cutoff_minutes == 150
    assert dayend.fee_plans == (("gold", "1.25"), ("standard", "0.6"))
    assert dayend.agent_share == "0.0825"
    assert dayend.clearing_dir == tmp_path / "out"
