"""EmoDB (Berlin Database of Emotional Speech, Burkhardt et al. 2005), read from its ``wav/`` folder as distributed.

A file name says it all, e.g. ``03a01Fa.wav``: speaker (2 digits), text code (3),
emotion letter (the German word's initial), version letter. The fold key is the speaker.
"""
from __future__ import annotations

import os
import re
from collections import Counter

from ..schema import Utterance
from .common import RecipeResult, count_differences, locate, tally
from .registry import register

EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}
# The ten speakers and their genders, as the EmoDB documentation lists them.
GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# The published release: 535 files, per speaker and per emotion.
STANDARD_SPEAKERS = {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55, "12": 35, "13": 61, "14": 69, "15": 56, "16": 71}
STANDARD_EMOTIONS = {"anger": 127, "boredom": 81, "disgust": 46, "fear": 69, "happiness": 71, "neutral": 79, "sadness": 62}
STANDARD = "535 clips, 10 speakers, 7 emotions"

NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])\.wav$")


@register("emodb", help="""Manifest of EmoDB (Berlin) as distributed.

    ROOT holds its wav/ folder (or is the folder above it). Speaker, sentence and
    emotion come from each file name (03a01Fa.wav); the group is the speaker.
    --expect-standard: 535 clips, 10 speakers, 7 emotions.
    """)
def parse_emodb(root: str | os.PathLike) -> RecipeResult:
    """Rows of every ``wav/*.wav`` of an EmoDB folder (the one holding ``wav/``, or the one above it).

    Files whose name does not follow the scheme are reported and left out."""
    base = locate(root, "wav", "EmoDB", "the unpacked download, with its wav/ folder")
    rows: list[Utterance] = []
    problems: list[str] = []
    differences: list[str] = []
    for path in sorted((base / "wav").iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        match = NAME.match(path.name)
        if match is None or match["emotion"] not in EMOTIONS or match["text"] not in TEXTS:
            line = f"{path}: not an EmoDB file name (e.g. 03a01Fa.wav: speaker, text a01..b10, emotion {'/'.join(EMOTIONS)}, version); left out"
            problems.append(line)
            differences.append(f"unexpected file {path.name}")
            continue
        speaker = match["speaker"]
        if speaker not in GENDERS:
            problems.append(f"{path}: speaker {speaker} is not one of the ten EmoDB speakers {sorted(GENDERS)}; gender unknown")
        rows.append(Utterance(
            utt_id=path.stem, label=EMOTIONS[match["emotion"]], group=speaker, audio=str(path.resolve()), corpus="emodb",
            speaker=speaker, gender=GENDERS.get(speaker), text=TEXTS[match["text"]],
        ))
    differences += count_differences("speaker", tally(r.speaker for r in rows), STANDARD_SPEAKERS)
    differences += count_differences("emotion", tally(r.label for r in rows), STANDARD_EMOTIONS)
    return RecipeResult("EmoDB", base, rows, STANDARD, problems, differences, Counter())
