"""Structured JSON logs: one object per line, a transaction id on every transaction line, and
never a card number, whatever a caller hands the logger."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from cardtally.config import ConfigError, load_config
from cardtally.runtime import configure_logging, log_event
from cardtally.runtime._logging import JsonFormatter, mask_card_numbers
from cardtally.storage import sqlite_url
from cardtally.terminal import Card
from cardtally.wire import Pan
from tests.issuer.messages import CREDIT_PAN, DEBIT_PAN, EXPIRY, UNKNOWN_PAN
from tests.issuer.tcp_support import make_home, running_issuer
from tests.runtime.logs import events, json_lines
from tests.switch.tcp_support import DEBIT_CARD, Network

CARD_NUMBERS: Final = (DEBIT_PAN, CREDIT_PAN, UNKNOWN_PAN)
#: Transaction lines and the fields each must carry.
TXN_EVENTS: Final = ("issuer.answer", "switch.answer")
TXN_FIELDS: Final = ("type", "rc", "terminal", "stan", "txn_id", "latency_ms", "sent")


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the hosts' JSON formatter to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("tests.runtime.json_logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)


def only_line(stream: io.StringIO) -> dict[str, Any]:
    [line] = json_lines(stream.getvalue())
    return line


# --- the format ------------------------------------------------------------------------------


def test_a_line_is_one_object_with_time_level_logger_event_and_typed_fields(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = json_log
    log_event(log, "link.lost", level=logging.WARNING, link="issuer_a", up=False, n=3, x=None)
    line = only_line(stream)
    assert list(line)[:4] == ["ts", "level", "logger", "event"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert (line["level"], line["logger"], line["event"]) == (
        "WARNING",
        "tests.runtime.json_logs",
        "link.lost",
    )
    assert (line["link"], line["up"], line["n"], line["x"]) == ("issuer_a", False, 3, None)


def test_counters_stay_an_object_and_reserved_names_do_not_overwrite(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = json_log
    log_event(log, "switch.stopped", counters={"frames_in": 2, 'declined{code="51"}': 1}, ts=5)
    line = only_line(stream)
    assert line["counters"] == {"frames_in": 2, 'declined{code="51"}': 1}
    assert line["field_ts"] == 5 and line["ts"] != 5


def test_lines_written_the_older_way_are_read_back_into_fields(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = json_log
    log.info("event=notices.delivered sink=%s id=%s reason=%s", "jsonl", "N1", '"a b"')
    log.info("issuer.request_failed mti=%s error=%s", "0200", "KeyError")
    log.info("Running upgrade -> 0002")
    log.info('event=odd.quote reason="a"b')  # not the text format's quoting: kept as it is
    first, second, third, fourth = json_lines(stream.getvalue())
    assert (first["event"], first["sink"], first["id"], first["reason"]) == (
        "notices.delivered",
        "jsonl",
        "N1",
        "a b",
    )
    assert (second["event"], second["mti"], second["error"]) == (
        "issuer.request_failed",
        "0200",
        "KeyError",
    )
    assert (third["event"], third["message"]) == ("log", "Running upgrade -> 0002")
    assert (fourth["event"], fourth["reason"]) == ("odd.quote", '"a"b')


def test_configure_logging_chooses_the_format() -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    try:
        configure_logging(stream, level="info", log_format="json")
        log_event(logging.getLogger("cardtally.test"), "hello", n=1)
        with pytest.raises(ValueError, match="log format"):
            configure_logging(stream, log_format="xml")
    finally:
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
    line = only_line(stream)
    assert (line["logger"], line["event"], line["n"]) == ("cardtally.test", "hello", 1)


def test_the_log_section_of_the_config(tmp_path: Path) -> None:
    assert load_config(tmp_path).log.format == "json"  # the default: for log shippers
    (tmp_path / "cardtally.toml").write_text('[log]\nformat = "text"\nlevel = "warning"\n')
    config = load_config(tmp_path)
    assert (config.log.format, config.log.level) == ("text", "warning")
    (tmp_path / "cardtally.toml").write_text('[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match=r"log\.format: expected one of json, text"):
        load_config(tmp_path)


# --- the card number safety net ----------------------------------------------------------------


def test_a_card_number_in_a_field_is_masked_in_json(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = json_log
    masked = Pan(DEBIT_PAN).masked
    # A caller that breaks the rule: the PAN as a field, inside text, as a number.
    log_event(log, "oops", pan=DEBIT_PAN, note=f"track {DEBIT_PAN}={EXPIRY}", n=int(DEBIT_PAN))
    text = stream.getvalue()
    assert DEBIT_PAN not in text
    line = only_line(stream)
    assert (line["pan"], line["note"], line["n"]) == (masked, f"track {masked}={EXPIRY}", masked)


def test_a_card_number_in_a_message_or_a_traceback_is_masked(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = json_log
    try:
        raise ValueError(f"bad card {CREDIT_PAN}")
    except ValueError:
        log.exception("failed for %s", CREDIT_PAN)
    assert CREDIT_PAN not in stream.getvalue()
    line = only_line(stream)
    assert line["message"] == f"failed for {Pan(CREDIT_PAN).masked}"
    assert f"bad card {Pan(CREDIT_PAN).masked}" in line["exc"]


def test_a_card_number_is_masked_in_text_lines_too() -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    try:
        configure_logging(stream, log_format="text")
        log_event(logging.getLogger("cardtally.test"), "oops", pan=DEBIT_PAN)
    finally:
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
    assert DEBIT_PAN not in stream.getvalue()
    assert stream.getvalue().endswith(f"event=oops pan={Pan(DEBIT_PAN).masked}\n")


def test_only_luhn_valid_card_sized_runs_are_masked() -> None:
    not_luhn = DEBIT_PAN[:-1] + str((int(DEBIT_PAN[-1]) + 1) % 10)
    kept = f"rrn=000000000042 stan=000001 t=1736500000 digits={not_luhn} long={DEBIT_PAN}7"
    assert mask_card_numbers(kept) == kept
    assert mask_card_numbers(f"a{DEBIT_PAN}b") == f"a{Pan(DEBIT_PAN).masked}b"


# --- real hosts -------------------------------------------------------------------------------


def test_host_logs_are_json_with_txn_ids_and_no_card_numbers(tmp_path: Path) -> None:
    issuer_db, switch_db = sqlite_url(tmp_path / "i.sqlite3"), sqlite_url(tmp_path / "s.sqlite3")
    with Network(tmp_path, issuer_db, switch_db) as net:
        issuer = net.start_issuer()
        net.link_issuer(issuer.port)
        switch = net.start_switch()
        terminal = net.terminal()
        assert terminal.exchange(terminal.sale(DEBIT_CARD, 250)).code == "00"
        wrong_pin = Card(Pan(DEBIT_PAN), expiry=EXPIRY, pin="999999")
        assert terminal.exchange(terminal.sale(wrong_pin, 250)).code == "55"
        unknown = Card(Pan(UNKNOWN_PAN), expiry=EXPIRY)
        assert terminal.exchange(terminal.sale(unknown, 250)).code == "14"
        balance = terminal.exchange(terminal.balance_inquiry(DEBIT_CARD))
        assert balance.code == "00"
        rrns = {balance.message.rrn}
        issuer.stop_ok()
        switch.stop_ok()

    for host in (issuer, switch):
        lines = json_lines(host.log())  # every line, or it fails
        assert all(line["level"] and line["logger"] and line["event"] for line in lines)
        for card in CARD_NUMBERS:
            assert card not in host.log() + host.output()
    issued = _txn_lines(issuer.log(), "issuer.answer")
    assert [(t["type"], t["rc"]) for t in issued] == [
        ("sale", "00"),
        ("sale", "55"),
        ("sale", "14"),
        ("balance", "00"),
    ]
    assert all(t["txn_id"].startswith("0200|") and t["rrn"] for t in issued)
    switched = _txn_lines(switch.log(), "switch.answer")
    assert [(t["type"], t["rc"]) for t in switched] == [
        ("signon", "00"),
        ("sale", "00"),
        ("sale", "55"),
        ("sale", "14"),
        ("balance", "00"),
    ]
    # The switch names a transaction by its RRN, the one the terminal and the issuer see.
    assert switched[-1]["txn_id"] in rrns and issued[-1]["rrn"] in rrns


def _txn_lines(log: str, event: str) -> list[dict[str, Any]]:
    lines = events(log, event)
    for line in lines:
        missing = [name for name in TXN_FIELDS if line.get(name) in (None, "")]
        assert not missing, f"{event} without {missing}: {json.dumps(line)}"
        assert isinstance(line["latency_ms"], int | float) and line["sent"] is True
    return lines


def test_a_host_writes_text_lines_when_the_config_says_so(tmp_path: Path) -> None:
    home = make_home(tmp_path, sqlite_url(tmp_path / "issuer.sqlite3"), cards=())
    config = home / "cardtally.toml"
    text = config.read_text(encoding="utf-8")
    assert text.count('format = "json"') == 1
    config.write_text(text.replace('format = "json"', 'format = "text"'), encoding="utf-8")
    with running_issuer(home) as host:
        pass
    ready = [line for line in host.log().splitlines() if " event=issuer.ready " in line]
    assert len(ready) == 1
    assert re.match(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z INFO cardtally\.issuer event=issuer\.ready ", ready[0]
    )
