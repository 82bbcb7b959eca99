"""The manifest row: one utterance of a corpus, as every other package sees it.

``manifests`` is the one place that knows corpus formats. Everything downstream
(extraction, the feature store, training) reads these rows and nothing else.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# The six classes the paper evaluates on, and the usual four-class setting.
SIX_CLASSES = ("hap", "neu", "ang", "exc", "sad", "fru")
FOUR_CLASSES = ("hap", "neu", "ang", "sad")
# The parts of a corpus's own fixed split (MELD, MSP-Podcast), as ``Utterance.split`` names them.
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Utterance:
    """One utterance.

    ``group`` is the fold key: the session for IEMOCAP (``"1"`` .. ``"5"``), the
    group column (speaker, session...) for a CSV corpus. Leave-one-group-out
    folds split on it.

    ``audio`` and ``video`` are file paths; ``start``/``end`` locate the
    utterance in ``video`` (seconds) when the video holds a whole dialog.
    ``video_side`` is ``"left"`` or ``"right"``: the half of a side-by-side
    video that shows this utterance's speaker, ``None`` for a full frame.

    ``split`` is the part of the corpus's own fixed split the utterance belongs
    to (one of :data:`SPLITS`), ``None`` for corpora without one. When every row
    of a manifest has one, training uses it instead of leave-one-group-out.
    """

    utt_id: str
    label: str
    group: str
    audio: str
    corpus: str = "custom"
    session: int | None = None
    dialog: str | None = None
    speaker: str | None = None
    gender: str | None = None
    improvised: bool | None = None
    start: float | None = None
    end: float | None = None
    vad: tuple[float, float, float] | None = None
    text: str | None = None
    video: str | None = None
    video_side: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"utterance {self.utt_id!r}: split {self.split!r} is not one of {list(SPLITS)} (or none)")

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        if self.split is None:
            del row["split"]  # rows without a split keep the JSON they had before the field existed
        if self.vad is not None:
            row["vad"] = list(self.vad)
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Utterance":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"unknown manifest field(s) {unknown}; known fields: {sorted(known)}")
        missing = [name for name in ("utt_id", "label", "group", "audio") if name not in row]
        if missing:
            raise ValueError(f"manifest row {row.get('utt_id', '?')!r} lacks required field(s) {missing}")
        values = dict(row)
        if values.get("vad") is not None:
            values["vad"] = tuple(float(v) for v in values["vad"])
        values["group"] = str(values["group"])
        return cls(**values)


# Fields that change what an encoder computes or what a label means. Media paths
# are left out on purpose: moving a corpus to another disk must not change the
# identity of the features extracted from it.
IDENTITY_FIELDS = ("utt_id", "label", "group", "start", "end", "text", "video_side")
