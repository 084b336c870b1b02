"""The worked examples in docs/wire-profile.md must decode as their headings say.

Each example is a fenced ``hex`` block preceded by a comment such as
``<!-- example: 0200 sale -->``. The block holds one whole frame (length prefix,
TPDU, message), possibly wrapped over several lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cardtally.wire import decode_framed

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-profile.md"

_EXAMPLE = re.compile(
    r"<!--\s*example:\s*(?P<mti>\d{4})\s+(?P<title>[^>]*?)\s*-->"
    r"(?P<between>.*?)"
    r"^```hex[ \t]*\n(?P<hex>.*?)^```",
    re.DOTALL | re.MULTILINE,
)
_HEX_BLOCK = re.compile(r"^```hex[ \t]*$", re.MULTILINE)

# Every message type of the profile has at least one worked example.
REQUIRED_MTIS = {
    "0100", "0110", "0200", "0210", "0220", "0230", "0320", "0330",
    "0400", "0410", "0420", "0430", "0500", "0510", "0800", "0810",
}  # fmt: skip


def _examples() -> list[tuple[str, str, bytes]]:
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in _EXAMPLE.finditer(text):
        # The comment belongs to the next hex block only: no other block in between.
        assert "```" not in match["between"], f"example {match['mti']} {match['title']}"
        frame = bytes.fromhex("".join(match["hex"].split()))
        found.append((match["mti"], match["title"], frame))
    return found


EXAMPLES = _examples()


def test_every_hex_block_is_a_labelled_example() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(_HEX_BLOCK.findall(text)) == len(EXAMPLES)


def test_every_message_type_has_an_example() -> None:
    assert {mti for mti, _, _ in EXAMPLES} >= REQUIRED_MTIS


@pytest.mark.parametrize(
    ("mti", "frame"),
    [(mti, frame) for mti, _, frame in EXAMPLES],
    ids=[f"{mti} {title}" for mti, title, _ in EXAMPLES],
)
def test_example_decodes_with_its_mti(mti: str, frame: bytes) -> None:
    decoded = decode_framed(frame)
    assert decoded.message.mti == mti
    assert int.from_bytes(frame[:2], "big") == len(frame) - 2
