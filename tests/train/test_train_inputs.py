"""Manifest values that must not steer training: group values never place a file outside --out,
and a manifest with one class is refused naming the manifest and its label field."""
from __future__ import annotations

import dataclasses
import os

import pytest
from click.testing import CliRunner

from manifests.io import write_manifest
from train.cli import cli
from train.cv import fold_dir
from train.data import DataError, class_list
from train.paths import OutputPathError, child_dir, encode_component

TINY = ["--d", "8", "--epochs", "1", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0"]
HOSTILE = {"1": "../../../ESCAPED", "2": "/tmp/ESCAPED-abs", "3": ".."}


@pytest.mark.parametrize("value, name", [
    ("1", "1"), ("Ses01F", "Ses01F"), ("spk-03_a.b", "spk-03_a.b"),
    ("../../../ESCAPED", "..%2F..%2F..%2FESCAPED"), ("/abs", "%2Fabs"), ("a\x00b", "a%00b"), ("a\\b", "a%5Cb"),
    ("a\ud800", "a%ED%A0%80"), (".", "%2E"), ("..", "%2E%2E"), ("", "%"), ("café", "caf%C3%A9"), ("%2F", "%252F"),
])
def test_encode_component_keeps_plain_values_and_encodes_the_rest(value, name):
    assert encode_component(value) == name
    assert os.sep not in name and "\0" not in name


def test_long_values_are_cut_and_stay_distinct():
    a, b = encode_component("x" * 300 + "a"), encode_component("x" * 300 + "b")
    assert a != b and len(a) <= 200 and len(b) <= 200


def test_fold_dir_is_always_a_direct_child(tmp_path):
    for value in [*HOSTILE.values(), "/", "a/../../b", "\x00", "~root"]:
        path = fold_dir(tmp_path, value)
        assert path.parent == tmp_path and path.name.startswith("fold-"), value


@pytest.mark.parametrize("name", ["../x", "/abs", "..", "", "a/b", "a\x00"])
def test_child_dir_refuses_anything_but_a_plain_name(tmp_path, name):
    with pytest.raises(OutputPathError, match="is not a plain folder name inside"):
        child_dir(tmp_path, name)


def test_cv_with_hostile_group_values_writes_nothing_outside_out(tmp_path, make_rows, write_store):
    rows = [dataclasses.replace(r, group=HOSTILE[r.group]) for r in make_rows()]
    data = tmp_path / "data"
    manifest = write_manifest(rows, data / "manifest.jsonl")
    store = write_store(data / "features.h5", rows)
    out = tmp_path / "a" / "b" / "c" / "out"
    before = {p for p in tmp_path.rglob("*")}

    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--out", str(out), "--json", *TINY])

    assert result.exit_code == 0, result.output
    written = {p for p in tmp_path.rglob("*")} - before
    outside = sorted(str(p) for p in written if out not in p.parents and p not in (out, *out.parents))
    assert outside == []
    assert not os.path.exists("/tmp/ESCAPED-abs")
    folds = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folds == ["fold-%2E%2E", "fold-%2Ftmp%2FESCAPED-abs", "fold-..%2F..%2F..%2FESCAPED"]
    for fold in folds:
        assert (out / fold / "model.pt").is_file() and (out / fold / "metrics.json").is_file()


def _cv_refuses(manifest, tmp_path) -> str:
    """`train cv` on ``manifest`` (with a store that is never opened): exit 1, nothing written; its message."""
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(tmp_path / "none.h5"),
                                      "--out", str(tmp_path / "out"), *TINY])
    assert result.exit_code == 1
    assert not (tmp_path / "out").exists()
    return result.stderr


def test_one_class_manifest_names_the_manifest_and_the_label_field(tmp_path, make_rows):
    rows = [dataclasses.replace(r, label="neu") for r in make_rows()]
    manifest = write_manifest(rows, tmp_path / "one.jsonl")
    assert _cv_refuses(manifest, tmp_path) == (
        f"Error: {manifest}: every one of its {len(rows)} utterances has the label 'neu' (the manifest field 'label', "
        "the --label-col of `manifests csv`); training needs at least 2 classes\n"
    )
    with pytest.raises(DataError, match="^the manifest: every one of its 2 utterances has the label 'sad'"):
        class_list([dataclasses.replace(r, label="sad") for r in rows[:2]])


def test_train_cv_names_a_null_label_by_file_and_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"utt_id": "u0", "label": "neu", "group": "1", "audio": "u0.wav"}\n'
                        '{"utt_id": "u1", "label": null, "group": "1", "audio": "u1.wav"}\n', encoding="utf-8")
    assert _cv_refuses(manifest, tmp_path) == (
        f"Error: {manifest}:2: utterance 'u1': field 'label' must be a label: a non-empty string, got null; "
        "fix this line of the manifest\n"
    )


def test_train_cv_refuses_unlabelled_rows_naming_one(tmp_path, make_rows):
    # An empty label marks a recording for `train predict`; training on it would invent a class.
    rows = make_rows()
    rows[3] = dataclasses.replace(rows[3], label="")
    manifest = write_manifest(rows, tmp_path / "m.jsonl")
    assert _cv_refuses(manifest, tmp_path) == (
        f"Error: {manifest}: 1 utterance(s) have an empty label, e.g. {rows[3].utt_id!r}; "
        "training needs a label on every row (empty labels are for `train predict`)\n"
    )
