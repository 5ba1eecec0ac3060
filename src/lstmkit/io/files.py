"""Atomic, no-clobber file writing shared by every format."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def check_writable(path, overwrite: bool) -> Path:
    """Refuse an existing ``path`` unless ``overwrite`` (FileExistsError, which the CLI maps to exit code 2)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    return path


def atomic_write(path, write, overwrite: bool = False) -> Path:
    """Write ``path`` through a temp file in the same folder, fsync it, then os.replace it into place.

    write: called with the temp file's path (same suffix as ``path``, so suffix-checking writers accept it).
    A failing ``write`` leaves no temp file and never touches an existing ``path``.
    """
    path = check_writable(path, overwrite)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        check_writable(path, overwrite)  # a file that appeared meanwhile is still not clobbered
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def _fsync_dir(folder) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
