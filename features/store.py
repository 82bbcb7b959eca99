"""Stores, feature sets and writers: the shared logic over any registered back-end.

See ``features.base`` for the log-structured layout. This module turns a
back-end's segments into the public API: ``open_store`` -> ``Store``;
``store[name]`` -> ``FeatureSet`` (read one, read all, failures, info);
``store.writer(...)`` -> ``Writer`` (exactly-once, resumable, locked per part).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from features.base import (
    DEFAULT_PART,
    Backend,
    Failure,
    Segment,
    SetInfo,
    SetMeta,
    StoreError,
    backend_for,
    check_name,
    index_counts,
)
from features.lock import WriterLock
from features.provenance import Provenance
from features.ragged import Ragged
from features.urls import is_remote

DTYPES = ("float16", "float32")
# A writer commits by itself when its buffer grows past this, so memory stays bounded.
MAX_BUFFER_BYTES = 512 << 20
# Compaction copies a part in slices of at most this many bytes.
COPY_BYTES = 256 << 20


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
    if mode == "r" and not cls.exists(location):
        raise StoreError(f"no {cls.name} feature store at {location} (to create one, open it with mode='a')")
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
            backend.create()
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

    def writer(
        self,
        name: str,
        provenance: Provenance,
        *,
        frame_rate: float | None = None,
        layers: int | None = None,
        part: str | None = None,
    ) -> "Writer":
        """A writer for set ``name`` (created if absent), holding the lock on ``part`` (default ``main``).

        On an existing set, ``frame_rate`` and ``layers`` may be left out (the
        set's are used); given, they must match it.
        """
        if self.mode != "a":
            raise StoreError(f"{self.location} is open read-only; open it with mode='a' to write")
        writer = Writer(self, name, provenance, frame_rate=frame_rate, layers=layers, part=part)
        self._writers.append(writer)
        return writer

    def delete_set(self, name: str) -> None:
        """Remove set ``name`` and all its parts; StoreLockedError if any part has a running writer."""
        if self.mode != "a":
            raise StoreError(f"{self.location} is open read-only; open it with mode='a' to delete a set")
        if self.backend.read_set_meta(name) is None:
            raise StoreError(f"no feature set {name!r} in {self.location}; sets there: {self.set_names()}")
        creating = WriterLock(self.backend.lock_path(name, None), f"{self.location} (creating sets)")
        creating.acquire(wait=True)
        held: list[WriterLock] = []
        try:
            for part in self.backend.part_names(name):
                lock = WriterLock(self.backend.lock_path(name, part), f"set {name!r} part {part!r} of {self.location}")
                lock.acquire()
                held.append(lock)
            self.backend.delete_set(name)
        finally:
            for lock in held:
                lock.release()
            creating.release()

    def consolidate(self) -> None:
        """Publish the current state for readers that cannot list (Zarr: consolidated metadata)."""
        if self.mode != "a":
            raise StoreError(f"{self.location} is open read-only; open it with mode='a' to consolidate")
        self.backend.finish()

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

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.format} {self.location} mode={self.mode!r}>"


def live_segments(segments: Iterable[Segment]) -> list[Segment]:
    """The segments readers see: those no later segment of the same part covers, by (part, seq)."""
    segments = list(segments)
    covered = {(s.part, c) for s in segments for c in s.covers}
    return sorted((s for s in segments if (s.part, s.seq) not in covered), key=lambda s: (s.part, s.seq))


class _SetIndex:
    """Where each committed utterance lives, and the failures still standing, from a list of segments."""

    def __init__(self, segments: Iterable[Segment]) -> None:
        self.segments = live_segments(segments)
        self.ids: list[str] = []
        # utt_id -> (segment position, first frame, end frame, sha256)
        self.where: dict[str, tuple[int, int, int, str]] = {}
        # A second copy of an id (two parts wrote it): kept for verify, never read.
        self.duplicates: list[tuple[str, Segment, int, int, str]] = []
        latest: dict[str, Failure] = {}
        self.counts: Counter[str] = Counter()
        for position, segment in enumerate(self.segments):
            start = 0
            for i, (utt_id, length, sha) in enumerate(zip(segment.ids, segment.lengths, segment.sha256)):
                stop = start + int(length)
                if utt_id in self.where:
                    self.duplicates.append((utt_id, segment, start, stop, sha))
                else:
                    self.where[utt_id] = (position, start, stop, sha)
                    self.ids.append(utt_id)
                    # Zeros included, so a name whose total is 0 still shows.
                    self.counts.update(segment.utterance_counts(i))
                start = stop
            for failure in segment.failures:
                if _not_older(latest.get(failure.utt_id), failure):
                    latest[failure.utt_id] = failure
        self.failures = [f for u, f in sorted(latest.items()) if u not in self.where]
        self.frames = sum(stop - start for _, start, stop, _ in self.where.values())


def _not_older(current: Failure | None, candidate: Failure) -> bool:
    return current is None or candidate.time >= current.time


class FeatureSet:
    """One named feature set as committed when it was opened (a snapshot; reopen to see newer commits)."""

    def __init__(self, store: Store, name: str, meta: SetMeta, segments: list[Segment]) -> None:
        self.store = store
        self.name = name
        self.meta = meta
        self._index = _SetIndex(segments)

    @property
    def info(self) -> SetInfo:
        meta = self.meta
        per_frame = (meta.layers or 1) * meta.dim * np.dtype(meta.dtype).itemsize
        return SetInfo(
            name=self.name,
            dim=meta.dim,
            layers=meta.layers,
            dtype=meta.dtype,
            frame_rate=meta.frame_rate,
            provenance=meta.provenance,
            identity=meta.provenance.identity(),
            count=len(self._index.ids),
            failed=len(self._index.failures),
            nbytes=self._index.frames * per_frame,
            counts=dict(sorted(self._index.counts.items())),
        )

    @property
    def ids(self) -> list[str]:
        return list(self._index.ids)

    @property
    def segments(self) -> list[Segment]:
        """The live segments, in reading order (one per part once writers have closed)."""
        return list(self._index.segments)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index.where

    def __len__(self) -> int:
        return len(self._index.ids)

    def length(self, utt_id: str) -> int:
        """Frames of ``utt_id``, without reading it."""
        _, start, stop, _ = self._locate(utt_id)
        return stop - start

    def checksum(self, utt_id: str) -> str:
        """The sha256 recorded for ``utt_id`` when it was written."""
        return self._locate(utt_id)[3]

    def _locate(self, utt_id: str) -> tuple[int, int, int, str]:
        try:
            return self._index.where[utt_id]
        except KeyError:
            raise StoreError(
                f"utterance {utt_id!r} is not in set {self.name!r} of {self.store.location} "
                f"({len(self._index.ids)} committed; failures: {len(self._index.failures)})"
            ) from None

    def _reading(self, read: Callable[[], Any]) -> Any:
        """``read()``, again over a fresh listing when a segment vanished under it.

        A part's writer deletes the segments its compaction covers after publishing the
        compacted one, so a reader that listed the set before that finds a segment gone;
        the fresh listing holds the same utterances in the compacted segment.
        """
        for _ in range(10):
            try:
                return read()
            except FileNotFoundError:
                self._index = _SetIndex(self.store.backend.segments(self.name))
        raise StoreError(f"set {self.name!r} of {self.store.location} kept changing while it was read; retry once its writers have closed")

    def read(self, utt_id: str) -> np.ndarray:
        """One utterance, ``(T, D)`` or ``(L, T, D)``, in the stored dtype."""
        return self._reading(lambda: self._read(utt_id))

    def _read(self, utt_id: str) -> np.ndarray:
        position, start, stop, _ = self._locate(utt_id)
        out = np.empty(self.meta.frame_shape(stop - start), dtype=self.meta.dtype)
        self.store.backend.read_frames(self._index.segments[position], start, stop, out)
        return out

    def read_all(self, ids: Iterable[str] | None = None) -> Ragged:
        """Many utterances as one ``Ragged`` (all committed ones by default, else ``ids`` in that order).

        Adjacent utterances are read in one call, so the whole set is one
        contiguous read per part into a single preallocated array. When ``ids``
        come in another order than stored (a manifest's order after a sharded
        extraction), each part that contributes at least half its frames is
        still read whole, once, and its utterances copied into place.
        """
        ids = None if ids is None else list(ids)
        return self._reading(lambda: self._read_all(ids))

    def _read_all(self, ids: list[str] | None) -> Ragged:
        chosen = self._index.ids if ids is None else list(ids)
        segments = self._index.segments
        spans = np.empty((len(chosen), 3), dtype=np.int64)  # segment position, first frame, end frame
        for i, utt_id in enumerate(chosen):
            spans[i] = self._locate(utt_id)[:3]
        lengths = spans[:, 2] - spans[:, 1]
        offsets = np.zeros(len(chosen) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.empty(self.meta.frame_shape(int(offsets[-1])), dtype=self.meta.dtype)
        wanted = np.bincount(spans[:, 0], weights=lengths, minlength=len(segments)) if len(chosen) else []
        whole = {p for p, n in enumerate(wanted) if n and 2 * n >= segments[p].frames}
        # Coalesce consecutive utterances that are also consecutive on disk into runs.
        runs: list[list[int]] = []  # [segment position, first frame, end frame, output frame]
        for i in range(len(chosen)):
            position, start, stop = (int(v) for v in spans[i])
            if runs and runs[-1][0] == position and runs[-1][2] == start:
                runs[-1][2] = stop
            else:
                runs.append([position, start, stop, int(offsets[i])])
        per_segment: dict[int, list[list[int]]] = {}
        for run in runs:
            per_segment.setdefault(run[0], []).append(run)
        backend = self.store.backend
        for position, its_runs in per_segment.items():
            segment = segments[position]
            if position in whole and len(its_runs) > 1:
                block = np.empty(self.meta.frame_shape(segment.frames), dtype=self.meta.dtype)
                backend.read_frames(segment, 0, segment.frames, block)
                for _, start, stop, at in its_runs:
                    data[..., at : at + stop - start, :] = block[..., start:stop, :]
                del block
            else:
                for _, start, stop, at in its_runs:
                    backend.read_frames(segment, start, stop, data[..., at : at + stop - start, :])
        return Ragged(list(chosen), offsets, data)

    def failures(self) -> list[Failure]:
        """Utterances whose latest attempt failed and that no part has committed since, by id."""
        return list(self._index.failures)

    def __repr__(self) -> str:
        return f"<FeatureSet {self.name!r} of {self.store.location}: {len(self)} utterances>"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


class Writer:
    """Appends utterances to one part of a set, exactly once. Create with ``Store.writer``.

    ``write`` buffers; ``commit`` writes the buffer as one segment, durably
    (also done on close and when the buffer passes ``MAX_BUFFER_BYTES``); close
    compacts the part into one segment and releases the lock. A writer killed
    before a commit loses exactly the utterances written since the last one:
    ``done`` on the next run tells it what to skip.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        provenance: Provenance,
        *,
        frame_rate: float | None,
        layers: int | None,
        part: str | None,
    ) -> None:
        check_name("set", name)
        part = check_name("part", DEFAULT_PART if part is None else part)
        if not isinstance(provenance, Provenance):
            raise StoreError(f"writer for set {name!r}: provenance must be a features.provenance.Provenance")
        if provenance.dtype not in DTYPES:
            raise StoreError(f"set {name!r}: dtype {provenance.dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        if not isinstance(provenance.dim, int) or provenance.dim < 1:
            raise StoreError(f"set {name!r}: provenance.dim must be a positive int, got {provenance.dim!r}")
        if layers is not None and (not isinstance(layers, int) or layers < 1):
            raise StoreError(f"set {name!r}: layers must be None or a positive int, got {layers!r}")
        if frame_rate is not None and not frame_rate > 0:
            raise StoreError(f"set {name!r}: frame_rate must be None or positive, got {frame_rate!r}")
        self.store = store
        self.name = name
        self.part = part
        backend = store.backend
        what = f"set {name!r} part {part!r} of {store.location}"
        self._lock = WriterLock(backend.lock_path(name, part), what)
        self._lock.acquire()
        try:
            self.meta = self._create_or_check(SetMeta(provenance, None if frame_rate is None else float(frame_rate), layers))
            backend.cleanup(name, part)
            segments = backend.segments(name)
            self._drop_covered(segments)
            index = _SetIndex(segments)
        except BaseException:
            self._lock.release()
            raise
        self._done = set(index.where)
        self._failed = {f.utt_id for f in index.failures}
        self._seq = 1 + max((s.seq for s in segments if s.part == part), default=0)
        self._pending: dict[str, tuple[np.ndarray, str, dict[str, int]]] = {}
        self._pending_failures: list[Failure] = []
        self._pending_bytes = 0
        self._closed = False

    def _create_or_check(self, meta: SetMeta) -> SetMeta:
        backend = self.store.backend
        creating = WriterLock(backend.lock_path(self.name, None), f"{self.store.location} (creating sets)")
        creating.acquire(wait=True)
        try:
            existing = backend.read_set_meta(self.name)
            if existing is None:
                backend.write_set_meta(self.name, meta)
                return meta
        finally:
            creating.release()
        old, new = existing.provenance, meta.provenance
        if old.identity() != new.identity():
            raise StoreError(
                f"set {self.name!r} in {self.store.location} was made with identity {old.identity()[:16]} "
                f"(encoder {old.encoder}, manifest {old.manifest_hash[:12]}, dtype {old.dtype}, dim {old.dim}), "
                f"not {new.identity()[:16]} (encoder {new.encoder}, manifest {new.manifest_hash[:12]}, "
                f"dtype {new.dtype}, dim {new.dim}); differences (set -> this run): {'; '.join(old.differences(new))}. "
                "Run with the set's settings, use another --set name, or delete the set"
            )
        # A resuming writer may leave frame_rate/layers out; given, they must agree.
        if (meta.frame_rate is not None and meta.frame_rate != existing.frame_rate) or (
            meta.layers is not None and meta.layers != existing.layers
        ):
            raise StoreError(
                f"set {self.name!r} in {self.store.location} has frame_rate={existing.frame_rate}, layers={existing.layers}; "
                f"this writer asked for frame_rate={meta.frame_rate}, layers={meta.layers}"
            )
        return existing

    def _drop_covered(self, segments: list[Segment]) -> None:
        """Delete this part's segments that a compaction covered before its writer died."""
        live = {(s.part, s.seq) for s in live_segments(segments)}
        for segment in segments:
            if segment.part == self.part and (segment.part, segment.seq) not in live:
                self.store.backend.delete_segment(self.name, segment)

    @property
    def done(self) -> set[str]:
        """Committed utterance ids of the whole set (all parts, as of opening, plus this writer's commits)."""
        return set(self._done)

    @property
    def failed(self) -> set[str]:
        """Utterances recorded as failed and not committed since."""
        return set(self._failed)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"writer for set {self.name!r} part {self.part!r} of {self.store.location} is closed")

    def write(self, utt_id: str, array: Any, counts: Mapping[str, int] | None = None) -> str:
        """Buffer ``array`` (``(T, D)`` or ``(L, T, D)``) for ``utt_id``, cast to the set's dtype.

        ``counts`` are whole numbers the encoder reports for this utterance (e.g.
        ``{"frames_without_face": 3}``); they are kept with it and summed in
        :attr:`SetInfo.counts`. Returns the sha256 of the stored bytes, as
        ``features verify`` will check it.
        """
        self._check_open()
        if not isinstance(utt_id, str) or not utt_id:
            raise StoreError(f"set {self.name!r}: utterance ids must be non-empty strings, got {utt_id!r}")
        if utt_id in self._done:
            raise StoreError(
                f"utterance {utt_id!r} is already committed to set {self.name!r} of {self.store.location}; "
                "skip the ids in writer.done"
            )
        meta = self.meta
        array = np.asarray(array)
        expected = meta.frame_shape(0)
        if array.ndim != len(expected) or array.shape[-1] != meta.dim or (meta.layers and array.shape[0] != meta.layers):
            want = "(T, {})".format(meta.dim) if meta.layers is None else f"({meta.layers}, T, {meta.dim})"
            raise StoreError(f"utterance {utt_id!r}: set {self.name!r} stores arrays of shape {want}, got {array.shape}")
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise StoreError(f"utterance {utt_id!r}: expected a real numeric array, got dtype {array.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            stored = np.ascontiguousarray(array, dtype=np.dtype(meta.dtype).newbyteorder("<"))
        if not np.isfinite(stored).all():
            bad = int((~np.isfinite(stored)).sum())
            raise StoreError(
                f"utterance {utt_id!r}: {bad} values are NaN or infinite once stored as {meta.dtype} "
                f"(largest magnitude given {np.nanmax(np.abs(array.astype(np.float64))) if array.size else 0:.4g}); "
                "fix the encoder output, or store float32"
            )
        counts = dict(counts or {})
        for name, value in counts.items():
            if not isinstance(name, str) or not name or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise StoreError(f"utterance {utt_id!r}: counts must map names to whole numbers, got {name!r}: {value!r}")
        sha = hashlib.sha256(stored.tobytes()).hexdigest()
        previous = self._pending.pop(utt_id, None)
        if previous is not None:
            self._pending_bytes -= previous[0].nbytes
        self._pending[utt_id] = (stored, sha, {name: int(value) for name, value in counts.items()})
        self._pending_bytes += stored.nbytes
        self._pending_failures = [f for f in self._pending_failures if f.utt_id != utt_id]
        self._failed.discard(utt_id)
        if self._pending_bytes >= MAX_BUFFER_BYTES:
            self.commit()
        return sha

    def fail(self, utt_id: str, stage: str, message: str, *, time: str | None = None) -> None:
        """Record that ``utt_id`` failed at ``stage``; durable at the next commit.

        ``time`` (ISO 8601) defaults to now; merges pass the original one.
        """
        self._check_open()
        if utt_id in self._done:
            raise StoreError(f"utterance {utt_id!r} is already committed to set {self.name!r}; it cannot also fail")
        dropped = self._pending.pop(utt_id, None)
        if dropped is not None:
            self._pending_bytes -= dropped[0].nbytes
        self._pending_failures.append(Failure(str(utt_id), str(stage), str(message), time or _now()))
        self._failed.add(utt_id)

    def commit(self) -> None:
        """Write everything buffered as one segment, durably; a no-op when nothing is buffered."""
        self._check_open()
        if not self._pending and not self._pending_failures:
            return
        ids = list(self._pending)
        arrays = [self._pending[u][0] for u in ids]
        lengths = np.array([a.shape[-2] for a in arrays], dtype=np.int64)
        index = {
            "ids": ids,
            "lengths": [int(n) for n in lengths],
            "sha256": [self._pending[u][1] for u in ids],
            "failures": [f.to_json() for f in self._pending_failures],
            "covers": [],
            "counts": index_counts([self._pending[u][2] for u in ids]),
        }
        self.store.backend.write_segment(
            self.name, self.meta, self.part, self._seq, index, arrays, int(lengths.sum())
        )
        self._seq += 1
        self._done.update(ids)
        self._pending.clear()
        self._pending_failures.clear()
        self._pending_bytes = 0

    def compact(self) -> None:
        """Copy this part's live segments into one and delete them (done on close)."""
        self._check_open()
        backend = self.store.backend
        mine = [s for s in backend.segments(self.name) if s.part == self.part]
        live = live_segments(mine)
        if len(live) <= 1:
            self._drop_covered(mine)
            return
        ids = [u for s in live for u in s.ids]
        committed = set(ids)
        index = {
            "ids": ids,
            "lengths": [int(n) for s in live for n in s.lengths],
            "sha256": [h for s in live for h in s.sha256],
            "failures": [f.to_json() for s in live for f in s.failures if f.utt_id not in committed],
            "covers": sorted(s.seq for s in mine),
            "counts": index_counts([s.utterance_counts(i) for s in live for i in range(len(s.ids))]),
        }
        frames = sum(s.frames for s in live)
        backend.write_segment(self.name, self.meta, self.part, self._seq, index, self._copy_blocks(live), frames)
        self._seq += 1
        for segment in mine:
            backend.delete_segment(self.name, segment)

    def _copy_blocks(self, segments: list[Segment]) -> Iterator[np.ndarray]:
        meta = self.meta
        per_frame = (meta.layers or 1) * meta.dim * np.dtype(meta.dtype).itemsize
        step = max(1, COPY_BYTES // per_frame)
        for segment in segments:
            for start in range(0, segment.frames, step):
                stop = min(segment.frames, start + step)
                block = np.empty(meta.frame_shape(stop - start), dtype=meta.dtype)
                self.store.backend.read_frames(segment, start, stop, block)
                yield block

    def close(self) -> None:
        """Commit, compact the part, publish (Zarr: consolidated metadata), release the lock."""
        if self._closed:
            return
        try:
            self.commit()
            self.compact()
            self.store.backend.finish()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Writer set={self.name!r} part={self.part!r} of {self.store.location}>"
