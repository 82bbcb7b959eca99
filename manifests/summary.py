"""Counts of a manifest per class and group, as a small table or as JSON."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from democorpus.marker import synthetic_root

from .schema import SIX_CLASSES, Utterance, group_order

SYNTHETIC_BANNER = "SYNTHETIC demo corpus: not real data, a demo and test bed, never a benchmark"


@dataclass(frozen=True)
class Summary:
    """Utterances per (group, label); ``synthetic`` when they come from the demo corpus."""

    classes: tuple[str, ...]
    groups: tuple[str, ...]
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    synthetic: bool = False
    group_name: str = "group"  # what the groups are, for the table's header ("session" for IEMOCAP)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def per_group(self, group: str) -> int:
        return sum(n for (g, _), n in self.counts.items() if g == group)

    def per_class(self, label: str) -> int:
        return sum(n for (_, c), n in self.counts.items() if c == label)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "synthetic": self.synthetic,
            "group_name": self.group_name,
            "classes": {c: self.per_class(c) for c in self.classes},
            "groups": {g: {c: self.counts.get((g, c), 0) for c in self.classes} for g in self.groups},
            "group_totals": {g: self.per_group(g) for g in self.groups},
        }

    def table(self, banner: bool = True) -> str:
        """A plain-text table: one line per group, one column per class, totals last.

        A synthetic corpus's table starts with :data:`SYNTHETIC_BANNER` unless ``banner`` is false.
        """
        header = [self.group_name, *self.classes, "total"]
        lines = [[g, *(str(self.counts.get((g, c), 0)) for c in self.classes), str(self.per_group(g))] for g in self.groups]
        lines.append(["total", *(str(self.per_class(c)) for c in self.classes), str(self.total)])
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        text = [
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in [header, *lines]
        ]
        if self.synthetic and banner:
            text.insert(0, SYNTHETIC_BANNER)
        return "\n".join(text)


def summarize(rows: Sequence[Utterance], synthetic: bool | None = None) -> Summary:
    """Count ``rows`` per group and label. ``synthetic=None`` looks for the demo corpus's README above the audio."""
    counts = Counter((r.group, r.label) for r in rows)
    labels = {label for _, label in counts}
    classes = tuple(c for c in SIX_CLASSES if c in labels) + tuple(sorted(labels - set(SIX_CLASSES)))
    groups = tuple(sorted({g for g, _ in counts}, key=group_order))
    if synthetic is None:
        synthetic = rows_are_synthetic(rows)
    # IEMOCAP's groups are its sessions.
    group_name = "session" if rows and all(r.corpus == "iemocap" and r.group == str(r.session) for r in rows) else "group"
    return Summary(classes=classes, groups=groups, counts=dict(counts), synthetic=synthetic, group_name=group_name)


def rows_are_synthetic(rows: Sequence[Utterance]) -> bool:
    """Whether the rows' audio lies in a demo corpus (:func:`democorpus.marker.synthetic_root`)."""
    # One look per folder: a corpus holds thousands of wavs in a few hundred folders.
    return any(synthetic_root(folder) is not None for folder in {Path(row.audio).parent for row in rows})
