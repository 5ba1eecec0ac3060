"""Where a run's results go: the output folder (never over the user's data), the comparison table
printed on the terminal, the JSON results file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path


def prepare_out(out: str | None, task: str, overwrite: bool = False, resume: bool = False) -> str:
    """Return the run folder, created. Default ``runs/<task>-<timestamp>`` (a fresh one).

    An existing non-empty folder is refused (FileExistsError) unless ``overwrite`` or ``resume`` (which
    continues the checkpoints already there).
    """
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = os.path.join("runs", f"{task}-{stamp}")
        k = 1
        while os.path.exists(out):
            out = os.path.join("runs", f"{task}-{stamp}-{k}")
            k += 1
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out {out} is a file, not a folder")
    if os.path.isdir(out) and os.listdir(out) and not (overwrite or resume):
        raise FileExistsError(f"--out {out} exists and is not empty; pass --overwrite to write into it "
                              "(or --resume to continue its run)")
    if resume and not os.path.isdir(out):
        raise FileNotFoundError(f"--resume: no run folder at {out}")
    if resume:
        _check_resumable(out, task)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # checked now, not after an epoch of training
            pass
    except OSError as e:
        raise _out_error(out, e) from None
    return out


def _out_error(out: str, e: OSError) -> OSError:
    """The OSError of making or writing --out, as one line naming the folder (and the file in the way)."""
    if isinstance(e, (NotADirectoryError, FileExistsError)):
        parent = next((p for p in Path(out).parents if p.exists() and not p.is_dir()), None)
        where = f"{parent} is a file, not a folder" if parent else e.strerror
        return NotADirectoryError(f"--out {out}: cannot make this folder: {where}")
    return type(e)(e.errno, f"--out {out}: cannot write there: {e.strerror}")


def run_checkpoints(out: str) -> list[str]:
    """The last.safetensors files of a run folder: its own, then each member-k folder's, those that exist.
    OSError when ``out`` cannot be listed."""
    found = [os.path.join(root, "last.safetensors") for root in [out, *sorted(
        os.path.join(out, d) for d in os.listdir(out) if d.startswith("member-"))]]
    return [p for p in found if os.path.isfile(p)]


def _check_resumable(out: str, task: str) -> None:
    """Refuse --resume on a folder holding another task's run (read from its checkpoints' metadata)."""
    from ..io.safetensors import read_metadata

    found = run_checkpoints(out)
    other = read_metadata(found[0]).get("task") if found else task  # none yet: the task's fit decides
    if other != task:
        raise ValueError(f"--resume: {out} holds a {other} run ({found[0]}), not a {task} run")


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON (NaN/inf become null), atomically (``lstmkit.io.files.atomic_write``)."""
    from ..io.files import atomic_write

    text = json.dumps(_clean(obj), indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not hasattr(obj, "__len__"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_table(rows: list[dict], columns: list[str], floatfmt: str = "{:.3f}") -> str:
    """A plain-text table: one dict per row, ``columns`` in order (missing cells blank)."""
    def cell(v):
        if isinstance(v, float):
            return "nan" if not math.isfinite(v) else floatfmt.format(v)
        return "" if v is None else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(rows: list[dict], columns: list[str], floatfmt: str = "{:.3f}") -> str:
    """The same table in GitHub markdown."""
    def cell(v):
        return floatfmt.format(v) if isinstance(v, float) else ("" if v is None else str(v))

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    from .._optional import require

    mpl = require("matplotlib", "tasks")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "tasks")
