"""Stores: opening one, and what a store does as a whole (writers, deleting a set, finishing).

See ``features.base`` for the layout and its two states. ``open_store`` ->
``Store``; ``store[name]`` -> ``features.reader.FeatureSet`` (read one, read
all, failures, info); ``store.writer(...)`` -> ``features.writer.Writer``
(exactly-once, resumable, locked per part); ``store.finish()`` lays the store
out as ``features/FORMAT.md`` documents.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from features.base import Backend, backend_for
from features.finish import finish_now
from features.lock import WriterLock
from features.provenance import Provenance
from features.reader import COPY_BYTES, FeatureSet, SetIndex, live_segments  # noqa: F401 - public names of this module since v1
from features.records import StoreError
from features.urls import is_remote
from features.writer import MAX_BUFFER_BYTES, Writer  # noqa: F401 - public names of this module since v1


def check_location(cls: type[Backend], location: str, mode: str) -> None:
    """Refuse a local store path of the wrong kind, naming it: a file in its way, a folder where a file
    belongs (HDF5) or a file where a folder belongs (Zarr), or (``mode='a'``) a place that cannot be written."""
    path = Path(location)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise StoreError(f"{location}: {ancestor} is a file, not a folder; give a store path in a folder")
            break
    is_file = cls.name == "hdf5"
    if path.exists() and path.is_dir() == is_file:
        want, got = ("an HDF5 file", "a folder") if is_file else ("a Zarr folder", "a file")
        raise StoreError(f"{location} is {got}, not {want}; give another path for the {cls.name} store")
    if mode == "a":
        # HDF5 writes beside its file (segments, locks, the finished file's replacement).
        targets = [path] if path.exists() else []
        if is_file or not path.exists():
            targets.append(next((a for a in path.parents if a.exists()), Path(".")))
        for target in targets:
            if not os.access(target, os.W_OK):
                raise StoreError(f"read-only: {target} cannot be written; open {location} read-only (mode='r') or make it writable")


def open_store(location: str, mode: str = "r") -> "Store":
    """Open the feature store at ``location`` (a path, or an http(s)/s3 URL of a Zarr store).

    ``mode="r"`` (default) reads and never writes anything; ``mode="a"`` also
    writes, creating the store if absent. The suffix picks the back-end:
    ``.h5``/``.hdf5`` HDF5, ``.zarr`` Zarr v3.
    """
    if mode not in ("r", "a"):
        raise StoreError(f"invalid store mode {mode!r}: use 'r' (read only) or 'a' (read and write)")
    location = str(location)
    remote = is_remote(location)
    cls = backend_for(location)
    if remote and not cls.reads_urls:
        raise StoreError(
            f"{location}: {cls.name} stores are read from a path, not a URL; "
            "convert it to Zarr (`features convert`) to serve it over HTTP or S3"
        )
    if remote and mode != "r":
        raise StoreError(f"{location} is remote: remote stores open read-only (mode='r'); write locally and publish")
    if not remote and location.startswith("file://"):
        location = location[len("file://") :]
    if not remote:
        check_location(cls, location, mode)
    if mode == "r" and not cls.exists(location):
        # Read by CLI users and library callers alike: the fix is named for both.
        raise StoreError(
            f"no {cls.name} feature store at {location}: check the path, or create it with "
            f"`extract run --store {location}` (from Python: open_store(path, mode='a'))"
        )
    backend = cls(location, mode)
    if mode == "a" and not cls.exists(location):
        _create_once(backend)
    else:
        backend.check()
    return Store(backend)


def _create_once(backend: Backend) -> None:
    """Create the store, unless another process does so first.

    Several processes may open one new store at once (three ``extract run`` into one
    store): the first to take the lock creates it, the others find it made and check it.
    """
    lock = WriterLock(backend.creation_lock_path(), f"{backend.location} (creating the store)")
    lock.acquire(wait=True)
    try:
        made = type(backend).exists(backend.location)
        if not made:
            try:
                backend.create()
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise StoreError(f"read-only: cannot create {backend.location} ({e.strerror})") from None
                raise
    finally:
        lock.release()
    if made:
        backend.check()


class Store:
    """A feature store: named feature sets in one container. Use as a context manager."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._writers: list[Writer] = []
        self._closed = False

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def mode(self) -> str:
        return self.backend.mode

    @property
    def format(self) -> str:
        """The back-end's registered name (``hdf5`` or ``zarr``)."""
        return self.backend.name

    def set_names(self) -> list[str]:
        return self.backend.set_names()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.set_names()

    def __getitem__(self, name: str) -> "FeatureSet":
        meta = self.backend.read_set_meta(name) if isinstance(name, str) else None
        if meta is None:
            names = self.set_names()
            there = ", ".join(repr(n) for n in names) if names else "none"
            raise StoreError(f"no feature set {name!r} in {self.location}; sets there: {there}")
        return FeatureSet(self, name, meta, self.backend.segments(name))

    def writers_lock(self, *, shared: bool = False) -> WriterLock:
        """The store-wide lock of its writers: each open writer holds it ``shared``; finishing the store
        (or anything else that must run with no writer open) takes it exclusive."""
        return WriterLock(self.backend.writers_lock_path(), f"{self.location} (open writers)", shared=shared)

    def writer(
        self,
        name: str,
        provenance: Provenance,
        *,
        frame_rate: float | None = None,
        layers: int | None = None,
        part: str | None = None,
        finish: bool = True,
    ) -> "Writer":
        """A writer for set ``name`` (created if absent), holding the lock on ``part`` (default ``main``).

        On an existing set, ``frame_rate`` and ``layers`` may be left out (the
        set's are used); given, they must match it. With ``finish`` (default),
        the last writer of the store to close finishes it; parallel parts of one
        run (Dask tasks) pass ``finish=False`` and the run calls :meth:`finish` once.
        """
        if self.mode != "a":
            raise StoreError(f"{self.location} is open read-only; open it with mode='a' to write")
        # Leftovers of killed writers go first, when no other writer is open to be disturbed.
        alone = self.writers_lock()
        if alone.try_acquire():
            try:
                self.backend.cleanup_store()
            finally:
                alone.release()
        writer = Writer(self, name, provenance, frame_rate=frame_rate, layers=layers, part=part, finish=finish)
        self._writers.append(writer)
        return writer

    def delete_set(self, name: str) -> None:
        """Remove set ``name`` and all its parts; StoreLockedError while any writer of the store is open.

        On a finished HDF5 store this rewrites the file without the set (see FORMAT.md).
        """
        if self.mode != "a":
            raise StoreError(f"{self.location} is open read-only; open it with mode='a' to delete a set")
        if self.backend.read_set_meta(name) is None:
            raise StoreError(f"no feature set {name!r} in {self.location}; sets there: {self.set_names()}")
        held: list[WriterLock] = []
        try:
            for part in self.backend.part_names(name):
                lock = WriterLock(self.backend.lock_path(name, part), f"set {name!r} part {part!r} of {self.location}")
                lock.acquire()
                held.append(lock)
            finish_now(self, removed=[name])
        finally:
            for lock in held:
                lock.release()

    def finish(self) -> None:
        """Lay the store out finished now (FORMAT.md); StoreLockedError while any writer is open.

        Writers that close finish the store themselves; call this after parallel
        parts (``finish=False``) or after a writer was killed.
        """
        if self.mode != "a":
            raise StoreError(f"{self.location} is open read-only; open it with mode='a' to finish it")
        finish_now(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for writer in self._writers:
                writer.close()
        finally:
            self.backend.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.format} {self.location} mode={self.mode!r}>"


