"""Counters, structured log lines and the log format."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from cardtally.runtime import Counters, configure_logging, log_event
from tests.storage.threads import run_in_threads


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("tests.runtime.observability")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)


def test_log_event_writes_one_sorted_line(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log_event(
        log,
        "connection.closed",
        reason="idle timeout",
        peer="127.0.0.1:5000",
        conn=7,
        drained=True,
        error=None,
        note='a "quoted"\nline',
        empty="",
        eq="a=b",
    )
    assert stream.getvalue() == (
        'event=connection.closed conn=7 drained=true empty="" eq="a=b" error=- '
        'note="a \\"quoted\\"\\nline" peer=127.0.0.1:5000 reason="idle timeout"\n'
    )


def test_log_event_level_and_field_names(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log.setLevel(logging.WARNING)
    log_event(log, "quiet")
    log_event(log, "loud", level=logging.ERROR)
    assert stream.getvalue() == "event=loud\n"
    with pytest.raises(ValueError, match="log field"):
        log_event(log, "bad", level=logging.ERROR, **{"Bad Key": 1})


def test_configure_logging_uses_iso_utc_timestamps_and_replaces_itself() -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging(first, level="debug")
        configure_logging(second, level="INFO")
        log_event(logging.getLogger("cardtally.test"), "hello", n=1)
    finally:
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
    assert first.getvalue() == ""
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO cardtally\.test event=hello n=1\n",
        second.getvalue(),
    )


def test_counters_render_labels_in_prometheus_syntax() -> None:
    counters = Counters(label_names={"declined": "code"})
    counters.inc("frames_in", by=2)
    counters.inc("declined", "51")
    counters.inc("declined", "51")
    counters.inc("refused", 'odd"value')
    counters.inc("declared", by=0)
    assert counters.get("declined", "51") == 2
    assert counters.get("never") == 0
    assert counters.snapshot() == {
        "declared": 0,
        'declined{code="51"}': 2,
        "frames_in": 2,
        'refused{label="odd\\"value"}': 1,
    }


def test_counters_refuse_bad_names_and_decrements() -> None:
    with pytest.raises(ValueError, match="counter"):
        Counters().inc("Bad-Name")
    with pytest.raises(ValueError, match="label name"):
        Counters(label_names={"declined": "Code!"})
    with pytest.raises(ValueError, match="only go up"):
        Counters().inc("x", by=-1)


def test_counters_are_thread_safe() -> None:
    counters = Counters()
    threads, per_thread = 8, 5000

    def bump() -> None:
        for _ in range(per_thread):
            counters.inc("hits")

    assert run_in_threads([bump] * threads) == []
    assert counters.get("hits") == threads * per_thread
