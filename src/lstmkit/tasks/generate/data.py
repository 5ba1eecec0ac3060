"""The text a character model learns: a user's file, or CPython's pydoc topics by default."""
from __future__ import annotations


def load_text(path: str | None) -> tuple[str, str]:
    """(name, text): a user's UTF-8 text file, or by default CPython's ``pydoc_data.topics`` (the help
    texts of Python's keywords and topics, ~0.5M characters, shipped with every Python)."""
    if path is None:
        from pydoc_data import topics

        return "pydoc_data.topics", "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    from ...io.files import read_text

    return path, read_text(path, "--text")  # a FIFO refused (it would block forever), a non-UTF-8 file named
