"""Writing a benchmark's markdown report without losing what people wrote under it."""
from __future__ import annotations

from pathlib import Path

NOTES_MARKER = "<!-- notes: kept when the script rewrites this file -->"


def write_keeping_notes(path, text: str) -> None:
    """Write ``text`` to ``path``; hand-written notes below NOTES_MARKER in the old file survive."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.exists() else ""
    if NOTES_MARKER in old:
        text += "\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
    out.write_text(text)
