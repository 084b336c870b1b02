"""The one door between cardtally and Triple DES.

Two routes lead through it, and no other cardtally module touches TDES:

* Block operations and MACs (ECB, check values, the X9.19 retail MAC and the CBC
  step of the CUP MAC) run here on ``cryptography``'s TripleDES from
  ``cryptography.hazmat.decrepit``, its supported home. They are on every
  swipe's path (a PIN block, several MACs), so they are written to use as few
  cipher operations as the algorithm allows; see :func:`retail_mac`.
* The IBM 3624 PIN offset still goes through psec, and psec also remains the
  reference the property tests compare our MACs and block operations against.

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

Our own calls use the decrepit class, which does not warn, so they need no filter.

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
from functools import lru_cache
from typing import Final

import psec
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.utils import CryptographyDeprecationWarning

DES_BLOCK_BYTES: Final = 8
_DES_KEY_LENGTHS: Final = frozenset({8, 16, 24})
_MOVED_WARNING_PREFIX: Final = "TripleDES has been moved"
_ZERO_BLOCK: Final = bytes(DES_BLOCK_BYTES)
# Distinct keys whose cipher objects stay cached. A terminal uses one MAC key and
# one PIN key, a switch one MAC key per signed-on terminal; a cache miss costs only
# a few microseconds, so a busy switch with more terminals than this loses little.
_CACHED_KEYS: Final = 256


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


# Cipher objects, not cipher contexts, are cached: a Cipher only holds the key and
# mode and hands out a fresh context per call, so sharing one between the server's
# event-loop thread and its worker lane is safe, while a shared context (which
# carries CBC chaining state) would not be. A cached entry keeps its key in memory
# until evicted; these are the working keys the process holds anyway, and the cache
# never shows them (an lru_cache reports hit counts, not keys).
@lru_cache(maxsize=_CACHED_KEYS)
def _ecb(key24: bytes) -> Cipher[modes.ECB]:
    # ECB is what the standards prescribe for these uses (PIN blocks, wrapped keys,
    # check values, the MAC's final block); nothing here encrypts bulk data with it.
    return Cipher(TripleDES(key24), modes.ECB())  # noqa: S305 - see above


@lru_cache(maxsize=_CACHED_KEYS)
def _cbc_zero_iv(key24: bytes) -> Cipher[modes.CBC]:
    return Cipher(TripleDES(key24), modes.CBC(_ZERO_BLOCK))


def _require_whole_blocks(data: bytes) -> None:
    # Worded as psec words it, so callers see the same error as before.
    if not data or len(data) % DES_BLOCK_BYTES:
        raise ValueError(
            f"Data length ({len(data)}) must be multiple of DES block size {DES_BLOCK_BYTES}."
        )


def _xor_block(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left) ^ int.from_bytes(right)).to_bytes(DES_BLOCK_BYTES)


def encrypt_ecb(key: bytes, data: bytes) -> bytes:
    """TDES-ECB encryption of ``data`` (a whole number of 8-byte blocks)."""
    cipher = _ecb(three_key_form(key))
    _require_whole_blocks(data)
    return cipher.encryptor().update(data)


def decrypt_ecb(key: bytes, data: bytes) -> bytes:
    """TDES-ECB decryption of ``data`` (a whole number of 8-byte blocks)."""
    cipher = _ecb(three_key_form(key))
    _require_whole_blocks(data)
    return cipher.decryptor().update(data)


def key_check_value(key: bytes, length: int = 4) -> bytes:
    """The first ``length`` bytes of the key's encryption of an all-zero block."""
    return encrypt_ecb(key, _ZERO_BLOCK)[:length]


def cbc_last_block(key: bytes, data: bytes) -> bytes:
    """The last block of TDES-CBC encryption of ``data`` under a zero IV.

    ``data`` must be a whole number of blocks (no padding is added): this is the
    chained "encrypt, XOR the next block, encrypt again" that MACs are built from.
    """
    cipher = _cbc_zero_iv(three_key_form(key))
    _require_whole_blocks(data)
    return cipher.encryptor().update(data)[-DES_BLOCK_BYTES:]


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3, padding method 1, 8 bytes (ANSI X9.19).

    ``key`` is the double-length MAC key: its halves are K (chaining) and K'
    (output transformation), as the standard names them.

    The standard chains every block with single DES under K, then transforms the
    last result H as E_K(D_K'(H)). The last chaining step and the output
    transformation together are E_K(D_K'(E_K(x ^ H'))) for the last padded block
    x and the previous chaining value H': exactly TDES-EDE under K|K'|K, the
    key's own three-key form. So the MAC takes two cipher operations: one CBC
    pass under K|K|K (which is single DES under K) over all blocks but the last,
    and one TDES block encryption under the full key.
    """
    if len(key) != 16:
        raise ValueError(f"a retail MAC key must be 16 bytes, got {len(key)}")
    chaining_key = key[:DES_BLOCK_BYTES]
    # Padding method 1: zeros up to a whole block; empty data is one zero block.
    padded = data + bytes(-len(data) % DES_BLOCK_BYTES) if data else _ZERO_BLOCK
    last = padded[-DES_BLOCK_BYTES:]
    if len(padded) > DES_BLOCK_BYTES:
        chained = _cbc_zero_iv(chaining_key * 3).encryptor().update(padded[:-DES_BLOCK_BYTES])
        last = _xor_block(last, chained[-DES_BLOCK_BYTES:])
    return _ecb(key + chaining_key).encryptor().update(last)


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
