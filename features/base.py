"""The storage back-end contract, its registry, and the records every back-end shares.

A store has two states. While extraction runs it is log-structured: a feature
set is a small record (its provenance, frame rate, layer count) plus a list of
immutable *segments*. A segment holds the frames of some utterances
concatenated along time in one contiguous array, the index that cuts it (ids,
lengths, a sha256 per utterance) and the failures recorded since the previous
segment. A segment is written under a temporary name, made durable, then
renamed into place: it exists completely or not at all, so a writer killed at
any instant loses at most what it had not committed, and never leaves anything
that looks complete but is not.

Segments belong to *parts* (``main`` unless a writer asks for another), each
written by one writer at a time. A writer numbers its segments upwards from the
part's highest number, or from a random one (of 90 million) in a part without
segments, so that a reader that listed a segment since removed by a finish does
not meet a new one under its name. When it closes it *compacts* its part: all
live segments are copied into one new segment that records which it ``covers``,
and the covered ones are then deleted.
Readers ignore covered segments, so a crash mid-compaction is harmless too.

When the last writer of a store closes (or ``Store.finish``, ``features
compact``), the store is *finished*: every set becomes one standard group of
plain arrays (``data``, ``offsets``, ``ids``, ``sha256``, ``counts/<name>``)
with its record in attributes, laid out as ``features/FORMAT.md`` documents,
and the segments are removed. A finished set reads as one segment of part
``FINISHED_PART``; a writer adding to it writes segments beside it as before,
and the next finish folds them in.

What a resume guarantees: after any sequence of ``kill -9`` and reruns of the
same extraction, the committed ids and every utterance's stored bytes (so its
sha256) equal those of an uninterrupted run, and no utterance is committed
twice. The container's bytes are not guaranteed equal: segment numbers, the
``covers`` lists, failure timestamps, HDF5's internal metadata and (when
failed utterances are retried) the order of utterances within a part differ.

A back-end (``hdf5``, ``zarr``) only says how segments, set records and
finished sets are laid out in its container; everything else (writers, locks,
readers, finishing, verification) is shared code in ``features.store``,
``features.reader``, ``features.writer`` and ``features.finish``. A new back-end
is one module with a ``@register``-ed ``Backend`` subclass, imported by
``features/__init__.py``, and one test class that subclasses
``features.testing.StoreSuite``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from features.records import (  # noqa: F401 - re-exported: the records are part of this contract
    DEFAULT_PART,
    FINISHED_PART,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    STORE_DTYPES,
    Failure,
    Segment,
    SegmentIndex,
    SetInfo,
    SetMeta,
    StoreError,
    StoreLockedError,
    check_name,
    index_counts,
)


def relist_while_compacting(part: Any, list_part: Callable[[Any], list[Segment]], attempts: int = 10) -> list[Segment]:
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
      included (the reader drops those), in no particular order, the finished
      data (part ``FINISHED_PART``) included. Every index is validated as it is
      listed (``SegmentIndex.from_json``): damage raises StoreError naming the file.
    * ``set_names`` lists every set the store's record or its tree holds;
      ``read_set_meta`` raises StoreError for a listed set whose record is
      missing or damaged, so a set never vanishes silently.
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
    def write_segment(self, name: str, meta: SetMeta, part: str, seq: int, index: SegmentIndex, blocks: Iterable[np.ndarray]) -> None:
        """Write one segment atomically and durably.

        ``blocks`` yields arrays of ``meta.frame_shape(n)`` whose frames
        concatenate (axis -2) to the ``index.frames`` that ``index`` cuts.
        """

    @abstractmethod
    def part_names(self, name: str) -> list[str]:
        """Parts of set ``name`` that writers made on disk (with or without segments; never the finished one)."""

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

    @abstractmethod
    def writers_lock_path(self) -> Path:
        """The lock every writer holds shared while open, and finishing holds exclusive."""

    @abstractmethod
    def cleanup_store(self) -> None:
        """Remove store-wide leftovers of killed writers and finishes (called holding the writers' lock exclusive)."""

    @abstractmethod
    def write_finished(self, plans: list["SetPlan"], removed: list[str]) -> None:
        """Lay the sets out finished (see FORMAT.md), then remove every segment and part.

        ``plans`` holds every set the store keeps; ``removed`` names sets to drop.
        Called holding the writers' lock exclusive. A crash at any instant leaves
        either the old state or the new one readable, never a mix that reads
        differently (identical duplicates of an utterance are allowed).
        """

    def close(self) -> None:
        """Release open handles."""


@dataclass(frozen=True)
class SetPlan:
    """One set as ``write_finished`` lays it out.

    ``index`` holds its committed utterances in reading order (no covers);
    ``blocks()`` yields their frames in that order, as arrays of
    ``meta.frame_shape(n)``; ``unchanged`` says the set is already finished and
    nothing was added (a back-end may copy or keep it as it is).
    """

    name: str
    meta: SetMeta
    index: SegmentIndex
    blocks: Callable[[], Iterable[np.ndarray]]
    unchanged: bool


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
