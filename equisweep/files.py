"""Files: writing one so that a reader never sees half of it, checking where one may be written, reading a YAML
settings file with one clear line for each way it can be wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from equisweep.errors import UserError


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


def read_yaml_mapping(path: Path, field: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (empty for an empty file); a syntax error names its line and column,
    and a missing or unreadable file, a directory, text that is not UTF-8 and anything but a mapping are refused,
    each as one ``UserError`` line starting with ``field``."""
    if path.is_dir():
        raise UserError(f"{field}: {path} is a directory; pass the YAML file itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{field}: no such file {str(path)!r}; pass the path of an existing YAML file") from None
    except OSError as err:
        raise UserError(f"{field}: cannot read {path} ({err.strerror}); check its permissions") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{field}: {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{field}: {path} is not valid YAML{where}: {problem}; fix the YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{field}: {path} must hold a mapping of settings (key: value lines), "
                        f"not a {type(data).__name__}")
    return data
