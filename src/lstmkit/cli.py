"""The ``lstmkit`` command: subcommands (one module each in ``lstmkit.commands``) that call the library.

Errors end the command with one line on stderr, ``lstmkit <command>: error: <what>``, and an exit status
(docs/errors.md, "Exit status"); ``--debug`` (anywhere on the line) prints the traceback as well:

    0    success
    1    an internal error: a bug in lstmkit (please report it with the --debug output)
    2    bad input: arguments, files, data (argparse's usage errors are 2 as well)
    3    the system refused: disk full, permission, read-only or cross-device folder, out of memory,
         a missing optional dependency
    130  interrupted (Ctrl-C); a training run says which checkpoint holds it and how to resume
    141  the reader of the output went away (``lstmkit explain ... | head``): stopped quietly, as Unix tools do
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import shlex
import sys
import traceback

# each name is a module in lstmkit/commands with register(subparsers)
COMMANDS = ("summary", "demo", "classify", "forecast", "generate", "predict", "convert", "report", "explain")
OK, INTERNAL, BAD_INPUT, SYSTEM, INTERRUPTED, CLOSED_PIPE = 0, 1, 2, 3, 130, 128 + 13  # 13: SIGPIPE
# OSErrors that say the user's input is wrong (a path), not that the system is out of something
_INPUT_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
# the flags that set how much memory a command allocates, named when an allocation fails
SIZE_FLAGS = ("input_size", "hidden_size", "proj_size", "num_layers", "embed_dim", "input_length", "seq_len",
              "batch_size")
_HINTS = {errno.ENOSPC: "free some space, then rerun (a training run continues with --resume)",
          errno.EXDEV: "keep --out and its files on one filesystem",
          errno.EROFS: "choose a writable --out", errno.EACCES: "choose a folder you can write to"}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="lstmkit", description="LSTM and GRU networks: reference, engine, tools.")
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the Python traceback of an error too "
                                                             "(accepted anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lstmkit.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"lstmkit {args.command}: interrupted (Ctrl-C){_where_run_stands(args, argv)}", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every error becomes one line; --debug shows the traceback
        if isinstance(e, BrokenPipeError) and _stdout_closed():  # not another pipe's (a child process's)
            return CLOSED_PIPE
        if debug:
            traceback.print_exc()
        status, text = (SYSTEM, _out_of_memory(e, args)) if _is_out_of_memory(e) else describe_error(e)
        _drop_empty_run_dir(args)
        print(f"lstmkit {args.command}: error: {text}", file=sys.stderr)
        return status


def _stdout_closed() -> bool:
    """Whether stdout's reader went away (a pipe's write end reports POLLERR then); if so, stdout now points at
    os.devnull, so the flush at exit does not fail again (Python's documented recipe for SIGPIPE)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLERR)
        closed = bool(poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return closed


def _drop_empty_run_dir(args) -> None:
    """A task run that failed before writing any file leaves no empty folder behind (only one it made itself;
    empty folders it made inside, such as a member's checkpoint folder when the disk was full, go with it)."""
    out = getattr(args, "run_dir", None)
    if not (out and getattr(args, "made_run_dir", False) and os.path.isdir(out)):
        return
    try:
        for root, dirs, files in os.walk(out, topdown=False):
            if files or os.listdir(root):  # a file anywhere, or a folder left non-empty: keep the rest
                return
            os.rmdir(root)
    except OSError:
        pass  # the error being reported matters more than the folder


def _is_out_of_memory(e: BaseException) -> bool:
    """A failed allocation: MemoryError (NumPy's too), torch.OutOfMemoryError (a GPU's), or torch's CPU
    allocator, which raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e)))


def _out_of_memory(e: BaseException, args) -> str:
    """The line for a failed allocation: the bytes asked for where the allocator says, and the size flags of
    the command with their values, since an absurd size (--hidden-size 99999999999) is the usual cause."""
    from .io.files import short

    asked = re.search(r"allocate (\d+) bytes", str(e))
    what = f"{int(asked.group(1)):,} bytes asked for" if asked else short(f"{type(e).__name__}: {e}", 200)
    sizes = ", ".join(f"--{name.replace('_', '-')} {getattr(args, name)}" for name in SIZE_FLAGS
                      if getattr(args, name, None))
    return _one_line(f"out of memory ({what}){f' with {sizes}' if sizes else ''}; give smaller sizes")


def describe_error(e: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an exception that ended a command."""
    from .io.files import short

    if isinstance(e, (ValueError, TypeError) + _INPUT_OS_ERRORS):
        return BAD_INPUT, _one_line(short(e))
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        name = errno.errorcode.get(e.errno, "")
        where = f": {e.filename}" if e.filename else ""
        hint = _hint(e)
        text = f"{what}{f' ({name})' if name else ''}{where}{f'; {hint}' if hint else ''}" if e.strerror else what
        return SYSTEM, _one_line(short(text))
    if isinstance(e, ImportError):  # (a failed allocation is main's: _out_of_memory)
        return SYSTEM, _one_line(short(e))
    return INTERNAL, _one_line(short(f"internal error ({type(e).__name__}: {e}); rerun with --debug for the "
                                     "traceback and please report it"))


def _hint(e: OSError) -> str:
    """The advice for an OSError. Permission denied on a path that exists and that this process may not read
    is an input that cannot be read (a file given to read, a run folder), not an output folder to change."""
    denied = e.errno in (errno.EACCES, errno.EPERM) and e.filename
    if denied and os.path.exists(e.filename) and not os.access(e.filename, os.R_OK):
        return "lstmkit may not read it: check its permissions, or give a copy you can read"
    return _HINTS.get(e.errno, "")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _where_run_stands(args, argv: list[str]) -> str:
    """For an interrupted training run: which checkpoint holds it and the command that continues it."""
    out = getattr(args, "run_dir", None)
    if not out:
        return ""
    last = _latest_checkpoint(out)
    command = [a for a in argv if a != "--overwrite"]
    command += [] if "--resume" in command else ["--resume"]
    command += [] if any(a == "--out" or a.startswith("--out=") for a in command) else ["--out", out]
    resume = "lstmkit " + shlex.join(command)
    if last is None:
        return f"; no checkpoint in {out} yet (the first epoch had not ended): start again, with --overwrite to " \
               "reuse that folder"
    return f"; {last}; continue with: {resume}"


def _latest_checkpoint(out: str) -> str | None:
    """'<path> holds epoch N' for the newest last.safetensors in the run folder (or a member-k folder)."""
    import json

    from .io.safetensors import read_metadata

    from .tasks.runio import run_checkpoints

    try:
        paths = run_checkpoints(out)
    except OSError:
        return None
    if not paths:
        return None
    newest = max(paths, key=os.path.getmtime)
    try:
        epoch = json.loads(read_metadata(newest)["trainer"])["epoch"]
    except (ValueError, KeyError, TypeError):
        return f"the last checkpoint is {newest}"
    return f"{newest} holds epoch {epoch}"


if __name__ == "__main__":
    sys.exit(main())
