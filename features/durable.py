"""Making writes durable: fsync of files, trees and directories, and atomic renames of segments.

A whole small file (a set's record, a zarr.json) is written with ``emocache.atomic``
(``durable=True``); what is here is what segments need besides: fsync of a tree,
publishing it by rename, and temporaries that are never opened through a symlink.

``kill -9`` loses nothing the kernel has accepted, but a power cut loses what is
only in the page cache; a segment is committed by a rename, so everything it
contains is fsynced first and the directory that holds the new name after.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from emocache.atomic import fsync_dir, fsync_file
from features.lock import open_regular


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and directory under ``root`` (a temporary segment before it is renamed)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(dirpath)


def publish(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename a complete, fsynced ``tmp`` to ``final`` and make the new name durable."""
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def _clear(path: Path) -> None:
    """Remove whatever a crashed run (or anyone) left at a temporary name; a symlink goes, not its target."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def fresh_file(path: str | os.PathLike) -> Path:
    """Create ``path`` as a new empty regular file of ours (never through a symlink) and return it."""
    path = Path(path)
    _clear(path)
    os.close(open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return path


def fresh_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` as a new empty folder (``mkdir`` never follows a symlink) and return it."""
    path = Path(path)
    _clear(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(path)
    return path


def remove_tree(parent: str | os.PathLike, name: str) -> None:
    """Delete ``parent/name`` so that no instant shows it half-deleted under its name.

    It is renamed to a dot name first (durably), then removed; dot names that a killed
    deletion left behind are removed before. Listings skip dot names.
    """
    parent = Path(parent)
    for leftover in parent.glob(".deleting-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    doomed = parent / f".deleting-{name}-{os.getpid()}"
    os.replace(parent / name, doomed)
    fsync_dir(parent)
    shutil.rmtree(doomed)
