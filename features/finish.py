"""Finishing a store: every set laid out as one standard group (``features/FORMAT.md``).

The last writer of a store to close calls :func:`finish_when_last`; ``Store.finish``
and ``features compact`` call :func:`finish_now`. Both hold the store's writers'
lock exclusive meanwhile, so no writer is open while the layout changes; a
writer that opens meanwhile waits.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from features.base import Backend, SetPlan
from features.reader import SetIndex, frame_blocks
from features.records import FINISHED_PART, SegmentIndex, SetMeta, StoreLockedError, index_counts

if TYPE_CHECKING:
    from features.store import Store


def finish_now(store: "Store", removed: list[str] | tuple[str, ...] = ()) -> None:
    """Finish ``store`` (dropping the sets in ``removed``); StoreLockedError while a writer is open."""
    lock = store.writers_lock()
    try:
        lock.acquire()
    except StoreLockedError:
        raise StoreLockedError(
            f"{store.location} has writers open (lock file {lock.path}); run `features compact {store.location}` "
            "once they have closed"
        ) from None
    try:
        finish_locked(store.backend, list(removed))
    finally:
        lock.release()


def finish_when_last(store: "Store") -> bool:
    """Finish ``store`` unless another writer is open (that one finishes it when it closes)."""
    lock = store.writers_lock()
    if not lock.try_acquire():
        return False
    try:
        finish_locked(store.backend, [])
    finally:
        lock.release()
    return True


def finish_locked(backend: Backend, removed: list[str]) -> None:
    """Build the plan of every set and hand it to the back-end (the caller holds the lock exclusive)."""
    backend.cleanup_store()
    plans = []
    for name in backend.set_names():
        if name in removed:
            continue
        meta = backend.read_set_meta(name)
        if meta is None:
            continue
        plans.append(plan_set(backend, name, meta))
    backend.write_finished(plans, removed)
    backend.close()


def plan_set(backend: Backend, name: str, meta: SetMeta) -> SetPlan:
    """One set's finished layout: its committed utterances in reading order, each once."""
    index = SetIndex(backend.segments(name))
    spans = [index.where[utt_id] for utt_id in index.ids]
    plan = SegmentIndex(
        index.ids,
        [stop - start for _, start, stop, _ in spans],
        [sha for _, _, _, sha in spans],
        index.failures,
        counts=index_counts(index.utterance_counts),
    )
    # Already finished, nothing added since (empty parts left by writers that wrote nothing do not count).
    unchanged = bool(index.segments) and all(s.part == FINISHED_PART for s in index.segments)
    return SetPlan(name, meta, plan, blocks=lambda: _blocks(backend, meta, index), unchanged=unchanged)


def _blocks(backend: Backend, meta: SetMeta, index: SetIndex) -> Iterator[np.ndarray]:
    """The frames of ``index.ids`` in order, read as runs that are contiguous on disk, in bounded slices."""
    runs: list[list[int]] = []  # segment position, first frame, end frame
    for utt_id in index.ids:
        position, start, stop, _ = index.where[utt_id]
        if runs and runs[-1][0] == position and runs[-1][2] == start:
            runs[-1][2] = stop
        else:
            runs.append([position, start, stop])
    for position, start, stop in runs:
        yield from frame_blocks(backend, meta, index.segments[position], start, stop)
