"""Swapping a finished Zarr set's folder in for the old one, and repairing a swap a crash cut short.

``renameat2(RENAME_EXCHANGE)`` swaps two folders in one step, so a reader sees
the old set or the new one, never neither. Where the file system lacks it (NFS,
some FUSE mounts), two renames do it (old set away, new one in); a crash
between them leaves the set missing for a moment, which :func:`repair_swaps`
(run by the next writer or finish) repairs from the complete new folder.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
from pathlib import Path

from features.durable import fsync_dir

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_LIBC = ctypes.CDLL(None, use_errno=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically; False where the system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def exchange_or_swap(root: Path, name: str, build: Path) -> None:
    """Put the complete, fsynced folder ``build`` in place of ``root/name`` and remove the old one."""
    target = root / name
    if target.exists() and _exchange(build, target):
        fsync_dir(root)
        shutil.rmtree(build)  # it now holds the old set
        return
    if target.exists():
        old = root / f".{name}.old-{os.getpid()}"
        os.replace(target, old)
        fsync_dir(root)
        os.replace(build, target)
        fsync_dir(root)
        shutil.rmtree(old)
        return
    os.replace(build, target)
    fsync_dir(root)


def _complete(build: Path) -> bool:
    """A build folder is complete once its zarr.json carries the set's record (written last)."""
    try:
        node = json.loads((build / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(node, dict) and isinstance(node.get("attributes"), dict) and "emocache" in node["attributes"]


def repair_swaps(root: Path) -> None:
    """Finish or undo swaps a killed finish left (the caller holds the writers' lock exclusive)."""
    for build in root.glob(".*.finishing-*"):
        target = root / build.name[1:].rsplit(".finishing-", 1)[0]
        if not target.exists() and _complete(build):
            os.replace(build, target)
            fsync_dir(root)
        else:
            shutil.rmtree(build, ignore_errors=True)
    for old in root.glob(".*.old-*"):
        target = root / old.name[1:].rsplit(".old-", 1)[0]
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
            fsync_dir(root)
