"""One writer per part: an advisory lock that names its holder and survives its holder's death.

The lock is an ``flock`` on a small file holding a JSON record of the holder
(host, pid, since). The kernel releases an ``flock`` when its process dies, even
by ``kill -9``, so a resume on the same host never waits for a dead writer; the
record it left behind is reported as a stale lock taken over. A record from
another host whose lock is free is NOT taken over (``flock`` may not reach across
hosts on some network file systems): the error names the file to delete once the
other host's writer is known to be gone.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import stat
import warnings
from pathlib import Path

from features.records import StoreError, StoreLockedError


def open_regular(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symlink and refuses anything but a regular file.

    Lock and temporary files sit in folders others may write to: a symlink planted
    under their name must not make us write (or truncate) its target.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"{path} is a symbolic link; refusing to follow it (delete it if you did not make it)") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreError(f"read-only: cannot write {path} ({e.strerror}); open the store read-only, or give it write permission") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{path} is not a regular file; refusing to use it as a lock or temporary file (delete it)")
    return fd


class StaleLockWarning(UserWarning):
    """A lock left by a writer that died was taken over."""


class WriterLock:
    """Exclusive lock on ``path``; ``what`` describes the locked thing in messages ("set 'audio' part 'main' of X")."""

    def __init__(self, path: Path, what: str, *, shared: bool = False) -> None:
        self.path = Path(path)
        self.what = what
        # Shared holders (every open writer of a store) keep no record; the exclusive one may unlink.
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> None:
        """Take the lock, or raise StoreLockedError naming the holder (``wait=True``: block until free)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (PermissionError, OSError) as e:
            if isinstance(e, (NotADirectoryError, FileExistsError)):
                raise StoreError(f"{self.path.parent} is not a folder (a file is in the way): cannot lock {self.what}") from None
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StoreError(f"read-only: cannot create {self.path.parent} ({e.strerror}) to lock {self.what}") from None
            raise
        kind = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        while True:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, kind if wait else kind | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_record(fd)
                os.close(fd)
                raise StoreLockedError(
                    f"{self.what} is locked by another writer: {_describe(holder)} (lock file {self.path}). "
                    "Wait for it to finish, or give this writer another part."
                ) from None
            # The previous holder may have unlinked the file between our open and our flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        if self.shared:
            self._fd = fd
            return
        holder = _read_record(fd)
        if holder:
            if holder.get("host") != socket.gethostname():
                os.close(fd)
                raise StoreLockedError(
                    f"{self.what} is locked by a writer on another host: {_describe(holder)} (lock file {self.path}). "
                    f"If that writer is gone, delete {self.path} and rerun."
                )
            warnings.warn(
                f"taking over a stale lock on {self.what}: its holder ({_describe(holder)}) is gone",
                StaleLockWarning,
                stacklevel=3,
            )
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False, holding nothing, while another writer holds it."""
        try:
            self.acquire()
        except StoreLockedError:
            return False
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        if self.shared:
            # Never unlinked by a shared holder: another one may hold it too.
            os.close(self._fd)
            self._fd = None
            return
        # Unlink while still holding the flock, so nobody sees our record as stale.
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # its directory was deleted with the set it locked
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _read_record(fd: int) -> dict:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return {}
    try:
        record = json.loads(raw)
    except ValueError:
        return {"host": "?", "pid": "?", "since": f"unreadable lock record {raw[:80]!r}"}
    return record if isinstance(record, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "host ?, pid ?, since ? (no record yet)"
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"


def drop_stale_lock(path: Path, location: str) -> None:
    """Remove a lock file a killed process left behind, unless someone holds it now."""
    if not path.exists():
        return
    lock = WriterLock(path, f"{location} (a stale lock)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleLockWarning)
        try:
            lock.acquire()
        except StoreError:
            return
    lock.release()
