"""Parsing an untouched ``IEMOCAP_full_release`` tree into manifest rows.

The layout read here (per ``Session{1..5}``)::

    dialog/EmoEvaluation/<dialog>.txt      summary lines + annotator lines
    dialog/transcriptions/<dialog>.txt     "<utt_id> [start-end]: text"
    sentences/wav/<dialog>/<utt_id>.wav    one wav per utterance
    dialog/avi/DivX/<dialog>.avi           the dialog video, both actors side by side

Only the summary lines of ``EmoEvaluation`` carry the consensus label; the
annotator lines (``C-E1:``, ``A-E2:``...) and the ``Categorical/``,
``Attribute/`` and ``Self-evaluation/`` sub-folders are ignored, as are macOS
``._*`` files and anything else that does not match these formats.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from democorpus.marker import synthetic_root

from .io import ManifestError
from .schema import FOUR_CLASSES, SIX_CLASSES, Utterance

CORPUS = "iemocap"
CLASS_SETS = ("six", "four", "all")

# Utterances per session in the usual settings on the real corpus (7,380 and 5,531 in all).
STANDARD_COUNTS: dict[str, dict[int, int]] = {
    "six": {1: 1365, 2: 1348, 3: 1533, 4: 1512, 5: 1622},
    "four": {1: 1085, 2: 1023, 3: 1151, 4: 1031, 5: 1241},
}

# A dialog name: Ses01F_impro01, Ses03M_impro05a, Ses05M_script01_1b ...
_DIALOG = r"Ses(?P<session>\d{2})(?P<dialog_letter>[FM])_(?P<kind>impro|script)[A-Za-z0-9_]*?"
# An utterance id: the dialog, then the speaker's letter and three digits.
UTT_ID = re.compile(rf"^(?P<dialog>{_DIALOG})_(?P<speaker_letter>[FM])(?P<number>\d{{3}})$")
_NUM = r"[-+]?\d+(?:\.\d*)?"
_SUMMARY = re.compile(
    rf"^\[\s*(?P<start>{_NUM})\s*-\s*(?P<end>{_NUM})\s*\]\s+(?P<utt_id>\S+)\s+(?P<label>\S+)"
    rf"\s+\[\s*(?P<v>{_NUM})\s*,\s*(?P<a>{_NUM})\s*,\s*(?P<d>{_NUM})\s*\]\s*$"
)
_TRANSCRIPT = re.compile(rf"^(?P<utt_id>[^\s\[]+)\s*\[\s*{_NUM}\s*-\s*{_NUM}\s*\]:\s?(?P<text>.*)$")


@dataclass(frozen=True)
class UttId:
    """The parts of an IEMOCAP utterance id."""

    utt_id: str
    dialog: str
    session: int
    dialog_letter: str
    speaker_letter: str
    improvised: bool

    @property
    def speaker(self) -> str:
        """The actor: session and the letter before the three digits (``Ses01M``)."""
        return f"Ses{self.session:02d}{self.speaker_letter}"

    @property
    def video_side(self) -> str:
        """The dialog video shows the actor whose letter the dialog bears on the left."""
        return "left" if self.speaker_letter == self.dialog_letter else "right"


def parse_utt_id(utt_id: str) -> UttId | None:
    """Split an utterance id such as ``Ses01F_script01_1_M003``; ``None`` when it is not one.

    The speaker is the letter right before the three digits, never the dialog's
    letter: in ``Ses01F_impro01_M003`` the male actor of session 1 speaks.
    """
    match = UTT_ID.match(utt_id)
    if match is None:
        return None
    return UttId(
        utt_id=utt_id,
        dialog=match["dialog"],
        session=int(match["session"]),
        dialog_letter=match["dialog_letter"],
        speaker_letter=match["speaker_letter"],
        improvised=match["kind"] == "impro",
    )


@dataclass
class ParseResult:
    """What :func:`parse_iemocap` found.

    ``rows``: the manifest rows kept. ``problems``: one readable warning line
    each (missing wav, missing transcript or video, malformed lines).
    ``missing_audio``: ids of evaluated utterances left out for lack of a wav.
    ``dropped``: counts of labels left out by the class setting.
    ``synthetic``: the tree is the demo corpus (its README says SYNTHETIC).
    """

    root: Path
    classes: str
    rows: list[Utterance] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing_audio: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    synthetic: bool = False


def find_root(root: str | os.PathLike) -> Path:
    """The folder holding ``Session1`` .. ``Session5``: ``root`` itself or its ``IEMOCAP_full_release``."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder; give the IEMOCAP_full_release folder (the one holding Session1..Session5)")
    if _sessions(root):
        return root
    inner = root / "IEMOCAP_full_release"
    if inner.is_dir() and _sessions(inner):
        return inner
    raise ManifestError(
        f"{root}: no Session1..Session5 folders here; give the IEMOCAP_full_release folder (the one holding Session1..Session5)"
    )


def _sessions(root: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in root.iterdir():
        match = re.fullmatch(r"Session([1-9])", entry.name)
        if match and entry.is_dir():
            found.append((int(match[1]), entry))
    return sorted(found)


def _text_files(folder: Path) -> list[Path]:
    """The ``*.txt`` files directly in ``folder``, without macOS ``._*`` companions."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".txt" and not p.name.startswith("._") and p.is_file())


def _read_lines(path: Path) -> list[str]:
    # A few files of the release are not valid UTF-8; the summary lines are ASCII either way.
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def map_label(label: str, classes: str) -> str | None:
    """The label in the class setting ``classes`` (``six``, ``four``, ``all``), ``None`` when it is left out."""
    if classes == "all":
        return label
    if classes == "six":
        return label if label in SIX_CLASSES else None
    if classes == "four":
        label = "hap" if label == "exc" else label
        return label if label in FOUR_CLASSES else None
    raise ValueError(f"unknown class setting {classes!r}; choose one of {', '.join(CLASS_SETS)}")


def parse_iemocap(root: str | os.PathLike, classes: str = "six") -> ParseResult:
    """Read every evaluated utterance of an IEMOCAP tree into manifest rows.

    ``classes``: ``six`` keeps hap, neu, ang, exc, sad, fru; ``four`` maps exc to
    hap and keeps hap, neu, ang, sad; ``all`` keeps every label. An evaluated
    utterance whose wav is missing is left out and reported in ``problems`` and
    ``missing_audio``; a missing transcript or video is reported and the row kept
    with ``text``/``video`` set to ``None``. Raises :class:`ManifestError` when
    ``root`` holds no sessions.
    """
    if classes not in CLASS_SETS:
        raise ValueError(f"unknown class setting {classes!r}; choose one of {', '.join(CLASS_SETS)}")
    root = find_root(root)
    result = ParseResult(root=root, classes=classes, synthetic=synthetic_root(root) is not None)
    seen: set[str] = set()
    for session, folder in _sessions(root):
        for eval_file in _text_files(folder / "dialog" / "EmoEvaluation"):
            _parse_dialog(session, folder, eval_file, result, seen)
    result.rows.sort(key=lambda r: (r.session, r.dialog, r.start, r.utt_id))
    return result


def _parse_dialog(session: int, folder: Path, eval_file: Path, result: ParseResult, seen: set[str]) -> None:
    dialog = eval_file.stem
    texts = _read_transcripts(folder / "dialog" / "transcriptions" / f"{dialog}.txt")
    video = folder / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
    has_video = video.is_file()
    video_reported = False
    for lineno, line in enumerate(_read_lines(eval_file), 1):
        if not line.startswith("["):
            continue  # header, blank and annotator lines
        match = _SUMMARY.match(line.strip())
        where = f"{eval_file}:{lineno}"
        if match is None:
            result.problems.append(f"{where}: skipped a line that looks like a summary line but does not parse: {line.strip()!r}")
            continue
        ident = parse_utt_id(match["utt_id"])
        if ident is None:
            result.problems.append(f"{where}: skipped {match['utt_id']!r}: not an IEMOCAP utterance id (SesNN[FM]_..._[FM]NNN)")
            continue
        if ident.dialog != dialog or ident.session != session:
            result.problems.append(
                f"{where}: skipped {ident.utt_id}: it belongs to dialog {ident.dialog} (session {ident.session}), "
                f"not to {dialog} in Session{session}"
            )
            continue
        if ident.utt_id in seen:
            result.problems.append(f"{where}: skipped {ident.utt_id}: evaluated twice; kept the first")
            continue
        seen.add(ident.utt_id)
        raw_label = match["label"]
        label = map_label(raw_label, result.classes)
        if label is None:
            result.dropped[raw_label] += 1
            continue
        start, end = float(match["start"]), float(match["end"])
        if not end > start:  # the manifest's own check would refuse the whole file later
            result.problems.append(f"{where}: skipped {ident.utt_id}: its span [{start} - {end}] is empty")
            continue
        wav = folder / "sentences" / "wav" / dialog / f"{ident.utt_id}.wav"
        if not wav.is_file():
            result.missing_audio.append(ident.utt_id)
            result.problems.append(f"{ident.utt_id}: no wav at {wav}; left out of the manifest")
            continue
        text = texts.get(ident.utt_id)
        if text is None:
            result.problems.append(f"{ident.utt_id}: no transcription line in {folder / 'dialog' / 'transcriptions' / (dialog + '.txt')}; text left empty (None)")
        if not has_video and not video_reported:
            result.problems.append(f"dialog {dialog}: no video at {video}; its rows have no video")
            video_reported = True
        result.rows.append(
            Utterance(
                utt_id=ident.utt_id,
                label=label,
                group=str(session),
                audio=str(wav.resolve()),
                corpus=CORPUS,
                session=session,
                dialog=dialog,
                speaker=ident.speaker,
                gender=ident.speaker_letter,
                improvised=ident.improvised,
                start=start,
                end=end,
                vad=(float(match["v"]), float(match["a"]), float(match["d"])),
                text=text,
                video=str(video.resolve()) if has_video else None,
                video_side=ident.video_side if has_video else None,
            )
        )


def _read_transcripts(path: Path) -> dict[str, str]:
    """``utt_id -> text`` from one transcription file; lines without an utterance id are skipped."""
    if not path.is_file():
        return {}
    texts: dict[str, str] = {}
    for line in _read_lines(path):
        match = _TRANSCRIPT.match(line.strip())
        if match and parse_utt_id(match["utt_id"]) is not None:
            texts.setdefault(match["utt_id"], match["text"].strip())
    return texts


def compare_counts(rows: list[Utterance], expected: Mapping[int, int]) -> list[str]:
    """Differences between the rows per session and ``expected`` (session -> count), one line each; empty when equal."""
    found = Counter(r.session for r in rows)
    lines = []
    for session in sorted(set(expected) | set(found)):
        want, got = expected.get(session, 0), found.get(session, 0)
        if want != got:
            lines.append(f"Session{session}: expected {want:,}, found {got:,} ({got - want:+,})")
    total_want, total_got = sum(expected.values()), len(rows)
    if total_want != total_got:
        lines.append(f"total: expected {total_want:,}, found {total_got:,} ({total_got - total_want:+,})")
    return lines
