"""``Utterance.split``: one of train/dev/test or none; left out of the JSON when none."""
from __future__ import annotations

import json

import pytest

from manifests import ManifestError, Utterance, manifest_hash, read_manifest, write_manifest


def test_split_round_trips_and_is_omitted_when_none(tmp_path):
    plain = Utterance(utt_id="a", label="neu", group="1", audio="a.wav")
    assert "split" not in plain.to_json()
    with_split = Utterance(utt_id="b", label="neu", group="1", audio="b.wav", split="dev")
    assert with_split.to_json()["split"] == "dev"
    path = write_manifest([plain, with_split], tmp_path / "m.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "split" not in lines[0] and lines[1]["split"] == "dev"
    back = read_manifest(path)
    assert [r.split for r in back] == [None, "dev"]
    # A split does not change what the rows mean to an encoder: stores stay valid.
    assert manifest_hash([plain]) == manifest_hash([Utterance(utt_id="a", label="neu", group="1", audio="x.wav")])


def test_split_must_be_train_dev_or_test(tmp_path):
    with pytest.raises(ValueError, match=r"utterance 'a': split 'valid' is not one of \['train', 'dev', 'test'\] \(or none\)"):
        Utterance(utt_id="a", label="neu", group="1", audio="a.wav", split="valid")
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"utt_id": "a", "label": "neu", "group": "1", "audio": "a.wav", "split": "Test1"}) + "\n")
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: utterance 'a': split 'Test1' is not one of"):
        read_manifest(path)
