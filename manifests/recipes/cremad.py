"""CREMA-D (Cao et al. 2014), read as distributed: ``AudioWAV/``, ``VideoFlash/`` and ``VideoDemographics.csv``.

A clip's name, e.g. ``1001_DFA_ANG_XX.wav``: actor (1001..1091), sentence code,
emotion, level (LO, MD, HI, XX unspecified). Genders come from the published
demographics table. The fold key is the actor.
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter

from ..io import ManifestError
from ..schema import Utterance
from .common import RecipeResult, count_differences, locate, missing_lines, tally
from .registry import register

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
LEVELS = ("LO", "MD", "HI", "XX")
ACTORS = tuple(str(a) for a in range(1001, 1092))
STANDARD_EMOTIONS = {"anger": 1271, "disgust": 1271, "fear": 1271, "happy": 1271, "neutral": 1087, "sad": 1271}
STANDARD = "7442 clips of 91 actors (1001..1091), 1271 per emotion and 1087 neutral"
DEMOGRAPHICS = "VideoDemographics.csv"
SEX = {"male": "M", "female": "F"}

NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$")


def read_demographics(path) -> dict[str, dict[str, str]]:
    """ActorID -> its row of the demographics table (ActorID, Age, Sex, Race, Ethnicity)."""
    if not path.is_file():
        raise ManifestError(f"{path}: no such file; CREMA-D's demographics table ({DEMOGRAPHICS}) is part of the release, copy it next to AudioWAV/")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("ActorID", "Sex") if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: no column(s) {missing}; the columns are {reader.fieldnames}")
        return {row["ActorID"].strip(): row for row in reader}


@register("cremad", help="""Manifest of CREMA-D as distributed.

    ROOT holds AudioWAV/, VideoFlash/ (optional) and VideoDemographics.csv.
    Sentence and emotion from each clip name (1001_DFA_ANG_XX.wav), gender from
    the demographics table; the group is the actor. --expect-standard: 7442 clips
    of 91 actors.
    """)
def parse_cremad(root: str | os.PathLike) -> RecipeResult:
    """Rows of every ``AudioWAV/*.wav`` of a CREMA-D folder, with its ``VideoFlash/*.flv`` when there is one."""
    base = locate(root, "AudioWAV", "CREMA-D", "AudioWAV/, VideoFlash/ and VideoDemographics.csv")
    people = read_demographics(base / DEMOGRAPHICS)
    video_dir = base / "VideoFlash"
    rows: list[Utterance] = []
    problems: list[str] = []
    differences: list[str] = []
    missing_video = []
    for path in sorted((base / "AudioWAV").iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        match = NAME.match(path.name)
        if match is None or match[2] not in SENTENCES or match[3] not in EMOTIONS or match[4] not in LEVELS:
            problems.append(f"{path}: not a CREMA-D clip name (e.g. 1001_DFA_ANG_XX.wav); left out")
            differences.append(f"unexpected file {path.name}")
            continue
        actor, sentence, emotion, _ = match.groups()
        person = people.get(actor)
        if person is None:
            problems.append(f"{path}: actor {actor} is not in {DEMOGRAPHICS}; gender unknown")
        video = video_dir / f"{path.stem}.flv"
        if video_dir.is_dir() and not video.is_file():
            missing_video.append(video)
        rows.append(Utterance(
            utt_id=path.stem, label=EMOTIONS[emotion], group=actor, audio=str(path.resolve()), corpus="cremad",
            speaker=actor, gender=SEX.get((person or {}).get("Sex", "").strip().lower()) if person else None,
            text=SENTENCES[sentence], video=str(video.resolve()) if video.is_file() else None,
        ))
    actors = tally(r.speaker for r in rows)
    if len(rows) != 7442:
        differences.append(f"{len(rows)} clips, the release has 7442")
    differences += [f"actor {a}: no clips, the release has some" for a in ACTORS if a not in actors]
    differences += [f"actor {a}: not a CREMA-D actor (1001..1091)" for a in sorted(set(actors) - set(ACTORS))]
    differences += [f"actor {a}: not in {DEMOGRAPHICS}" for a in ACTORS if a not in people]
    differences += count_differences("emotion", tally(r.label for r in rows), STANDARD_EMOTIONS)
    differences += missing_lines(missing_video, "video")
    if missing_video:
        problems.append(f"{len(missing_video)} clip(s) without their {video_dir.name}/*.flv: their rows have no video")
    return RecipeResult("CREMA-D", base, rows, STANDARD, problems, differences, Counter())
