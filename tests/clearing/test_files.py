"""Clearing files: round trips, determinism, every refusal, tampering and atomic writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtally.clearing import _files
from cardtally.clearing._files import (
    AMOUNT_MINOR_MAX,
    DIRECTION_OF_KIND,
    HEADER_KEY,
    PARQUET_SCHEMA,
    RECORD_COLUMNS,
    TRAILER_KEY,
    ClearingFile,
    ClearingFileError,
    ClearingHeader,
    ClearingRecord,
    ClearingTrailer,
    read_clearing_file,
    write_clearing_file,
)
from cardtally.money import CURRENCIES

ROOT = Path(__file__).resolve().parents[2]
FORMATS = (".csv", ".parquet")
HEADER = ClearingHeader("20261121", "bank-a", "48020000", "156", "20261122003000")
CLEAR_PAN = "6225880000000001"


def record(seq: int = 1, **changes: Any) -> ClearingRecord:
    base = ClearingRecord(
        seq=seq,
        rrn=f"{100 + seq:012d}",
        kind="sale",
        direction="D",
        amount_minor=1000 * seq,
        currency="156",
        terminal_id="10300001",
        merchant_id="898310048160001",
        batch_no=1,
        stan=f"{10 + seq:06d}",
        issuer_stan=f"{100 + seq:06d}",
        transmitted="1121021530",
        auth_code="384615",
        pan_masked="622588******0001",
        local_time="20261121101530",
    )
    return dataclasses.replace(base, **changes)


def sample() -> list[ClearingRecord]:
    """A sale, a completion, a cross-day void and a refund: two debits, two credits."""
    return [
        record(1),
        record(2, kind="completion"),
        record(3, kind="void", direction="C", auth_code=""),
        record(4, kind="refund", direction="C", pan_masked="625807*********0009"),
    ]


def written(directory: Path, suffix: str, records: list[ClearingRecord] | None = None) -> Path:
    path = directory / f"bank-a{suffix}"
    write_clearing_file(path, HEADER, sample() if records is None else records)
    return path


def refusal(path: Path, **expected: str) -> str:
    with pytest.raises(ClearingFileError) as caught:
        read_clearing_file(path, **expected)
    assert caught.value.path == path
    assert str(caught.value) == f"clearing file {path} refused: {caught.value.reason}"
    return caught.value.reason


# --- strategies ------------------------------------------------------------------------

MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


masked_pans = st.builds(
    lambda first, stars, last: first + "*" * stars + last,
    digits(6),
    st.integers(2, 9),
    digits(4),
)


@st.composite
def records_bodies(draw: st.DrawFn) -> ClearingRecord:
    kind = draw(st.sampled_from(sorted(DIRECTION_OF_KIND)))
    return ClearingRecord(
        seq=0,  # numbered by the list strategy
        rrn=draw(digits(12)),
        kind=kind,
        direction=DIRECTION_OF_KIND[kind],
        amount_minor=draw(st.integers(1, AMOUNT_MINOR_MAX)),
        currency="",  # the header's, set by the file strategy
        terminal_id=draw(st.text(ALNUM, min_size=8, max_size=8)),
        merchant_id=draw(st.text(ALNUM, min_size=1, max_size=15)),
        batch_no=draw(st.integers(0, 999_999)),
        stan=draw(digits(6)),
        issuer_stan=draw(digits(6)),
        transmitted=draw(MOMENTS).strftime("%m%d%H%M%S"),
        auth_code=draw(st.text(ALNUM, max_size=6)),
        pan_masked=draw(masked_pans),
        local_time=draw(MOMENTS).strftime("%Y%m%d%H%M%S"),
    )


headers = st.builds(
    ClearingHeader,
    business_day=MOMENTS.map(lambda m: m.strftime("%Y%m%d")),
    link_id=st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
    acquirer_id=st.from_regex(r"[0-9]{1,11}", fullmatch=True),
    currency=st.sampled_from(sorted(CURRENCIES)),
    created_at=MOMENTS.map(lambda m: m.strftime("%Y%m%d%H%M%S")),
)


@st.composite
def contents(draw: st.DrawFn) -> tuple[ClearingHeader, list[ClearingRecord]]:
    header = draw(headers)
    bodies = draw(st.lists(records_bodies(), max_size=25))
    records = [
        dataclasses.replace(body, seq=seq, currency=header.currency)
        for seq, body in enumerate(bodies, start=1)
    ]
    return header, records


# --- round trips and determinism -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(contents())
def test_both_formats_read_back_what_was_written(
    content: tuple[ClearingHeader, list[ClearingRecord]],
) -> None:
    header, records = content
    expected = ClearingFile(header, tuple(records), ClearingTrailer.from_records(records))
    with tempfile.TemporaryDirectory() as tmp:
        read = {}
        for suffix in FORMATS:
            path = Path(tmp) / f"link{suffix}"
            digest = write_clearing_file(path, header, records)
            assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
            read[suffix] = read_clearing_file(
                path, business_day=header.business_day, link_id=header.link_id
            )
        assert sorted(os.listdir(tmp)) == ["link.csv", "link.parquet"]  # no temp files left
    assert read[".csv"] == expected
    assert read[".parquet"] == read[".csv"]


@settings(max_examples=30, deadline=None)
@given(contents())
def test_the_same_input_gives_the_same_bytes(
    content: tuple[ClearingHeader, list[ClearingRecord]],
) -> None:
    header, records = content
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in FORMATS:
            first, second = Path(tmp) / f"a{suffix}", Path(tmp) / f"b{suffix}"
            assert write_clearing_file(first, header, records) == write_clearing_file(
                second, header, records
            )
            assert first.read_bytes() == second.read_bytes()


def test_rewriting_a_file_in_place_gives_identical_bytes(tmp_path: Path) -> None:
    for suffix in FORMATS:
        path = written(tmp_path, suffix)
        before = path.read_bytes()
        write_clearing_file(path, HEADER, sample())
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank-a.csv", "bank-a.parquet"]


def test_trailer_net_and_file_mode(tmp_path: Path) -> None:
    for suffix in FORMATS:
        clearing = read_clearing_file(written(tmp_path, suffix))
        assert clearing.trailer == ClearingTrailer(
            record_count=4,
            debit_count=2,
            debit_minor=3000,
            credit_count=2,
            credit_minor=7000,
            records_sha256=clearing.trailer.records_sha256,
        )
        assert clearing.net_minor == -4000
        assert (tmp_path / f"bank-a{suffix}").stat().st_mode & 0o777 == 0o640


def test_a_day_without_transactions_is_a_file_with_no_records(tmp_path: Path) -> None:
    empty_sha = hashlib.sha256(b"").hexdigest()
    for suffix in FORMATS:
        clearing = read_clearing_file(written(tmp_path, suffix, []))
        assert clearing.records == ()
        assert clearing.trailer == ClearingTrailer(0, 0, 0, 0, 0, empty_sha)
        assert clearing.net_minor == 0
    assert (tmp_path / "bank-a.csv").read_text(encoding="ascii").splitlines()[1] == (
        f"T,0,0,0,0,0,{empty_sha}"
    )


def test_records_sha256_is_the_hash_of_the_csv_detail_lines_without_their_d(
    tmp_path: Path,
) -> None:
    # What docs/clearing-format.md tells an issuer to run: grep '^D,' | cut -d, -f2- | sha256sum
    text = written(tmp_path, ".csv").read_text(encoding="ascii")
    details = "".join(line[2:] + "\n" for line in text.splitlines() if line.startswith("D,"))
    trailer = text.splitlines()[-1].split(",")
    assert trailer[6] == hashlib.sha256(details.encode("ascii")).hexdigest()
    assert trailer[6] == ClearingTrailer.from_records(sample()).records_sha256


def test_csv_layout(tmp_path: Path) -> None:
    raw = written(tmp_path, ".csv").read_bytes()
    assert b"\r" not in raw
    lines = raw.decode("ascii").splitlines()
    assert lines[0] == "H,CTCLR,1,20261121,bank-a,48020000,156,20261122003000"
    assert lines[1] == (
        "D,1,000000000101,sale,D,1000,156,10300001,898310048160001,1,000011,000101,"
        "1121021530,384615,622588******0001,20261121101530"
    )
    assert lines[3].split(",")[13] == ""  # the void without an auth code
    assert lines[-1].startswith("T,4,2,3000,2,7000,")
    assert len(lines) == 6


def test_parquet_layout(tmp_path: Path) -> None:
    with pq.ParquetFile(written(tmp_path, ".parquet")) as parquet:
        assert parquet.schema_arrow.names == list(RECORD_COLUMNS)
        assert parquet.schema_arrow.field("amount_minor").type == pa.int64()
        assert parquet.schema_arrow.field("batch_no").type == pa.int32()
        metadata = parquet.metadata.metadata
        assert parquet.read().column("amount_minor").to_pylist() == [1000, 2000, 3000, 4000]
    header = json.loads(metadata[HEADER_KEY.encode()])
    assert header == {"format": "CTCLR", "version": 1, **dataclasses.asdict(HEADER)}
    trailer = json.loads(metadata[TRAILER_KEY.encode()])
    assert trailer == dataclasses.asdict(ClearingTrailer.from_records(sample()))


def test_a_crlf_copy_of_the_csv_still_reads(tmp_path: Path) -> None:
    path = written(tmp_path, ".csv")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert read_clearing_file(path).records == tuple(sample())


def test_the_documented_example_is_real_writer_output(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "clearing-format.md").read_text(encoding="utf-8")
    example = re.search(r"```csv\n(H,CTCLR.+?\n)```", doc, re.DOTALL)
    assert example is not None
    path = tmp_path / "example.csv"
    path.write_text(example[1], encoding="ascii")
    clearing = read_clearing_file(path)
    again = tmp_path / "again.csv"
    write_clearing_file(again, clearing.header, clearing.records)
    assert again.read_text(encoding="ascii") == example[1]
    assert f"net {clearing.net_minor}" in doc  # the figure the doc quotes


def test_error_carries_path_and_reason_and_pickles() -> None:
    error = ClearingFileError(Path("/x/y.csv"), "trailer says 12 records, the file has 11")
    assert str(error) == "clearing file /x/y.csv refused: trailer says 12 records, the file has 11"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


# --- the writer refuses bad input and writes nothing ---------------------------------

BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    ({"seq": 2}, "record 1: seq is 2, expected 1 (records are numbered 1..N in order)"),
    ({"seq": 0}, "record 1: seq: 0 is not a whole number from 1"),
    ({"direction": "C"}, "record 1: direction C does not fit kind sale (expected D)"),
    ({"kind": "refund"}, "record 1: direction D does not fit kind refund (expected C)"),
    ({"kind": "preauth"}, "record 1: kind: 'preauth' is not one of sale, completion, void"),
    ({"direction": "X"}, "record 1: direction: 'X' is not D or C"),
    ({"currency": "840"}, "record 1: currency 840 is not the header's 156"),
    ({"amount_minor": 0}, "record 1: amount_minor: 0 is not an amount of 1..999999999999 minor"),
    ({"amount_minor": -5}, "record 1: amount_minor: -5 is not an amount of 1..999999999999"),
    ({"amount_minor": 10**12}, "record 1: amount_minor: 1000000000000 is not an amount"),
    ({"amount_minor": 12.5}, "record 1: amount_minor: must be an int, got float"),
    ({"amount_minor": True}, "record 1: amount_minor: must be an int, got bool"),
    ({"amount_minor": "100"}, "record 1: amount_minor: must be an int, got str"),
    ({"rrn": "00000000101"}, "record 1: rrn: '00000000101' is not 12 digits"),
    ({"terminal_id": "1030001"}, "record 1: terminal_id: '1030001' is not 8 letters or digits"),
    ({"merchant_id": ""}, "record 1: merchant_id: '' is not 1-15 letters or digits"),
    ({"merchant_id": "M,1"}, "record 1: merchant_id: 'M,1' is not 1-15 letters or digits"),
    ({"batch_no": 1_000_000}, "record 1: batch_no: 1000000 is not a batch number 0..999999"),
    ({"stan": "12345"}, "record 1: stan: '12345' is not 6 digits"),
    ({"issuer_stan": "１２３４５６"}, "record 1: issuer_stan: '１２３４５６' is not 6 digits"),
    ({"transmitted": "1321021530"}, "record 1: transmitted: '1321021530' is not MMDDhhmmss"),
    ({"transmitted": "0230021530"}, "record 1: transmitted: '0230021530' is not MMDDhhmmss"),
    ({"auth_code": "1234567"}, "record 1: auth_code: '1234567' is not 0-6 letters or digits"),
    ({"local_time": "20261121246000"}, "record 1: local_time: '20261121246000' is not a time"),
    ({"pan_masked": "622588*0001"}, "record 1: pan_masked: is not a masked PAN"),
    ({"pan_masked": None}, "record 1: pan_masked: is missing (null)"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_RECORDS)
@pytest.mark.parametrize("suffix", FORMATS)
def test_the_writer_refuses_a_bad_record_and_writes_nothing(
    tmp_path: Path, suffix: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_clearing_file(
            tmp_path / f"x{suffix}", HEADER, [dataclasses.replace(record(1), **changes)]
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([record(1), record(3)], "record 2: seq is 3, expected 2"),
        ([record(2), record(1)], "record 1: seq is 2, expected 1"),
        ([record(1), "D,2"], "record 2: not a ClearingRecord: str"),
    ],
)
def test_the_writer_refuses_records_out_of_order(
    tmp_path: Path, records: list[ClearingRecord], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_clearing_file(tmp_path / "x.csv", HEADER, records)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"business_day": "20261131"}, "clearing header: business_day: '20261131' is not a date"),
        ({"link_id": "bank/a"}, "clearing header: link_id: 'bank/a' is not an issuer link"),
        ({"acquirer_id": "4802000012345"}, "clearing header: acquirer_id: '4802000012345' is not"),
        ({"currency": "999"}, "clearing header: currency: '999' is not a known ISO 4217"),
        ({"created_at": "2026112200300"}, "clearing header: created_at: '2026112200300' is not"),
    ],
)
def test_the_writer_refuses_a_bad_header(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_clearing_file(tmp_path / "x.parquet", dataclasses.replace(HEADER, **changes), [])
    assert list(tmp_path.iterdir()) == []


def test_the_writer_never_echoes_a_clear_pan(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pan_masked: is not a masked PAN") as caught:
        write_clearing_file(tmp_path / "x.csv", HEADER, [record(1, pan_masked=CLEAR_PAN)])
    assert CLEAR_PAN not in str(caught.value)
    with pytest.raises(ValueError, match=r"merchant_id: '622588\*+0001' is not") as caught:
        write_clearing_file(tmp_path / "x.csv", HEADER, [record(1, merchant_id=CLEAR_PAN)])
    assert CLEAR_PAN not in str(caught.value)


def test_the_writer_wants_a_known_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ends in \.csv or \.parquet, not '\.txt'"):
        write_clearing_file(tmp_path / "x.txt", HEADER, sample())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_refused_write_leaves_the_good_file_alone(tmp_path: Path, suffix: str) -> None:
    path = written(tmp_path, suffix)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="amount_minor"):
        write_clearing_file(path, HEADER, [record(1, amount_minor=0)])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_write_failing_midway_leaves_the_good_file_and_no_temp_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = written(tmp_path, suffix)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_clearing_file(path, HEADER, sample()[:2])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# --- the reader: refusals common to both formats ---------------------------------------


def test_missing_file_directory_and_unknown_suffix(tmp_path: Path) -> None:
    assert refusal(tmp_path / "bank-a.csv") == "file not found"
    assert refusal(tmp_path) == "not a regular file"
    other = tmp_path / "bank-a.txt"
    other.write_text("H,CTCLR,1\n", encoding="ascii")
    assert refusal(other) == "not a clearing file: unknown suffix '.txt' (.csv or .parquet)"


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_file_for_another_day_or_link(tmp_path: Path, suffix: str) -> None:
    path = written(tmp_path, suffix)
    assert refusal(path, business_day="20261122") == (
        "file is for business day 20261121, expected 20261122"
    )
    assert refusal(path, link_id="bank-b") == "file is for issuer link bank-a, expected bank-b"
    assert read_clearing_file(path, business_day="20261121", link_id="bank-a").header == HEADER


# --- CSV ---------------------------------------------------------------------------------


def edited(path: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    lines = path.read_text(encoding="ascii").splitlines()
    path.write_text("".join(line + "\n" for line in edit(lines)), encoding="ascii")
    return path


def with_field(line: str, index: int, value: str) -> str:
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


def set_line(number: int, text: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        lines[number - 1] = text
        return lines

    return edit


def set_field(number: int, index: int, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        lines[number - 1] = with_field(lines[number - 1], index, value)
        return lines

    return edit


AMOUNT, CURRENCY, TERMINAL, PAN = 5, 6, 7, 14  # field indexes on a D line (0 is the "D")

CSV_REFUSALS: list[tuple[Callable[[list[str]], list[str]], str]] = [
    (lambda lines: [], "not a clearing file: it is empty"),
    (lambda lines: lines[1:], "not a clearing file: line 1 is not a header (H line)"),
    (set_field(1, 1, "XXCLR"), "not a clearing file: format 'XXCLR', expected 'CTCLR'"),
    (set_line(1, "H"), "not a clearing file: format missing, expected 'CTCLR'"),
    (set_line(1, "H,CTCLR"), "not a clearing file: format version missing, this reader reads"),
    (set_field(1, 2, "2"), "not a clearing file: format version 2, this reader reads version 1"),
    (
        set_field(1, 2, "01"),
        "not a clearing file: format version '01', this reader reads version 1",
    ),
    (
        lambda lines: [lines[0] + ",extra", *lines[1:]],
        "not a clearing file: header has 9 fields, expected 8",
    ),
    (
        set_field(1, 3, "20261131"),
        "not a clearing file: header business_day: '20261131' is not a date YYYYMMDD",
    ),
    (
        set_field(1, 6, "999"),
        "not a clearing file: header currency: '999' is not a known ISO 4217 numeric currency",
    ),
    (set_field(2, AMOUNT, "12a"), "line 2: amount_minor: '12a' is not a whole number"),
    (set_field(2, AMOUNT, "01000"), "line 2: amount_minor: '01000' is not a whole number"),
    (set_field(2, AMOUNT, "+1000"), "line 2: amount_minor: '+1000' is not a whole number"),
    (set_field(2, AMOUNT, "0"), "line 2: amount_minor: 0 is not an amount of 1..999999999999"),
    (set_field(3, 3, "preauth"), "line 3: kind: 'preauth' is not one of sale, completion, void"),
    (set_field(4, 4, "D"), "line 4: direction D does not fit kind void (expected C)"),
    (set_field(2, TERMINAL, "1030000"), "line 2: terminal_id: '1030000' is not 8 letters"),
    (set_field(5, CURRENCY, "840"), "line 5: currency 840 is not the header's 156"),
    (set_field(3, 1, "3"), "line 3: seq is 3, expected 2 (records are numbered 1..N in order)"),
    (
        lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
        "line 2: seq is 2, expected 1 (records are numbered 1..N in order)",
    ),
    (
        lambda lines: [lines[0], lines[1] + ",x", *lines[2:]],
        "line 2: detail line has 17 fields, expected 16",
    ),
    (lambda lines: [lines[0], "", *lines[1:]], "line 2: empty line"),
    (lambda lines: [lines[0], lines[0], *lines[1:]], "line 2: a second header"),
    (
        lambda lines: [lines[0], "X,1", *lines[1:]],
        "line 2: unknown line type 'X' (expected D or T)",
    ),
    (lambda lines: [lines[0], 'D,"1"x', *lines[1:]], "line 2: not well-formed CSV ("),
    (lambda lines: lines[:-1], "trailer missing: no T line after line 5 (is the file truncated?)"),
    (lambda lines: [lines[0]], "trailer missing: no T line after line 1 (is the file truncated?)"),
    (lambda lines: [*lines, lines[-1]], "trailer duplicated: lines 6 and 7"),
    (
        lambda lines: [*lines[:-2], lines[-1], lines[-2]],
        "trailer is not last: line 6 follows it (line 5)",
    ),
    (
        lambda lines: [*lines, "D,5"],
        "trailer is not last: line 7 follows it (line 6)",
    ),
    (
        lambda lines: [*lines[:-1], lines[-1] + ",x"],
        "line 6: trailer has 8 fields, expected 7",
    ),
    (
        lambda lines: [*lines[:-1], lines[-1].upper()],
        "line 6: trailer records_sha256: '",
    ),
    (set_field(6, 2, "-1"), "line 6: debit_count: '-1' is not a whole number"),
    # The trailer against the records: each figure named, stated vs found.
    (lambda lines: [*lines[:4], lines[5]], "trailer says 4 records, the file has 3"),
    (set_field(6, 2, "3"), "trailer says 3 debits, the file has 2"),
    (set_field(2, AMOUNT, "1001"), "trailer says debits total 3000, the file's debits total 3001"),
    (set_field(6, 4, "1"), "trailer says 1 credits, the file has 2"),
    (set_field(5, AMOUNT, "4"), "trailer says credits total 7000, the file's credits total 3004"),
    (set_field(2, TERMINAL, "10300002"), "trailer says records_sha256 "),
]


@pytest.mark.parametrize(("edit", "message"), CSV_REFUSALS)
def test_csv_refusals(tmp_path: Path, edit: Callable[[list[str]], list[str]], message: str) -> None:
    reason = refusal(edited(written(tmp_path, ".csv"), edit))
    assert reason.startswith(message), reason


def test_a_tampered_csv_is_refused_with_both_hashes(tmp_path: Path) -> None:
    path = edited(written(tmp_path, ".csv"), set_field(3, 10, "000099"))
    stated = ClearingTrailer.from_records(sample()).records_sha256
    changed = [*sample()]
    changed[1] = dataclasses.replace(changed[1], stan="000099")
    found = ClearingTrailer.from_records(changed).records_sha256
    assert refusal(path) == f"trailer says records_sha256 {stated}, the records hash to {found}"


def test_non_ascii_csv_names_the_line(tmp_path: Path) -> None:
    path = written(tmp_path, ".csv")
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"898310048160001", "商户".encode())
    path.write_bytes(b"\n".join(lines))
    assert refusal(path) == "line 3: not ASCII text"


def test_a_clear_pan_in_a_csv_is_refused_without_being_echoed(tmp_path: Path) -> None:
    path = edited(written(tmp_path, ".csv"), set_field(2, PAN, CLEAR_PAN))
    reason = refusal(path)
    assert reason.startswith("line 2: pan_masked: is not a masked PAN")
    assert CLEAR_PAN not in reason
    path = edited(written(tmp_path, ".csv"), set_field(3, 8, CLEAR_PAN))
    reason = refusal(path)
    assert reason == "line 3: merchant_id: '622588******0001' is not 1-15 letters or digits"


# --- Parquet -----------------------------------------------------------------------------


def rewritten(
    path: Path,
    table: Callable[[pa.Table], pa.Table] = lambda t: t,
    metadata: Callable[[dict[bytes, bytes]], dict[bytes, bytes]] = lambda m: m,
) -> Path:
    """The Parquet file rewritten with its table and key-value metadata changed."""
    original = pq.read_table(path)
    kept = dict(original.schema.metadata or {})
    changed = table(original)
    pq.write_table(changed.replace_schema_metadata(metadata(kept)), path)
    return path


def with_json(key: str, **changes: object) -> Callable[[dict[bytes, bytes]], dict[bytes, bytes]]:
    def edit(metadata: dict[bytes, bytes]) -> dict[bytes, bytes]:
        value = json.loads(metadata[key.encode()])
        for name, new in changes.items():
            if new is None:
                del value[name]
            else:
                value[name] = new
        return {**metadata, key.encode(): json.dumps(value).encode()}

    return edit


def without(key: str) -> Callable[[dict[bytes, bytes]], dict[bytes, bytes]]:
    return lambda metadata: {k: v for k, v in metadata.items() if k != key.encode()}


def with_column(name: str, values: list[Any], type_: Any = None) -> Callable[[pa.Table], pa.Table]:
    def edit(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        if type_ is not None:
            field = pa.field(name, type_)
        elif None in values:
            field = field.with_nullable(True)
        return table.set_column(index, field, pa.array(values, type=field.type))

    return edit


PARQUET_REFUSALS: list[tuple[dict[str, Any], str]] = [
    (
        {"metadata": without(HEADER_KEY)},
        "not a clearing file: no cardtally.clearing.header metadata",
    ),
    (
        {"metadata": lambda m: {**m, HEADER_KEY.encode(): b"{not json"}},
        "not a clearing file: cardtally.clearing.header metadata is not a JSON object",
    ),
    (
        {"metadata": lambda m: {**m, HEADER_KEY.encode(): b"[1, 2]"}},
        "not a clearing file: cardtally.clearing.header metadata is not a JSON object",
    ),
    (
        {"metadata": with_json(HEADER_KEY, format="XXCLR")},
        "not a clearing file: format 'XXCLR', expected 'CTCLR'",
    ),
    (
        {"metadata": with_json(HEADER_KEY, version=2)},
        "not a clearing file: format version 2, this reader reads version 1",
    ),
    (
        {"metadata": with_json(HEADER_KEY, version="1")},
        "not a clearing file: format version '1', this reader reads version 1",
    ),
    (
        {"metadata": with_json(HEADER_KEY, acquirer_id=None)},
        "not a clearing file: header has keys business_day, created_at, currency, link_id, "
        "expected acquirer_id, business_day, created_at, currency, link_id",
    ),
    (
        {"metadata": with_json(HEADER_KEY, currency=156)},
        "not a clearing file: header currency: must be text, got int",
    ),
    (
        {"table": with_column("amount_minor", [1000.0, 2000.0, 3000.0, 4000.0], pa.float64())},
        "not a clearing file: column 5 is amount_minor: double, expected amount_minor: int64",
    ),
    (
        {"table": lambda t: t.drop_columns(["local_time"])},
        "not a clearing file: 14 columns, expected 15",
    ),
    (
        {"table": lambda t: t.append_column("pan", pa.array([CLEAR_PAN] * 4))},
        "not a clearing file: 16 columns, expected 15",
    ),
    (
        {"metadata": without(TRAILER_KEY)},
        "trailer missing: no cardtally.clearing.trailer metadata",
    ),
    (
        {"metadata": with_json(TRAILER_KEY, debit_minor=None)},
        "trailer has keys credit_count, credit_minor, debit_count, record_count, records_sha256",
    ),
    (
        {"metadata": with_json(TRAILER_KEY, debit_minor=3000.0)},
        "trailer debit_minor: must be an int, got float",
    ),
    (
        {"metadata": with_json(TRAILER_KEY, records_sha256="ab")},
        "trailer records_sha256: 'ab' is not 64 lowercase hex digits",
    ),
    (
        {"table": with_column("auth_code", ["1", None, "", "2"])},
        "row 2: auth_code: is missing (null)",
    ),
    (
        {"table": with_column("seq", [1, 2, 4, 3])},
        "row 3: seq is 4, expected 3 (records are numbered 1..N in order)",
    ),
    (
        {"table": with_column("currency", ["156", "156", "156", "840"])},
        "row 4: currency 840 is not the header's 156",
    ),
    (
        {"table": with_column("pan_masked", [CLEAR_PAN] * 4)},
        "row 1: pan_masked: is not a masked PAN (first 6 digits, 2-9 '*', last 4 digits)",
    ),
    # Tampering: the rows or the metadata trailer changed alone.
    (
        {"table": with_column("amount_minor", [1000, 2000, 3000, 4001])},
        "trailer says credits total 7000, the file's credits total 7001",
    ),
    (
        {"table": lambda t: t.slice(0, 3)},
        "trailer says 4 records, the file has 3",
    ),
    (
        {"metadata": with_json(TRAILER_KEY, debit_minor=3001)},
        "trailer says debits total 3001, the file's debits total 3000",
    ),
    (
        {"metadata": with_json(TRAILER_KEY, record_count=5)},
        "trailer says 5 records, the file has 4",
    ),
    (
        {"table": with_column("rrn", ["000000000999", *[f"{100 + n:012d}" for n in (2, 3, 4)]])},
        "trailer says records_sha256 ",
    ),
]


@pytest.mark.parametrize(("changes", "message"), PARQUET_REFUSALS)
def test_parquet_refusals(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    reason = refusal(rewritten(written(tmp_path, ".parquet"), **changes))
    assert reason.startswith(message), reason
    assert CLEAR_PAN not in reason


def test_parquet_with_the_right_rows_but_the_writer_s_schema_reads(tmp_path: Path) -> None:
    # The baseline for the rewrites above: a rewrite without changes still reads.
    path = rewritten(written(tmp_path, ".parquet"))
    assert read_clearing_file(path).records == tuple(sample())
    assert PARQUET_SCHEMA.names == list(RECORD_COLUMNS)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"", "not a clearing file: not readable as Parquet ("),
        (lambda data: data[: len(data) // 2], "not a clearing file: not readable as Parquet ("),
        (lambda data: b"H,CTCLR,1\n", "not a clearing file: not readable as Parquet ("),
        (lambda data: data[:4] + b"\xff" * 64 + data[68:], "corrupt Parquet data ("),
    ],
)
def test_damaged_parquet_is_refused_not_a_pyarrow_traceback(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    path = written(tmp_path, ".parquet")
    path.write_bytes(damage(path.read_bytes()))
    assert refusal(path).startswith(message)


@settings(max_examples=150, deadline=None)
@given(
    suffix=st.sampled_from(FORMATS),
    flips=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8
    ),
)
def test_damage_is_refused_or_leaves_the_records_intact(
    suffix: str, flips: list[tuple[float, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = written(Path(tmp), suffix)
        data = bytearray(path.read_bytes())
        for where, byte in flips:
            data[int(where * len(data))] = byte
        path.write_bytes(bytes(data))
        try:
            clearing = read_clearing_file(path)
        except ClearingFileError:
            return
    # Unprotected bytes (Parquet statistics, a header field) may change; the records not.
    assert clearing.records == tuple(sample())
    assert clearing.trailer == ClearingTrailer.from_records(sample())


# --- the quick whole-record check agrees with the field-by-field one --------------------

field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 10**13),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.text("0123456789*,DCsalevoidrefund", max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(
    base=records_bodies(),
    changes=st.dictionaries(st.sampled_from(RECORD_COLUMNS), field_values, max_size=3),
)
def test_the_quick_check_never_accepts_what_the_field_checks_refuse(
    base: ClearingRecord, changes: dict[str, Any]
) -> None:
    candidate = dataclasses.replace(base, **{"seq": 1, "currency": "156", **changes})
    if _files._well_formed(_files._values_of(candidate)):
        assert _files._first_problem(_files._RECORD_RULES, candidate) is None
    assert tuple(_files._RECORD_RULES) == RECORD_COLUMNS
