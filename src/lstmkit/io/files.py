"""Files on both sides of every format: atomic no-clobber writing, and the checks a loader makes before it
reads a byte (a regular file, zip members that do not inflate past a bound).

Writing (``atomic_write``): a temp file ``.<name>.<random>.tmp<suffix>`` in the target's folder, fsynced,
then ``os.replace``d into place. The result has the mode a plain ``open(path, "w")`` gives (0666 less the
umask), not mkstemp's 0600. A symlink at ``path`` is written through: its target is replaced and the link
kept, as ``open`` would do (the temp file sits beside the target, so the rename never crosses filesystems).
Temp files of ours that a killed writer left behind (``kill -9`` mid-save) are removed by the next save to
the same path, once they are older than this process.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import time
import zipfile
from pathlib import Path

# zip members (.pt, .keras) may inflate to at most this many times the file's size, plus INFLATE_SLACK:
# torch.save and Keras store their members uncompressed, and a deflate bomb reaches ~1000x
INFLATE_RATIO = 8
INFLATE_SLACK = 16 << 20
MESSAGE_LIMIT = 600  # characters of a foreign library's error message quoted in ours

_STARTED = time.time()  # temp files older than this process belong to a writer that is gone


def check_regular(path, what: str = "file", flag: str | None = None) -> Path:
    """``path`` as a Path, after refusing anything but a regular file (FIFO, device, socket, folder).

    A FIFO would block the reader forever and /dev/zero never ends, so the check comes before any open().
    flag: the command-line flag that gave ``path`` (e.g. "--text"), named first in the message.
    """
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such file") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{where}: is a folder, expected a {what}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else
                "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise ValueError(f"{where}: {kind}, expected a regular {what}")
    return path


def read_text(path, flag: str, what: str = "UTF-8 text file") -> str:
    """The contents of the UTF-8 text file ``path`` (given by the command-line flag ``flag``): a FIFO or device is
    refused before the read (check_regular), another encoding is a ValueError naming the flag and the file."""
    path = check_regular(path, what, flag)
    try:
        with open(path, encoding="utf-8", newline="") as f:  # the characters as they are: "\r\n" stays two
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{flag} {path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8 "
                         "first") from None


def check_zip(path, what: str) -> None:
    """Refuse a zip (``.pt``, ``.keras``) whose members declare more than INFLATE_RATIO x its size + slack.

    The central directory's sizes are what zip readers allocate and stop at, so checking them bounds the
    memory before torch or Keras inflate anything. A file that is not a zip is left to the format's reader.
    """
    path = check_regular(path, what)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    with archive:
        check_zip_members(path, archive, what)


def check_zip_members(path, archive: zipfile.ZipFile, what: str) -> None:
    """check_zip on an archive already open (its central directory read once)."""
    size = os.stat(path).st_size
    infos = archive.infolist()
    declared = sum(info.file_size for info in infos)
    bound = INFLATE_RATIO * size + INFLATE_SLACK
    if declared > bound:
        big = max(infos, key=lambda info: info.file_size)
        raise ValueError(
            f"{path}: the {what}'s zip members inflate to {declared:,} bytes from a {size:,}-byte file "
            f"(member {big.filename[:80]!r}: {big.file_size:,} bytes); refused above {bound:,} bytes "
            f"({INFLATE_RATIO}x the file + {INFLATE_SLACK >> 20} MB)")


def short(message, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` (any object's str) cut to ``limit`` characters, saying how much was left out."""
    text = str(message)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def check_writable(path, overwrite: bool) -> Path:
    """Refuse an existing ``path`` unless ``overwrite`` (FileExistsError, which the CLI maps to exit code 2)."""
    path = Path(path)
    if path.is_dir():  # before "exists": --overwrite would not help
        raise IsADirectoryError(f"{path} is a directory; give the path of a file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if path.exists() and not path.is_file():  # a FIFO or a device (through a symlink too): never replaced by a file
        raise ValueError(f"{path} is not a regular file (a pipe or a device); write to a file instead")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{path}: {folder} is a file, not a folder")
    if not folder.exists():  # found now, not by the temp file's name after the work
        raise FileNotFoundError(f"{path}: the folder {folder} does not exist; create it first")
    return path


def check_not_source(path, source, name: str, what: str = "the input file") -> None:
    """Refuse to write ``path`` when it is ``source``, the file being read (ValueError naming ``name``, the flag
    or argument of ``path``). --overwrite would otherwise let a command replace its own input with its output;
    samefile sees through symlinks and hard links, which a comparison of the names would miss."""
    if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
        raise ValueError(f"{name}: {path} is {what} itself; write to another path (--overwrite replaces other "
                         "files, never the one being read)")


def atomic_write(path, write, overwrite: bool = False) -> Path:
    """Write ``path`` through a temp file in the same folder, fsync it, then os.replace it into place.

    write: called with the temp file's path (same suffix as ``path``, so suffix-checking writers accept it).
    A failing ``write`` leaves no temp file and never touches an existing ``path``. Returns ``path`` (a
    symlink stays a symlink; its target gets the new content).
    """
    path = check_writable(path, overwrite)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    folder = target.parent if str(target.parent) else Path(".")
    _remove_stale_temps(folder, target.name, target.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # what open(path, "w") gives, not mkstemp's (or a writer's) 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        check_writable(path, overwrite)  # a file that appeared meanwhile is still not clobbered
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def _umask() -> int:
    """The process umask, read without changing it where /proc says it (Linux >= 4.7)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief window other threads could see)
    os.umask(mask)
    return mask


def _remove_stale_temps(folder: Path, name: str, suffix: str) -> None:
    """Delete ``.<name>.<8 random chars>.tmp<suffix>`` files in ``folder`` last written before this process
    started: a writer killed mid-save left them (a live writer's temp file is younger than that)."""
    pattern = re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}" + re.escape(".tmp" + suffix) + "$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < _STARTED:
                os.unlink(entry.path)
        except OSError:  # gone already, or not ours to remove
            pass


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
