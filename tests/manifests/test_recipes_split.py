"""`manifests meld` and `manifests msp-podcast`: corpora with their own fixed split, on fixtures of their layouts.

MELD: the three *_sent_emo.csv tables (Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
Season, Episode, StartTime, EndTime) and dia{D}_utt{U}.mp4 clips in train_splits/, dev_splits_complete/,
output_repeated_splits_test/ (zero-byte placeholders: the recipe only locates them). MSP-Podcast:
Labels/labels_consensus.csv (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set) and Audios/.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from democorpus.speech import write_wav
from manifests.cli import cli
from manifests.io import read_manifest
from manifests.recipes import parse_meld
from train.folds import FIXED_FOLD, groups, split_fold

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
               "Episode", "StartTime", "EndTime"]
MELD_EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


def _meld(root: Path, sizes: dict[str, int], *, skip: set[tuple[str, int, int]] = frozenset(), apostrophe: str = "’") -> Path:
    """MELD.Raw as unpacked: train/ holds its table and clips, dev and test lie at the top. The
    release's own tables hold ``apostrophe="\x92"``: Windows-1252's byte as a control character."""
    places = {"train": (root / "train", "train_splits"), "dev": (root, "dev_splits_complete"),
              "test": (root, "output_repeated_splits_test")}
    for part, n in sizes.items():
        folder, clips = places[part]
        (folder / clips).mkdir(parents=True, exist_ok=True)
        with (folder / f"{part}_sent_emo.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(MELD_HEADER)
            for i in range(n):
                d, u = i // 10, i % 10
                writer.writerow([i + 1, f"Line {i} of {part}, isn{apostrophe}t it?", ["Ross", "Rachel", "Joey"][i % 3],
                                 MELD_EMOTIONS[i % 7], "neutral", d, u, 1, 1, "00:00:01,000", "00:00:02,000"])
                if (part, d, u) not in skip and not (part == "dev" and (d, u) == (110, 7)):
                    (folder / clips / f"dia{d}_utt{u}.mp4").write_bytes(b"")
    (root / "output_repeated_splits_test" / "final_videos_testdia101_utt0.mp4").write_bytes(b"")  # a stray clip: ignored
    return root


@pytest.fixture(scope="module")
def meld_release(tmp_path_factory) -> Path:
    return _meld(tmp_path_factory.mktemp("meld") / "MELD.Raw", {"train": 9989, "dev": 1109, "test": 2610})


def test_meld_release_passes_expect_standard(meld_release, run_recipe):
    summary, out = run_recipe("meld", meld_release.parent, "--expect-standard")
    assert summary["group_totals"] == {"dev": 1108, "test": 2610, "train": 9989} and len(summary["classes"]) == 7
    assert summary["differences"] == []
    assert any(p.endswith("dia110_utt7.mp4; left out (the release ships none)") for p in summary["problems"])
    rows = read_manifest(out)
    first = next(r for r in rows if r.utt_id == "dev_dia0_utt1")
    assert (first.split, first.group, first.dialog, first.speaker, first.label, first.text) == (
        "dev", "dev", "dev_dia0", "Rachel", "joy", "Line 1 of dev, isn’t it?")
    assert first.audio == first.video and first.video.endswith("dev_splits_complete/dia0_utt1.mp4")
    # train's one fold is MELD's own split.
    assert groups(rows) == [FIXED_FOLD]
    split = split_fold(rows, FIXED_FOLD)
    assert (len(split.train), len(split.val), len(split.test)) == (9989, 1108, 2610)


def test_meld_missing_clip_fails_expect_standard(tmp_path):
    root = _meld(tmp_path / "MELD.Raw", {"train": 30, "dev": 10, "test": 10}, skip={("test", 0, 4)})
    result = CliRunner().invoke(cli, ["meld", str(root), "--out", str(tmp_path / "m.jsonl"), "--expect-standard"])
    assert result.exit_code == 1
    clip = root / "output_repeated_splits_test" / "dia0_utt4.mp4"
    assert f"warning: {root / 'test_sent_emo.csv'}:6: no clip {clip}; left out\n" in result.output
    assert (f"Error: {root}: not the MELD release as published (9989 / 1109 / 2610 utterances in train / dev / test); "
            f"4 difference(s):\n  {root / 'train' / 'train_sent_emo.csv'}: 30 utterances, the release has 9989\n") in result.output
    assert f"\n  missing test clip {clip}\n" in result.output
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 49


def test_meld_punctuation_stored_as_control_characters_is_read_as_punctuation(tmp_path):
    root = _meld(tmp_path / "MELD.Raw", {"train": 3, "dev": 2, "test": 2}, apostrophe="\x92")
    result = parse_meld(root)
    assert {r.text for r in result.rows} >= {"Line 0 of train, isn’t it?", "Line 1 of dev, isn’t it?"}
    assert f"{root / 'dev_sent_emo.csv'}: Windows-1252 punctuation stored as control characters (U+0080-U+009F); " \
           "read as that punctuation" in result.problems


def test_meld_counts_and_missing_table(tmp_path):
    root = _meld(tmp_path / "MELD.Raw", {"train": 30, "dev": 10, "test": 10})
    result = parse_meld(root)
    assert len(result.rows) == 50 and result.differences[:1] == [
        f"{root / 'train' / 'train_sent_emo.csv'}: 30 utterances, the release has 9989"]
    (root / "test_sent_emo.csv").unlink()
    failed = CliRunner().invoke(cli, ["meld", str(root), "--out", str(tmp_path / "m.jsonl")])
    assert failed.exit_code == 1
    assert (f"Error: {root}: no test_sent_emo.csv (looked in {root} and {root / 'test'}); MELD's test table is part of "
            "the release") in failed.output


MSP_HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
MSP_ROWS = [
    ("MSP-PODCAST_0001_0008.wav", "N", "4.2", "4.0", "4.4", "127", "Female", "Train"),
    ("MSP-PODCAST_0001_0019.wav", "H", "5.0", "6.2", "4.8", "127", "Female", "Train"),
    ("MSP-PODCAST_0002_0033.wav", "A", "6.0", "2.0", "5.4", "Unknown", "Unknown", "Train"),
    ("MSP-PODCAST_0003_0001.wav", "X", "3.6", "4.0", "4.0", "88", "Male", "Train"),
    ("MSP-PODCAST_0004_0002.wav", "S", "2.4", "2.2", "3.0", "88", "Male", "Development"),
    ("MSP-PODCAST_0005_0010.wav", "U", "5.2", "4.6", "4.2", "12", "Male", "Test1"),
    ("MSP-PODCAST_0006_0003.wav", "C", "4.0", "3.0", "4.6", "13", "Female", "Test2"),
    ("MSP-PODCAST_0007_0004.wav", "O", "4.0", "3.2", "4.0", "14", "Female", "Test1"),
]


def _msp(root: Path, *, skip: str | None = None, labels: str = "labels_consensus.csv") -> Path:
    (root / "Labels").mkdir(parents=True)
    (root / "Audios").mkdir()
    (root / "Transcripts").mkdir()
    with (root / "Labels" / labels).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MSP_HEADER)
        writer.writerows(MSP_ROWS)
    for name, *_ in MSP_ROWS:
        if name != skip:
            write_wav(root / "Audios" / name, np.zeros(160))
    (root / "Transcripts" / "MSP-PODCAST_0001_0008.txt").write_text("so what do you think\n")
    return root


def test_msp_podcast_partitions_become_the_split(tmp_path, run_recipe):
    root = _msp(tmp_path / "MSP-PODCAST-Publish-1.11")
    summary, out = run_recipe("msp-podcast", tmp_path, "--expect-standard")
    assert summary["group_totals"] == {"dev": 1, "test": 1, "train": 3} and summary["dropped"] == {
        "Test2": 1, "no-agreement": 1, "other": 1}
    rows = {r.utt_id: r for r in read_manifest(out)}
    first = rows["MSP-PODCAST_0001_0008"]
    assert (first.label, first.split, first.group, first.speaker, first.gender, first.vad, first.text) == (
        "neutral", "train", "train", "127", "F", (4.0, 4.2, 4.4), "so what do you think")
    unknown = rows["MSP-PODCAST_0002_0033"]
    assert unknown.speaker is None and unknown.gender is None and unknown.label == "anger" and unknown.text is None
    assert rows["MSP-PODCAST_0004_0002"].split == "dev" and rows["MSP-PODCAST_0005_0010"].split == "test"
    assert groups(list(rows.values())) == [FIXED_FOLD]
    # Test2 as the test set, every class kept.
    other, other_out = run_recipe("msp-podcast", root, "--test-set", "Test2", "--classes", "all")
    assert other["group_totals"] == {"dev": 1, "test": 1, "train": 4}
    assert {r.label for r in read_manifest(other_out)} >= {"contempt", "no-agreement"}


def test_msp_podcast_releases_with_the_older_spelling_of_the_labels_table(tmp_path, run_recipe):
    root = _msp(tmp_path / "MSP-PODCAST-Publish-1.8", labels="labels_concensus.csv")
    summary, out = run_recipe("msp-podcast", root, "--expect-standard")
    assert summary["group_totals"] == {"dev": 1, "test": 1, "train": 3}
    (root / "Labels" / "labels_concensus.csv").unlink()
    result = CliRunner().invoke(cli, ["msp-podcast", str(root), "--out", str(tmp_path / "m.jsonl")])
    assert result.exit_code == 1 and "no Labels/labels_consensus.csv here or one folder below" in result.output


def test_msp_podcast_missing_audio_fails_expect_standard(tmp_path):
    root = _msp(tmp_path / "MSP", skip="MSP-PODCAST_0004_0002.wav")
    result = CliRunner().invoke(cli, ["msp-podcast", str(root), "--out", str(tmp_path / "m.jsonl"), "--expect-standard"])
    assert result.exit_code == 1
    assert f"warning: 1 labelled segment(s) without their audio in {root / 'Audios'}; left out" in result.output
    assert (f"Error: {root}: not the MSP-Podcast release as published (every segment the labels table lists is in Audios/ "
            f"(the counts depend on the release)); 1 difference(s):\n  missing audio {root / 'Audios' / 'MSP-PODCAST_0004_0002.wav'}\n"
            ) in result.output
