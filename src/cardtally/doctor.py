"""What is wrong with a home, in plain words, and how to fix it: ``cardtally doctor``'s checks.

:func:`examine` looks at a home (config, keys, the issuer's and the switch's databases, both
ledgers, the switch registry, installed terminals, the configured ports) and returns one
:class:`Finding` per thing checked::

    for finding in examine(home):
        print(finding.level, finding.check, finding.detail, finding.fix)

Read-only by design: it creates no file, migrates nothing and claims no database. A missing
SQLite file is reported, never opened (connecting would create it); an empty or non-SQLite
file is reported from its first bytes, never opened (connecting would write a header into it).
A database in WAL mode, as every party writes it, is opened the way the parties open it; one
that is not (a restored copy, say) is opened read-only, since opening it as the parties do
would switch it to WAL. Every failure becomes a ``PROBLEM`` finding, never an exception.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from cardtally.clearing._database import DAYEND_TREES
from cardtally.config import Config, ConfigError, config_path, load_config
from cardtally.issuer import ISSUER_TREES
from cardtally.ledger import LEDGER_TREE, SqlLedgerStore, Violation, verify_report
from cardtally.money import Money
from cardtally.security import (
    DATA_KEYS_ENV,
    ISSUER_KEYS_ENV,
    DataKeys,
    IssuerKeys,
    SecurityError,
    data_keys_path,
    issuer_keys_path,
    kcv_hex,
    load_data_keys,
    load_issuer_keys,
)
from cardtally.security._secret_file import parse_hex_secret, read_secret_file
from cardtally.storage import (
    StorageError,
    alembic_config,
    check_reachable,
    current_revision,
    head_revision,
    mask_url,
    open_engine,
    read_party,
    transaction,
    version_table,
)
from cardtally.storage._errors import one_line_reason
from cardtally.switch import Terminal
from cardtally.switch._database import SWITCH_TREES
from cardtally.switch._registry import list_issuer_links, list_terminals
from cardtally.terminal import Journal, installed_terminals, journal_path
from cardtally.terminal._journal import TREE as TERMINAL_TREE

#: Ledger violations shown one per line; the rest are counted in one more line.
VIOLATIONS_SHOWN_MAX: Final = 10
#: Lines about single terminals (master key files, journals) before the rest are counted.
TERMINAL_LINES_MAX: Final = 20
#: Installed terminals whose journal is opened; more are counted, not opened.
JOURNALS_CHECKED_MAX: Final = 100
#: How long to wait for a configured port to accept a connection.
PORT_PROBE_TIMEOUT_MS: Final = 500

_SQLITE_HEADER: Final = b"SQLite format 3\x00"
# Bytes 18 and 19 of the header: the file format's write and read versions, 2 in WAL mode.
_WAL_VERSIONS: Final = b"\x02\x02"
_TMK_HEX_DIGITS: Final = 32
#: Errors that mean "this database cannot be used", as opposed to a bug in the doctor.
_DATABASE_ERRORS: Final = (StorageError, SQLAlchemyError, sqlite3.Error, OSError)


class Level(StrEnum):
    """How much a finding matters: only ``PROBLEM`` makes the doctor exit non-zero."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    PROBLEM = "problem"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing checked: how it stands, what was found, and how to fix it (if anything)."""

    level: Level
    check: str
    detail: str
    fix: str = ""


# --- the whole home --------------------------------------------------------------------------


@dataclass
class _Home:
    """What the checks learn along the way and pass on to later checks."""

    path: Path
    environ: Mapping[str, str]
    probe_ports: bool
    config: Config | None = None
    data_keys: DataKeys | None = None
    registered: frozenset[str] | None = None  # terminal IDs in the switch registry
    findings: list[Finding] = field(default_factory=list)


def examine(
    home: Path, *, environ: Mapping[str, str] = os.environ, probe_ports: bool = True
) -> list[Finding]:
    """Every finding about ``home``, in the order an operator would look; changes nothing."""
    state = _Home(home, environ, probe_ports)
    _guarded(state, "home", _check_home)
    if state.findings[-1].level is Level.PROBLEM:
        return state.findings  # everything else lives in the home
    steps: tuple[tuple[str, Callable[[_Home], None]], ...] = (
        ("config", _check_config),
        ("keys", _check_keys),
        ("issuer database", _check_issuer_database),
        ("switch database", _check_switch_database),
        ("terminal journals", _check_journals),
        ("ports", _check_ports),
    )
    for check, step in steps:
        _guarded(state, check, step)
    return state.findings


def _guarded(state: _Home, check: str, step: Callable[[_Home], None]) -> None:
    """Run one step; whatever it raises becomes a PROBLEM line, never a traceback."""
    try:
        step(state)
    except Exception as exc:  # the doctor reports, whatever is broken
        state.findings.append(
            Finding(
                Level.PROBLEM,
                check,
                f"could not be checked: {type(exc).__name__}: {one_line_reason(exc)}",
                "this is likely a bug in cardtally: report it with this line",
            )
        )


def _check_home(state: _Home) -> None:
    home = state.path
    init = f"create it with `cardtally --home {home} init`, or point --home or CARDTALLY_HOME at it"
    if not home.exists():
        state.findings.append(Finding(Level.PROBLEM, "home", f"{home} does not exist", init))
    elif not home.is_dir():
        state.findings.append(Finding(Level.PROBLEM, "home", f"{home} is not a directory", init))
    else:
        state.findings.append(Finding(Level.OK, "home", str(home)))


def _check_config(state: _Home) -> None:
    path = config_path(state.path)
    try:
        state.config = load_config(state.path)
    except ConfigError as exc:
        state.findings.append(Finding(Level.PROBLEM, "config", str(exc), _config_fix(exc, path)))
        return
    shown = f"{path}: valid" if path.exists() else f"{path} not present: every key has its default"
    state.findings.append(Finding(Level.OK, "config", shown))


def _config_fix(exc: ConfigError, path: Path) -> str:
    if exc.key:
        return f"correct {exc.key} in {path} (every key: docs/operations.md, 'The config file')"
    if exc.message.startswith("invalid TOML"):
        return f"fix the TOML syntax in {path} at the line and column shown"
    return f"make {path} a readable file, or move it away to use every default"


# --- keys ----------------------------------------------------------------------------------


def check_keys(home: Path, environ: Mapping[str, str] = os.environ) -> list[Finding]:
    """The data keys and the issuer keys: loaded, or why not (``config check`` prints these)."""
    return [_data_keys_finding(home, environ)[0], _issuer_keys_finding(home, environ)]


def _check_keys(state: _Home) -> None:
    data, state.data_keys = _data_keys_finding(state.path, state.environ)
    state.findings += [data, _issuer_keys_finding(state.path, state.environ)]


def _data_keys_finding(home: Path, environ: Mapping[str, str]) -> tuple[Finding, DataKeys | None]:
    try:
        keys = load_data_keys(home, environ)
    except (SecurityError, OSError) as exc:
        return _key_problem("data keys", data_keys_path(home), DATA_KEYS_ENV, environ, exc), None
    return Finding(Level.OK, "data keys", "loaded"), keys


def _issuer_keys_finding(home: Path, environ: Mapping[str, str]) -> Finding:
    try:
        keys: IssuerKeys = load_issuer_keys(home, environ)
    except (SecurityError, OSError) as exc:
        return _key_problem("issuer keys", issuer_keys_path(home), ISSUER_KEYS_ENV, environ, exc)
    if keys.zak is None:
        return Finding(
            Level.WARN,
            "issuer keys",
            "no zone MAC key: the switch-issuer link carries no MAC",
            "stop the switch and the issuer, append 32 fresh hex digits (not the PVK or ZPK) to "
            "the key line, start both (docs/operations.md, 'Keys')",
        )
    return Finding(Level.OK, "issuer keys", "loaded, with a zone MAC key")


def _key_problem(
    check: str, path: Path, env: str, environ: Mapping[str, str], exc: Exception
) -> Finding:
    if env in environ:
        fix = f"correct {env}, or unset it to use {path}"
        return Finding(Level.PROBLEM, check, str(exc), fix)
    if isinstance(exc, OSError):  # the file could not be read at all
        return Finding(
            Level.PROBLEM,
            check,
            f"key file {path} cannot be read: {exc.strerror or exc}",
            f"put the key file back at {path} from your backup (mode 0600)",
        )
    if not path.exists() and not path.is_symlink():
        # Not the loader's "create it with cardtally init": a new key cannot read old data.
        return Finding(
            Level.PROBLEM,
            check,
            f"key file {path} is missing (and {env} is not set)",
            f"restore {path} from your backup (mode 0600): a new key cannot read what the old "
            "one protected; only a home with no data yet may get a new one from `cardtally init`",
        )
    if "mode" in str(exc):
        return Finding(Level.PROBLEM, check, str(exc), f"chmod 600 {path}")
    return Finding(Level.PROBLEM, check, str(exc), f"restore {path} from your backup")


# --- databases -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Party:
    """A party's database as the doctor checks it."""

    name: str  # the party's role, as recorded in the database
    config_key: str  # where the config names its database
    trees: tuple[str, ...]  # migrated when the party opens its database
    later_trees: tuple[str, ...]  # added together by a later job (the day end), or absent
    ledger: str  # what its ledger is called; "" if it keeps none
    opener: str  # a command that creates and migrates the database

    def open_hint(self) -> str:
        return f"start the {self.name} once or run `{self.opener}`: it creates and migrates it"


_ISSUER: Final = _Party(
    "issuer", "issuer.database", ISSUER_TREES, (), "issuer ledger", "cardtally issuer cards list"
)
_SWITCH: Final = _Party(
    "switch",
    "switch.database",
    SWITCH_TREES,
    DAYEND_TREES,
    "acquirer ledger",
    "cardtally switch merchants list",
)


def _check_issuer_database(state: _Home) -> None:
    if state.config is not None:
        _check_database(state, _ISSUER, state.config.issuer.database)


def _check_switch_database(state: _Home) -> None:
    if state.config is None:
        state.findings.append(
            Finding(
                Level.INFO,
                "databases",
                "not checked: their URLs are in the config, which does not load",
                "fix the config first",
            )
        )
        return
    _check_database(state, _SWITCH, state.config.switch.database)


def _check_database(state: _Home, party: _Party, url: str) -> None:
    check = f"{party.name} database"
    opened = _open_to_read(url, check, party.open_hint())
    if isinstance(opened, Finding):
        state.findings.append(opened)
        return
    try:
        _examine_database(state, party, opened, mask_url(url))
    except _DATABASE_ERRORS as exc:
        state.findings.append(
            Finding(
                Level.PROBLEM,
                check,
                f"{mask_url(url)} cannot be read: {one_line_reason(exc, opened.url.password)}",
                "if the file is damaged, restore the database from your backup",
            )
        )
    finally:
        opened.dispose()


def _open_to_read(url: str, check: str, open_hint: str) -> Engine | Finding:
    """An engine that reads without changing anything, or the finding that says why not."""
    try:
        engine = open_engine(url)
    except StorageError as exc:
        return Finding(Level.PROBLEM, check, str(exc), "correct the URL in the config")
    if engine.dialect.name == "sqlite":
        assert engine.url.database, "open_engine refuses SQLite without a file"
        engine.dispose()
        return _open_sqlite_file(Path(engine.url.database), check, open_hint)
    try:
        check_reachable(engine)
    except StorageError as exc:
        engine.dispose()
        return Finding(
            Level.PROBLEM,
            check,
            str(exc),
            "start the database server, or correct the URL (host, port, user, password)",
        )
    return engine


def _open_sqlite_file(path: Path, check: str, open_hint: str) -> Engine | Finding:
    """Judge the file by its first bytes before any connection could create or convert it."""
    refused = _sqlite_file_refusal(path, open_hint)
    if refused is not None:
        detail, fix = refused
        return Finding(Level.PROBLEM, check, detail, fix)
    with path.open("rb") as handle:
        header = handle.read(100)
    if header[18:20] == _WAL_VERSIONS:
        engine = open_engine(f"sqlite:///{path}")
    else:
        engine = _read_only_sqlite(path)
    try:
        check_reachable(engine)
    except StorageError as exc:
        engine.dispose()
        return Finding(Level.PROBLEM, check, str(exc), f"restore {path} from your backup")
    return engine


def _sqlite_file_refusal(path: Path, open_hint: str) -> tuple[str, str] | None:
    if not path.exists():
        return f"{path} was never created", open_hint
    if not path.is_file():
        return f"{path} is not a file", f"move it away; {open_hint}"
    if path.stat().st_size == 0:
        return (
            f"{path} is an empty file: no tables, not migrated",
            f"{open_hint}, or remove the file if it was made by mistake",
        )
    with path.open("rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    if header != _SQLITE_HEADER:
        return f"{path} is not a SQLite database (damaged?)", f"restore {path} from your backup"
    return None


def _read_only_sqlite(path: Path) -> Engine:
    """Plain reads in transactions, with no pragma that would write (see the module doc)."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, isolation_level=None)

    engine = create_engine("sqlite+pysqlite://", creator=connect)

    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    event.listen(engine, "begin", begin)
    return engine


def _examine_database(state: _Home, party: _Party, engine: Engine, where: str) -> None:
    check = f"{party.name} database"
    revisions = {t: current_revision(engine, t) for t in party.trees + party.later_trees}
    later = any(revisions[t] is not None for t in party.later_trees)
    expected = party.trees + (party.later_trees if later else ())
    behind = [t for t in expected if revisions[t] != head_revision(t)]
    if behind:
        state.findings.append(
            Finding(
                Level.PROBLEM,
                check,
                f"{where} is not migrated: "
                + "; ".join(_tree_text(t, revisions[t]) for t in behind),
                f"check that {party.config_key} names the {party.name}'s database; "
                + party.open_hint(),
            )
        )
        return
    with transaction(engine) as conn:
        owner = read_party(conn)
    if owner is not None and owner.role != party.name:
        state.findings.append(
            Finding(
                Level.PROBLEM,
                check,
                f"{where} belongs to the {owner.role} {owner.party_id!r}, not to the {party.name}",
                "the issuer and the switch need a database each: correct "
                f"{party.config_key} in the config",
            )
        )
        return
    shown = ", ".join(str(revisions[t]) for t in expected)
    state.findings.append(Finding(Level.OK, check, f"{where}: reachable, migrated ({shown})"))
    if LEDGER_TREE in expected:
        _check_ledger(state, party, engine, where)
    elif party.ledger:
        state.findings.append(
            Finding(Level.INFO, party.ledger, "none yet: the first `cardtally dayend run` opens it")
        )
    if party is _SWITCH:
        _check_registry(state, engine)


def _tree_text(tree: str, revision: str | None) -> str:
    head = head_revision(tree)
    if revision is None:
        return f"{tree} tree never migrated (no version in {version_table(tree)}), latest {head}"
    if not _known_revision(tree, revision):
        return (
            f"{tree} tree at {revision}, which this cardtally does not know "
            "(written by a newer version?)"
        )
    return f"{tree} tree at {revision}, latest {head}"


def _known_revision(tree: str, revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config(tree)).get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown or malformed revision
        return False


# --- ledgers ---------------------------------------------------------------------------------


def _check_ledger(state: _Home, party: _Party, engine: Engine, where: str) -> None:
    # One snapshot for every query, as `cardtally ledger verify` reads it: a transfer committed
    # between two queries must not look like a broken balance.
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with transaction(engine) as conn:
        report = verify_report(SqlLedgerStore(conn))
    if report.healthy:
        state.findings.append(
            Finding(
                Level.OK,
                party.ledger,
                f"balanced: {_count(report.accounts_checked, 'account')}, "
                f"{_count(report.transfers_checked, 'transfer')} checked",
            )
        )
        return
    option = "" if party is _ISSUER else f" --database {where}"
    fix = (
        f"something changed the {party.ledger} outside cardtally, or a bug: stop the "
        f"{party.name} and investigate before settling; `cardtally ledger verify{option}` "
        "lists every violation; nothing is repaired automatically"
    )
    shown = report.violations[:VIOLATIONS_SHOWN_MAX]
    state.findings += [Finding(Level.PROBLEM, party.ledger, _plain(v), fix) for v in shown]
    more = len(report.violations) - len(shown)
    if more:
        state.findings.append(
            Finding(Level.PROBLEM, party.ledger, f"{more} more violations not shown", fix)
        )


_PLAIN: Final[Mapping[str, str]] = {
    "balance_mismatch": "account '{s}': its stored totals disagree with its transfers: {d}",
    "below_floor": "account '{s}' is below its floor: {d}",
    "unknown_account": "transfer '{s}' names an account that does not exist: {d}",
    "currency_mismatch": "transfer '{s}' names an account of another currency: {d}",
    "malformed_transfer": "transfer '{s}' is malformed: {d}",
    "pending_not_found": "transfer '{s}' completes or releases a hold that does not exist: {d}",
    "not_pending": "transfer '{s}' completes or releases a transfer that is not a hold: {d}",
    "resolution_mismatch": "transfer '{s}' does not match the hold it completes: {d}",
    "resolved_twice": "transfer '{s}' resolves a hold that was resolved before: {d}",
}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _plain(violation: Violation) -> str:
    """A ledger violation in words an operator reads (the kind in brackets, for searching)."""
    if violation.kind == "unbalanced_currency":
        code = Money.code_of(violation.subject)
        text = f"debits and credits differ in {code} ({violation.subject}): {violation.detail}"
    else:
        template = _PLAIN.get(violation.kind, "{s}: {d}")
        text = template.format(s=violation.subject, d=violation.detail)
    return f"{text} [{violation.kind}]"


# --- the switch registry and the terminals ---------------------------------------------------


def _check_registry(state: _Home, engine: Engine) -> None:
    with transaction(engine) as conn:
        links = list_issuer_links(conn)
        terminals = list_terminals(conn)
    state.registered = frozenset(t.terminal_id for t in terminals)
    if links:
        shown = ", ".join(f"{r.link_id} {r.host}:{r.port} (BINs {' '.join(r.bins)})" for r in links)
        state.findings.append(Finding(Level.OK, "issuer links", shown))
    else:
        state.findings.append(
            Finding(
                Level.PROBLEM,
                "issuer links",
                "none: the switch can route no card to an issuer",
                "add one: `cardtally switch issuers add --bin BIN --host HOST --port PORT`",
            )
        )
    if not terminals:
        state.findings.append(
            Finding(
                Level.WARN,
                "terminals",
                "none registered: no POS terminal can sign on",
                "add one: `cardtally switch terminals add --id TID --merchant MID`",
            )
        )
        return
    installed = frozenset(installed_terminals(state.path))
    lines = [f for t in terminals if (f := _master_key_finding(state.path, t, installed))]
    _append_capped(state, lines, "terminals")
    state.findings.append(Finding(Level.OK, "terminals", f"{len(terminals)} registered"))


def _master_key_finding(
    home: Path, terminal: Terminal, installed: frozenset[str]
) -> Finding | None:
    """Only needed to install a terminal, so never worse than a warning."""
    tid = terminal.terminal_id
    # Where `switch terminals add` writes it: cardtally.cli.switch.tmk_file.
    path = home / "keys" / "terminals" / f"{tid}.tmk"
    check = f"terminal {tid}"
    if tid in installed:
        if path.exists():
            return Finding(
                Level.INFO,
                check,
                f"installed here; its clear master key file {path} is still on disk",
                f"delete {path}: the terminal and the switch hold the key",
            )
        return None
    if not path.exists():
        return Finding(
            Level.WARN,
            check,
            f"master key file {path} is missing; it is needed only to install the terminal",
            "if the terminal already holds its key there is nothing to do; else restore the "
            f"file from your backup (KCV {terminal.master_key_kcv})",
        )
    try:
        text = read_secret_file(path, _TMK_HEX_DIGITS + 64, "written by switch terminals add")
        key = parse_hex_secret(text, _TMK_HEX_DIGITS, f"master key file {path}")
    except (SecurityError, OSError) as exc:
        return Finding(Level.WARN, check, str(exc), f"restore {path} from your backup")
    if kcv_hex(key) != terminal.master_key_kcv:
        return Finding(
            Level.WARN,
            check,
            f"master key file {path} has KCV {kcv_hex(key)}, the switch holds "
            f"{terminal.master_key_kcv}: a terminal loaded from it could not sign on",
            f"restore {path} from your backup",
        )
    return None


def _check_journals(state: _Home) -> None:
    tids = installed_terminals(state.path)
    lines: list[Finding] = []
    for tid in tids[:JOURNALS_CHECKED_MAX]:
        lines.extend(_journal_findings(state, tid))
    _append_capped(state, lines, "terminal journals")
    if tids:
        skipped = len(tids) - JOURNALS_CHECKED_MAX
        more = f" ({skipped} more not opened)" if skipped > 0 else ""
        state.findings.append(
            Finding(Level.OK, "terminal journals", f"{len(tids)} installed in this home{more}")
        )


def _journal_findings(state: _Home, tid: str) -> list[Finding]:
    check = f"terminal {tid}"
    found: list[Finding] = []
    if state.registered is not None and tid not in state.registered:
        found.append(
            Finding(
                Level.WARN,
                check,
                "installed here but not registered at the switch: it cannot sign on",
                f"`cardtally switch terminals add --id {tid} --merchant MID`, then reinstall",
            )
        )
    path = journal_path(state.path, tid)
    opened = _open_sqlite_file(path, check, "reinstall the terminal")
    if isinstance(opened, Finding):
        return [*found, opened]
    try:
        found.extend(_journal_state(opened, state.data_keys, tid, path))
    except (*_DATABASE_ERRORS, SecurityError, ValueError) as exc:
        found.append(
            Finding(
                Level.PROBLEM,
                check,
                f"journal {path} cannot be read: {one_line_reason(exc)}",
                f"restore {path} from your backup",
            )
        )
    finally:
        opened.dispose()
    return found


def _journal_state(
    engine: Engine, data_keys: DataKeys | None, tid: str, path: Path
) -> list[Finding]:
    revision = current_revision(engine, TERMINAL_TREE)
    if revision != head_revision(TERMINAL_TREE):
        return [
            Finding(
                Level.WARN,
                f"terminal {tid}",
                f"journal {path}: {_tree_text(TERMINAL_TREE, revision)}",
                "the terminal migrates it on its next command",
            )
        ]
    if data_keys is not None:
        Journal(engine, data_keys, tid).profile()  # unseals its keys: the data keys fit
    else:
        with transaction(engine) as conn:
            conn.exec_driver_sql("SELECT count(*) FROM terminal_profile").scalar_one()
    return []


def _append_capped(state: _Home, lines: Iterable[Finding], check: str) -> None:
    lines = list(lines)
    state.findings += lines[:TERMINAL_LINES_MAX]
    rest = lines[TERMINAL_LINES_MAX:]
    if rest:
        worst = max((f.level for f in rest), key=list(Level).index)
        state.findings.append(Finding(worst, check, f"{len(rest)} more like the lines above"))


# --- ports -------------------------------------------------------------------------------------


def _check_ports(state: _Home) -> None:
    if state.config is None or not state.probe_ports:
        return
    for name, host, port in (
        ("issuer", state.config.issuer.host, state.config.issuer.port),
        ("switch", state.config.switch.host, state.config.switch.port),
    ):
        state.findings.append(_port_finding(name, host, port))


def _port_finding(name: str, host: str, port: int) -> Finding:
    """Whether something accepts connections where the party is configured to listen."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    check = f"{name} port"
    try:
        with socket.create_connection((target, port), timeout=PORT_PROBE_TIMEOUT_MS / 1000):
            pass
    except OSError:
        return Finding(Level.INFO, check, f"{host}:{port}: not running (nothing accepts there)")
    return Finding(Level.OK, check, f"{host}:{port}: running (accepts connections)")
