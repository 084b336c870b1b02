"""Making a file's new name survive a power cut."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Sync a directory, so a file created or renamed in it is durable (POSIX).

    Syncing the file itself makes its bytes durable, not its name: a crash after a rename can
    otherwise leave the old name, or none.
    """
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
