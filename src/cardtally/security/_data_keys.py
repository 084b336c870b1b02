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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cardtally.security._errors import SecurityError
from cardtally.security._secret_file import parse_hex_secret, read_secret_file, write_secret_file

DATA_KEYS_ENV: Final = "CARDTALLY_DATA_KEYS"
DATA_KEY_BYTES: Final = 32
DATA_KEYS_HEX_DIGITS: Final = 4 * DATA_KEY_BYTES
_CREATE_HINT: Final = f"create it with 'cardtally init' or set {DATA_KEYS_ENV}"


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
    raw = parse_hex_secret(text, DATA_KEYS_HEX_DIGITS, source)
    return DataKeys(encryption_key=raw[:DATA_KEY_BYTES], fingerprint_key=raw[DATA_KEY_BYTES:])


def load_data_keys(home: Path, environ: Mapping[str, str] = os.environ) -> DataKeys:
    """The data keys from ``CARDTALLY_DATA_KEYS`` if set, else from ``<home>/keys/data.keys``."""
    if DATA_KEYS_ENV in environ:
        return _parse(environ[DATA_KEYS_ENV], f"environment variable {DATA_KEYS_ENV}")
    path = data_keys_path(home)
    text = read_secret_file(path, DATA_KEYS_HEX_DIGITS + 64, _CREATE_HINT)
    return _parse(text, f"data key file {path}")


def create_data_keys(home: Path) -> Path:
    """Write fresh data keys to ``<home>/keys/data.keys``; never overwrites one."""
    return write_secret_file(data_keys_path(home), secrets.token_hex(2 * DATA_KEY_BYTES) + "\n")
