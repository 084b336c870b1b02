"""Loading and creating the data-protection keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cardtally.security import (
    DATA_KEYS_ENV,
    KeyFileError,
    _secret_file,
    create_data_keys,
    data_keys_path,
    load_data_keys,
)

HEX = "00112233445566778899aabbccddeeff" * 4
OTHER_HEX = "ff" * 64


def _write_keys(home: Path, text: str, mode: int = 0o600) -> Path:
    path = data_keys_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")
    path.chmod(mode)
    return path


def test_file_keys_load(tmp_path: Path) -> None:
    _write_keys(tmp_path, HEX + "\n")
    keys = load_data_keys(tmp_path, environ={})
    assert keys.encryption_key == bytes.fromhex(HEX)[:32]
    assert keys.fingerprint_key == bytes.fromhex(HEX)[32:]


def test_upper_case_hex_is_fine(tmp_path: Path) -> None:
    _write_keys(tmp_path, HEX.upper())
    assert load_data_keys(tmp_path, environ={}).encryption_key == bytes.fromhex(HEX)[:32]


def test_env_var_wins_over_file(tmp_path: Path) -> None:
    _write_keys(tmp_path, HEX)
    keys = load_data_keys(tmp_path, environ={DATA_KEYS_ENV: OTHER_HEX})
    assert keys.encryption_key == bytes.fromhex(OTHER_HEX)[:32]


def test_env_var_is_enough_without_a_file(tmp_path: Path) -> None:
    assert load_data_keys(tmp_path, environ={DATA_KEYS_ENV: HEX}).fingerprint_key


def test_missing_file_names_path_and_env_var(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as raised:
        load_data_keys(tmp_path, environ={})
    message = str(raised.value)
    assert str(data_keys_path(tmp_path)) in message
    assert "missing" in message
    assert DATA_KEYS_ENV in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (HEX[:-2], "holds 126 characters; expected 128"),
        (HEX + "00", "holds 130 characters"),
        (HEX[:-1] + "g", "not hexadecimal"),
        (HEX[:64] + " " + HEX[65:], "not hexadecimal"),
    ],
)
def test_bad_file_content(tmp_path: Path, text: str, reason: str) -> None:
    path = _write_keys(tmp_path, text)
    with pytest.raises(KeyFileError, match=reason) as raised:
        load_data_keys(tmp_path, environ={})
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("abc", "holds 3 characters"), ("z" * 128, "not hexadecimal")],
)
def test_bad_env_var_is_named(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(KeyFileError, match=reason) as raised:
        load_data_keys(tmp_path, environ={DATA_KEYS_ENV: text})
    assert f"environment variable {DATA_KEYS_ENV}" in str(raised.value)


def test_error_does_not_echo_key_material(tmp_path: Path) -> None:
    _write_keys(tmp_path, HEX[:-1] + "g")
    with pytest.raises(KeyFileError) as raised:
        load_data_keys(tmp_path, environ={})
    assert HEX[:16] not in str(raised.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606])
def test_too_open_permissions(tmp_path: Path, mode: int) -> None:
    path = _write_keys(tmp_path, HEX, mode=mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}") as raised:
        load_data_keys(tmp_path, environ={})
    assert str(path) in str(raised.value)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    _write_keys(tmp_path, HEX, mode=0o400)
    assert load_data_keys(tmp_path, environ={})


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.keys"
    real.write_text(HEX, encoding="ascii")
    real.chmod(0o600)
    path = data_keys_path(tmp_path)
    path.parent.mkdir(mode=0o700)
    path.symlink_to(real)
    with pytest.raises(KeyFileError, match="cannot be opened"):
        load_data_keys(tmp_path, environ={})


def test_directory_in_place_of_the_key_file_is_refused(tmp_path: Path) -> None:
    data_keys_path(tmp_path).mkdir(parents=True)
    with pytest.raises(KeyFileError, match="is not a regular file"):
        load_data_keys(tmp_path, environ={})


def test_create_then_load(tmp_path: Path) -> None:
    path = create_data_keys(tmp_path)
    assert path == data_keys_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text(encoding="ascii")
    assert text.endswith("\n")
    assert text.count("\n") == 1
    keys = load_data_keys(tmp_path, environ={})
    assert keys.encryption_key != keys.fingerprint_key


def test_create_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = create_data_keys(tmp_path)
    assert sorted(os.listdir(path.parent)) == ["data.keys"]


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    path = create_data_keys(tmp_path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        create_data_keys(tmp_path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["data.keys"]


def test_create_makes_fresh_keys_each_home(tmp_path: Path) -> None:
    first = create_data_keys(tmp_path / "a").read_text()
    second = create_data_keys(tmp_path / "b").read_text()
    assert first != second


def test_publishing_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    # Another process may create the file after create_data_keys checked for it.
    tmp = tmp_path / "new"
    tmp.write_text("new")
    target = tmp_path / "data.keys"
    target.write_text("old")
    with pytest.raises(KeyFileError, match="already exists"):
        _secret_file._publish_without_overwrite(tmp, target)
    assert target.read_text() == "old"
