"""MSP-Podcast (Lotfian & Busso 2019), read as distributed: ``Labels/labels_consensus.csv`` and ``Audios/``.

The labels table has one row per segment: FileName, EmoClass (A H S N U F D C,
O other, X no agreement), EmoAct / EmoVal / EmoDom, SpkrID ("Unknown" when not
given), Gender, Split_Set (Train, Development, Test1, Test2, ...). Rows carry
the partition as their ``split`` (Development is dev; one test set, Test1 by
default, is test; the other test sets are left out) and as their group.
Transcripts are read from ``Transcripts/`` when the release has them.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from ..io import ManifestError
from ..schema import Utterance
from .common import RecipeResult, locate, missing_lines
from .registry import ChoiceOption, register

EMOTIONS = {"A": "anger", "H": "happiness", "S": "sadness", "N": "neutral", "U": "surprise", "F": "fear", "D": "disgust",
            "C": "contempt"}
OTHER = {"O": "other", "X": "no-agreement"}
CLASS_SETS = ("eight", "all")
TEST_SETS = ("Test1", "Test2", "Test3")
TRAIN_DEV = {"Train": "train", "Development": "dev", "Validation": "dev"}
LABELS = Path("Labels") / "labels_consensus.csv"
# Releases 1.6 and 1.8 ship the same table under this spelling.
LABELS_OLD = Path("Labels") / "labels_concensus.csv"
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
GENDER = {"male": "M", "female": "F"}
STANDARD = "every segment the labels table lists is in Audios/ (the counts depend on the release)"


def _labels_table(root: str | os.PathLike) -> tuple[Path, Path]:
    """The release folder and its labels table, under either of the names releases have used."""
    layout = "the release, with Labels/labels_consensus.csv and Audios/"
    try:
        base = locate(root, LABELS, "MSP-Podcast", layout)
        return base, base / LABELS
    except ManifestError as err:
        try:
            base = locate(root, LABELS_OLD, "MSP-Podcast", layout)
        except ManifestError:
            raise err from None
        return base, base / LABELS_OLD


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@register("msp-podcast", help="""Manifest of MSP-Podcast as distributed, with its split.

    ROOT holds Labels/labels_consensus.csv and Audios/ (Transcripts/ is read when
    there). Train, Development and the test set become train, dev and test.
    --expect-standard: every labelled segment has its audio.
    """, options=(
    ChoiceOption("classes", CLASS_SETS, "eight: A H S N U F D C; all: also O (other) and X (no agreement)."),
    ChoiceOption("test_set", TEST_SETS, "The partition that becomes the test split; the other test sets are left out."),
))
def parse_msppodcast(root: str | os.PathLike, *, classes: str = "eight", test_set: str = "Test1") -> RecipeResult:
    """Rows of the labelled segments of an MSP-Podcast release whose audio exists.

    ``classes="eight"`` keeps the eight emotions and leaves out O (other) and X
    (no agreement); ``"all"`` keeps them too. ``test_set`` is the partition that
    becomes the test split."""
    if classes not in CLASS_SETS:
        raise ManifestError(f"classes {classes!r} is not one of {list(CLASS_SETS)}")
    if test_set not in TEST_SETS:
        raise ManifestError(f"test set {test_set!r} is not one of {list(TEST_SETS)}")
    base, table = _labels_table(root)
    with table.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing_cols = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise ManifestError(f"{table}: no column(s) {missing_cols}; the columns are {reader.fieldnames}")
        records = list(reader)
    parts = TRAIN_DEV | {test_set: "test"}
    names = EMOTIONS | (OTHER if classes == "all" else {})
    rows: list[Utterance] = []
    problems: list[str] = []
    differences: list[str] = []
    dropped: Counter = Counter()
    missing = []
    for lineno, record in enumerate(records, 2):
        name, code, partition = record["FileName"].strip(), record["EmoClass"].strip(), record["Split_Set"].strip()
        audio = base / "Audios" / name
        if not audio.is_file():
            missing.append(audio)
            continue
        if partition not in parts:
            if partition in TEST_SETS:
                dropped[partition] += 1
            else:
                problems.append(f"{table}:{lineno}: {name}: Split_Set {partition!r} is not one of "
                                f"{[*TRAIN_DEV, *TEST_SETS]}; left out")
                differences.append(f"{table}:{lineno}: unknown Split_Set {partition!r}")
            continue
        if code not in names:
            if code not in EMOTIONS and code not in OTHER:
                problems.append(f"{table}:{lineno}: {name}: EmoClass {code!r} is not one of {[*EMOTIONS, *OTHER]}; left out")
            dropped[OTHER.get(code, code)] += 1
            continue
        vad = tuple(_float(record[c]) for c in ("EmoVal", "EmoAct", "EmoDom"))
        speaker = record["SpkrID"].strip()
        transcript = base / "Transcripts" / f"{Path(name).stem}.txt"
        text = transcript.read_text(encoding="utf-8", errors="replace").strip() if transcript.is_file() else ""
        rows.append(Utterance(
            utt_id=Path(name).stem, label=names[code], group=parts[partition], audio=str(audio.resolve()),
            corpus="msppodcast", speaker=None if speaker.lower() in ("", "unknown") else speaker,
            gender=GENDER.get(record["Gender"].strip().lower()), vad=None if None in vad else vad,
            text=text or None, split=parts[partition],
        ))
    if missing:
        problems.append(f"{len(missing)} labelled segment(s) without their audio in {base / 'Audios'}; left out")
    differences += missing_lines(missing, "audio")
    return RecipeResult("MSP-Podcast", base, rows, STANDARD, problems, differences, dropped)
