"""Clearing files: what the switch cleared with one issuer link on one business day.

One pair of files per link per business day, CSV and Parquet, with the same content: a
header (which day, which link, who sends it), one record per cleared transaction, and a
trailer with counts, totals and a SHA-256 over the records that every reader verifies.
``docs/clearing-format.md`` is the contract for issuers' developers; this module is its
reference writer and reader.

Clear card numbers never appear: a record carries the masked PAN, the checks refuse any
value that is not masked, and refusal messages mask whatever could be a card number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import operator
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, Final, NoReturn

import pyarrow as pa
import pyarrow.parquet as pq

from cardtally.durable import fsync_directory
from cardtally.money import CURRENCIES
from cardtally.wire import luhn_ok, mask_pan

FORMAT_NAME: Final = "CTCLR"
FORMAT_VERSION: Final = 1
HEADER_KEY: Final = "cardtally.clearing.header"
TRAILER_KEY: Final = "cardtally.clearing.trailer"
#: sale and completion take money from the cardholder (debit); void and refund give it back.
DIRECTION_OF_KIND: Final[Mapping[str, str]] = {
    "sale": "D",
    "completion": "D",
    "void": "C",
    "refund": "C",
}
# Field 4 is n12, so no single amount exceeds twelve digits of minor units.
AMOUNT_MINOR_MAX: Final = 999_999_999_999
# Readable by the owner's group (the transfer job), never by everyone: the records name
# merchants, amounts and card BINs.
FILE_MODE: Final = 0o640


@dataclass(frozen=True, slots=True)
class ClearingHeader:
    business_day: str  # YYYYMMDD, the switch's business day
    link_id: str  # the issuer link, as in the switch registry
    acquirer_id: str  # field 32, acquiring institution ID
    currency: str  # ISO 4217 numeric; every record has it
    created_at: str  # YYYYMMDDhhmmss, China Standard Time


@dataclass(frozen=True, slots=True)
class ClearingRecord:
    seq: int  # 1..N in file order
    rrn: str  # field 37, 12 digits
    kind: str  # sale | completion | void | refund
    direction: str  # 'D' debit to the cardholder's issuer, 'C' credit
    amount_minor: int  # > 0, minor units of ``currency``
    currency: str  # the header's
    terminal_id: str  # field 41, 8 characters
    merchant_id: str  # field 42 without its padding, 1-15 characters
    batch_no: int  # the terminal's batch (field 60.2)
    stan: str  # field 11 from the terminal, 6 digits
    issuer_stan: str  # field 11 the switch sent the issuer, 6 digits
    transmitted: str  # field 7 the switch sent the issuer, MMDDhhmmss (UTC, as on the wire)
    auth_code: str  # field 38, 0-6 characters
    pan_masked: str  # first 6 and last 4 digits, the rest '*'
    local_time: str  # YYYYMMDDhhmmss CST, when the switch received the request


#: A record's columns in file order: the CSV detail line after its ``D`` and the Parquet columns.
RECORD_COLUMNS: Final = tuple(f.name for f in fields(ClearingRecord))
HEADER_COLUMNS: Final = tuple(f.name for f in fields(ClearingHeader))
_values_of: Final = operator.attrgetter(*RECORD_COLUMNS)


def _canonical_line(record: ClearingRecord) -> bytes:
    """The record as hashed: columns in order, decimal integers, ',' between, '\\n' after."""
    return (",".join(map(str, _values_of(record))) + "\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class ClearingTrailer:
    record_count: int
    debit_count: int
    debit_minor: int
    credit_count: int
    credit_minor: int
    records_sha256: str  # lowercase hex

    @classmethod
    def from_records(cls, records: Iterable[ClearingRecord]) -> ClearingTrailer:
        """Counts, totals and the SHA-256 of the records' canonical lines, concatenated.

        A canonical line is the record's columns in :data:`RECORD_COLUMNS` order, integers
        in decimal without sign or leading zeros, text as is, joined by ``,`` and ended by
        ``\\n``, in ASCII: exactly a CSV detail line without its leading ``D,``. No records
        hash as the empty string.
        """
        digest = hashlib.sha256()
        count = {"D": 0, "C": 0}
        total = {"D": 0, "C": 0}
        for record in records:
            if record.direction not in count:
                raise ValueError(f"direction must be D or C, got {_shown(record.direction)!r}")
            digest.update(_canonical_line(record))
            count[record.direction] += 1
            total[record.direction] += record.amount_minor
        return cls(
            record_count=count["D"] + count["C"],
            debit_count=count["D"],
            debit_minor=total["D"],
            credit_count=count["C"],
            credit_minor=total["C"],
            records_sha256=digest.hexdigest(),
        )


TRAILER_COLUMNS: Final = tuple(f.name for f in fields(ClearingTrailer))


@dataclass(frozen=True, slots=True)
class ClearingFile:
    header: ClearingHeader
    records: tuple[ClearingRecord, ...]
    trailer: ClearingTrailer

    @property
    def net_minor(self) -> int:
        """Debits less credits: what the issuer owes the acquirer (negative: owed to it)."""
        return self.trailer.debit_minor - self.trailer.credit_minor


class ClearingFileError(Exception):
    """A clearing file a reader must not use, and the precise reason why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"clearing file {path} refused: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[ClearingFileError], tuple[Path, str]]:
        return (type(self), (self.path, self.reason))


class _RefusedError(Exception):
    """A reason to refuse, raised deep in a reader; the entry point adds the path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refuse(reason: str) -> NoReturn:
    raise _RefusedError(reason)


# --- field checks: shared by the writer (ValueError) and the readers (refusal) -------------

_LONG_DIGITS: Final = re.compile(r"[0-9]{12,}")
_PAN_DIGITS_MAX: Final = 19  # ISO/IEC 7812


def _shown(value: object, limit: int = 40) -> str:
    """A bad value as a message may show it: short, and anything that could be a card number
    (12-19 digits passing the Luhn check, or a longer digit run) masked."""
    text = _LONG_DIGITS.sub(_mask_if_pan_like, str(value))
    return text if len(text) <= limit else text[:limit] + "..."


def _mask_if_pan_like(match: re.Match[str]) -> str:
    digits = match.group()
    pan_like = len(digits) > _PAN_DIGITS_MAX or luhn_ok(digits)
    return mask_pan(digits) if pan_like else digits


_MOMENT_SHAPE: Final = re.compile(
    r"[0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]",
    re.ASCII,
)


def _valid_moment(text: str) -> bool:
    """``YYYYMMDDhhmmss`` that names a real second of the calendar."""
    if _MOMENT_SHAPE.fullmatch(text) is None or text.startswith("0000"):
        return False
    if text[6:8] <= "28":  # every month has 28 days: the calendar only matters past them
        return True
    try:
        date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


class _Rule:
    """A field's form: its Python type, its text as a regex, and that form in words.

    Integers are checked through their decimal text too, so one regex per field serves
    both the precise per-field message and the quick whole-record check below.
    """

    __slots__ = ("meaning", "refine", "regex", "show", "type")

    def __init__(
        self,
        type_: type[int | str],
        pattern: str,
        meaning: str,
        refine: Callable[[str], bool] | None = None,  # beyond the regex: a real date...
        *,
        show: bool = True,  # False: never echo a bad value, it may be a clear card number
    ) -> None:
        self.type, self.meaning, self.refine, self.show = type_, meaning, refine, show
        self.regex = re.compile(pattern, re.ASCII)

    def problem(self, value: object) -> str | None:
        if value is None:
            return "is missing (null)"
        # bool is an int subclass and a float is never money: both are refused.
        if not isinstance(value, self.type) or isinstance(value, bool):
            wanted = "an int" if self.type is int else "text"
            return f"must be {wanted}, got {type(value).__name__}"
        text = str(value)
        if self.regex.fullmatch(text) is None or (
            self.refine is not None and not self.refine(text)
        ):
            if not self.show:
                return f"is not {self.meaning}; not shown"
            return f"{text if self.type is int else repr(_shown(text))} is not {self.meaning}"
        return None


_COUNT: Final = _Rule(int, r"0|[1-9][0-9]*", "a whole number from 0")
_DIGITS_6: Final = _Rule(str, r"[0-9]{6}", "6 digits")
_MOMENT: Final = _Rule(str, r"[0-9]{14}", "a time YYYYMMDDhhmmss", _valid_moment)

_HEADER_RULES: Final[Mapping[str, _Rule]] = {
    "business_day": _Rule(
        str, r"[0-9]{8}", "a date YYYYMMDD", lambda t: _valid_moment(t + "000000")
    ),
    "link_id": _Rule(str, r"[A-Za-z0-9._:-]{1,64}", "an issuer link (1-64 of A-Z a-z 0-9 . _ : -)"),
    "acquirer_id": _Rule(str, r"[0-9]{1,11}", "an acquiring institution ID (1-11 digits)"),
    "currency": _Rule(
        str, r"[0-9]{3}", "a known ISO 4217 numeric currency", CURRENCIES.__contains__
    ),
    "created_at": _MOMENT,
}

_RECORD_RULES: Final[Mapping[str, _Rule]] = {
    "seq": _Rule(int, r"[1-9][0-9]*", "a whole number from 1"),
    "rrn": _Rule(str, r"[0-9]{12}", "12 digits"),
    "kind": _Rule(str, "|".join(DIRECTION_OF_KIND), "one of sale, completion, void, refund"),
    "direction": _Rule(str, r"[DC]", "D or C"),
    "amount_minor": _Rule(
        int, r"[1-9][0-9]{0,11}", f"an amount of 1..{AMOUNT_MINOR_MAX} minor units"
    ),
    "currency": _Rule(str, r"[0-9]{3}", "3 digits"),
    "terminal_id": _Rule(str, r"[A-Za-z0-9]{8}", "8 letters or digits"),
    "merchant_id": _Rule(str, r"[A-Za-z0-9]{1,15}", "1-15 letters or digits"),
    "batch_no": _Rule(int, r"0|[1-9][0-9]{0,5}", "a batch number 0..999999"),
    "stan": _DIGITS_6,
    "issuer_stan": _DIGITS_6,
    # 2000 is a leap year, so 0229 passes: field 7 carries no year.
    "transmitted": _Rule(str, r"[0-9]{10}", "MMDDhhmmss", lambda t: _valid_moment("2000" + t)),
    "auth_code": _Rule(str, r"[A-Za-z0-9]{0,6}", "0-6 letters or digits"),
    "pan_masked": _Rule(
        str,
        r"[0-9]{6}\*{2,9}[0-9]{4}",
        "a masked PAN (first 6 digits, 2-9 '*', last 4 digits)",
        show=False,
    ),
    "local_time": _MOMENT,
}

_TRAILER_RULES: Final[Mapping[str, _Rule]] = {
    "record_count": _COUNT,
    "debit_count": _COUNT,
    "debit_minor": _COUNT,
    "credit_count": _COUNT,
    "credit_minor": _COUNT,
    "records_sha256": _Rule(str, r"[0-9a-f]{64}", "64 lowercase hex digits"),
}

# The quick yes for a whole record, from the same rules: no pattern can match a comma, so
# the joined patterns match the canonical line exactly when every field matches its own.
_RECORD_SHAPE: Final = re.compile(
    ",".join(f"(?:{rule.regex.pattern})" for rule in _RECORD_RULES.values()), re.ASCII
)
_RECORD_TYPES: Final = tuple(rule.type for rule in _RECORD_RULES.values())
_RECORD_REFINES: Final = tuple(
    (index, rule.refine)
    for index, rule in enumerate(_RECORD_RULES.values())
    if rule.refine is not None
)


def _well_formed(values: tuple[Any, ...]) -> bool:
    """True when every field has exactly its type and form (False: look field by field)."""
    if tuple(map(type, values)) != _RECORD_TYPES:
        return False
    texts = tuple(map(str, values))
    if _RECORD_SHAPE.fullmatch(",".join(texts)) is None:
        return False
    return all(refine(texts[index]) for index, refine in _RECORD_REFINES)


def _first_problem(rules: Mapping[str, _Rule], item: object) -> str | None:
    for name, rule in rules.items():
        problem = rule.problem(getattr(item, name))
        if problem is not None:
            return f"{name}: {problem}"
    return None


def _record_problem(record: ClearingRecord, position: int, currency: str) -> str | None:
    """What is wrong with the record at ``position`` (1-based) of a file in ``currency``."""
    # Checking field by field costs several times the quick check: only on a doubt.
    if not _well_formed(_values_of(record)):
        problem = _first_problem(_RECORD_RULES, record)
        if problem is not None:
            return problem
    if record.seq != position:
        return f"seq is {record.seq}, expected {position} (records are numbered 1..N in order)"
    if record.currency != currency:
        return f"currency {record.currency} is not the header's {currency}"
    expected = DIRECTION_OF_KIND[record.kind]
    if record.direction != expected:
        return f"direction {record.direction} does not fit kind {record.kind} (expected {expected})"
    return None


# --- writing -----------------------------------------------------------------------------


def write_clearing_file(
    path: Path, header: ClearingHeader, records: Sequence[ClearingRecord]
) -> str:
    """Write the file atomically in the format its suffix names; return its SHA-256 (hex).

    Everything is checked before a byte is written (``ValueError``), the file appears
    under its name complete or not at all, and the same input gives the same bytes.
    The directory must exist.
    """
    writer = _WRITERS.get(path.suffix)
    if writer is None:
        raise ValueError(f"{path}: a clearing file ends in .csv or .parquet, not {path.suffix!r}")
    _check_input(header, records)
    trailer = ClearingTrailer.from_records(records)
    return _atomic_write(path, lambda out: writer(out, header, records, trailer))


def _check_input(header: ClearingHeader, records: Sequence[ClearingRecord]) -> None:
    if not isinstance(header, ClearingHeader):
        raise ValueError(f"header must be a ClearingHeader, got {type(header).__name__}")
    problem = _first_problem(_HEADER_RULES, header)
    if problem is not None:
        raise ValueError(f"clearing header: {problem}")
    for position, record in enumerate(records, start=1):
        if not isinstance(record, ClearingRecord):
            raise ValueError(f"record {position}: not a ClearingRecord: {type(record).__name__}")
        problem = _record_problem(record, position, header.currency)
        if problem is not None:
            raise ValueError(f"record {position}: {problem}")


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> str:
    # A reader (or the transfer job) must never see half a file: write a temporary
    # sibling, make it durable, then rename it over the final name in one step.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        temp.chmod(FILE_MODE)
        digest = _sha256_of(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return digest


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_csv(
    out: BinaryIO,
    header: ClearingHeader,
    records: Sequence[ClearingRecord],
    trailer: ClearingTrailer,
) -> None:
    text = io.TextIOWrapper(out, encoding="ascii", newline="")
    try:
        lines = csv.writer(text, lineterminator="\n")
        lines.writerow(("H", FORMAT_NAME, FORMAT_VERSION, *astuple(header)))
        lines.writerows(("D", *_values_of(record)) for record in records)
        lines.writerow(("T", *astuple(trailer)))
        text.flush()
    finally:
        # Leave ``out`` open: the caller still has to fsync it.
        text.detach()


_PARQUET_TYPES: Final[Mapping[str, Any]] = {
    "seq": pa.int64(),
    "amount_minor": pa.int64(),
    "batch_no": pa.int32(),
}
PARQUET_SCHEMA: Final = pa.schema(
    [
        pa.field(name, _PARQUET_TYPES.get(name, pa.string()), nullable=False)
        for name in RECORD_COLUMNS
    ]
)


def _json(mapping: Mapping[str, object]) -> str:
    # Sorted keys, no spaces: the same header and trailer always give the same bytes.
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _header_json(header: ClearingHeader) -> str:
    return _json({"format": FORMAT_NAME, "version": FORMAT_VERSION, **_as_dict(header)})


def _as_dict(item: ClearingHeader | ClearingTrailer) -> dict[str, object]:
    return {f.name: getattr(item, f.name) for f in fields(item)}


def _write_parquet(
    out: BinaryIO,
    header: ClearingHeader,
    records: Sequence[ClearingRecord],
    trailer: ClearingTrailer,
) -> None:
    columns = {name: [getattr(r, name) for r in records] for name in RECORD_COLUMNS}
    schema = PARQUET_SCHEMA.with_metadata(
        {HEADER_KEY: _header_json(header), TRAILER_KEY: _json(_as_dict(trailer))}
    )
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, out, compression="zstd")


_Writer = Callable[[BinaryIO, ClearingHeader, Sequence[ClearingRecord], ClearingTrailer], None]
_WRITERS: Final[Mapping[str, _Writer]] = {".csv": _write_csv, ".parquet": _write_parquet}


# --- reading -----------------------------------------------------------------------------


def read_clearing_file(
    path: Path, *, business_day: str | None = None, link_id: str | None = None
) -> ClearingFile:
    """Read and verify a clearing file; :class:`ClearingFileError` says why one is refused.

    ``business_day`` and ``link_id``, when given, are what the caller expects the header
    to say. Only a file whose every record is well formed and whose trailer matches the
    records (counts, totals, SHA-256) is returned.
    """
    try:
        reader = _reader_for(path)
        header, records, stated = reader(path, business_day, link_id)
        _check_trailer(stated, records)
    except _RefusedError as refused:
        raise ClearingFileError(path, refused.reason) from None
    except OSError as exc:
        raise ClearingFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    return ClearingFile(header, tuple(records), stated)


def _reader_for(path: Path) -> _Reader:
    if not path.exists():
        _refuse("file not found")
    if not path.is_file():
        _refuse("not a regular file")
    reader = _READERS.get(path.suffix)
    if reader is None:
        _refuse(f"not a clearing file: unknown suffix {_shown(path.suffix)!r} (.csv or .parquet)")
    return reader


def _check_format(name: object, version: object) -> None:
    if name != FORMAT_NAME:
        _refuse(f"not a clearing file: format {_named(name)}, expected {FORMAT_NAME!r}")
    if version != FORMAT_VERSION or type(version) is not int:
        _refuse(
            f"not a clearing file: format version {_named(version)}, "
            f"this reader reads version {FORMAT_VERSION}"
        )


def _named(value: object) -> str:
    if value is None:
        return "missing"
    return str(value) if type(value) is int else repr(_shown(value))


def _checked_header(header: ClearingHeader) -> ClearingHeader:
    problem = _first_problem(_HEADER_RULES, header)
    if problem is not None:
        _refuse(f"not a clearing file: header {problem}")
    return header


def _check_expected(header: ClearingHeader, business_day: str | None, link_id: str | None) -> None:
    if business_day is not None and header.business_day != business_day:
        _refuse(f"file is for business day {header.business_day}, expected {business_day}")
    if link_id is not None and header.link_id != link_id:
        _refuse(f"file is for issuer link {header.link_id}, expected {link_id}")


def _checked_trailer(trailer: ClearingTrailer, where: str) -> ClearingTrailer:
    problem = _first_problem(_TRAILER_RULES, trailer)
    if problem is not None:
        _refuse(f"{where}trailer {problem}")
    return trailer


#: How each trailer figure is worded when it disagrees: (what it says, what was found).
_FIGURES: Final = (
    ("record_count", "{} records", "the file has {}"),
    ("debit_count", "{} debits", "the file has {}"),
    ("debit_minor", "debits total {}", "the file's debits total {}"),
    ("credit_count", "{} credits", "the file has {}"),
    ("credit_minor", "credits total {}", "the file's credits total {}"),
    ("records_sha256", "records_sha256 {}", "the records hash to {}"),
)


def _check_trailer(stated: ClearingTrailer, records: Sequence[ClearingRecord]) -> None:
    found = ClearingTrailer.from_records(records)
    for name, says, has in _FIGURES:
        if getattr(stated, name) != getattr(found, name):
            said, actual = says.format(getattr(stated, name)), has.format(getattr(found, name))
            _refuse(f"trailer says {said}, {actual}")


_Parsed = tuple[ClearingHeader, list[ClearingRecord], ClearingTrailer]


# --- CSV --------------------------------------------------------------------------------

_CANONICAL_INT: Final = re.compile(r"0|[1-9][0-9]{0,29}", re.ASCII)
_CSV_INTS: Final = frozenset({"seq", "amount_minor", "batch_no", *TRAILER_COLUMNS[:-1]})


def _read_csv(path: Path, business_day: str | None, link_id: str | None) -> _Parsed:
    with path.open(encoding="ascii", newline="") as text:
        lines = csv.reader(text, strict=True)
        try:
            header = _csv_header(next(lines, None))
            _check_expected(header, business_day, link_id)
            records, trailer = _csv_body(lines, header.currency)
        except csv.Error as exc:
            _refuse(f"line {lines.line_num}: not well-formed CSV ({exc})")
        except UnicodeDecodeError:
            _refuse(f"line {_first_non_ascii_line(path)}: not ASCII text")
    return header, records, trailer


def _first_non_ascii_line(path: Path) -> int:
    # The text layer decodes ahead in blocks, so the csv reader's line number can be
    # behind: find the offending byte itself.
    data = path.read_bytes()
    offset = next((i for i, byte in enumerate(data) if byte > 0x7F), len(data))
    return data.count(b"\n", 0, offset) + 1


def _csv_header(row: list[str] | None) -> ClearingHeader:
    if row is None:
        _refuse("not a clearing file: it is empty")
    if not row or row[0] != "H":
        _refuse("not a clearing file: line 1 is not a header (H line)")
    version: object = row[2] if len(row) > 2 else None
    if isinstance(version, str) and _CANONICAL_INT.fullmatch(version):
        version = int(version)
    _check_format(row[1] if len(row) > 1 else None, version)
    if len(row) != 3 + len(HEADER_COLUMNS):
        _refuse(f"not a clearing file: header has {len(row)} fields, expected 8")
    return _checked_header(ClearingHeader(*row[3:]))


def _csv_body(
    lines: Iterator[list[str]], currency: str
) -> tuple[list[ClearingRecord], ClearingTrailer]:
    records: list[ClearingRecord] = []
    trailer: ClearingTrailer | None = None
    trailer_line = line = 1
    for line, row in enumerate(lines, start=2):
        kind = row[0] if row else ""
        if trailer is not None:
            if kind == "T":
                _refuse(f"trailer duplicated: lines {trailer_line} and {line}")
            _refuse(f"trailer is not last: line {line} follows it (line {trailer_line})")
        if kind == "D":
            records.append(_csv_record(row, line, len(records) + 1, currency))
        elif kind == "T":
            trailer, trailer_line = _csv_trailer(row, line), line
        else:
            _refuse(f"line {line}: {_line_type_problem(row)}")
    if trailer is None:
        _refuse(f"trailer missing: no T line after line {line} (is the file truncated?)")
    return records, trailer


def _line_type_problem(row: list[str]) -> str:
    if not row:
        return "empty line"
    if row[0] == "H":
        return "a second header"
    return f"unknown line type {_shown(row[0])!r} (expected D or T)"


def _csv_values(row: list[str], line: int, names: Sequence[str], what: str) -> list[Any]:
    # Integers must be canonical (no sign, no leading zeros): the trailer hashes the
    # values as decimal text, and one value must have one spelling.
    if len(row) != 1 + len(names):
        _refuse(f"line {line}: {what} has {len(row)} fields, expected {1 + len(names)}")
    values: list[Any] = []
    for name, text in zip(names, row[1:], strict=True):
        if name not in _CSV_INTS:
            values.append(text)
        elif _CANONICAL_INT.fullmatch(text):
            values.append(int(text))
        else:
            _refuse(f"line {line}: {name}: {_shown(text)!r} is not a whole number")
    return values


def _csv_record(row: list[str], line: int, position: int, currency: str) -> ClearingRecord:
    record = ClearingRecord(*_csv_values(row, line, RECORD_COLUMNS, "detail line"))
    problem = _record_problem(record, position, currency)
    if problem is not None:
        _refuse(f"line {line}: {problem}")
    return record


def _csv_trailer(row: list[str], line: int) -> ClearingTrailer:
    trailer = ClearingTrailer(*_csv_values(row, line, TRAILER_COLUMNS, "trailer"))
    return _checked_trailer(trailer, f"line {line}: ")


# --- Parquet ----------------------------------------------------------------------------


def _read_parquet(path: Path, business_day: str | None, link_id: str | None) -> _Parsed:
    try:
        with pq.ParquetFile(path) as parquet:
            metadata = parquet.metadata.metadata or {}
            header = _parquet_header(metadata)
            _check_expected(header, business_day, link_id)
            _check_schema(parquet.schema_arrow)
            trailer = _parquet_trailer(metadata)
            columns = _read_columns(parquet)
    except (pa.ArrowException, OSError, ValueError) as exc:
        _refuse(f"not a clearing file: not readable as Parquet ({_exception_text(exc)})")
    return header, _parquet_records(columns, header.currency), trailer


def _exception_text(exc: BaseException) -> str:
    return _shown(" ".join(str(exc).split()) or type(exc).__name__, limit=200)


def _read_columns(parquet: Any) -> list[list[Any]]:
    # The footer was fine (we got this far): failing now means damaged row data, which
    # may also surface as text that is not UTF-8 when the values become Python strings.
    try:
        table = parquet.read()
        return [table.column(name).to_pylist() for name in RECORD_COLUMNS]
    except (pa.ArrowException, OSError, ValueError) as exc:
        _refuse(f"corrupt Parquet data ({_exception_text(exc)})")


def _metadata_object(
    metadata: Mapping[bytes, bytes], key: str, missing: str, unusable: str
) -> dict[str, Any]:
    raw = metadata.get(key.encode())
    if raw is None:
        _refuse(missing)
    try:
        found = json.loads(raw.decode("utf-8"))
    except ValueError:  # bad UTF-8 or bad JSON
        found = None
    if not isinstance(found, dict):
        _refuse(unusable)
    return found


def _parquet_header(metadata: Mapping[bytes, bytes]) -> ClearingHeader:
    found = _metadata_object(
        metadata,
        HEADER_KEY,
        missing=f"not a clearing file: no {HEADER_KEY} metadata",
        unusable=f"not a clearing file: {HEADER_KEY} metadata is not a JSON object",
    )
    _check_format(found.pop("format", None), found.pop("version", None))
    if set(found) != set(HEADER_COLUMNS):
        _refuse(
            f"not a clearing file: header has keys {', '.join(sorted(found))}, "
            f"expected {', '.join(sorted(HEADER_COLUMNS))}"
        )
    return _checked_header(ClearingHeader(**found))


def _parquet_trailer(metadata: Mapping[bytes, bytes]) -> ClearingTrailer:
    found = _metadata_object(
        metadata,
        TRAILER_KEY,
        missing=f"trailer missing: no {TRAILER_KEY} metadata",
        unusable=f"trailer: {TRAILER_KEY} metadata is not a JSON object",
    )
    if set(found) != set(TRAILER_COLUMNS):
        _refuse(
            f"trailer has keys {', '.join(sorted(found))}, "
            f"expected {', '.join(sorted(TRAILER_COLUMNS))}"
        )
    return _checked_trailer(ClearingTrailer(**found), "")


def _check_schema(schema: Any) -> None:
    found = [f"{field.name}: {field.type}" for field in schema]
    wanted = [f"{field.name}: {field.type}" for field in PARQUET_SCHEMA]
    for number, (have, want) in enumerate(zip(found, wanted, strict=False), start=1):
        if have != want:
            _refuse(f"not a clearing file: column {number} is {_shown(have)}, expected {want}")
    if len(found) != len(wanted):
        _refuse(f"not a clearing file: {len(found)} columns, expected {len(wanted)}")


def _parquet_records(columns: list[list[Any]], currency: str) -> list[ClearingRecord]:
    records = []
    for position, values in enumerate(zip(*columns, strict=True), start=1):
        record = ClearingRecord(*values)
        problem = _record_problem(record, position, currency)
        if problem is not None:
            _refuse(f"row {position}: {problem}")
        records.append(record)
    return records


_Reader = Callable[[Path, str | None, str | None], _Parsed]
_READERS: Final[Mapping[str, _Reader]] = {".csv": _read_csv, ".parquet": _read_parquet}


__all__ = [
    "DIRECTION_OF_KIND",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_KEY",
    "PARQUET_SCHEMA",
    "RECORD_COLUMNS",
    "TRAILER_KEY",
    "ClearingFile",
    "ClearingFileError",
    "ClearingHeader",
    "ClearingRecord",
    "ClearingTrailer",
    "read_clearing_file",
    "write_clearing_file",
]
