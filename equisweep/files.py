"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary name next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def unwritable(directory: Path) -> str | None:
    """Why ``directory`` could not be created or written here (None if it can), found without writing anything:
    the nearest part of the path that exists must be a directory this process may write to."""
    existing = directory.absolute()
    while not os.path.exists(existing):  # os.path: False (not an error) below a directory it may not search
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def first_missing(path: Path) -> Path | None:
    """The outermost directory of ``path`` that does not exist yet (what creating ``path`` creates, and what removing
    undoes it), None if ``path`` exists."""
    missing = [part for part in (path.absolute(), *path.absolute().parents) if not os.path.exists(part)]
    return missing[-1] if missing else None
