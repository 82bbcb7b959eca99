"""`manifests emodb`: the real five-speaker subset when it is there, and a full-release fixture built from the
EmoDB documentation (file-name scheme, the ten speakers, their published counts per speaker and emotion)."""
from __future__ import annotations

import csv
import json
import os
import string
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from democorpus.speech import write_wav
from manifests.cli import cli
from manifests.recipes import StandardCountError, parse_emodb
from manifests.recipes.emodb import EMOTIONS, GENDERS, STANDARD_EMOTIONS, STANDARD_SPEAKERS, TEXTS

ROOT = Path(__file__).resolve().parents[2]
LETTER = {name: letter for letter, name in EMOTIONS.items()}


def _emodb_dev() -> Path | None:
    """The real subset (../shared/corpora/emodb-dev on the developers' machines; a user's clone has none)."""
    if os.environ.get("EMOCACHE_EMODB_DEV"):
        return Path(os.environ["EMOCACHE_EMODB_DEV"])
    for parent in ROOT.parents:
        candidate = parent / "shared" / "corpora" / "emodb-dev"
        if (candidate / "labels.csv").is_file():
            return candidate
    return None


def _release_names() -> list[str]:
    """535 file names whose counts per speaker and per emotion are the published ones."""
    left_speaker, left_emotion = dict(STANDARD_SPEAKERS), dict(STANDARD_EMOTIONS)
    names = []
    for speaker in left_speaker:
        k = 0
        for emotion in left_emotion:
            n = min(left_speaker[speaker], left_emotion[emotion])
            left_speaker[speaker] -= n
            left_emotion[emotion] -= n
            for _ in range(n):
                text = sorted(TEXTS)[k % 10]
                names.append(f"{speaker}{text}{LETTER[emotion]}{string.ascii_lowercase[k // 10]}.wav")
                k += 1
    assert not any(left_speaker.values()) and not any(left_emotion.values())
    return names


@pytest.fixture(scope="module")
def emodb_release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("emodb") / "download"
    (root / "wav").mkdir(parents=True)
    (root / "lablaut").mkdir()  # the other folders of the download are there and ignored
    for name in _release_names():
        write_wav(root / "wav" / name, np.zeros(160))
    return root


def test_full_release_passes_expect_standard(emodb_release, tmp_path, run_recipe):
    summary, out = run_recipe("emodb", emodb_release, "--expect-standard")
    assert summary["total"] == 535 and len(summary["groups"]) == 10 and len(summary["classes"]) == 7
    assert summary["differences"] == [] and summary["corpus"] == "EmoDB"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    first = next(r for r in rows if r["utt_id"] == "03a01Wa")
    assert first == {**first, "label": "anger", "group": "03", "speaker": "03", "gender": "M", "corpus": "emodb",
                     "text": "Der Lappen liegt auf dem Eisschrank."}
    assert {r["gender"] for r in rows if r["speaker"] == "16"} == {"F"} and "split" not in first
    # The folder above the download works too.
    again = CliRunner().invoke(cli, ["emodb", str(emodb_release.parent), "--out", str(tmp_path / "b.jsonl"), "--expect-standard"])
    assert again.exit_code == 0, again.output


def test_a_missing_file_fails_expect_standard(emodb_release, tmp_path):
    root = tmp_path / "emodb"
    (root / "wav").mkdir(parents=True)
    names = _release_names()
    gone = next(n for n in names if n.startswith("12"))
    for name in names:
        if name != gone:
            (root / "wav" / name).write_bytes((emodb_release / "wav" / name).read_bytes())
    (root / "wav" / "notes.wav").write_bytes(b"")
    out = tmp_path / "m.jsonl"
    result = CliRunner().invoke(cli, ["emodb", str(root), "--out", str(out), "--expect-standard"])
    assert result.exit_code == 1
    label = EMOTIONS[gone[5]]
    assert f"warning: {root / 'wav' / 'notes.wav'}: not an EmoDB file name" in result.output
    assert (f"Error: {root}: not the EmoDB release as published (535 clips, 10 speakers, 7 emotions); 3 difference(s):\n"
            f"  unexpected file notes.wav\n"
            f"  speaker 12: 34 files, the release has 35\n"
            f"  emotion {label}: {STANDARD_EMOTIONS[label] - 1} files, the release has {STANDARD_EMOTIONS[label]}\n") in result.output
    assert f"(the manifest was written to {out} all the same)" in result.output
    assert len(out.read_text().splitlines()) == 534
    with pytest.raises(StandardCountError, match="speaker 12: 34 files"):
        parse_emodb(root).require_standard()


def test_no_wav_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["emodb", str(tmp_path), "--out", str(tmp_path / "m.jsonl")])
    assert result.exit_code == 1
    assert f"Error: {tmp_path}: no wav here or one folder below; give the EmoDB folder (the unpacked download, with its wav/ folder)" in result.output


@pytest.mark.skipif(_emodb_dev() is None, reason="the real EmoDB subset (../shared/corpora/emodb-dev) is not on this machine")
def test_real_five_speaker_subset(tmp_path, run_recipe):
    corpus = _emodb_dev()
    summary, out = run_recipe("emodb", corpus)
    assert summary["total"] == 243 and list(summary["groups"]) == ["03", "08", "09", "10", "11"]
    assert len(summary["classes"]) == 7 and summary["group_totals"] == {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55}
    rows = {json.loads(line)["utt_id"]: json.loads(line) for line in out.read_text().splitlines()}
    with (corpus / "labels.csv").open(newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert len(labels) == len(rows) == 243
    for record in labels:  # the recipe agrees with the subset's own table, row by row
        row = rows[record["id"]]
        assert (row["label"], row["speaker"], row["gender"], row["text"]) == (
            record["emotion"], record["speaker"], record["gender"].upper(), TEXTS[record["text"]])
        assert Path(row["audio"]) == (corpus / record["path"]).resolve()
    assert set(GENDERS) >= {r["speaker"] for r in rows.values()}
    failed = CliRunner().invoke(cli, ["emodb", str(corpus), "--out", str(tmp_path / "x.jsonl"), "--expect-standard"])
    assert failed.exit_code == 1 and "speaker 12: 0 files, the release has 35" in failed.output
