"""`manifests ravdess` and `manifests cremad` on fixtures of their layouts, written from their documentation.

RAVDESS: Actor_XX/ folders of 7-part names (03-* audio-only WAVs, 01-* audio-video MP4s, 02-* video-only,
vocal channel 02 song). CREMA-D: AudioWAV/, VideoFlash/ (.flv) and VideoDemographics.csv. Video files are
zero-byte placeholders (the recipes only locate them), except one real MP4 that extraction's audio reader decodes.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from democorpus.speech import write_wav
from manifests.cli import cli
from extract.media import ffmpeg_exe
from manifests.recipes.cremad import EMOTIONS as CREMA_EMOTIONS
from manifests.recipes.cremad import SENTENCES, STANDARD_EMOTIONS
from manifests.recipes.ravdess import file_name, speech_keys


def _ravdess(root: Path, *, videos: bool, skip: set[str] = frozenset()) -> Path:
    for key in speech_keys():
        folder = root / f"Actor_{key[4]}"
        folder.mkdir(parents=True, exist_ok=True)
        name = file_name("03", key, ".wav")
        if name not in skip:
            write_wav(folder / name, np.zeros(160))
        if videos:
            (folder / file_name("01", key, ".mp4")).write_bytes(b"")
            (folder / file_name("02", key, ".mp4")).write_bytes(b"")  # video-only: not a speech recording of ours
    write_wav(root / "Actor_01" / "03-02-03-01-01-01-01.wav", np.zeros(160))  # song: left out
    return root


@pytest.fixture(scope="module")
def ravdess_release(tmp_path_factory) -> Path:
    return _ravdess(tmp_path_factory.mktemp("ravdess") / "RAVDESS", videos=True)


def test_ravdess_release_passes_expect_standard(ravdess_release, run_recipe):
    summary, out = run_recipe("ravdess", ravdess_release, "--expect-standard")
    assert summary["total"] == 1440 and len(summary["groups"]) == 24 and len(summary["classes"]) == 8
    assert set(summary["group_totals"].values()) == {60}
    assert summary["dropped"] == {"song": 1, "video-only": 1440}
    rows = {json.loads(line)["utt_id"]: json.loads(line) for line in out.read_text().splitlines()}
    row = rows["03-01-06-02-02-01-12"]
    assert (row["label"], row["group"], row["speaker"], row["gender"], row["text"]) == (
        "fearful", "12", "12", "F", "Dogs are sitting by the door")
    assert row["audio"].endswith("Actor_12/03-01-06-02-02-01-12.wav") and row["video"].endswith("Actor_12/01-01-06-02-02-01-12.mp4")
    assert rows["03-01-01-01-01-01-01"]["gender"] == "M" and rows["03-01-01-01-01-01-01"]["label"] == "neutral"


def test_ravdess_missing_wav_is_named(tmp_path):
    gone = "03-01-05-02-01-02-07.wav"
    root = _ravdess(tmp_path / "RAVDESS", videos=False, skip={gone})
    result = CliRunner().invoke(cli, ["ravdess", str(root), "--out", str(tmp_path / "r.jsonl"), "--expect-standard"])
    assert result.exit_code == 1
    assert (f"Error: {root}: not the RAVDESS release as published (1440 speech recordings, 60 for each of 24 actors, "
            f"8 emotions (no strong neutral)); 1 difference(s):\n  missing audio-only wav {root / 'Actor_07' / gone}\n") in result.output
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1439


def test_ravdess_audio_from_the_video_when_no_wav(tmp_path):
    """Only the audio-video zip unpacked: the audio is decoded from the MP4 (a real one, made with ffmpeg)."""
    from extract.audio import read_audio

    clip = tmp_path / "Actor_03" / "01-01-04-01-02-02-03.mp4"
    clip.parent.mkdir(parents=True)
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-shortest", "-pix_fmt", "yuv420p", str(clip)],
                   check=True)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(cli, ["ravdess", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (f"warning: 1 recording(s) without their audio-only wav (e.g. {clip}): their audio is read from the audio-video mp4"
            in result.output)
    row = json.loads(out.read_text())
    assert row["audio"] == row["video"] == str(clip.resolve()) and row["label"] == "sad"
    wave = read_audio(row["utt_id"], row["audio"], 16000)
    assert 0.4 * 16000 < len(wave) < 0.6 * 16000 and np.abs(wave).max() > 0.1


def _crema_names() -> list[str]:
    """7442 clip names: 91 actors, the published count per emotion, distinct sentence/level per actor."""
    emotions = [code for code, name in CREMA_EMOTIONS.items() for _ in range(STANDARD_EMOTIONS[name])]
    combos = [(s, lv) for s in SENTENCES for lv in ("LO", "MD", "HI", "XX")]
    names = []
    for i, emotion in enumerate(emotions):
        sentence, level = combos[(i // 91) % len(combos)]
        names.append(f"{1001 + i % 91}_{sentence}_{emotion}_{level}.wav")
    return names


def _cremad(root: Path, *, skip_video: str | None = None) -> Path:
    (root / "AudioWAV").mkdir(parents=True)
    (root / "VideoFlash").mkdir()
    for name in _crema_names():
        write_wav(root / "AudioWAV" / name, np.zeros(16))
        if name != skip_video:
            (root / "VideoFlash" / name.replace(".wav", ".flv")).write_bytes(b"")
    lines = ["ActorID,Age,Sex,Race,Ethnicity"] + [f"{a},{20 + a % 40},{'Male' if a % 2 else 'Female'},Caucasian,Not Hispanic"
                                                  for a in range(1001, 1092)]
    (root / "VideoDemographics.csv").write_text("\n".join(lines) + "\n")
    return root


def test_crema_names_are_distinct():
    names = _crema_names()
    assert len(names) == len(set(names)) == 7442


@pytest.fixture(scope="module")
def cremad_release(tmp_path_factory) -> Path:
    return _cremad(tmp_path_factory.mktemp("cremad") / "CREMA-D")


def test_cremad_release_passes_expect_standard(cremad_release, run_recipe):
    summary, out = run_recipe("cremad", cremad_release, "--expect-standard")
    assert summary["total"] == 7442 and len(summary["groups"]) == 91 and summary["classes"]["neutral"] == 1087
    row = next(json.loads(line) for line in out.read_text().splitlines() if json.loads(line)["utt_id"].startswith("1001_"))
    sentence, emotion = row["utt_id"].split("_")[1:3]
    assert (row["group"], row["speaker"], row["gender"], row["label"], row["text"]) == (
        "1001", "1001", "M", CREMA_EMOTIONS[emotion], SENTENCES[sentence])
    assert row["video"].endswith(f"VideoFlash/{row['utt_id']}.flv")


def test_cremad_missing_video_and_table(tmp_path):
    gone = _crema_names()[5]
    root = _cremad(tmp_path / "CREMA-D", skip_video=gone)
    result = CliRunner().invoke(cli, ["cremad", str(root), "--out", str(tmp_path / "c.jsonl"), "--expect-standard"])
    assert result.exit_code == 1
    video = root / "VideoFlash" / gone.replace(".wav", ".flv")
    assert f"1 difference(s):\n  missing video {video}\n" in result.output
    assert "warning: 1 clip(s) without their VideoFlash/*.flv: their rows have no video" in result.output
    (root / "VideoDemographics.csv").unlink()
    result = CliRunner().invoke(cli, ["cremad", str(root), "--out", str(tmp_path / "d.jsonl")])
    assert result.exit_code == 1
    assert (f"Error: {root / 'VideoDemographics.csv'}: no such file; CREMA-D's demographics table (VideoDemographics.csv) "
            "is part of the release, copy it next to AudioWAV/") in result.output
