"""``GET /metrics`` on the issuer and the switch: what the hosts count is what was sent.

The network tests run real ``issuer serve`` and ``switch serve`` children (homes made with
the CLI, metrics ports set in ``cardtally.toml`` or with ``--metrics-port``), send real
terminal traffic, scrape with urllib and read the text with prometheus_client's parser.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cardtally.runtime import Counters
from cardtally.runtime._metrics import LATENCY_BUCKETS_S, PartyMetrics
from cardtally.runtime._txn import code_label, request_type
from cardtally.storage import sqlite_url
from cardtally.terminal import Card
from cardtally.wire import Message, Pan
from tests.issuer.messages import DEBIT_PAN, EXPIRY, TERMINAL
from tests.issuer.tcp_support import HOST, IssuerHost, _child_env, cli, exchange, make_home, zak_of
from tests.runtime.logs import events
from tests.switch.tcp_support import DEBIT_CARD, LINK, Network, run_cli
from tests.terminal.proxy import FaultProxy
from tests.terminal.tcp_support import closed_port

#: Bound on a gauge reaching a value (the switch reads its queue every second).
GAUGE_WAIT_S: Final = 30.0
SCRAPE_TIMEOUT_S: Final = 5.0
WRONG_PIN_CARD: Final = Card(Pan(DEBIT_PAN), expiry=EXPIRY, pin="999999")
APPROVED_SALES: Final = 3

Families = dict[str, Metric]


# --- reading /metrics ------------------------------------------------------------------------


def scrape(port: int) -> Families:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: Families, sample: str, **labels: str) -> float | None:
    """The value of sample ``sample`` (e.g. ``..._total``) with exactly ``labels``; None: absent."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


def wait_for_value(
    port: int, sample: str, ok: Callable[[float | None], bool], **labels: str
) -> Families:
    deadline = time.monotonic() + GAUGE_WAIT_S
    while True:
        families = scrape(port)
        seen = value(families, sample, **labels)
        if ok(seen):
            return families
        if time.monotonic() >= deadline:
            pytest.fail(f"{sample}{labels} still {seen} after {GAUGE_WAIT_S} s")
        time.sleep(0.2)


def set_metrics_ports(home: Path, **ports: int) -> None:
    """``<section>.metrics_port`` for each ``section=port``, in the config ``init`` wrote."""
    config = home / "cardtally.toml"
    section, lines = "", []
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        if line == "metrics_port = 0" and section in ports:
            lines.append(f"metrics_port = {ports.pop(section)}")
        else:
            lines.append(line)
    assert not ports, f"no metrics_port line in {sorted(ports)}"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextmanager
def metered_network(
    root: Path, *, proxy: bool = False
) -> Iterator[tuple[Network, FaultProxy | None]]:
    """Issuer and switch with metrics ports (in the config), linked directly or through a
    :class:`FaultProxy` that can hold the issuer's answers."""
    with Network(
        root, sqlite_url(root / "issuer.sqlite3"), sqlite_url(root / "switch.sqlite3")
    ) as net:
        set_metrics_ports(net.home, issuer=closed_port(), switch=closed_port())
        issuer = net.start_issuer()
        if not proxy:
            net.link_issuer(issuer.port)
            net.start_switch()
            yield net, None
            return
        with FaultProxy(issuer.port) as link:
            net.link_issuer(link.port)
            net.start_switch()
            yield net, link
            # The hosts stop before the proxy closes (the switch's link ends first).
            for host in (net.switch, net.issuer):
                if host is not None:
                    host.stop_ok()


def metrics_port(net: Network, party: str) -> int:
    """The metrics port the party logged at start (``metrics.listening``)."""
    host = net.issuer if party == "issuer" else net.switch
    assert host is not None
    [listening] = events(host.wait_log("event=metrics.listening"), "metrics.listening")
    assert listening["host"] == HOST and listening["path"] == "/metrics"
    return int(listening["port"])


# --- a real network -----------------------------------------------------------------------------


def test_transactions_are_counted_by_type_and_code_at_both_hosts(tmp_path: Path) -> None:
    with metered_network(tmp_path) as (net, _):
        switch_port, issuer_port = metrics_port(net, "switch"), metrics_port(net, "issuer")
        terminal = net.terminal()
        for amount in range(APPROVED_SALES):
            answer = terminal.exchange(terminal.sale(DEBIT_CARD, 100 + amount))
            assert answer.code == "00"
        assert terminal.exchange(terminal.sale(WRONG_PIN_CARD, 100)).code == "55"
        switch, issuer = scrape(switch_port), scrape(issuer_port)

    total = "cardtally_switch_transactions_total"
    assert value(switch, total, type="signon", code="00") == 1
    assert value(switch, total, type="sale", code="00") == APPROVED_SALES
    assert value(switch, total, type="sale", code="55") == 1
    issued = "cardtally_issuer_transactions_total"
    assert value(issuer, issued, type="sale", code="00") == APPROVED_SALES
    assert value(issuer, issued, type="sale", code="55") == 1
    for families, party in ((switch, "switch"), (issuer, "issuer")):
        latency = f"cardtally_{party}_latency_seconds"
        assert value(families, f"{latency}_count", type="sale") == APPROVED_SALES + 1
        assert value(families, f"{latency}_bucket", type="sale", le="+Inf") == APPROVED_SALES + 1
        assert 0 < (value(families, f"{latency}_sum", type="sale") or 0) < 60
    # The runtime's counters, as they were before /metrics existed.
    assert value(switch, "cardtally_switch_forwarded_total") == APPROVED_SALES + 1
    assert value(switch, "cardtally_switch_answered_total", code="55") == 1
    assert value(issuer, "cardtally_issuer_declined_total", code="55") == 1
    assert value(issuer, "cardtally_issuer_approved_total", kind="sale") == APPROVED_SALES
    assert (value(switch, "cardtally_switch_link_frames_out_total", link=LINK) or 0) >= 4
    # The gauges: the link is up, nothing is queued.
    assert value(switch, "cardtally_switch_issuer_link_up", link=LINK) == 1
    assert value(switch, "cardtally_switch_advice_queue_depth", link=LINK) == 0
    assert value(switch, "cardtally_switch_reversals_pending", state="timed_out") == 0
    assert "cardtally_issuer_notices_pending" in issuer


def test_queue_gauges_show_advices_while_the_issuer_is_silent_and_zero_after(
    tmp_path: Path,
) -> None:
    with metered_network(tmp_path, proxy=True) as (net, link):
        assert link is not None
        port = metrics_port(net, "switch")
        terminal = net.terminal()
        link.hold_answers()  # the issuer answers nothing the switch can hear
        assert terminal.exchange(terminal.sale(DEBIT_CARD, 700)).code == "98"
        depth = "cardtally_switch_advice_queue_depth"
        held = wait_for_value(port, depth, lambda seen: (seen or 0) > 0, link=LINK)
        pending = "cardtally_switch_reversals_pending"
        assert value(held, pending, state="timed_out") == 1
        age = value(held, "cardtally_switch_advice_queue_oldest_age_seconds", link=LINK)
        assert age is not None and age > 0

        link.release_answers()
        net.wait_queue_drained()
        drained = wait_for_value(port, depth, lambda seen: seen == 0, link=LINK)
        assert value(drained, pending, state="timed_out") == 0
        assert value(drained, "cardtally_switch_advice_queue_oldest_age_seconds", link=LINK) == 0
        assert value(drained, "cardtally_switch_transactions_total", type="sale", code="98") == 1
        assert value(drained, "cardtally_switch_advices_acked_total", code="00") == 1


# --- the command line ----------------------------------------------------------------------------


def _serve_issuer(home: Path, *args: str) -> IssuerHost:
    out, err = home.parent / "issuer.stdout", home.parent / "issuer.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cardtally", "--home", str(home), "issuer", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=_child_env(),
        )
    return IssuerHost(proc, out, err)


def test_metrics_port_option_overrides_the_config(tmp_path: Path) -> None:
    home = make_home(tmp_path, sqlite_url(tmp_path / "issuer.sqlite3"), cards=())
    port = closed_port()
    host = _serve_issuer(home, "--port", "0", "--metrics-port", str(port))
    try:
        host.wait_ready()
        assert value(scrape(port), "cardtally_issuer_frames_in_total") == 0
        echo = Message("0800", {7: "1121103600", 11: "000015", 41: TERMINAL, 60: "00000001301"})
        with host.connect() as client:
            assert exchange(client, echo, zak_of(home)).response_code == "00"
        families = scrape(port)
    finally:
        assert host.stop() == 0, host.log()
    assert value(families, "cardtally_issuer_transactions_total", type="echo", code="00") == 1
    assert value(families, "cardtally_issuer_frames_in_total") == 1


def test_a_metrics_port_in_use_is_a_one_line_error_at_start(tmp_path: Path) -> None:
    home = make_home(tmp_path, sqlite_url(tmp_path / "issuer.sqlite3"), cards=())
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = cli(
            home, "issuer", "serve", "--port", "0", "--metrics-port", str(taken), check=False
        )
    assert done.returncode == 2, done
    assert "listening on" not in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: issuer.metrics_port: cannot serve metrics on {HOST}:{taken}: "
        "Address already in use"
    )


def test_switch_serve_takes_a_metrics_port_option(tmp_path: Path) -> None:
    assert "--metrics-port" in run_cli(tmp_path / "home", "switch", "serve", "--help")


# --- in process ------------------------------------------------------------------------------


def test_each_party_has_its_own_registry() -> None:
    first, second = PartyMetrics("issuer", Counters()), PartyMetrics("issuer", Counters())
    first.observe("sale", "00", 0.004)
    first.observe("sale", "00", 7.0)
    second.observe("void", "12", 0.0005)
    text = generate_latest(first.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    total = "cardtally_issuer_transactions_total"
    assert value(families, total, type="sale", code="00") == 2
    assert value(families, total, type="void", code="12") is None  # the other registry's
    latency = "cardtally_issuer_latency_seconds_bucket"
    assert value(families, latency, type="sale", le="0.005") == 1
    assert value(families, latency, type="sale", le="5.0") == 1
    assert value(families, latency, type="sale", le="+Inf") == 2
    assert LATENCY_BUCKETS_S[0] == 0.001 and LATENCY_BUCKETS_S[-1] == 5.0


def test_counters_are_exported_with_their_labels() -> None:
    counters = Counters(label_names={"declined": "code"})
    counters.inc("frames_in", by=3)
    counters.inc("declined", "51")
    counters.inc("declined", by=2)  # no code: the plain count of the same counter
    text = generate_latest(PartyMetrics("switch", counters).registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert value(families, "cardtally_switch_frames_in_total") == 3
    assert value(families, "cardtally_switch_declined_total", code="51") == 1
    assert value(families, "cardtally_switch_declined_total", code="") == 2


@pytest.mark.parametrize(
    ("mti", "fields", "expected"),
    [
        ("0210", {3: "000000", 60: "22000001000"}, "sale"),
        ("0210", {3: "000000", 60: "20000001000"}, "completion"),
        ("0210", {3: "310000"}, "balance"),
        ("0210", {3: "200000"}, "void"),
        ("0230", {3: "200000"}, "refund"),
        ("0110", {3: "030000"}, "preauth"),
        ("0410", {3: "000000"}, "reversal"),
        ("0430", {3: "000000"}, "advice"),
        ("0510", {}, "settlement"),
        ("0330", {}, "upload"),
        ("0810", {60: "00000001003"}, "signon"),
        ("0810", {60: "00000000301"}, "echo"),
        ("0200", {3: "000000"}, "sale"),  # a request reads the same as its answer
        ("0401", {3: "000000"}, "reversal"),  # a repeat as its first send
        ("0210", {3: "990000"}, "unknown"),
        ("02x0", {}, "unknown"),
    ],
)
def test_request_type_from_the_answer(mti: str, fields: dict[int, str], expected: str) -> None:
    assert request_type(Message(mti, fields)) == expected


def test_code_labels_stay_a_small_set() -> None:
    assert [code_label(c) for c in ("00", "A0", None, "", "0", "<script>")] == [
        "00",
        "A0",
        "none",
        "none",
        "other",
        "other",
    ]
