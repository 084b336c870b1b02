"""Key files on disk: one line of hex, mode 0600 in a 0700 directory, never overwritten.

Every secret a party keeps in its home (data keys, issuer keys) is stored and
read the same way, so the rules live here once.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Final

from cardtally.durable import fsync_directory
from cardtally.security._errors import KeyFileError

_KEYS_DIR_MODE: Final = 0o700
_KEYS_FILE_MODE: Final = 0o600
_GROUP_OTHER_BITS: Final = 0o077
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def parse_hex_secret(text: str, digits: int, source: str) -> bytes:
    """``digits`` hex digits from ``text`` (surrounding whitespace ignored), as bytes."""
    value = text.strip()
    if not value:
        raise KeyFileError(f"{source} is empty; expected {digits} hex digits")
    if len(value) != digits:
        raise KeyFileError(f"{source} holds {len(value)} characters; expected {digits} hex digits")
    if not _HEX_DIGITS.issuperset(value):
        raise KeyFileError(f"{source} is not hexadecimal (expected digits 0-9 and a-f only)")
    return bytes.fromhex(value)


def read_secret_file(path: Path, chars_max: int, create_hint: str) -> str:
    """The text of a key file, refused if group or others can reach it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} is missing; {create_hint}") from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be opened: {exc.strerror}") from None
    # Check the mode of the file we actually opened, not of whatever the path
    # names a moment later.
    status = os.fstat(fd)
    # A directory opens read-only without complaint; only reading it would fail.
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        # No create hint: a new key could not read what the one that belongs here protected.
        raise KeyFileError(f"key file {path} is not a regular file; restore it from your backup")
    with os.fdopen(fd, encoding="ascii", errors="replace") as handle:
        mode = stat.S_IMODE(status.st_mode)
        if mode & _GROUP_OTHER_BITS:
            raise KeyFileError(
                f"key file {path} has mode {mode:04o}, which lets group or others "
                f"reach it; run `chmod 600 {path}`"
            )
        return handle.read(chars_max)


def write_secret_file(path: Path, text: str) -> Path:
    """Create ``path`` holding ``text``, durably and atomically; never overwrites."""
    path.parent.mkdir(mode=_KEYS_DIR_MODE, parents=True, exist_ok=True)
    path.parent.chmod(_KEYS_DIR_MODE)
    if path.exists():
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it")
    # mkstemp creates the file 0600, so the keys are never readable by others,
    # not even for the moment before the final name appears.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _KEYS_FILE_MODE)
        _publish_without_overwrite(tmp, path)
        fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _publish_without_overwrite(tmp: Path, path: Path) -> None:
    # os.replace would be atomic too, but it silently replaces a file another
    # process created after our exists() check, and losing keys makes every
    # stored PAN (or PIN offset) unusable. A hard link is atomic and fails if the
    # name exists.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
