"""Copying sets between stores: ``merge`` (combine stores or parts) and ``convert`` (HDF5 <-> Zarr).

Values are copied in the stored dtype, so they arrive bit for bit; each
utterance's sha256 is recomputed on the way and must equal the one recorded
in the source, so a corrupt source is refused rather than propagated. The set's
``Provenance`` is copied whole (who made it and when included), so the
identity is unchanged. Everything goes through the public writer, so a merge
killed half-way resumes like any other write.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from features.base import DEFAULT_PART, StoreError, backend_for, check_name
from features.store import FeatureSet, Store, open_store


@dataclass
class MergeReport:
    """Per set: utterances copied, already present (skipped), and failures carried over."""

    destination: str
    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"destination": self.destination, "copied": self.copied, "skipped": self.skipped, "failures": self.failures}


def merge(
    destination: str,
    sources: Iterable[str],
    *,
    sets: Iterable[str] | None = None,
    part: str = DEFAULT_PART,
    progress: Callable[[int], None] | None = None,
) -> MergeReport:
    """Copy every set (or only ``sets``) of each source store into ``destination``, as part ``part``.

    A set present on both sides must have the same identity (StoreError naming
    both otherwise). Utterances the destination already has are skipped; a
    source's standing failures are carried over unless the utterance is
    committed in the destination.
    """
    check_name("part", part)  # before anything is opened or created
    sources = [str(s) for s in sources]
    wanted = None if sets is None else list(sets)
    report = MergeReport(str(destination))
    opened = [open_store(s, "r") for s in sources]
    try:
        for source in opened:
            names = source.set_names() if wanted is None else wanted
            for name in names:
                if name not in source:
                    raise StoreError(f"no feature set {name!r} in {source.location}; sets there: {source.set_names()}")
        with open_store(str(destination), "a") as dst:
            for source in opened:
                for name in source.set_names() if wanted is None else wanted:
                    _merge_set(dst, source, source[name], part, report, progress)
    finally:
        for source in opened:
            source.close()
    return report


def _merge_set(
    dst: Store,
    source: Store,
    fs: FeatureSet,
    part: str,
    report: MergeReport,
    progress: Callable[[int], None] | None,
) -> None:
    name = fs.name
    if name in dst:
        theirs = dst[name].info.identity
        if theirs != fs.info.identity:
            raise StoreError(
                f"cannot merge set {name!r}: {source.location} has identity {fs.info.identity} "
                f"but {dst.location} has identity {theirs}; they were made differently (see `features info`)"
            )
    meta = fs.meta
    copied = skipped = 0
    with dst.writer(name, meta.provenance, frame_rate=meta.frame_rate, layers=meta.layers, part=part) as w:
        done = w.done
        seen: set[str] = set()
        for segment in fs.segments:
            wanted = [u not in done and u not in seen for u in segment.ids]
            seen.update(segment.ids)
            if not any(wanted):
                skipped += len(segment.ids)
                continue
            for position, (utt_id, array) in enumerate(fs.utterances(segment, wanted)):
                if array is None:
                    skipped += 1
                    continue
                if w.write(utt_id, array, segment.utterance_counts(position)) != segment.sha256[position]:
                    raise StoreError(
                        f"utterance {utt_id!r} of set {name!r} in {source.location} does not match its checksum; "
                        f"run `features verify {source.location}` and repair the source before merging"
                    )
                copied += 1
                if progress:
                    progress(1)
        carried = 0
        for failure in fs.failures():
            if failure.utt_id not in w.done and failure.utt_id not in w.failed:
                w.fail(failure.utt_id, failure.stage, failure.error, time=failure.time)
                carried += 1
    report.copied[name] = report.copied.get(name, 0) + copied
    report.skipped[name] = report.skipped.get(name, 0) + skipped
    report.failures[name] = report.failures.get(name, 0) + carried


def convert(source: str, destination: str, *, progress: Callable[[int], None] | None = None) -> MergeReport:
    """Copy a whole store into a new one of the other (or same) format: values and provenance bit for bit."""
    if backend_for(str(destination)).exists(str(destination)) or Path(str(destination)).exists():
        raise StoreError(f"{destination} already exists; convert writes a new store (use `features merge` to add to one)")
    return merge(destination, [source], progress=progress)
