"""The issuer's own keys: PIN verification key (PVK), zone PIN key (ZPK), zone MAC key (ZAK).

* The **PVK** makes and checks IBM 3624 PIN offsets; it never leaves the issuer.
* The **ZPK** protects PIN blocks on the switch-to-issuer link: the switch
  translates each terminal's PIN block from the terminal's PIN key to the ZPK,
  and the issuer decrypts under the ZPK.
* The **ZAK** authenticates the messages on that link: the switch signs every
  request and advice it sends the issuer (X9.19, field 64 or 128), the issuer
  signs every answer, and each side refuses what does not verify. Without it a
  digit flipped in transit (an amount, a terminal ID) would be acted on.

In a bank the zone keys are exchanged in a key ceremony; here both parties of
one home read them from the same file.

Like the data keys, never from source code or the database: from
``CARDTALLY_ISSUER_KEYS`` if set, else ``<home>/keys/issuer.keys``, one line of
96 hex digits (PVK, ZPK then ZAK, 16 bytes each), mode 0600. A line of 64 hex
digits (PVK then ZPK: a key file written before the link MAC existed) still
loads, with no ZAK: the link then carries no MAC, as it did then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cardtally.security._errors import KeyFileError, SecurityError
from cardtally.security._keys import kcv_hex, random_double_key, require_double_key
from cardtally.security._secret_file import parse_hex_secret, read_secret_file, write_secret_file

ISSUER_KEYS_ENV: Final = "CARDTALLY_ISSUER_KEYS"
_KEY_BYTES: Final = 16
#: PVK, ZPK and ZAK.
_HEX_DIGITS: Final = 6 * _KEY_BYTES
#: PVK and ZPK only: a key file from before the zone MAC key.
_TWO_KEY_HEX_DIGITS: Final = 4 * _KEY_BYTES
_CREATE_HINT: Final = (
    f"create it with 'cardtally init' or set {ISSUER_KEYS_ENV} "
    f"({_HEX_DIGITS} hex digits: PVK, ZPK, then ZAK)"
)


@dataclass(frozen=True, slots=True)
class IssuerKeys:
    """PIN verification key, zone PIN key and zone MAC key, all double-length TDES.

    ``zak`` is None for a key file from before the link MAC: the switch-issuer link
    then carries no MAC.
    """

    pvk: bytes
    zpk: bytes
    zak: bytes | None = None

    def __post_init__(self) -> None:
        require_double_key(self.pvk, "PIN verification key")
        require_double_key(self.zpk, "zone PIN key")
        if self.zak is not None:
            require_double_key(self.zak, "zone MAC key")
            # Key separation: a MAC key that is also a PIN key would turn one into an oracle
            # for the other.
            if self.zak in (self.pvk, self.zpk):
                raise SecurityError("zone MAC key must differ from the PVK and the ZPK")

    def __repr__(self) -> str:
        zak = "None" if self.zak is None else f"<kcv {kcv_hex(self.zak)}>"
        return (
            f"IssuerKeys(pvk=<kcv {kcv_hex(self.pvk)}>, zpk=<kcv {kcv_hex(self.zpk)}>, zak={zak})"
        )


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
    """Write a fresh PVK, ZPK and ZAK to ``<home>/keys/issuer.keys``; never overwrites one."""
    keys = random_double_key() + random_double_key() + random_double_key()
    return write_secret_file(issuer_keys_path(home), keys.hex().upper() + "\n")


def _parse(text: str, source: str) -> IssuerKeys:
    length = len(text.strip())
    if length == _TWO_KEY_HEX_DIGITS:
        raw = parse_hex_secret(text, _TWO_KEY_HEX_DIGITS, source)
        return IssuerKeys(pvk=raw[:_KEY_BYTES], zpk=raw[_KEY_BYTES:])
    if length and length != _HEX_DIGITS:
        raise KeyFileError(
            f"{source} holds {length} characters; expected {_HEX_DIGITS} hex digits "
            f"(PVK, ZPK and ZAK), or {_TWO_KEY_HEX_DIGITS} (PVK and ZPK, no link MAC)"
        )
    raw = parse_hex_secret(text, _HEX_DIGITS, source)
    try:
        return IssuerKeys(
            pvk=raw[:_KEY_BYTES], zpk=raw[_KEY_BYTES : 2 * _KEY_BYTES], zak=raw[2 * _KEY_BYTES :]
        )
    except SecurityError as exc:
        raise KeyFileError(f"{source}: {exc}") from None
