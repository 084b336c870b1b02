"""The one door between cardtally and psec's Triple DES.

psec 1.3 builds its ciphers from ``cryptography.hazmat.primitives...TripleDES``.
``cryptography`` has moved TripleDES to ``cryptography.hazmat.decrepit`` and warns
(``CryptographyDeprecationWarning: TripleDES has been moved...``) every time the
old alias is touched. That warning is about psec's import path, not about our use
of TDES, which the card networks still mandate for PIN and MAC keys. So we
silence exactly that warning, only around psec calls, and only here:

* deliberate: the decision and its reason live in this docstring;
* narrow: one category, one message prefix, restored on exit by
  ``warnings.catch_warnings``; any other warning still fails the test suite;
* in one place: no other cardtally module calls psec's DES-backed functions,
  so when psec moves to the decrepit module (where TripleDES will live) this
  file shrinks and nothing else changes.

``cryptography`` also deprecates handing TripleDES an 8- or 16-byte key. Rather
than silence that second warning we pass the equivalent 24-byte key (K1K2K1 for
a double-length key, KKK for a single one): keying options 2 and 3 are defined
as exactly those triples, so every result is bit-for-bit unchanged.

``warnings.catch_warnings`` swaps process-wide filters, so it is not thread
safe; the cores are single-threaded, and worker threads that use this module
may at worst see psec's deprecation warning, never lose another one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psec
from cryptography.utils import CryptographyDeprecationWarning

DES_BLOCK_BYTES: Final = 8
_DES_KEY_LENGTHS: Final = frozenset({8, 16, 24})
_MOVED_WARNING_PREFIX: Final = "TripleDES has been moved"


@contextmanager
def _psec_tdes_calls() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            category=CryptographyDeprecationWarning,
            message=_MOVED_WARNING_PREFIX,
        )
        yield


def three_key_form(key: bytes) -> bytes:
    """The 24-byte TDES key equivalent to a single-, double- or triple-length key."""
    if len(key) not in _DES_KEY_LENGTHS:
        raise ValueError(f"a DES key must be 8, 16 or 24 bytes, got {len(key)}")
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    return key


def encrypt_ecb(key: bytes, data: bytes) -> bytes:
    """TDES-ECB encryption of ``data`` (a whole number of 8-byte blocks)."""
    with _psec_tdes_calls():
        result: bytes = psec.des.encrypt_tdes_ecb(three_key_form(key), data)
    return result


def decrypt_ecb(key: bytes, data: bytes) -> bytes:
    """TDES-ECB decryption of ``data`` (a whole number of 8-byte blocks)."""
    with _psec_tdes_calls():
        result: bytes = psec.des.decrypt_tdes_ecb(three_key_form(key), data)
    return result


def key_check_value(key: bytes, length: int = 4) -> bytes:
    """The first ``length`` bytes of the key's encryption of an all-zero block."""
    with _psec_tdes_calls():
        result: bytes = psec.des.generate_kcv(three_key_form(key), length)
    return result


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3, padding method 1, 8 bytes (ANSI X9.19).

    ``key`` is the double-length MAC key: its halves are K (chaining) and K'
    (output transformation), as the standard names them.
    """
    if len(key) != 16:
        raise ValueError(f"a retail MAC key must be 16 bytes, got {len(key)}")
    with _psec_tdes_calls():
        result: bytes = psec.mac.generate_retail_mac(
            three_key_form(key[:8]), three_key_form(key[8:]), data, padding=1
        )
    return result


def ibm3624_offset(pvk: bytes, decimalisation_table: str, pin: str, validation_data: str) -> str:
    """The IBM 3624 offset that turns the natural PIN into ``pin``.

    ``validation_data`` is used as given and right-padded with ``F`` to 16 hex
    digits; PIN length fixes the offset length.
    """
    with _psec_tdes_calls():
        result: str = psec.pin.generate_ibm3624_offset(
            three_key_form(pvk),
            conversion_table=decimalisation_table,
            pin=pin,
            pan=validation_data,
            pan_verify_offset=0,
            pan_verify_length=len(validation_data),
            pan_pad="F",
        )
    return result
