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


SECTION_BEGIN = "<!-- cpu section: {} -->"
SECTION_END = "<!-- end cpu section -->"


def write_cpu_section(path, title: str, key: str, text: str, heading: str = "") -> None:
    """Write ``text`` as the section of CPU model ``key`` in the markdown file ``path`` (titled ``title``
    when new): the sections of other CPU models, the text before them and the notes below NOTES_MARKER stay
    as they are, so the file keeps one section per CPU model, each from a run on that CPU. ``heading``: the
    section's title (default ``key``)."""
    out = Path(path)
    old = out.read_text() if out.exists() else f"# {title}\n\n"
    notes = ""
    if NOTES_MARKER in old:
        old, notes = old.split(NOTES_MARKER, 1)
        notes = NOTES_MARKER + notes
    begin = SECTION_BEGIN.format(key)
    section = f"{begin}\n## {heading or key}\n\n{text.strip()}\n{SECTION_END}\n"
    if begin in old:  # replace this CPU's section
        head, rest = old.split(begin, 1)
        if SECTION_END not in rest:
            raise ValueError(f"{path}: the section {begin} has no {SECTION_END}")
        old = head + section + rest.split(SECTION_END, 1)[1].lstrip("\n")
    else:  # a CPU model not seen before: a section after the others
        old = old.rstrip("\n") + "\n\n" + section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(old.rstrip("\n") + "\n\n" + notes if notes else old)
