"""Writing into an ``s3://`` Zarr store: through a local staging copy, published when done.

Writers need rename, fsync and lock files, which S3 lacks (``features/upload.py``). So
a run that writes into ``s3://bucket/lab.zarr`` writes a local Zarr store, the *staging
copy*, with all the crash safety and resume of a local store, and publishes it with
:func:`features.upload.upload_store` (the code of ``features upload``) once its work is
complete. The copy of a URL is ``DIR/<digest>-<name>.zarr``, DIR being ``--staging``
or ``$XDG_CACHE_HOME/emocache/staging`` (default ``~/.cache/emocache/staging``), so a
rerun finds it; beside it, ``<digest>-<name>.staging.json`` records the URL and the
remote *version* (``features.upload.version_of``) the copy was taken from.

:meth:`StagedStore.prepare` makes the copy ready to write:

* no copy, no remote store: the copy starts empty;
* no copy, a remote store: the remote is fetched into it first (so its other sets and
  its finished part of this set are kept, and published again);
* a copy taken from the remote as it is now: resumed;
* a copy taken from an older remote version (another run published since): fetched
  anew when the copy holds nothing unpublished, refused otherwise (publishing it would
  drop the other run's work).

The copy is kept after publishing, as a mirror the next run resumes from; deleting it
is always safe once a publish succeeded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emocache.atomic import write_json
from features.base import StoreError
from features.lock import WriterLock
from features.records import StoreLockedError
from features.store import open_store
from features.upload import (
    PUBLISH_LOCK, RemoteChangedError, UploadResult, check_upload_url, remote_fs, remote_version, upload_store, version_of,
)
from features.urls import url_scheme

STAGING_ENV = "XDG_CACHE_HOME"
T = TypeVar("T")


def default_staging_dir() -> Path:
    """Where staging copies go when ``--staging`` is not given."""
    cache = os.environ.get(STAGING_ENV) or str(Path.home() / ".cache")
    return Path(cache) / "emocache" / "staging"


@dataclass(frozen=True)
class StagingState:
    """The record beside a staging copy: its URL, the remote version it was taken from (None: no
    remote store then), and the versions of publishes that began since (they may have been cut off
    after changing the remote)."""

    url: str
    base: str | None
    attempted: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "base": self.base, "attempted": list(self.attempted)}


@dataclass(frozen=True)
class StagedStore:
    """The local staging copy ``local`` of the remote Zarr store ``url``."""

    url: str
    local: Path

    @classmethod
    def for_url(cls, url: str, staging: str | os.PathLike | None = None) -> "StagedStore":
        """The staging copy of ``url`` in folder ``staging`` (default :func:`default_staging_dir`)."""
        scheme = url_scheme(url)
        if scheme in ("http", "https"):
            raise StoreError(f"{url}: {scheme}:// stores are read-only (a web server takes no writes); "
                             "write into a local path or an s3:// URL, then publish it (features/SHARING.md)")
        check_upload_url(url)
        url = url.rstrip("/")
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
        folder = Path(staging) if staging is not None else default_staging_dir()
        return cls(url, folder.absolute() / f"{digest}-{url.rsplit('/', 1)[-1]}")

    @property
    def state_path(self) -> Path:
        return self.local.with_name(self.local.name[: -len(".zarr")] + ".staging.json")

    @property
    def lock_path(self) -> Path:
        """Held while a run prepares the copy (:meth:`prepare`); gone once none does."""
        return self.local.with_name(self.local.name[: -len(".zarr")] + ".staging.lock")

    def remote_version(self) -> str | None:
        """The version of the remote store now; None when there is none."""
        return self._ask(remote_version)

    def _ask(self, question: Callable[[Any, str], T]) -> T:
        """``question(fs, root)`` of the remote store; an S3 error (s3fs raises OSError) names the URL."""
        fs, root = remote_fs(self.url)
        try:
            return question(fs, root)
        except OSError as e:
            raise StoreError(f"cannot read {self.url} ({type(e).__name__}: {e}); fix the bucket or credentials") from None

    def prepare(self) -> Path:
        """Make the staging copy ready to write (module docstring) and return its path.

        Runs of one copy take turns here: two that start together on a machine without a
        copy would otherwise both fetch the remote, and the second would put its copy in
        place of the first's, with that run's writers and work in it. The second waits,
        then finds the first's copy and resumes from it.
        """
        current = self.remote_version()
        if current is None and not (self.local / "zarr.json").is_file():
            self._check_bucket()  # before the lock's file is made: a refusal leaves no staging folder
        lock = WriterLock(self.lock_path, f"the staging copy {self.local} of {self.url} (being prepared)")
        lock.acquire(wait=True)
        try:
            return self._prepare(current)
        finally:
            lock.release()

    def _prepare(self, current: str | None) -> Path:
        """:meth:`prepare`, holding the lock; ``current`` is the remote's version."""
        if (self.local / "zarr.json").is_file():
            state = self.state()
            if current == state.base or current in state.attempted:
                return self.local
            if current is not None and self._discard_if_published(state):
                self._fetch(current)
                return self.local
            raise RemoteChangedError(
                f"{self.url} changed since the staging copy {self.local} was taken from it (another run published to it), "
                f"and the copy holds work not published yet, which would replace that run's. To start again from {self.url}, "
                f"delete {self.local} and {self.state_path}; or publish the copy elsewhere (`features upload {self.local} URL`)"
            )
        if current is None:
            self._write_state(StagingState(self.url, None))
        else:
            self._fetch(current)
        return self.local

    def _check_bucket(self) -> None:
        """Refuse a missing bucket now, not after the whole extraction, at its upload."""
        bucket = self.url[len("s3://"):].split("/", 1)[0]
        if not self._ask(lambda fs, _: fs.exists(bucket)):
            raise StoreError(f"{self.url}: there is no bucket {bucket!r} (or these credentials cannot see it); "
                             "create it, or fix the endpoint or credentials (features/SHARING.md)")

    def publish(self) -> UploadResult:
        """Upload the copy to the URL, unless another run published there since the copy was taken."""
        state = self.state()

        def started(version: str) -> None:
            self._write_state(StagingState(self.url, state.base, (*state.attempted, version)))

        result = upload_store(self.local, self.url, expect={state.base, *state.attempted}, on_start=started)
        self._write_state(StagingState(self.url, result.version))
        return result

    def state(self) -> StagingState:
        """The record of the copy; a copy without one (not made here) is refused."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            state = StagingState(data["url"], data["base"], tuple(data.get("attempted", ())))
        except (OSError, ValueError, KeyError, TypeError):
            raise StoreError(f"{self.local} has no readable staging record {self.state_path}, so what it holds of "
                             f"{self.url} is unknown; delete it (or give another --staging)") from None
        if state.url != self.url:
            raise StoreError(f"{self.local} is the staging copy of {state.url}, not {self.url}; give another --staging")
        return state

    def _write_state(self, state: StagingState) -> None:
        write_json(self.state_path, state.to_json(), durable=True)

    def _discard_if_published(self, state: StagingState) -> bool:
        """Delete the copy if all it holds is published (no work since); False, and kept, otherwise."""
        with open_store(str(self.local)) as store:
            backend = store.backend
            lock = store.writers_lock()
            if not lock.try_acquire():
                return False
            try:
                here = version_of((self.local / "zarr.json").read_bytes())
                if here not in (state.base, *state.attempted) or any(backend.part_names(n) for n in backend.set_names()):
                    return False
                doomed = self.local.with_name(f".{self.local.name}.old-{os.getpid()}")
                os.rename(self.local, doomed)
            finally:
                lock.release()
        shutil.rmtree(doomed)
        return True

    def _fetch(self, version: str) -> None:
        """Download the remote store (at ``version``) into the copy, whole or not at all."""
        fs, root = remote_fs(self.url)
        tmp = self.local.with_name(f".{self.local.name}.fetch-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        busy = _publishing(fs, root)
        try:
            for path in [] if busy else sorted(fs.find(root)):
                rel = path[len(root) + 1:]
                if not any(part.startswith(".") for part in rel.split("/")):
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(path, str(tmp / rel))
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"fetching {self.url} into {self.local} failed ({type(e).__name__}: {e}); run again") from None
        if busy or _publishing(fs, root) or remote_version(fs, root) != version or not (tmp / "zarr.json").is_file() \
                or version_of((tmp / "zarr.json").read_bytes()) != version:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreLockedError(f"{self.url} is being published by another run (or changed while it was fetched "
                                   f"into {self.local}); run again once it is done")
        if (self.local / "zarr.json").is_file():
            # Made by a run that did not wait for this one's fetch: it may have writers and work in it.
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreLockedError(f"another run made the staging copy {self.local} while {self.url} was fetched into it; "
                                   "run again: it resumes from that copy")
        self._write_state(StagingState(self.url, version))
        if self.local.exists():  # a creation cut off before its zarr.json: nothing in it
            shutil.rmtree(self.local)
        os.rename(tmp, self.local)


def _publishing(fs: Any, root: str) -> bool:
    fs.invalidate_cache()  # fsspec caches listings per file system instance, and instances are shared
    return bool(fs.exists(f"{root}/{PUBLISH_LOCK}"))

