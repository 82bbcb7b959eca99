"""The storage back-end contract, its registry, and the records every back-end shares.

The store is log-structured. A feature set is a small metadata record (its
provenance, frame rate, layer count) plus a list of immutable *segments*. A
segment holds the frames of some utterances concatenated along time in one
contiguous array, the index that cuts it (ids, lengths, a sha256 per utterance)
and the failures recorded since the previous segment. A segment is written
under a temporary name, made durable, then renamed into place: it exists
completely or not at all, so a writer killed at any instant loses at most what
it had not committed, and never leaves anything that looks complete but is not.

Segments belong to *parts* (``main`` unless a writer asks for another), each
written by one writer at a time. A writer numbers its segments 1, 2, 3...; when
it closes it *compacts* its part: all live segments are copied into one new
segment that records which it ``covers``, and the covered ones are then deleted.
Readers ignore covered segments, so a crash mid-compaction is harmless too.
After compaction a part is one contiguous array, which is what makes
``read_all`` a single read per part.

What a resume guarantees: after any sequence of ``kill -9`` and reruns of the
same extraction, the committed ids and every utterance's stored bytes (so its
sha256) equal those of an uninterrupted run, and no utterance is committed
twice. The container's bytes are not guaranteed equal: segment numbers, the
``covers`` lists, failure timestamps, HDF5's internal metadata and (when
failed utterances are retried) the order of utterances within a part differ.

A back-end (``hdf5``, ``zarr``) only says how segments and set records are laid
out in its container; everything else (writers, locks, readers, verification)
is shared code in ``features.store``.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from features.provenance import Provenance

STORE_FORMAT = "emocache-features"
STORE_FORMAT_VERSION = 1
DEFAULT_PART = "main"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class StoreError(Exception):
    """A feature store cannot do what was asked; the message says why and what to do."""


class StoreLockedError(StoreError):
    """Another writer holds the lock on this set or part; the message names it (host, pid, since)."""


def relist_while_compacting(part: Any, list_part: Callable[[Any], list["Segment"]], attempts: int = 10) -> list["Segment"]:
    """``list_part(part)``, listed again while a segment vanishes between listing and reading it.

    A part's writer publishes its compacted segment before it deletes the segments that one
    covers, so a segment gone since the listing means the listing is stale, and a fresh one
    holds the segment that covers it. ``list_part`` raises FileNotFoundError for a vanished one.
    """
    for _ in range(attempts):
        try:
            return list_part(part)
        except FileNotFoundError:
            continue
    raise StoreError(f"the segments of {part} kept changing while they were listed; retry once its writer has closed")


@dataclass(frozen=True)
class Failure:
    """An utterance that could not be extracted: which stage failed, the error, when (ISO 8601, UTC)."""

    utt_id: str
    stage: str
    error: str
    time: str

    def to_json(self) -> dict[str, str]:
        return {"utt_id": self.utt_id, "stage": self.stage, "error": self.error, "time": self.time}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> "Failure":
        return cls(data["utt_id"], data["stage"], data["error"], data["time"])


@dataclass(frozen=True)
class SetInfo:
    """What ``features info`` shows about one feature set."""

    name: str
    dim: int
    layers: int | None
    dtype: str
    frame_rate: float | None
    provenance: Provenance
    identity: str
    count: int
    failed: int
    nbytes: int
    #: Totals of the per-utterance counts the encoder reported (e.g. ``frames_without_face``).
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "dim": self.dim,
            "layers": self.layers,
            "dtype": self.dtype,
            "frame_rate": self.frame_rate,
            "nbytes": self.nbytes,
            "failed": self.failed,
            "identity": self.identity,
            "provenance": self.provenance.to_json(),
            "counts": dict(self.counts),
        }


@dataclass(frozen=True)
class SetMeta:
    """The record a set is created with; identical in every back-end."""

    provenance: Provenance
    frame_rate: float | None
    layers: int | None

    @property
    def dtype(self) -> str:
        return self.provenance.dtype

    @property
    def dim(self) -> int:
        return int(self.provenance.dim)

    def frame_shape(self, frames: int) -> tuple[int, ...]:
        """Shape of ``frames`` concatenated frames: ``(frames, D)`` or ``(L, frames, D)``."""
        return (frames, self.dim) if self.layers is None else (self.layers, frames, self.dim)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "provenance": self.provenance.to_json(),
            "frame_rate": self.frame_rate,
            "layers": self.layers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SetMeta":
        layers = data.get("layers")
        rate = data.get("frame_rate")
        return cls(
            Provenance.from_json(data["provenance"]),
            None if rate is None else float(rate),
            None if layers is None else int(layers),
        )


@dataclass(frozen=True)
class Segment:
    """One immutable segment as listed by a back-end. ``handle`` is the back-end's own locator.

    ``counts`` maps a count's name to one whole number per id (what the encoder
    reported for that utterance, e.g. video frames without a face); a name an
    utterance did not report counts 0 for it.
    """

    part: str
    seq: int
    ids: tuple[str, ...]
    lengths: np.ndarray
    sha256: tuple[str, ...]
    failures: tuple[Failure, ...]
    covers: tuple[int, ...]
    handle: Any
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def utterance_counts(self, position: int) -> dict[str, int]:
        """The counts of the utterance at ``position`` in :attr:`ids`: every name this segment records."""
        return {name: values[position] for name, values in self.counts.items()}

    @property
    def frames(self) -> int:
        return int(self.lengths.sum())

    def index_json(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "lengths": [int(n) for n in self.lengths],
            "sha256": list(self.sha256),
            "failures": [f.to_json() for f in self.failures],
            "covers": list(self.covers),
            "counts": {name: list(values) for name, values in self.counts.items()},
        }

    @classmethod
    def from_index_json(cls, part: str, seq: int, data: dict[str, Any], handle: Any) -> "Segment":
        ids = tuple(data["ids"])
        counts = {str(name): tuple(int(v) for v in values) for name, values in data.get("counts", {}).items()}
        for name, values in counts.items():
            if len(values) != len(ids):
                raise StoreError(f"segment {handle} lists {len(values)} {name!r} counts for {len(ids)} utterances; run `features verify`")
        return cls(
            part,
            seq,
            ids,
            np.asarray(data["lengths"], dtype=np.int64),
            tuple(data["sha256"]),
            tuple(Failure.from_json(f) for f in data.get("failures", [])),
            tuple(int(s) for s in data.get("covers", [])),
            handle,
            counts,
        )


def index_counts(per_utterance: list[dict[str, int]]) -> dict[str, list[int]]:
    """Per-utterance count dicts as the index's columns: name -> one value per utterance."""
    names = sorted({name for counts in per_utterance for name in counts})
    return {name: [int(counts.get(name, 0)) for counts in per_utterance] for name in names}


def check_name(kind: str, name: str) -> str:
    """Set and part names become file names; refuse anything that could escape or collide."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


class Backend(ABC):
    """How one container format lays out set records and segments.

    Contract, for every back-end:

    * ``mode`` is ``"r"`` or ``"a"``. In ``"r"`` nothing is ever created,
      modified, locked or touched: not even a lock file (stores sit on
      read-only shares).
    * ``write_set_meta`` and ``write_segment`` are atomic and durable: when they
      return, the record survives a crash of this process (fsync), and a crash
      during them leaves no trace that ``set_names``/``segments`` will report.
      Leftovers of a crashed write may stay on disk until ``cleanup`` runs.
    * ``segments`` lists every committed segment of a set, covered ones
      included (the reader drops those), in no particular order.
    * ``read_frames`` copies frames ``[start, stop)`` (axis -2) of a segment
      into ``out``, an array view of exactly that shape.
    * Only one process writes a given part at a time; the caller holds the lock
      at ``lock_path(name, part)`` while it calls ``write_segment``,
      ``delete_segment`` and ``cleanup`` for that part.
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    # Whether URLs (http(s)://, s3://...) can be read through fsspec.
    reads_urls: ClassVar[bool] = False

    def __init__(self, location: str, mode: str) -> None:
        self.location = location
        self.mode = mode

    @classmethod
    @abstractmethod
    def exists(cls, location: str) -> bool:
        """Whether a store of this kind is at ``location``."""

    @abstractmethod
    def create(self) -> None:
        """Create an empty store at ``self.location`` (mode "a" only, and only when absent).

        ``open_store`` holds the lock at :meth:`creation_lock_path` meanwhile, so no
        other process creates the same store at the same time.
        """

    @abstractmethod
    def creation_lock_path(self) -> Path:
        """The lock file held while the store is created; it may lie inside the store's folder."""

    @abstractmethod
    def check(self) -> None:
        """Raise StoreError unless ``self.location`` holds a store of this format (reads only)."""

    @abstractmethod
    def set_names(self) -> list[str]:
        """Names of the sets in the store, sorted."""

    @abstractmethod
    def read_set_meta(self, name: str) -> SetMeta | None:
        """The set's record, or None when there is no such set."""

    @abstractmethod
    def write_set_meta(self, name: str, meta: SetMeta) -> None:
        """Create the set with ``meta`` (atomic; called once per set, under the store's creation lock)."""

    @abstractmethod
    def segments(self, name: str) -> list[Segment]:
        """Every committed segment of set ``name`` (see class docstring)."""

    @abstractmethod
    def write_segment(
        self,
        name: str,
        meta: SetMeta,
        part: str,
        seq: int,
        index: dict[str, Any],
        blocks: Iterable[np.ndarray],
        frames: int,
    ) -> None:
        """Write one segment atomically and durably.

        ``index`` is ``Segment.index_json()`` for it; ``blocks`` yields arrays of
        ``meta.frame_shape(n)`` whose frames concatenate (axis -2) to ``frames``.
        """

    @abstractmethod
    def part_names(self, name: str) -> list[str]:
        """Parts of set ``name`` that exist on disk (with or without segments)."""

    @abstractmethod
    def delete_set(self, name: str) -> None:
        """Remove set ``name`` atomically (renamed away first, then deleted); the caller holds every lock."""

    @abstractmethod
    def delete_segment(self, name: str, segment: Segment) -> None:
        """Remove a covered segment (the caller holds its part's lock)."""

    @abstractmethod
    def read_frames(self, segment: Segment, start: int, stop: int, out: np.ndarray) -> None:
        """Copy frames ``[start, stop)`` of ``segment`` into ``out`` (see class docstring)."""

    @abstractmethod
    def lock_path(self, name: str, part: str | None) -> Path:
        """The lock file for writing ``part`` of set ``name`` (``part=None``: the store-wide creation lock)."""

    @abstractmethod
    def cleanup(self, name: str, part: str) -> None:
        """Remove leftovers of crashed writes to ``part`` (temporary segments)."""

    def finish(self) -> None:
        """Called when a writer closes, after compaction (Zarr consolidates metadata here)."""

    def close(self) -> None:
        """Release open handles."""

    def describe(self) -> str:
        return f"{self.name} store {self.location}"


_BACKENDS: dict[str, type[Backend]] = {}


def register(name: str):
    """Class decorator: make a ``Backend`` subclass available under ``name``."""

    def wrap(cls: type[Backend]) -> type[Backend]:
        if name in _BACKENDS:
            raise ValueError(f"store back-end {name!r} is already registered ({_BACKENDS[name].__name__})")
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return wrap


def backends() -> dict[str, type[Backend]]:
    """The registered back-ends by name."""
    return dict(_BACKENDS)


def backend_for(location: str) -> type[Backend]:
    """The back-end whose suffix ``location`` ends with; StoreError naming the valid suffixes otherwise."""
    stripped = location.rstrip("/").lower()
    for cls in _BACKENDS.values():
        if stripped.endswith(cls.suffixes):
            return cls
    valid = ", ".join(f"{s} ({cls.name})" for cls in _BACKENDS.values() for s in cls.suffixes)
    raise StoreError(f"cannot tell the store format of {location!r}: its name must end with one of {valid}")
