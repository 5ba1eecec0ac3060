"""The text a character model learns: a user's file, or CPython's pydoc topics by default."""
from __future__ import annotations


def load_text(path: str | None) -> tuple[str, str]:
    """(name, text): a user's UTF-8 text file, or by default CPython's ``pydoc_data.topics`` (the help
    texts of Python's keywords and topics, ~0.5M characters, shipped with every Python)."""
    if path is None:
        from pydoc_data import topics

        return "pydoc_data.topics", "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    from ...io.files import check_regular

    check_regular(path, "UTF-8 text file", "--text")  # a FIFO would block the read below forever
    with open(path, encoding="utf-8") as f:
        return path, f.read()
