"""Administrator and unlock passwords: stored as scrypt hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

# RFC 7914 parameters sized for an interactive check on a small device (16 MiB, ~50 ms).
_N: Final = 2**14
_R: Final = 8
_P: Final = 1
_SALT_BYTES: Final = 16
_PASSWORD_CHARS_MIN: Final = 4
_PASSWORD_CHARS_MAX: Final = 32


def check_password_text(password: str, what: str) -> None:
    """Refuse a password a terminal keypad could not take, with the reason."""
    if not _PASSWORD_CHARS_MIN <= len(password) <= _PASSWORD_CHARS_MAX:
        raise ValueError(
            f"the {what} password must have {_PASSWORD_CHARS_MIN} to {_PASSWORD_CHARS_MAX} "
            f"characters, not {len(password)}"
        )


def hash_password(password: str, *, cost_n: int = _N, salt: bytes | None = None) -> str:
    """An scrypt hash that carries its own parameters, so a check needs nothing else.

    ``cost_n`` and ``salt`` are for the simulator only: it checks thousands of passwords a
    second and must replay byte for byte, so it hashes with the least cost and a seeded salt.
    """
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=cost_n, r=_R, p=_P)
    return f"scrypt${cost_n}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    scheme, n, r, p, salt, digest = stored.split("$")
    assert scheme == "scrypt", f"unknown password hash scheme {scheme!r}"
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(candidate, bytes.fromhex(digest))
