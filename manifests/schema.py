"""The manifest row: one utterance of a corpus, as every other package sees it.

``manifests`` is the one place that knows corpus formats. Everything downstream
(extraction, the feature store, training) reads these rows and nothing else.
"""
from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The six classes the paper evaluates on, and the usual four-class setting.
SIX_CLASSES = ("hap", "neu", "ang", "exc", "sad", "fru")
FOUR_CLASSES = ("hap", "neu", "ang", "sad")
# The parts of a corpus's own fixed split (MELD, MSP-Podcast), as ``Utterance.split`` names them.
SPLITS = ("train", "dev", "test")


def group_order(group: str) -> tuple[int, int, str]:
    """Sort key of fold groups: numbers ("1".."5", "-2") by value first, then the rest by name.
    ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    number = re.fullmatch(r"-?[0-9]+", group)
    return (0, int(group), group) if number else (1, 0, group)


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
    def from_json(cls, row: Any) -> "Utterance":
        """A row from its JSON object; ``ValueError`` naming the field, what it holds and what it must hold."""
        if not isinstance(row, dict):
            raise ValueError(f"each line must be a JSON object {{\"utt_id\": ..., ...}}, not {_kind(row)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"unknown manifest field(s) {unknown}; known fields: {sorted(known)}")
        missing = [name for name in ("utt_id", "label", "group", "audio") if name not in row]
        if missing:
            raise ValueError(f"manifest row {row.get('utt_id', '?')!r} lacks required field(s) {missing}")
        values = dict(row)
        for name, check in _FIELD_CHECKS.items():
            if name in values:
                try:
                    values[name] = check(values[name])
                except ValueError as err:
                    who = f"utterance {row['utt_id']!r}: " if name != "utt_id" else ""
                    raise ValueError(f"{who}field {name!r} {err}") from None
        start, end = values.get("start"), values.get("end")
        if start is not None and end is not None and end <= start:
            raise ValueError(f"utterance {row['utt_id']!r}: 'end' ({end}) must be after 'start' ({start})")
        return cls(**values)


def _kind(value: Any) -> str:
    """``value`` as an error message shows it: the value and its JSON type."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else f"{value!r} ({names.get(type(value), type(value).__name__)})"


def _control_characters(text: str) -> list[str]:
    # Cs: an unpaired surrogate ("\ud800" in JSON), which no file name or UTF-8 file can hold.
    return sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cs")})


def check_name(value: Any, what: str = "an id", *, empty_ok: bool = False) -> str:
    """A non-empty string without NUL or control characters (ids, labels, groups).

    ``empty_ok`` lets ``""`` through: the label and group of a recording that
    `train predict` is to label, which has neither yet."""
    if not isinstance(value, str):
        raise ValueError(f"must be {what}: a non-empty string, got {_kind(value)}")
    if not value.strip() and not (empty_ok and value == ""):
        raise ValueError(f"must be {what}: a non-empty string, got {value!r}")
    bad = _control_characters(value)
    if bad:
        raise ValueError(f"({value!r}) holds control character(s) {', '.join(bad)} (NUL, tab, newline...): remove them")
    return value


def check_path(value: Any) -> str:
    """A file path: a string without NUL."""
    if not isinstance(value, str):
        raise ValueError(f"must be a file path (a string), got {_kind(value)}")
    if "\0" in value:
        raise ValueError(f"({value!r}) holds a NUL character, which no file path can: fix the path")
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string or null, got {_kind(value)}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number of seconds >= 0 or null, got {_kind(value)}")
    return float(value)


def _group(value: Any) -> str:
    # IEMOCAP sessions are often written as numbers; the fold key is their text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return check_name(value, "the fold group (a session, speaker...)", empty_ok=True)


def _session(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number or null, got {_kind(value)}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true, false or null, got {_kind(value)}")
    return value


def _vad(value: Any) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ValueError(f"must be three numbers [valence, activation, dominance] or null, got {_kind(value)}")
    return tuple(float(v) for v in value)


def _side(value: Any) -> str:
    if value not in ("left", "right"):
        raise ValueError(f"must be \"left\", \"right\" or null, got {_kind(value)}")
    return value


_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "utt_id": lambda v: check_name(v, "an utterance id"),
    "label": lambda v: check_name(v, "a label", empty_ok=True),
    "group": _group,
    "audio": check_path,
    "corpus": lambda v: check_name(v, "a corpus name"),
    "session": _optional(_session),
    "dialog": _optional(_string),
    "speaker": _optional(_string),
    "gender": _optional(_string),
    "improvised": _optional(_flag),
    "start": _optional(_seconds),
    "end": _optional(_seconds),
    "vad": _optional(_vad),
    "text": _optional(_string),
    "video": _optional(check_path),
    "video_side": _optional(_side),
}


# Fields that change what an encoder computes or what a label means. Media paths
# are left out on purpose: moving a corpus to another disk must not change the
# identity of the features extracted from it.
IDENTITY_FIELDS = ("utt_id", "label", "group", "start", "end", "text", "video_side")
