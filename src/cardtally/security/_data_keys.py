"""Keys that protect card numbers at rest, and where they come from.

Never from source code or the database. In order of precedence:

1. the environment variable ``CARDTALLY_DATA_KEYS`` (containers, secret stores);
2. the file ``<home>/keys/data.keys``, one line, mode 0600 in a 0700 directory.

Either holds 128 hex digits: the AES-256-GCM key (first 64) followed by the
HMAC-SHA256 fingerprint key (last 64). Two independent keys, so a fingerprint
index can be rebuilt or shared without exposing what decrypts the PANs.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cardtally.security._errors import KeyFileError, SecurityError

DATA_KEYS_ENV: Final = "CARDTALLY_DATA_KEYS"
DATA_KEY_BYTES: Final = 32
DATA_KEYS_HEX_DIGITS: Final = 4 * DATA_KEY_BYTES
_KEYS_DIR_MODE: Final = 0o700
_KEYS_FILE_MODE: Final = 0o600
_GROUP_OTHER_BITS: Final = 0o077
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class DataKeys:
    """AES-256-GCM key for PANs and HMAC-SHA256 key for their fingerprints."""

    encryption_key: bytes
    fingerprint_key: bytes

    def __post_init__(self) -> None:
        for name, key in (
            ("encryption", self.encryption_key),
            ("fingerprint", self.fingerprint_key),
        ):
            if len(key) != DATA_KEY_BYTES:
                raise SecurityError(f"{name} key must be {DATA_KEY_BYTES} bytes, got {len(key)}")

    def __repr__(self) -> str:
        return "DataKeys(<hidden>)"


def data_keys_path(home: Path) -> Path:
    return home / "keys" / "data.keys"


def _parse(text: str, source: str) -> DataKeys:
    value = text.strip()
    if not value:
        raise KeyFileError(f"{source} is empty; expected {DATA_KEYS_HEX_DIGITS} hex digits")
    if len(value) != DATA_KEYS_HEX_DIGITS:
        raise KeyFileError(
            f"{source} holds {len(value)} characters; expected {DATA_KEYS_HEX_DIGITS} hex digits"
        )
    if not _HEX_DIGITS.issuperset(value):
        raise KeyFileError(f"{source} is not hexadecimal (expected digits 0-9 and a-f only)")
    raw = bytes.fromhex(value)
    return DataKeys(encryption_key=raw[:DATA_KEY_BYTES], fingerprint_key=raw[DATA_KEY_BYTES:])


def _read_key_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(
            f"data key file {path} is missing; create it with "
            f"'cardtally init' or set {DATA_KEYS_ENV}"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"data key file {path} cannot be opened: {exc.strerror}") from None
    # Check the mode of the file we actually opened, not of whatever the path
    # names a moment later.
    with os.fdopen(fd, encoding="ascii", errors="replace") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & _GROUP_OTHER_BITS:
            raise KeyFileError(
                f"data key file {path} has mode {mode:04o}, which lets group or others "
                f"reach it; run `chmod 600 {path}`"
            )
        return handle.read(DATA_KEYS_HEX_DIGITS + 64)


def load_data_keys(home: Path, environ: Mapping[str, str] = os.environ) -> DataKeys:
    """The data keys from ``CARDTALLY_DATA_KEYS`` if set, else from ``<home>/keys/data.keys``."""
    if DATA_KEYS_ENV in environ:
        return _parse(environ[DATA_KEYS_ENV], f"environment variable {DATA_KEYS_ENV}")
    path = data_keys_path(home)
    return _parse(_read_key_file(path), f"data key file {path}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_data_keys(home: Path) -> Path:
    """Write fresh data keys to ``<home>/keys/data.keys``; never overwrites one."""
    path = data_keys_path(home)
    path.parent.mkdir(mode=_KEYS_DIR_MODE, parents=True, exist_ok=True)
    path.parent.chmod(_KEYS_DIR_MODE)
    if path.exists():
        raise KeyFileError(f"data key file {path} already exists; refusing to overwrite it")
    # mkstemp creates the file 0600, so the keys are never readable by others,
    # not even for the moment before the final name appears.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".data.keys.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(2 * DATA_KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _KEYS_FILE_MODE)
        _publish_without_overwrite(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _publish_without_overwrite(tmp: Path, path: Path) -> None:
    # os.replace would be atomic too, but it silently replaces a file another
    # process created after our exists() check, and losing data keys makes every
    # stored PAN unreadable. A hard link is atomic and fails if the name exists.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError(
            f"data key file {path} already exists; refusing to overwrite it"
        ) from None
