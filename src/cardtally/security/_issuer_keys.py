"""The issuer's own keys: PIN verification key (PVK) and zone PIN key (ZPK).

* The **PVK** makes and checks IBM 3624 PIN offsets; it never leaves the issuer.
* The **ZPK** protects PIN blocks on the switch-to-issuer link: the switch
  translates each terminal's PIN block from the terminal's PIN key to the ZPK,
  and the issuer decrypts under the ZPK. In a bank the ZPK is exchanged in a key
  ceremony; here both parties of one home read it from the same file.

Like the data keys, never from source code or the database: from
``CARDTALLY_ISSUER_KEYS`` if set, else ``<home>/keys/issuer.keys``, one line of
64 hex digits (PVK then ZPK, 16 bytes each), mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cardtally.security._keys import kcv_hex, random_double_key, require_double_key
from cardtally.security._secret_file import parse_hex_secret, read_secret_file, write_secret_file

ISSUER_KEYS_ENV: Final = "CARDTALLY_ISSUER_KEYS"
_KEY_BYTES: Final = 16
_HEX_DIGITS: Final = 4 * _KEY_BYTES
_CREATE_HINT: Final = f"create it with 'cardtally init' or set {ISSUER_KEYS_ENV}"


@dataclass(frozen=True, slots=True)
class IssuerKeys:
    """PIN verification key and zone PIN key, both double-length TDES."""

    pvk: bytes
    zpk: bytes

    def __post_init__(self) -> None:
        require_double_key(self.pvk, "PIN verification key")
        require_double_key(self.zpk, "zone PIN key")

    def __repr__(self) -> str:
        return f"IssuerKeys(pvk=<kcv {kcv_hex(self.pvk)}>, zpk=<kcv {kcv_hex(self.zpk)}>)"


def issuer_keys_path(home: Path) -> Path:
    return home / "keys" / "issuer.keys"


def load_issuer_keys(home: Path, environ: Mapping[str, str] = os.environ) -> IssuerKeys:
    """The issuer keys from ``CARDTALLY_ISSUER_KEYS`` if set, else from the home's key file."""
    if ISSUER_KEYS_ENV in environ:
        source = f"environment variable {ISSUER_KEYS_ENV}"
        return _parse(environ[ISSUER_KEYS_ENV], source)
    path = issuer_keys_path(home)
    return _parse(read_secret_file(path, _HEX_DIGITS + 64, _CREATE_HINT), f"issuer key file {path}")


def create_issuer_keys(home: Path) -> Path:
    """Write a fresh PVK and ZPK to ``<home>/keys/issuer.keys``; never overwrites one."""
    text = (random_double_key() + random_double_key()).hex().upper() + "\n"
    return write_secret_file(issuer_keys_path(home), text)


def _parse(text: str, source: str) -> IssuerKeys:
    raw = parse_hex_secret(text, _HEX_DIGITS, source)
    return IssuerKeys(pvk=raw[:_KEY_BYTES], zpk=raw[_KEY_BYTES:])
