"""Recompute every utterance's sha256 and report what is missing or corrupt.

Each utterance's checksum is taken over its stored bytes (little-endian,
C order) when it is written and kept in its segment's index; verification
reads every segment back and compares. A flipped byte anywhere in an
utterance's frames changes its digest.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from features.base import StoreError
from features.store import FeatureSet, open_store

# What can be wrong with an utterance:
#   corrupt   its bytes no longer match the checksum recorded when it was written
#   missing   its segment cannot be read (file gone, truncated, damaged metadata)
#   conflict  two parts committed it with different values (the first is the one read)
#   unreadable a whole set cannot be opened, or the store's list of sets cannot (utt_id is "")
#   absent    an utterance of the manifest given is not committed to the set


@dataclass
class VerifyReport:
    """``problems`` holds ``(set, utt_id, kind, detail)``; ``checked`` counts utterances per set."""

    location: str
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {
            "store": self.location,
            "ok": self.ok,
            "checked": dict(self.checked),
            "problems": [{"set": s, "utt_id": u, "kind": k, "detail": d} for s, u, k, d in self.problems],
        }


def verify(
    location: str, progress: Callable[[int], None] | None = None, *, manifest: str | None = None
) -> VerifyReport:
    """Check every utterance of every set of the store at ``location`` (opened read-only).

    Structure too: every set the store's record lists must open, with all its
    segments. With ``manifest`` (a manifest file), every utterance of it must be
    committed to every set; the ones that are not are reported ``absent``.
    Raises StoreError when the store itself cannot be opened (nothing to check).
    """
    wanted = None
    if manifest is not None:
        from manifests import ManifestError, read_manifest

        try:
            wanted = [row.utt_id for row in read_manifest(manifest)]
        except ManifestError as e:
            raise StoreError(str(e)) from None
    report = VerifyReport(str(location))
    with open_store(str(location), "r") as store:
        names = store.set_names()
        if wanted is not None and not names:
            report.problems.append(("", "", "unreadable", f"{location} holds no feature set; {manifest} lists {len(wanted)} utterances"))
        for name in names:
            try:
                fs = store[name]
            except StoreError as e:
                report.problems.append((name, "", "unreadable", str(e)))
                continue
            report.checked[name] = _verify_set(fs, report, progress)
            if wanted is not None:
                failed = {f.utt_id: f for f in fs.failures()}
                for utt_id in wanted:
                    if utt_id not in fs:
                        f = failed.get(utt_id)
                        why = f"failed at {f.stage}: {f.error}" if f else "never extracted"
                        report.problems.append((name, utt_id, "absent", f"in {manifest} but not in the set ({why})"))
    return report


def _verify_set(fs: FeatureSet, report: VerifyReport, progress: Callable[[int], None] | None) -> int:
    checked = 0
    for segment in fs.segments:
        where = f"segment {segment.part}/{segment.seq}"
        missing: list[tuple[str, str, str, str]] = []

        def unreadable(utt_id: str, e: Exception) -> None:
            missing.append((fs.name, utt_id, "missing", f"{where}: {type(e).__name__}: {e}"))

        corrupt = []
        for (utt_id, frames), expected in zip(fs.utterances(segment, on_error=unreadable), segment.sha256):
            if frames is not None:
                digest = hashlib.sha256(np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("<")).tobytes()).hexdigest()
                if digest != expected:
                    corrupt.append((fs.name, utt_id, "corrupt", f"sha256 {digest[:16]}... != recorded {expected[:16]}... ({where})"))
            checked += 1
        report.problems += missing + corrupt
        if progress:
            progress(len(segment.ids))
    for utt_id, segment, sha in fs.duplicates():
        if fs.checksum(utt_id) != sha:
            report.problems.append(
                (fs.name, utt_id, "conflict", f"parts {fs.segment_of(utt_id).part!r} and {segment.part!r} both "
                 "committed it, with different values")
            )
    return checked
