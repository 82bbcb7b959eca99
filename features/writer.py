"""Writing a feature set: exactly once, resumable, one locked writer per part.

``store.writer(...)`` returns a :class:`Writer`. While it is open it holds its
part's lock and, shared, the store's writers' lock; the last writer of a store
to close finishes it (``features.finish``).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.finish import finish_when_last
from features.lock import WriterLock
from features.provenance import Provenance
from features.reader import SetIndex, frame_blocks, live_segments
from features.records import DEFAULT_PART, STORE_DTYPES, Failure, Segment, SegmentIndex, SetMeta, StoreError, check_name, index_counts

if TYPE_CHECKING:
    from features.store import Store

# A writer commits by itself when its buffer grows past this, so memory stays bounded.
MAX_BUFFER_BYTES = 512 << 20
# Segment names are 8 digits (FORMAT.md): readers skip any other name, so a number past this is never written.
LAST_SEQ = 99_999_999
# A part without segments starts below this: room above for 10 million more.
_FIRST_SEQ_BELOW = 90_000_000


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value: Any) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and math.isfinite(value) and value > 0


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


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
        finish: bool = True,
    ) -> None:
        check_name("set", name)
        part = check_name("part", DEFAULT_PART if part is None else part)
        if not isinstance(provenance, Provenance):
            raise StoreError(f"writer for set {name!r}: provenance must be a features.provenance.Provenance")
        if provenance.dtype not in STORE_DTYPES:
            raise StoreError(f"set {name!r}: dtype {provenance.dtype!r} is not supported; use one of {', '.join(STORE_DTYPES)}")
        # bool is an int to Python, but the set's record would hold true, which every later reader refuses as damage.
        if not _positive_int(provenance.dim):
            raise StoreError(f"set {name!r}: provenance.dim must be a positive int, got {provenance.dim!r}")
        if layers is not None and not _positive_int(layers):
            raise StoreError(f"set {name!r}: layers must be None or a positive int, got {layers!r}")
        if frame_rate is not None and not _positive_number(frame_rate):
            raise StoreError(f"set {name!r}: frame_rate must be None or a positive number of frames per second, got {frame_rate!r}")
        self.store = store
        self.name = name
        self.part = part
        self._finish = finish
        backend = store.backend
        what = f"set {name!r} part {part!r} of {store.location}"
        # Shared with every other open writer; a finish (exclusive) is never under way while we write.
        self._store_lock = store.writers_lock(shared=True)
        self._store_lock.acquire(wait=True)
        self._lock = WriterLock(backend.lock_path(name, part), what)
        made = _missing_folders(self._lock.path.parent)
        try:
            self._lock.acquire()
        except BaseException:
            self._store_lock.release()  # the part's folders are its holder's: nothing of ours to remove
            raise
        try:
            self.meta = self._create_or_check(SetMeta(provenance, None if frame_rate is None else float(frame_rate), layers))
            backend.cleanup(name, part)
            segments = backend.segments(name)
            self._drop_covered(segments)
            index = SetIndex(segments)
        except BaseException:
            self._undo_open(made)
            raise
        self._done = set(index.where)
        self._failed = {f.utt_id for f in index.failures}
        used = [s.seq for s in segments if s.part == part]
        # Never a number the part had before a finish (or a delete) removed its segments: a reader
        # that listed the old segment would read the new one's frames at the old one's offsets.
        # Random from the OS, not the random module, whose state forked workers share.
        self._seq = max(used) + 1 if used else 1 + secrets.randbelow(_FIRST_SEQ_BELOW)
        self._pending: dict[str, tuple[np.ndarray, str, dict[str, int]]] = {}
        self._pending_failures: list[Failure] = []
        self._pending_bytes = 0
        self._closed = False

    def _undo_open(self, made: list[Path]) -> None:
        """Release the locks of a refused open and, when no other writer is open, remove the folders
        it made for its lock: a finished HDF5 store must stay one file, not gain an empty ``.parts``."""
        self._lock.release()
        self._store_lock.release()
        # Exclusive, so no writer is opening meanwhile and about to put its lock in one of them;
        # its release removes the writers' lock file too, as a finish does.
        alone = self.store.writers_lock()
        if not alone.try_acquire():
            return
        try:
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    pass  # not empty: something else was put in it meanwhile
        finally:
            alone.release()

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
        """Delete this part's segments that a compaction covered before its writer died.

        Only once the covering segments are known to hold every utterance of the
        covered one with the same checksum: a ``covers`` list that says otherwise
        is damage, and deleting on its word would lose committed data.
        """
        mine = [s for s in segments if s.part == self.part]
        live = live_segments(mine)
        held = {(u, h) for s in live for u, h in zip(s.ids, s.sha256)}
        live_keys = {s.seq for s in live}
        for segment in mine:
            if segment.seq in live_keys:
                continue
            lost = [u for u, h in zip(segment.ids, segment.sha256) if (u, h) not in held]
            if lost:
                cover = next(s for s in mine if segment.seq in s.covers)
                raise StoreError(
                    f"segment {cover.handle} says it covers segment {segment.handle}, but lacks {len(lost)} of its "
                    f"utterances ({lost[0]!r}...); refusing to delete committed data: run `features verify` and restore "
                    "the store from a copy"
                )
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

    def _check_id(self, utt_id: Any) -> None:
        if not isinstance(utt_id, str) or not utt_id:
            raise StoreError(f"set {self.name!r}: utterance ids must be non-empty strings, got {utt_id!r}")
        if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) < 0xE000 for c in utt_id):
            # HDF5 strings end at a NUL, and every store writes ids as UTF-8.
            raise StoreError(f"set {self.name!r}: utterance id {utt_id!r} holds a control character or invalid UTF-8; fix it in the manifest")

    def write(self, utt_id: str, array: Any, counts: Mapping[str, int] | None = None) -> str:
        """Buffer ``array`` (``(T, D)`` or ``(L, T, D)``) for ``utt_id``, cast to the set's dtype.

        ``counts`` are whole numbers the encoder reports for this utterance (e.g.
        ``{"frames_without_face": 3}``); they are kept with it and summed in
        :attr:`SetInfo.counts`. Returns the sha256 of the stored bytes, as
        ``features verify`` will check it.
        """
        self._check_open()
        self._check_id(utt_id)
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
            # Always a copy: the caller may refill its array before the commit, under our checksum.
            stored = np.array(array, dtype=np.dtype(meta.dtype).newbyteorder("<"), order="C", copy=True)
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
            check_name("count", name)
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
        self._check_id(utt_id)
        if utt_id in self._done:
            raise StoreError(f"utterance {utt_id!r} is already committed to set {self.name!r}; it cannot also fail")
        dropped = self._pending.pop(utt_id, None)
        if dropped is not None:
            self._pending_bytes -= dropped[0].nbytes
        self._pending_failures.append(Failure(utt_id, str(stage), str(message), time or _now()))
        self._failed.add(utt_id)

    def commit(self) -> None:
        """Write everything buffered as one segment, durably; a no-op when nothing is buffered."""
        self._check_open()
        if not self._pending and not self._pending_failures:
            return
        ids = list(self._pending)
        arrays = [self._pending[u][0] for u in ids]
        index = SegmentIndex(
            ids,
            [a.shape[-2] for a in arrays],
            [self._pending[u][1] for u in ids],
            self._pending_failures,
            counts=index_counts([self._pending[u][2] for u in ids]),
        )
        self._write_segment(index, arrays)
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
        index = SegmentIndex(
            ids,
            [n for s in live for n in s.lengths],
            [h for s in live for h in s.sha256],
            [f for s in live for f in s.failures if f.utt_id not in committed],
            sorted(s.seq for s in mine),
            index_counts([s.utterance_counts(i) for s in live for i in range(len(s.ids))]),
        )
        self._write_segment(index, self._copy_blocks(live))
        for segment in mine:
            backend.delete_segment(self.name, segment)

    def _write_segment(self, index: SegmentIndex, blocks: Iterable[np.ndarray]) -> None:
        if self._seq > LAST_SEQ:
            raise StoreError(
                f"part {self.part!r} of set {self.name!r} in {self.store.location} has used every segment number; "
                f"close its writers and run `features compact {self.store.location}`, then write on"
            )
        self.store.backend.write_segment(self.name, self.meta, self.part, self._seq, index, blocks)
        self._seq += 1

    def _copy_blocks(self, segments: list[Segment]) -> Iterator[np.ndarray]:
        for segment in segments:
            yield from frame_blocks(self.store.backend, self.meta, segment, 0, segment.frames)

    def close(self) -> None:
        """Commit, compact the part, release the locks; the store's last open writer then finishes it."""
        if self._closed:
            return
        try:
            self.commit()
            self.compact()
        finally:
            self._closed = True
            self._lock.release()
            self._store_lock.release()
        if self._finish:
            finish_when_last(self.store)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Writer set={self.name!r} part={self.part!r} of {self.store.location}>"
