"""Files piguard keeps to itself: private folders and files, and the mode check they share.

Folders piguard creates are 0700 and files 0600 (before the umask, which can only narrow them).
A folder that others may write in, or a key file others may read, is refused: `loose_mode` is
the one test both use. Standard library only: the audit scan workers import it too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

# Any access by the group or by others: what a key file must not allow.
GROUP_OR_OTHER_ACCESS: Final = 0o077
# Writing by the group or by others: in such a folder another user can add, replace or (without
# the sticky bit) remove files, e.g. plant a database or key file before piguard creates its own.
GROUP_OR_OTHER_WRITE: Final = 0o022


def loose_mode(st_mode: int, forbidden: int) -> int | None:
    """The permission bits of `st_mode` when any of `forbidden` is set, else None.

    POSIX only: Windows reports no group or other bits to check, so nothing is loose there.
    """
    if os.name != "posix" or not st_mode & forbidden:
        return None
    return stat.S_IMODE(st_mode)


def private_dir(path: Path) -> None:
    """Create the folder, and each missing parent, 0700; an existing folder is left as it is."""
    try:
        path.mkdir(mode=0o700)
    except FileNotFoundError:
        private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:
        if not path.is_dir():
            raise


def private_file(path: Path) -> None:
    """Create an empty file 0600 if there is none, so that whatever fills it inherits no wider mode.

    SQLite gives its -wal and -shm files the mode of the database file, so those follow.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` to a private file with one O_APPEND write and fsync it (its folder too when
    the file is new), so concurrent writers' lines never interleave and a crash keeps whole lines.
    """
    private_dir(path.parent)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created and os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
