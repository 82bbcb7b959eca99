"""Publishing a local Zarr store to object storage (``s3://``), in an order readers can follow.

Writers are local only: they commit by rename and fsync and exclude each other with
lock files, none of which S3 has. So a store is extracted into a path and then
uploaded: every data file first, then each group's ``zarr.json`` (deepest first), the
root ``zarr.json`` with the consolidated metadata last. A reader that opens the
store meanwhile sees the old state or the new one, never a set whose segments are
not there yet. Remote files the local store no longer has (segments merged away by
compaction) are removed only after the new root is up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from features.base import StoreError
from features.store import open_store
from features.urls import is_remote, storage_options, url_scheme

# Schemes an upload may write to (http(s) servers are read-only to us).
WRITABLE_SCHEMES = ("s3",)


@dataclass(frozen=True)
class UploadResult:
    """What :func:`upload_store` did: files and bytes sent, stale remote files removed."""

    url: str
    files: int
    bytes: int
    removed: int

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "files": self.files, "bytes": self.bytes, "removed": self.removed}


def upload_store(local: str | os.PathLike, url: str) -> UploadResult:
    """Copy the Zarr store at ``local`` to ``url`` (``s3://bucket/key.zarr``); no writer may be writing it.

    The local store is finished first (one plain group per set), so that URL readers see all of it."""
    local = Path(local)
    if url_scheme(url) not in WRITABLE_SCHEMES or not is_remote(url):
        raise StoreError(f"{url}: stores upload to {', '.join(s + '://' for s in WRITABLE_SCHEMES)} URLs only")
    if not url.rstrip("/").endswith(".zarr") or local.suffix != ".zarr":
        raise StoreError(f"upload {local} -> {url}: both must be Zarr stores (names ending in .zarr)")
    open_store(str(local)).close()  # a missing local store is an error here, not created by mode "a"
    with open_store(str(local), "a") as store:
        store.finish()
    files = _store_files(local)

    import fsspec

    fs, root = fsspec.core.url_to_fs(url.rstrip("/"), **storage_options(url))
    sent = 0
    try:
        for rel in files:
            fs.put_file(str(local / rel), f"{root}/{rel}")
            sent += (local / rel).stat().st_size
        wanted = {f"{root}/{rel}" for rel in files}
        fs.invalidate_cache()
        stale = sorted(p for p in fs.find(root) if p not in wanted)
        if stale:
            fs.rm(stale)
    except OSError as e:  # s3fs turns S3 errors (no bucket, access denied) into OSError subclasses
        raise StoreError(f"uploading {local} to {url} failed after {sent} bytes ({type(e).__name__}: {e}); "
                         "fix the bucket or credentials and run the upload again (it starts over)") from None
    return UploadResult(url=url, files=len(files), bytes=sent, removed=len(stale))


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
