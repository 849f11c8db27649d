"""Files and folders only their owner can read: files written never through a symbolic link
and never over an existing file unless asked to replace it; private folders and databases."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from ledger.errors import LedgerError

PRIVATE = 0o600
PRIVATE_FOLDER = 0o700
# O_NOFOLLOW: the last component is never followed, even if a link appears after the check.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class FileRefused(LedgerError):
    """A file is not written: it exists (and may not be replaced) or is a symbolic link."""

    code = "file_exists"


class SymlinkRefused(FileRefused):
    """The path is a symbolic link, which is never written through nor replaced."""

    code = "symlink"


def write_private(path: Path, data: bytes, *, replace: bool = False, sync: bool = True) -> None:
    """Write `data` to a new file of mode 0600 at `path`; with `replace`, an existing regular
    file is replaced atomically (readers see the old file or the new one, never a part).

    `sync=False` skips the fsync, for a file that is rewritten often and whose loss costs
    little (a subscriber's position: at worst a few events are delivered again)."""
    try:
        found = path.lstat()
    except FileNotFoundError:
        found = None
    if found is not None and stat.S_ISLNK(found.st_mode):
        raise SymlinkRefused(f"{path} is a symbolic link; remove it or choose another path")
    if found is None or not replace:
        _create(path, data, sync)
        return
    if not stat.S_ISREG(found.st_mode):
        raise FileRefused(f"{path} exists and is not a regular file")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _create(temporary, data, sync)
    try:
        os.replace(temporary, path)  # rename(2) replaces a link itself, never its target
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create(path: Path, data: bytes, sync: bool) -> None:
    try:
        fd = os.open(path, _CREATE, PRIVATE)
    except FileExistsError:
        if path.is_symlink():
            raise SymlinkRefused(
                f"{path} is a symbolic link; remove it or choose another path"
            ) from None
        raise FileRefused(f"{path} exists; it is not overwritten") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def private_directory(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (an existing one is left as it is)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:
            continue  # made meanwhile by another process
        folder.chmod(PRIVATE_FOLDER)  # mkdir's mode is filtered by the umask


def private_database(path: Path) -> None:
    """Create an empty SQLite database file of mode 0600 unless one exists; SQLite gives its WAL
    and shared-memory files the database file's mode, so they are private too."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE))
