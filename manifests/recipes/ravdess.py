"""RAVDESS speech (Livingstone & Russo 2018), read from its ``Actor_XX/`` folders as distributed.

The 7-part file name, e.g. ``03-01-06-01-02-01-12.wav``: modality (01 audio-video,
02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion,
intensity (01 normal, 02 strong), statement, repetition, actor (odd male, even
female). One row per speech recording: audio from the audio-only WAV, video from
the audio-video MP4 when it was unpacked too. Song files are left out. The fold
key is the actor.
"""
from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from pathlib import Path

from ..io import ManifestError
from ..schema import Utterance
from .common import RecipeResult, missing_lines
from .registry import register

EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful", "07": "disgust",
            "08": "surprised"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
ACTORS = tuple(f"{a:02d}" for a in range(1, 25))
STANDARD = "1440 speech recordings, 60 for each of 24 actors, 8 emotions (no strong neutral)"

NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(wav|mp4)$", re.IGNORECASE)


def speech_keys() -> list[tuple[str, str, str, str, str]]:
    """(emotion, intensity, statement, repetition, actor) of every speech recording of the release."""
    keys = []
    for actor, emotion, intensity, statement, repetition in itertools.product(ACTORS, EMOTIONS, ("01", "02"), ("01", "02"), ("01", "02")):
        if emotion == "01" and intensity == "02":
            continue  # neutral has no strong intensity
        keys.append((emotion, intensity, statement, repetition, actor))
    return keys


def file_name(modality: str, key: tuple[str, ...], ext: str) -> str:
    return "-".join((modality, "01", *key)) + ext


@register("ravdess", help="""Manifest of RAVDESS speech as distributed.

    ROOT holds Actor_01 .. Actor_24 (the unpacked audio-only zip, and the
    audio-video zips when you have them): one row per speech recording, audio from
    its 03-* WAV, video from its 01-* MP4; song is left out. The group is the actor.
    --expect-standard: 1440 recordings, 60 per actor.
    """)
def parse_ravdess(root: str | os.PathLike) -> RecipeResult:
    """Rows of every speech recording found below ``root`` (the folder holding ``Actor_01`` .. ``Actor_24``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ManifestError(f"{root}: no such folder; give the RAVDESS folder (Actor_01 .. Actor_24, unpacked from its zips)")
    audio: dict[tuple[str, ...], Path] = {}
    video: dict[tuple[str, ...], Path] = {}
    problems: list[str] = []
    differences: list[str] = []
    dropped: Counter = Counter()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".mp4") and p.is_file()):
        match = NAME.match(path.name)
        if match is None:
            problems.append(f"{path}: not a RAVDESS file name (e.g. 03-01-06-01-02-01-12.wav); left out")
            continue
        modality, channel, emotion, intensity, statement, repetition, actor, ext = match.groups()
        if channel == "02":
            dropped["song"] += 1
            continue
        key = (emotion, intensity, statement, repetition, actor)
        bad = [what for what, ok in (("vocal channel", channel == "01"), ("emotion", emotion in EMOTIONS),
                                     ("intensity", intensity in ("01", "02") and not (emotion == "01" and intensity == "02")),
                                     ("statement", statement in STATEMENTS), ("repetition", repetition in ("01", "02")),
                                     ("actor", actor in ACTORS)) if not ok]
        if bad:
            problems.append(f"{path}: {', '.join(bad)} code outside the RAVDESS scheme; left out")
            differences.append(f"unexpected file {path}")
            continue
        kind = {("03", "wav"): audio, ("01", "mp4"): video}.get((modality, ext.lower()))
        if kind is None:
            if modality == "02":
                dropped["video-only"] += 1
            else:
                problems.append(f"{path}: modality {modality} with a .{ext} file is not a RAVDESS recording; left out")
            continue
        if key in kind:
            problems.append(f"{path}: the same recording as {kind[key]}; the second copy is left out")
            differences.append(f"duplicate file {path}")
            continue
        kind[key] = path

    rows = []
    from_video = sorted(video[k] for k in set(video) - set(audio))
    if from_video:
        problems.append(f"{len(from_video)} recording(s) without their audio-only wav (e.g. {from_video[0]}): "
                        "their audio is read from the audio-video mp4")
    for key in sorted(set(audio) | set(video), key=lambda k: (k[4], k)):
        emotion, _, statement, _, actor = key
        rows.append(Utterance(
            utt_id=file_name("03", key, ""), label=EMOTIONS[emotion], group=actor,
            audio=str((audio.get(key) or video[key]).resolve()), corpus="ravdess", speaker=actor,
            gender="M" if int(actor) % 2 else "F", text=STATEMENTS[statement],
            video=str(video[key].resolve()) if key in video else None,
        ))
    expected = speech_keys()
    for found, modality, ext, kind in ((audio, "03", ".wav", "audio-only wav"), (video, "01", ".mp4", "audio-video mp4")):
        if modality == "01" and not found:
            continue  # the audio-video zips are optional; once unpacked, all of them are expected
        folders = {k[4]: p.parent for k, p in found.items()}  # each actor's folder as unpacked, wherever it lies
        differences += missing_lines((folders.get(k[4], root / f"Actor_{k[4]}") / file_name(modality, k, ext)
                                      for k in expected if k not in found), kind)
    return RecipeResult("RAVDESS", root, rows, STANDARD, problems, differences, dropped)
