"""The security package's error types.

Every one is a ``ValueError`` so callers that already turn bad input into a
format error keep working; the subclasses let the switch tell a MAC key that
failed its check value (sign on again) from a malformed PIN block (decline).
No message ever carries a PIN, a key or a clear card number.
"""

from __future__ import annotations


class SecurityError(ValueError):
    """Base of the security package's errors."""


class KeyCheckError(SecurityError):
    """A working key whose check value does not match after unwrapping."""

    def __init__(self, key_name: str, expected_kcv: str, actual_kcv: str) -> None:
        super().__init__(
            f"{key_name} check value mismatch: field says {expected_kcv}, "
            f"unwrapped key gives {actual_kcv} (wrong master key or corrupted field 62)"
        )
        self.key_name = key_name
        self.expected_kcv = expected_kcv
        self.actual_kcv = actual_kcv

    def __reduce__(self) -> tuple[type[KeyCheckError], tuple[str, str, str]]:
        return (type(self), (self.key_name, self.expected_kcv, self.actual_kcv))


class PinBlockError(SecurityError):
    """A PIN block that does not decode as ISO 9564 format 0."""


class KeyFileError(SecurityError):
    """Data-protection keys that cannot be loaded or created from their source."""
