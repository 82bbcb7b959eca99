"""Publishing a local Zarr store to object storage (``s3://``), in an order readers can follow.

Writers are local only: they commit by rename and fsync and exclude each other with
lock files, none of which S3 has. So a store is extracted into a path and then
uploaded: every data file first, then each group's ``zarr.json`` (deepest first), the
root ``zarr.json`` with the consolidated metadata last. A reader that opens the
store meanwhile sees the old state or the new one, never a set whose segments are
not there yet. Remote files the local store no longer has (segments merged away by
compaction) are removed only after the new root is up; then the remote listing
(names and sizes) and root metadata are checked against the local store.

Two uploads to one URL exclude each other with a lock object,
``URL/.emocache-publish.json``, created by a conditional PUT (``If-None-Match: *``,
which AWS S3, MinIO and moto honour; a server that ignores it gives no exclusion).
While it is held, no local writer of the uploaded store is open either (the store's
writers' lock is held exclusive, so one that opens waits). The *version* of a store
is the sha256 of its root ``zarr.json``, which changes with every finish; a caller
that knows which version it started from (``expect``) has the upload refused, under
the lock, when another writer has published since.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import socket
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.base import StoreError
from features.finish import finish_locked
from features.lock import StaleLockWarning
from features.records import StoreLockedError
from features.store import open_store
from features.urls import is_remote, storage_options, url_scheme

# Schemes an upload may write to (http(s) servers are read-only to us).
WRITABLE_SCHEMES = ("s3",)
# The remote lock object of an upload under way; a dot name, so neither uploaded nor removed as stale.
PUBLISH_LOCK = ".emocache-publish.json"


class PublishLockedError(StoreLockedError):
    """Another upload to the URL holds its remote lock object."""


class RemoteChangedError(StoreError):
    """The remote store is not the version the upload was told to expect: someone else published."""


@dataclass(frozen=True)
class UploadResult:
    """What :func:`upload_store` did: files and bytes sent, stale remote files removed, the version now up."""

    url: str
    files: int
    bytes: int
    removed: int
    version: str = ""

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "files": self.files, "bytes": self.bytes, "removed": self.removed}


def check_upload_url(url: str) -> None:
    """Refuse a URL an upload cannot write: a scheme other than s3://, or a name not ending in .zarr."""
    if url_scheme(url) not in WRITABLE_SCHEMES or not is_remote(url):
        raise StoreError(f"{url}: stores upload to {', '.join(s + '://' for s in WRITABLE_SCHEMES)} URLs only")
    if not url.rstrip("/").endswith(".zarr"):
        raise StoreError(f"{url}: only Zarr stores are published to object storage; give a URL ending in .zarr")


def remote_fs(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` (with EMOCACHE_STORAGE_OPTIONS) and the store's root path on it."""
    import fsspec

    return fsspec.core.url_to_fs(url.rstrip("/"), **storage_options(url))


def version_of(root_json: bytes) -> str:
    """A store's version: the sha256 of its root ``zarr.json`` (consolidated metadata of every set)."""
    return hashlib.sha256(root_json).hexdigest()


def remote_version(fs: Any, root: str) -> str | None:
    """The version of the store at ``root`` on ``fs``, None when there is none."""
    try:
        return version_of(fs.cat_file(f"{root}/zarr.json"))
    except FileNotFoundError:
        return None


def upload_store(
    local: str | os.PathLike,
    url: str,
    *,
    expect: Collection[str | None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> UploadResult:
    """Copy the Zarr store at ``local`` to ``url`` (``s3://bucket/key.zarr``), then check the copy.

    The local store is finished first (one plain group per set), so that URL readers see
    all of it; its writers' lock is held meanwhile, so it is a StoreLockedError while a
    writer has it open. ``expect``: the remote versions (None: no store) this upload may
    replace; any other is a :class:`RemoteChangedError`. ``on_start(version)`` is called
    before the first file is sent, with the version being published."""
    local = Path(local)
    check_upload_url(url)
    if local.suffix != ".zarr":
        raise StoreError(f"upload {local} -> {url}: both must be Zarr stores (names ending in .zarr)")
    open_store(str(local)).close()  # a missing local store is an error here, not created by mode "a"
    with open_store(str(local), "a") as store:
        held = store.writers_lock()
        try:
            held.acquire()
        except StoreLockedError:
            raise StoreLockedError(f"{local} has writers open (lock file {held.path}); upload it once they have closed") from None
        try:
            finish_locked(store.backend, [])
            return _upload_finished(local, url, expect, on_start)
        finally:
            held.release()


def _upload_finished(local: Path, url: str, expect: Collection[str | None] | None,
                     on_start: Callable[[str], None] | None) -> UploadResult:
    files = _store_files(local)
    version = version_of((local / "zarr.json").read_bytes())
    fs, root = remote_fs(url)
    sent = 0
    try:
        with _PublishLock(fs, root, url, local):
            current = remote_version(fs, root)
            if expect is not None and current not in expect:
                raise RemoteChangedError(
                    f"{url} changed since {local} was taken from it (another run published to it meanwhile): "
                    f"not uploaded; the work stays in {local}, and running again tells how to go on"
                )
            if on_start is not None:
                on_start(version)
            for rel in files:
                fs.put_file(str(local / rel), f"{root}/{rel}")
                sent += (local / rel).stat().st_size
            wanted = {f"{root}/{rel}" for rel in files}
            fs.invalidate_cache()
            stale = sorted(p for p in fs.find(root) if p not in wanted and not _hidden(p[len(root) + 1:]))
            if stale:
                fs.rm(stale)
            _check_copy(fs, root, local, files, url)
    except OSError as e:  # s3fs turns S3 errors (no bucket, access denied) into OSError subclasses
        raise StoreError(f"uploading {local} to {url} failed after {sent} bytes ({type(e).__name__}: {e}); "
                         "fix the bucket or credentials and run the upload again (it starts over)") from None
    return UploadResult(url=url, files=len(files), bytes=sent, removed=len(stale), version=version)


def _check_copy(fs: Any, root: str, local: Path, files: list[str], url: str) -> None:
    """Refuse a remote copy whose listing (names, sizes) or root metadata differs from ``local``."""
    fs.invalidate_cache()
    there = {p[len(root) + 1:]: info["size"] for p, info in fs.find(root, detail=True).items()}
    there = {rel: size for rel, size in there.items() if not _hidden(rel)}
    here = {rel: (local / rel).stat().st_size for rel in files}
    if there != here or fs.cat_file(f"{root}/zarr.json") != (local / "zarr.json").read_bytes():
        differ = sorted(set(there.items()) ^ set(here.items()))[:3]
        raise StoreError(f"{url} does not match {local} after the upload (first differences: {differ}); "
                         "another writer may have changed it meanwhile: run the upload again")


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _store_files(local: Path) -> list[str]:
    """The store's files relative to ``local`` in upload order; dot names (locks, temporaries) left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                found.append((Path(dirpath) / name).relative_to(local).as_posix())

    def order(rel: str) -> tuple[int, int, str]:
        if rel.rsplit("/", 1)[-1] != "zarr.json":
            return (0, 0, rel)
        return (1, -rel.count("/"), rel)  # metadata after data, deepest first, the root's last

    return sorted(found, key=order)


class _PublishLock:
    """The remote lock object of an upload: created only if absent, deleted when the upload ends.

    A lock left by a process of this host that is gone (killed mid-upload) is taken over;
    one from another host is reported with the way to remove it."""

    def __init__(self, fs: Any, root: str, url: str, local: Path) -> None:
        self.fs, self.path, self.url = fs, f"{root}/{PUBLISH_LOCK}", url
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "local": str(local),
                       "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def __enter__(self) -> "_PublishLock":
        holder: dict = {}
        for _ in range(2):
            try:
                self.fs.pipe_file(self.path, json.dumps(self.record).encode("utf-8"), mode="create")
                return self
            except FileExistsError:
                holder = self._holder()
                if holder.get("host") != socket.gethostname() or _alive(holder.get("pid")):
                    break
                warnings.warn(f"taking over the publish lock of {self.url}: its holder (pid {holder.get('pid')}, "
                              f"since {holder.get('since')}) is gone", StaleLockWarning, stacklevel=2)
                self.fs.rm_file(self.path)
        raise PublishLockedError(
            f"{self.url} is being published by another run (host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"since {holder.get('since', '?')}, from {holder.get('local', '?')}); wait for it to finish, or if it is gone, "
            f"delete {self.url.rstrip('/')}/{PUBLISH_LOCK} and run again"
        )

    def _holder(self) -> dict:
        try:
            record = json.loads(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def __exit__(self, *_exc: object) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass


def _alive(pid: object) -> bool:
    """Whether process ``pid`` of this host exists (a pid taken by another process since counts as alive)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
