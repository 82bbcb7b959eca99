"""The `train` commands end to end on a small real store (CliRunner, exact messages)."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from train.cli import cli

TINY = ["--d", "8", "--epochs", "1", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0"]
SCALAR_KEYS = {"acc", "wf1", "ua", "macro_f1"}


@pytest.fixture(scope="module")
def cv_run(small_corpus, tmp_path_factory):
    manifest, store, _ = small_corpus
    out = tmp_path_factory.mktemp("cv")
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--out", str(out), "--json", *TINY])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_cv_json_carries_every_key(cv_run):
    report, _ = cv_run
    assert len(report["folds"]) == 3
    for fold in report["folds"]:
        assert SCALAR_KEYS | {"n_test", "confusion", "group", "improvised", "last", "best_epoch"} <= set(fold)
        assert fold["n_test"] == 24 and len(fold["confusion"]) == 4
        assert SCALAR_KEYS | {"n_test", "confusion"} <= set(fold["improvised"])
    assert set(report["mean"]) == SCALAR_KEYS and set(report["std"]) == SCALAR_KEYS
    assert report["n_test"] == 72 and sum(map(sum, report["confusion"])) == 72
    assert set(report["improvised"]["mean"]) == SCALAR_KEYS
    assert report["classes"] == ["hap", "neu", "ang", "sad"]
    wf1 = [f["wf1"] for f in report["folds"]]
    assert report["mean"]["wf1"] == pytest.approx(sum(wf1) / 3)


def test_cv_writes_tables_and_plots(cv_run):
    report, out = cv_run
    for name in ("confusion.png", "folds.png", *(f"fold-{g}/learning_curve.png" for g in "123")):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    table = (out / "folds.md").read_text()
    assert table.startswith("| fold | acc | wf1 | ua | macro_f1 | n_test | best_epoch |")
    assert f"| mean | {100 * report['mean']['acc']:.2f} |" in table and "Improvised utterances only" in table
    assert (out / "folds.csv").read_text().splitlines()[0] == "fold,acc,wf1,ua,macro_f1,n_test,best_epoch,last_acc,last_wf1,baseline_acc,baseline_wf1"
    assert json.loads((out / "cv.json").read_text())["mean"] == report["mean"]
    assert (out / "fold-2" / "model.pt").is_file()


def test_fold_command_and_missing_utterance(small_corpus, tmp_path, write_store):
    manifest, store, rows = small_corpus
    result = CliRunner().invoke(cli, ["fold", "--session", "2", "--manifest", str(manifest), "--store", str(store),
                                      "--out", str(tmp_path / "f"), "--modalities", "a,t", "--json", *TINY])
    assert result.exit_code == 0, result.output
    fold = json.loads(result.stdout)
    assert fold["group"] == "2" and SCALAR_KEYS | {"n_test", "confusion"} <= set(fold)
    assert json.loads((tmp_path / "f" / "config.json").read_text())["train"]["model"]["modalities"] == ["a", "t"]

    holey = write_store(tmp_path / "holey.h5", rows, modalities=("a", "t", "v"), skip={"v": [rows[0].utt_id]})
    result = CliRunner().invoke(cli, ["fold", "--group", "1", "--manifest", str(manifest), "--store", str(holey),
                                      "--out", str(tmp_path / "g"), *TINY])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {holey}: feature set 'video' lacks 1 of the manifest's 72 utterances; first: {rows[0].utt_id}. "
        "Finish the extraction (`extract run` resumes) or train on a manifest without them\n")
    assert not (tmp_path / "g").exists()


def test_bad_options_name_the_choices(small_corpus, tmp_path):
    manifest, store, _ = small_corpus
    base = ["fold", "--session", "1", "--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*base, "--modalities", "a,x"])
    assert result.exit_code == 1
    assert result.output == "Error: modalities 'a,x': use a non-empty subset of ['a', 't', 'v'] (a=audio, t=text, v=video)\n"
    result = CliRunner().invoke(cli, [*base, "--session", "9", *TINY])
    assert result.output == "Error: group '9' is not in the manifest; groups there: ['1', '2', '3']\n"
    result = CliRunner().invoke(cli, [*base[:-2], "--out", str(tmp_path / "s"), "--sets", "a=audio,x=faces"])
    assert result.output == "Error: --sets item 'x=faces': write MODALITY=SET with MODALITY one of ['a', 't', 'v'], e.g. a=audio,t=text,v=video\n"


def test_an_ablation_reference_lambda_outside_its_lambdas_is_refused(small_corpus, tmp_path):
    """--lambda only picks the reference row of an ablation: a value it does not train would be ignored."""
    manifest, store, _ = small_corpus
    result = CliRunner().invoke(cli, ["ablate", "--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path / "o"),
                                      "--settings", "A+V+T", "--lambdas", "0,1", "--lambda", "5", *TINY])
    assert (result.exit_code, result.output) == (1, "Error: --lambda 5 picks the reference row of the ablation, so it must be "
                                                    "one of --lambdas 0,1\n")
    assert not (tmp_path / "o").exists()


def test_a_run_never_writes_into_another_kind_of_run(cv_run, small_corpus, tmp_path):
    manifest, store, _ = small_corpus
    _, out = cv_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    inputs = ["--manifest", str(manifest), "--store", str(store), "--out", str(out)]
    for kind, command in (("fold", ["fold", "--session", "1", *inputs, *TINY]), ("ablate", ["ablate", "--settings", "A", *inputs, *TINY]),
                          ("baseline", ["baseline", *inputs])):
        result = CliRunner().invoke(cli, command)
        assert (result.exit_code, result.output) == (1, f"Error: --out {out} holds a `train cv` run (cv.json); give this "
                                                        f"`train {kind}` a folder of its own, or delete that run first\n")
    # Predictions replace earlier predictions only, never a run's table (and are refused before labelling).
    predict = ["predict", "--checkpoint", str(out / "fold-1"), "--store", str(store), "--out"]
    result = CliRunner().invoke(cli, [*predict, str(out / "folds.csv")])
    assert (result.exit_code, result.output) == (1, f"Error: --out {out / 'folds.csv'} exists and holds no predictions; "
                                                    "give a new file name, or delete it first\n")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    for _ in range(2):
        result = CliRunner().invoke(cli, [*predict, str(tmp_path / "p.csv")])
        assert result.exit_code == 0, result.output


def test_bad_devices_are_refused_before_anything_is_written(small_corpus, tmp_path):
    manifest, store, _ = small_corpus
    base = ["fold", "--session", "1", "--manifest", str(manifest), "--store", str(store), *TINY]
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a"), "--device", "gpu"])
    assert (result.exit_code, result.output) == (1, "Error: device 'gpu' is not one of cpu, cuda, cuda:N\n")
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "b"), "--precision", "bf16"])
    assert result.output == "Error: precision='bf16' is for CUDA devices; device 'cpu' trains in fp32 without compile\n"
    if not torch.cuda.is_available():
        result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "c"), "--device", "cuda"])
        assert result.output == "Error: --device cuda: torch sees no CUDA device on this machine; use --device cpu\n"
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "d"), "--device", f"cuda:{torch.cuda.device_count()}"])
    assert result.exit_code == 1 and result.output.startswith(f"Error: --device cuda:{torch.cuda.device_count()}: ")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_predict_labels_new_recordings_and_refuses_other_features(cv_run, small_corpus, tmp_path, write_store, make_rows):
    _, out = cv_run
    manifest, store, rows = small_corpus
    result = CliRunner().invoke(cli, ["predict", "--checkpoint", str(out / "fold-1"), "--store", str(store),
                                      "--manifest", str(manifest), "--out", str(tmp_path / "p.csv"), "--json"])
    assert result.exit_code == 0, result.output
    labelled = json.loads(result.stdout)
    assert len(labelled["predictions"]) == 72 and labelled["classes"] == ["hap", "neu", "ang", "sad"]
    first = labelled["predictions"][0]
    assert first["label"] == rows[0].label and sum(first["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "utt_id,label,pred,p_hap,p_neu,p_ang,p_sad"
    # On the checkpoint's own test group, predict agrees with the fold's predictions.
    fold_preds = {line.split(",")[0]: line.split(",")[2] for line in (out / "fold-1" / "predictions.csv").read_text().splitlines()[1:]}
    assert all(p["pred"] == fold_preds[p["utt_id"]] for p in labelled["predictions"] if p["utt_id"] in fold_preds)

    new = make_rows(groups=1, dialogs=1, per_dialog=5, seed=3)
    new_store = write_store(tmp_path / "new.zarr", new, seed=9)  # new recordings: another manifest, same features
    result = CliRunner().invoke(cli, ["predict", "--checkpoint", str(out / "fold-1"), "--store", str(new_store), "--json"])
    assert result.exit_code == 0, result.output
    assert [p["utt_id"] for p in json.loads(result.stdout)["predictions"]] == [r.utt_id for r in new]

    other = write_store(tmp_path / "other.h5", new, encoder="random:other")
    result = CliRunner().invoke(cli, ["predict", "--checkpoint", str(out / "fold-1"), "--store", str(other)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {other}: feature set 'audio' (a) differs from the features the checkpoint was trained on: "
        "encoder is 'random:other' here, 'random:test' in the checkpoint. "
        "Extract the recordings with the checkpoint's encoder settings (its config.json, \"sets\")\n")


@pytest.mark.slow
def test_ablate_prints_our_table_beside_the_paper(small_corpus, tmp_path):
    manifest, store, _ = small_corpus
    result = CliRunner().invoke(cli, ["ablate", "--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path),
                                      "--settings", "V,A+V+T", "--lambdas", "0,1", "--note", "tiny test store", *TINY])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "> tiny test store"
    assert ("| setting | ACC | WF1 | WF1 improvised | baseline WF1 | WF1 - baseline | WF1 - A+V+T, lambda=1 "
            "| paper ACC | paper WF1 |") in lines
    rows = [line for line in lines if line.startswith("| V") or line.startswith("| A+V+T")]
    assert [r.split(" | ")[0] for r in rows] == ["| V", "| A+V+T, lambda=0", "| A+V+T, lambda=1"]
    assert rows[0].endswith("| 29.88 | 26.31 |") and rows[2].endswith("| 70.26 | 70.29 |")
    report = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["lam"] for r in report["rows"]] == [1.0, 0.0, 1.0]
    assert (tmp_path / "AVT_lambda1" / "folds.md").is_file() and (tmp_path / "ablation.csv").is_file()
