"""What every corpus recipe shares: its result, the check against the published counts, finding the corpus folder."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..io import ManifestError
from ..schema import Utterance


class StandardCountError(ManifestError):
    """The corpus read differs from its published release; the message names every difference."""


@dataclass(frozen=True)
class RecipeResult:
    """What a recipe found.

    ``rows``: the manifest rows. ``problems``: one warning line each (files left
    out, labels outside the setting). ``standard``: the published figures, in
    words; ``differences``: one line per way the corpus read differs from them
    (empty when it is the release as published).
    """

    corpus: str
    root: Path
    rows: list[Utterance]
    standard: str
    problems: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def require_standard(self) -> None:
        """Raise :class:`StandardCountError` unless the corpus matched its published figures."""
        if self.differences:
            raise StandardCountError(
                f"{self.root}: not the {self.corpus} release as published ({self.standard}); {len(self.differences)} difference(s):\n  "
                + "\n  ".join(self.differences)
                + "\n(check that the corpus is complete and untouched: unpack its archives again)"
            )


def locate(root: str | os.PathLike, marker: str, corpus: str, layout: str) -> Path:
    """The corpus folder: ``root`` itself when ``root/marker`` exists, else the one folder below it that has it.

    ``layout`` says in words what the folder holds, for the error."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder; give the {corpus} folder ({layout})")
    if (root / marker).exists():
        return root
    below = sorted(p for p in root.iterdir() if p.is_dir() and (p / marker).exists())
    if len(below) == 1:
        return below[0]
    if below:
        raise ManifestError(f"{root}: several {corpus} folders below it ({', '.join(p.name for p in below)}); give one of them")
    raise ManifestError(f"{root}: no {marker} here or one folder below; give the {corpus} folder ({layout})")


def count_differences(what: str, found: Mapping[str, int], expected: Mapping[str, int], unit: str = "files") -> list[str]:
    """One line per key whose count differs from the published one (keys missing or extra included)."""
    lines = []
    for key in sorted(set(found) | set(expected)):
        have, want = found.get(key, 0), expected.get(key, 0)
        if have != want:
            lines.append(f"{what} {key}: {have} {unit}, the release has {want}")
    return lines


def missing_lines(paths: Iterable[Path], kind: str, limit: int = 20) -> list[str]:
    """``missing KIND PATH`` lines, the first ``limit`` of them and a count of the rest."""
    paths = sorted(paths)
    lines = [f"missing {kind} {p}" for p in paths[:limit]]
    if len(paths) > limit:
        lines.append(f"... and {len(paths) - limit} more missing {kind} files")
    return lines


def tally(values: Iterable[str]) -> dict[str, int]:
    return dict(Counter(values))
