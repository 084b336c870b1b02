"""Independent reference computations, written from the algorithm descriptions.

They use ``cryptography``'s decrepit TripleDES directly, never cardtally or
psec, so a test comparing the two catches a mistake in either.
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes


def _three_key(key: bytes) -> bytes:
    # 24-byte form of the same key, so cryptography does not warn about length.
    return {8: key * 3, 16: key + key[:8], 24: key}[len(key)]


def tdes_encrypt(key: bytes, data: bytes) -> bytes:
    return Cipher(TripleDES(_three_key(key)), modes.ECB()).encryptor().update(data)


def tdes_decrypt(key: bytes, data: bytes) -> bytes:
    return Cipher(TripleDES(_three_key(key)), modes.ECB()).decryptor().update(data)


def xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def cup_ecb_mac(key: bytes, data: bytes) -> bytes:
    """China UnionPay POS "ECB" MAC, step by step as the terminal specs describe it."""
    # Step 1: zero-pad to a multiple of 8 bytes.
    while len(data) % 8:
        data += b"\x00"
    # Step 2: XOR all blocks into one.
    block = bytes(8)
    for i in range(0, len(data), 8):
        block = xor(block, data[i : i + 8])
    # Step 3: expand to 16 upper-case hex characters.
    expanded = block.hex().upper().encode()
    # Step 4: encrypt the first half, XOR with the second half, encrypt again.
    step = tdes_encrypt(key, expanded[:8])
    step = tdes_encrypt(key, xor(step, expanded[8:]))
    # Step 5: expand again and keep the first 8 characters.
    return step.hex().upper().encode()[:8]


def decimalise(hex_digits: str, table: str) -> str:
    return "".join(table[int(digit, 16)] for digit in hex_digits)


def ibm3624_offset(pvk: bytes, table: str, pin: str, validation_data: str) -> str:
    """IBM 3624 offset: (customer PIN - natural PIN) digit by digit, modulo 10."""
    padded = validation_data.ljust(16, "F")
    natural = decimalise(tdes_encrypt(pvk, bytes.fromhex(padded)).hex(), table)
    return "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural, strict=False))
