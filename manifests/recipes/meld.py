"""MELD (Poria et al. 2019), read as distributed: the three ``*_sent_emo.csv`` tables and the ``dia{D}_utt{U}.mp4`` clips.

Each part of MELD's fixed split has its table and its clip folder: train
(``train_sent_emo.csv``, ``train_splits/``), dev (``dev_sent_emo.csv``,
``dev_splits_complete/``), test (``test_sent_emo.csv``,
``output_repeated_splits_test/``), each either in the corpus folder or in its
``train/``, ``dev/``, ``test/`` folder (as MELD.Raw unpacks). Rows carry the part
as their ``split`` and as their group. Audio is read from the clip.
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path

from ..io import ManifestError
from ..schema import Utterance
from .common import RecipeResult, missing_lines
from .registry import register

PARTS = (("train", "train_sent_emo.csv", "train_splits"), ("dev", "dev_sent_emo.csv", "dev_splits_complete"),
         ("test", "test_sent_emo.csv", "output_repeated_splits_test"))
STANDARD_ROWS = {"train": 9989, "dev": 1109, "test": 2610}
STANDARD = "9989 / 1109 / 2610 utterances in train / dev / test"
# The release lists this dev utterance but ships no clip for it (declare-lab/MELD issue 22).
KNOWN_MISSING = {("dev", "110", "7")}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def _find(base: Path, part: str, name: str) -> Path | None:
    for candidate in (base / name, base / part / name):
        if candidate.exists():
            return candidate
    return None


def _corpus_folder(root: Path) -> Path:
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder; give the MELD folder (MELD.Raw, with the *_sent_emo.csv tables and the clip folders)")
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if any(_find(base, part, table) for part, table, _ in PARTS):
            return base
    raise ManifestError(f"{root}: none of {', '.join(t for _, t, _ in PARTS)} here, in train/ dev/ test/, or one folder below; "
                        "give the MELD folder (MELD.Raw)")


def _cp1252_controls() -> dict[int, str]:
    out = {}
    for code in range(0x80, 0xA0):
        try:
            out[code] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:  # five bytes Windows-1252 leaves undefined
            continue
    return out


# The release's tables are UTF-8, but their punctuation went through Windows-1252 bytes read as
# Latin-1: "I\x92m" for "I’m", "\x85" for "…" (declare-lab/MELD fixed its own copy later).
_C1_AS_CP1252 = _cp1252_controls()


def _read_table(path: Path, problems: list[str]) -> list[dict[str, str]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        problems.append(f"{path}: not UTF-8; read as Windows-1252")
    mended = text.translate(_C1_AS_CP1252)
    if mended != text:
        problems.append(f"{path}: Windows-1252 punctuation stored as control characters (U+0080-U+009F); read as that punctuation")
        text = mended
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(f"{path}: no column(s) {missing}; the columns are {reader.fieldnames}")
    return list(reader)


@register("meld", help="""Manifest of MELD as distributed, with its own split.

    ROOT is MELD.Raw: the train/dev/test *_sent_emo.csv tables and the clip
    folders train_splits/, dev_splits_complete/, output_repeated_splits_test/.
    Rows carry their split; train then trains on train, selects on dev, tests on
    test. --expect-standard: 9989 / 1109 / 2610 utterances, every clip present.
    """)
def parse_meld(root: str | os.PathLike) -> RecipeResult:
    """Rows of every utterance of MELD's tables whose clip exists; each carries its part as ``split``."""
    base = _corpus_folder(Path(root).expanduser())
    rows: list[Utterance] = []
    problems: list[str] = []
    differences: list[str] = []
    for part, table_name, folder_name in PARTS:
        table = _find(base, part, table_name)
        folder = _find(base, part, folder_name)
        if table is None:
            raise ManifestError(f"{base}: no {table_name} (looked in {base} and {base / part}); MELD's {part} table is part of the release")
        if folder is None:
            raise ManifestError(f"{base}: no {folder_name}/ (looked in {base} and {base / part}); unpack MELD's {part} clips")
        records = _read_table(table, problems)
        if len(records) != STANDARD_ROWS[part]:
            differences.append(f"{table}: {len(records)} utterances, the release has {STANDARD_ROWS[part]}")
        seen: set[tuple[str, str]] = set()
        missing = []
        for lineno, record in enumerate(records, 2):
            dialogue, utterance = record["Dialogue_ID"].strip(), record["Utterance_ID"].strip()
            if not (dialogue.isdigit() and utterance.isdigit()):
                problems.append(f"{table}:{lineno}: Dialogue_ID {dialogue!r} / Utterance_ID {utterance!r} are not numbers; left out")
                continue
            if (dialogue, utterance) in seen:
                problems.append(f"{table}:{lineno}: dia{dialogue}_utt{utterance} listed twice; the second is left out")
                continue
            seen.add((dialogue, utterance))
            clip = folder / f"dia{dialogue}_utt{utterance}.mp4"
            if not clip.is_file():
                known = (part, dialogue, utterance) in KNOWN_MISSING
                problems.append(f"{table}:{lineno}: no clip {clip}; left out" + (" (the release ships none)" if known else ""))
                if not known:
                    missing.append(clip)
                continue
            rows.append(Utterance(
                utt_id=f"{part}_dia{dialogue}_utt{utterance}", label=record["Emotion"].strip().lower(), group=part,
                audio=str(clip.resolve()), corpus="meld", dialog=f"{part}_dia{dialogue}",
                speaker=record["Speaker"].strip() or None, text=record["Utterance"].strip() or None,
                video=str(clip.resolve()), split=part,
            ))
        differences += missing_lines(missing, f"{part} clip")
    return RecipeResult("MELD", base, rows, STANDARD, problems, differences, Counter())
