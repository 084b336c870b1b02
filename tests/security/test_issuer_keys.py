"""Loading and creating the issuer's keys: PVK, ZPK and (since the link MAC) the ZAK."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Final

import pytest

from cardtally.security import (
    ISSUER_KEYS_ENV,
    IssuerKeys,
    KeyFileError,
    SecurityError,
    create_issuer_keys,
    issuer_keys_path,
    kcv_hex,
    load_issuer_keys,
)

PVK: Final = "0123456789ABCDEFFEDCBA9876543210"
ZPK: Final = "89ABCDEF01234567FEDCBA9876543210"
ZAK: Final = "FEDCBA98765432100123456789ABCDEF"
THREE_KEYS: Final = PVK + ZPK + ZAK
#: A key file written before the zone MAC key existed.
TWO_KEYS: Final = PVK + ZPK


def _write_keys(home: Path, text: str) -> Path:
    path = issuer_keys_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")
    path.chmod(0o600)
    return path


def test_three_keys_load_in_order(tmp_path: Path) -> None:
    _write_keys(tmp_path, THREE_KEYS + "\n")
    keys = load_issuer_keys(tmp_path, environ={})
    assert (keys.pvk, keys.zpk, keys.zak) == tuple(bytes.fromhex(k) for k in (PVK, ZPK, ZAK))


def test_an_old_two_key_file_still_loads_without_a_zak(tmp_path: Path) -> None:
    _write_keys(tmp_path, TWO_KEYS.lower() + "\n")
    keys = load_issuer_keys(tmp_path, environ={})
    assert (keys.pvk, keys.zpk) == (bytes.fromhex(PVK), bytes.fromhex(ZPK))
    assert keys.zak is None  # the switch-issuer link then carries no MAC, as before


@pytest.mark.parametrize(("text", "zak"), [(THREE_KEYS, bytes.fromhex(ZAK)), (TWO_KEYS, None)])
def test_the_environment_variable_takes_either_form(
    tmp_path: Path, text: str, zak: bytes | None
) -> None:
    _write_keys(tmp_path, "00" * 48)  # ignored: the variable wins
    keys = load_issuer_keys(tmp_path, environ={ISSUER_KEYS_ENV: f"  {text}\n"})
    assert keys.pvk == bytes.fromhex(PVK)
    assert keys.zak == zak


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (THREE_KEYS[:-2], "holds 94 characters; expected 96 hex digits .* or 64"),
        (THREE_KEYS + "00", "holds 98 characters"),
        (TWO_KEYS + ZAK[:16], "holds 80 characters"),
        ("00" * 64, "holds 128 characters"),
        (THREE_KEYS[:-1] + "g", "not hexadecimal"),
        (TWO_KEYS[:-1] + "g", "not hexadecimal"),
        (PVK + ZPK + ZPK, "zone MAC key must differ"),
        (PVK + ZPK + PVK, "zone MAC key must differ"),
    ],
)
def test_anything_else_is_a_clear_key_file_error(tmp_path: Path, text: str, reason: str) -> None:
    path = _write_keys(tmp_path, text)
    with pytest.raises(KeyFileError, match=reason) as raised:
        load_issuer_keys(tmp_path, environ={})
    assert str(path) in str(raised.value)
    with pytest.raises(KeyFileError, match=reason) as raised:
        load_issuer_keys(tmp_path, environ={ISSUER_KEYS_ENV: text})
    assert ISSUER_KEYS_ENV in str(raised.value)


def test_a_missing_file_names_init_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cardtally init") as raised:
        load_issuer_keys(tmp_path, environ={})
    assert ISSUER_KEYS_ENV in str(raised.value)


def test_create_writes_three_fresh_distinct_keys(tmp_path: Path) -> None:
    path = create_issuer_keys(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="ascii")
    assert len(text.strip()) == 96
    keys = load_issuer_keys(tmp_path, environ={})
    assert keys.zak is not None
    assert len({keys.pvk, keys.zpk, keys.zak}) == 3
    with pytest.raises(KeyFileError, match="already exists"):
        create_issuer_keys(tmp_path)
    assert path.read_text(encoding="ascii") == text


def test_repr_shows_check_values_never_keys() -> None:
    keys = IssuerKeys(bytes.fromhex(PVK), bytes.fromhex(ZPK), bytes.fromhex(ZAK))
    shown = repr(keys)
    for key in (PVK, ZPK, ZAK):
        assert key not in shown.upper()
        assert kcv_hex(bytes.fromhex(key)) in shown
    assert "zak=None" in repr(IssuerKeys(bytes.fromhex(PVK), bytes.fromhex(ZPK)))


def test_a_zak_is_checked_like_the_others() -> None:
    with pytest.raises(SecurityError, match="zone MAC key must be 16 bytes"):
        IssuerKeys(bytes.fromhex(PVK), bytes.fromhex(ZPK), bytes(8))
    with pytest.raises(SecurityError, match="must differ"):
        IssuerKeys(bytes.fromhex(PVK), bytes.fromhex(ZPK), bytes.fromhex(ZPK))
