"""Hand-assembled frames in ``vectors/`` checked against the decoder.

Each vector was written byte by byte from ``docs/wire-profile.md``, not produced
by cardtally's encoder, so these tests check the code against the written
profile rather than against itself.

A vector file is annotated hex. ``#`` starts a comment. Lines starting with
``expect`` state what decoding must give; every other line contributes its hex
digits (spaces ignored) to the frame. Directives:

- ``expect mti 0200`` and ``expect tpdu 6000050102``
- ``expect fields 2 3 4 ...``: exactly these data fields are present
- ``expect N VALUE``: field N decodes to VALUE (quote it if it has spaces)
- ``expect absent N``: field N is not present
- ``expect error FIELD OFFSET``: decoding raises ``DecodeError`` with that
  ``.field`` and ``.offset`` (offset from the first byte of the length prefix)
- ``expect truncated-by N``: the length prefix promises N more bytes than the
  file holds (otherwise it must equal the real byte count)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cardtally.wire import DecodeError, decode_framed, describe_mti

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTOR_FILES = sorted(VECTORS_DIR.glob("*.txt"))


@dataclass
class Vector:
    name: str
    frame: bytes
    mti: str | None = None
    tpdu: str | None = None
    fields: set[int] | None = None
    values: dict[int, str] = field(default_factory=dict)
    absent: set[int] = field(default_factory=set)
    error: tuple[str, int] | None = None
    truncated_by: int = 0


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _apply(vector: Vector, directive: str) -> None:
    key, _, rest = directive.partition(" ")
    rest = rest.strip()
    if key == "mti":
        vector.mti = rest
    elif key == "tpdu":
        vector.tpdu = rest.upper()
    elif key == "fields":
        vector.fields = {int(n) for n in rest.split()}
    elif key == "absent":
        vector.absent.update(int(n) for n in rest.split())
    elif key == "error":
        name, offset = rest.split()
        vector.error = (name, int(offset))
    elif key == "truncated-by":
        vector.truncated_by = int(rest)
    elif key.isdigit():
        vector.values[int(key)] = _unquote(rest)
    else:
        raise ValueError(f"unknown directive {directive!r}")


def load_vector(path: Path) -> Vector:
    hex_parts: list[str] = []
    vector = Vector(path.stem, b"")
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        if raw_line.startswith("expect "):
            # Values may contain '#'-free text only; a comment may follow.
            _apply(vector, raw_line.removeprefix("expect ").split(" #", 1)[0].strip())
            continue
        line = raw_line.split("#", 1)[0]
        hex_parts.append("".join(line.split()))
    vector.frame = bytes.fromhex("".join(hex_parts))
    return vector


@pytest.fixture(params=VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def vector(request: pytest.FixtureRequest) -> Vector:
    return load_vector(request.param)


def test_there_are_vectors() -> None:
    names = {p.stem for p in VECTOR_FILES}
    assert len(names) >= 15
    assert any(n.startswith("neg_") for n in names)


def test_length_prefix_counts_what_follows(vector: Vector) -> None:
    declared = int.from_bytes(vector.frame[:2], "big")
    actual = len(vector.frame) - 2
    assert declared == actual + vector.truncated_by, (
        f"{vector.name}: prefix says {declared}, {actual} bytes follow"
    )


def test_vector_decodes_as_written(vector: Vector) -> None:
    if vector.error is not None:
        field_name, offset = vector.error
        with pytest.raises(DecodeError) as caught:
            decode_framed(vector.frame)
        assert (caught.value.field, caught.value.offset) == (field_name, offset), str(caught.value)
        return

    frame = decode_framed(vector.frame)
    message = frame.message
    assert vector.mti is not None, "a positive vector must state its MTI"
    assert message.mti == vector.mti
    assert describe_mti(message.mti)
    if vector.tpdu is not None:
        assert frame.tpdu.encode().hex().upper() == vector.tpdu
    if vector.fields is not None:
        assert set(message.fields) == vector.fields
    for number, value in vector.values.items():
        assert message.get(number) == value, f"field {number}"
    for number in vector.absent:
        assert number not in message
    # The raw message is what follows the TPDU (no application header by default).
    assert frame.raw_message == vector.frame[7:]


def test_every_positive_vector_states_all_its_fields() -> None:
    """Each positive vector lists its field set, so a surprise field cannot slip by."""
    for path in VECTOR_FILES:
        vector = load_vector(path)
        if vector.error is None:
            assert vector.fields is not None, path.name
