"""Write to a temporary name beside the target, then rename into place.

A killed run then never leaves a file that looks complete: the target is either the old file, the new
one, or absent. The temporary's name starts with a dot and ends in ``.partial`` (ignored by git and
recognised as a leftover by the stores).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then rename it to ``path``.

    ``durable``: fsync the file before the rename and the folder after it, so that a power cut (not only
    a kill) leaves the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return path


def write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def write_json(path: str | os.PathLike, data: Any, *, durable: bool = False) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n", durable=durable)


def write_lines(path: str | os.PathLike, lines: Any, *, durable: bool = False) -> Path:
    """Write an iterable of strings, one per line (JSON Lines, CSV rows already formatted)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")

    return atomic_write(path, write, durable=durable)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
