"""Reading a feature set: its live segments, where each utterance lives, and the reads themselves.

``store[name]`` returns a :class:`FeatureSet`, a snapshot of the set as
committed when it was opened (finished data and in-progress segments alike).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from features.records import Failure, Segment, SetInfo, SetMeta, StoreError
from features.ragged import Ragged

if TYPE_CHECKING:
    from features.base import Backend
    from features.store import Store

# Finishing, compaction, verify and merge copy frames in slices of at most this many bytes.
COPY_BYTES = 256 << 20
# What a back-end's read_frames raises on data that is damaged or gone.
READ_ERRORS = (OSError, ValueError, KeyError, StoreError)


def frame_blocks(backend: Backend, meta: SetMeta, segment: Segment, start: int, stop: int) -> Iterator[np.ndarray]:
    """Frames ``[start, stop)`` of ``segment``, read in blocks of at most ``COPY_BYTES`` (at least one frame)."""
    step = max(1, COPY_BYTES // meta.frame_bytes)
    for lo in range(start, stop, step):
        hi = min(stop, lo + step)
        block = np.empty(meta.frame_shape(hi - lo), dtype=meta.dtype)
        backend.read_frames(segment, lo, hi, block)
        yield block


def _runs(lengths: Sequence[int], frame_bytes: int) -> Iterator[tuple[int, int, int, int]]:
    """``(i, j, start, stop)``: utterances ``i..j-1`` hold frames ``[start, stop)``, at most
    ``COPY_BYTES`` of them (or one longer utterance alone)."""
    i = start = 0
    while i < len(lengths):
        j, stop = i, start
        while j < len(lengths) and (j == i or (stop - start + lengths[j]) * frame_bytes <= COPY_BYTES):
            stop += lengths[j]
            j += 1
        yield i, j, start, stop
        i, start = j, stop


def live_segments(segments: Iterable[Segment]) -> list[Segment]:
    """The segments readers see: those no later segment of the same part covers, by (part, seq)."""
    segments = list(segments)
    covered = {(s.part, c) for s in segments for c in s.covers}
    return sorted((s for s in segments if (s.part, s.seq) not in covered), key=lambda s: (s.part, s.seq))


class SetIndex:
    """Where each committed utterance lives, and the failures still standing, from a list of segments."""

    def __init__(self, segments: Iterable[Segment]) -> None:
        self.segments = live_segments(segments)
        self.ids: list[str] = []
        # utt_id -> (segment position, first frame, end frame, sha256)
        self.where: dict[str, tuple[int, int, int, str]] = {}
        # A second copy of an id (two parts wrote it): kept for verify, never read.
        self.duplicates: list[tuple[str, Segment, int, int, str]] = []
        latest: dict[str, Failure] = {}
        # What the encoder counted, per committed utterance in the order of ids.
        self.utterance_counts: list[dict[str, int]] = []
        for position, segment in enumerate(self.segments):
            start = 0
            for i, (utt_id, length, sha) in enumerate(zip(segment.ids, segment.lengths, segment.sha256)):
                stop = start + int(length)
                if utt_id in self.where:
                    self.duplicates.append((utt_id, segment, start, stop, sha))
                else:
                    self.where[utt_id] = (position, start, stop, sha)
                    self.ids.append(utt_id)
                    self.utterance_counts.append(segment.utterance_counts(i))
                start = stop
            for failure in segment.failures:
                if _not_older(latest.get(failure.utt_id), failure):
                    latest[failure.utt_id] = failure
        self.failures = [f for u, f in sorted(latest.items()) if u not in self.where]
        self.frames = sum(stop - start for _, start, stop, _ in self.where.values())
        # Zeros included, so a name whose total is 0 still shows.
        self.counts: Counter[str] = Counter()
        for counts in self.utterance_counts:
            self.counts.update(counts)


def _not_older(current: Failure | None, candidate: Failure) -> bool:
    return current is None or candidate.time >= current.time


class FeatureSet:
    """One named feature set as committed when it was opened (a snapshot; reopen to see newer commits)."""

    def __init__(self, store: Store, name: str, meta: SetMeta, segments: list[Segment]) -> None:
        self.store = store
        self.name = name
        self.meta = meta
        self._index = SetIndex(segments)

    @property
    def info(self) -> SetInfo:
        meta = self.meta
        per_frame = meta.frame_bytes
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
                self._index = SetIndex(self.store.backend.segments(self.name))
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
        # A str is iterable too: it would be read as one id per character.
        if isinstance(ids, str):
            raise StoreError(f"set {self.name!r}: read_all takes a list of ids, not the string {ids!r}; pass [{ids!r}], or read({ids!r}) reads one")
        # The ids as of now: a read that lists the set again (see _reading) reads these, not newer commits.
        chosen = list(self._index.ids if ids is None else ids)
        return self._reading(lambda: self._read_all(chosen))

    def _read_all(self, chosen: list[str]) -> Ragged:
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

    def utterances(
        self,
        segment: Segment,
        wanted: Sequence[bool] | None = None,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> Iterator[tuple[str, np.ndarray | None]]:
        """``(utt_id, frames)`` for every utterance ``segment`` holds (one of :attr:`segments`), in stored order.

        Runs of whole utterances are read at once, up to ``COPY_BYTES`` (a longer utterance
        alone), so a whole set streams through bounded memory; ``frames`` is a view into the
        run, in the stored dtype. An utterance whose ``wanted`` entry is False yields None
        and a run of only those is not read. With ``on_error``, a run that cannot be read
        (``READ_ERRORS``) is read again one utterance at a time, and each utterance that
        still cannot be read goes to ``on_error(utt_id, error)`` and yields None; without
        it, the error propagates. A second copy of an utterance that another part also
        committed (see :meth:`duplicates`) is read here like any other.
        """
        meta = self.meta
        ids, lengths = segment.ids, segment.lengths
        wanted = [True] * len(ids) if wanted is None else list(wanted)
        for i, j, start, stop in _runs(lengths, meta.frame_bytes):
            block, unreadable = None, set()
            if any(wanted[i:j]):
                block = np.empty(meta.frame_shape(stop - start), dtype=meta.dtype)
                try:
                    self.store.backend.read_frames(segment, start, stop, block)
                except READ_ERRORS:
                    if on_error is None:
                        raise
                    unreadable = self._read_each(segment, i, j, start, block, wanted, on_error)
            at = 0
            for k in range(i, j):
                keep = block is not None and wanted[k] and k not in unreadable
                yield ids[k], (block[..., at : at + lengths[k], :] if keep else None)
                at += lengths[k]

    def _read_each(
        self, segment: Segment, i: int, j: int, start: int, block: np.ndarray, wanted: list[bool],
        on_error: Callable[[str, Exception], None],
    ) -> set[int]:
        """Read utterances ``i..j-1`` of ``segment`` into their places in ``block`` one by one; the positions that fail."""
        failed = set()
        at = start
        for k in range(i, j):
            n = segment.lengths[k]
            if wanted[k]:
                try:
                    self.store.backend.read_frames(segment, at, at + n, block[..., at - start : at - start + n, :])
                except READ_ERRORS as e:
                    on_error(segment.ids[k], e)
                    failed.add(k)
            at += n
        return failed

    def duplicates(self) -> list[tuple[str, Segment, str]]:
        """``(utt_id, segment, sha256)`` of each further copy of an utterance that two parts committed.

        Reads return the first copy (:meth:`segment_of`); the others are kept for ``features verify``.
        """
        return [(utt_id, segment, sha) for utt_id, segment, _, _, sha in self._index.duplicates]

    def segment_of(self, utt_id: str) -> Segment:
        """The segment that ``read(utt_id)`` reads from."""
        return self._index.segments[self._locate(utt_id)[0]]

    def failures(self) -> list[Failure]:
        """Utterances whose latest attempt failed and that no part has committed since, by id."""
        return list(self._index.failures)

    def __repr__(self) -> str:
        return f"<FeatureSet {self.name!r} of {self.store.location}: {len(self)} utterances>"


