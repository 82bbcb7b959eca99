"""Write to a temporary name beside the target, then rename into place.

A killed run then never leaves a file that looks complete: the target is either the old file, the new
one, or absent. The temporary's name starts with a dot and ends in ``.partial`` (ignored by git and
recognised as a leftover by the stores).
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then rename it to ``path``.

    The temporary is created new (never through a symlink) with the mode an ordinary file gets
    (0666 less the umask), so a store or report on a shared folder is readable by colleagues as
    before. ``durable``: fsync the file before the rename and the folder after it, so that a power
    cut (not only a kill) leaves the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
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


def _new_temporary(path: Path) -> Path:
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's data to the disk."""
    _fsync(path, os.O_RDONLY)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a new or renamed name in it) to the disk."""
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: str | os.PathLike, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
