"""The linear probe beside every head: same folds, same training rows, figures and paired intervals in every report."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler

import features
from features.provenance import Provenance
from manifests.io import manifest_hash
from train import metrics
from train.baseline import BaselineSpec, pooled, run_probe
from train.cli import cli
from train.data import load_features
from train.folds import split_fold
from train.results import Setting

TINY = ["--d", "8", "--epochs", "1", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0"]
SCALAR_KEYS = {"acc", "wf1", "ua", "macro_f1"}


@pytest.fixture(scope="module")
def functionals_store(small_corpus, tmp_path_factory):
    """A second store with one frame per utterance (as openSMILE functionals are), carrying the label."""
    manifest, _, rows = small_corpus
    path = tmp_path_factory.mktemp("func") / "functionals.h5"
    rng = np.random.default_rng(5)
    classes = ["hap", "neu", "ang", "sad"]
    prov = Provenance.now(encoder="opensmile:test-functionals", manifest_hash=manifest_hash(rows), dtype="float16", dim=6)
    with features.open_store(str(path), mode="a") as store, store.writer("functionals", prov, layers=None) as w:
        for r in rows:
            x = rng.normal(size=(1, 6)).astype(np.float32)
            x[0, classes.index(r.label)] += 3.0
            w.write(r.utt_id, x)
    return path


@pytest.fixture(scope="module")
def cv_run(small_corpus, functionals_store, tmp_path_factory):
    manifest, store, _ = small_corpus
    out = tmp_path_factory.mktemp("cvb")
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--store", str(functionals_store),
                                      "--baseline-sets", "a=functionals", "--modalities", "a,t", "--out", str(out), "--json", *TINY])
    assert result.exit_code == 0, result.output
    assert "classes (4): hap, neu, ang, sad\n" in result.stderr
    return json.loads(result.stdout), out


def test_pooled_is_mean_and_std_of_the_layer_average(small_corpus):
    manifest, store, rows = small_corpus
    data = load_features(rows, store, {"a": "audio"}, ("a",))
    md = data.modalities["a"]
    assert md.data.ndim == 3  # two layers
    x = pooled(md)
    s, e = md.offsets[4], md.offsets[5]
    frames = md.data[:, s:e, :].astype(np.float64).mean(axis=0)
    assert x.shape == (len(rows), 2 * md.dim)
    np.testing.assert_allclose(x[4], np.concatenate([frames.mean(0), frames.std(0)]))


def test_probe_is_scikit_learn_on_the_heads_split(small_corpus, tiny_cfg):
    manifest, store, rows = small_corpus
    cfg = tiny_cfg.replace(modalities=("a", "t"))
    folds = run_probe(cfg, rows, store, BaselineSpec({"a": "audio", "t": "text"}))
    assert [f.group for f in folds] == ["1", "2", "3"]
    # The same fold by hand: the head's split, fit on its training rows only.
    data = load_features(rows, store, cfg.sets, ("a", "t"))
    split = split_fold(rows, "2", cfg.val, cfg.val_fraction, cfg.seed)
    x = np.concatenate([pooled(data.modalities["a"]), pooled(data.modalities["t"])], axis=1)
    tr, te = list(split.train), list(split.test)
    scaler = StandardScaler().fit(x[tr])
    pred = LogisticRegression(max_iter=5000).fit(scaler.transform(x[tr]), data.labels[tr]).predict(scaler.transform(x[te]))
    assert folds[1].scores["acc"] == pytest.approx(accuracy_score(data.labels[te], pred))
    assert folds[1].scores["wf1"] == pytest.approx(f1_score(data.labels[te], pred, average="weighted"))
    assert folds[1].n_train == len(split.train) and folds[1].scores["n_test"] == len(split.test)
    assert np.mean([f.scores["acc"] for f in folds]) > 0.5  # the label signal is there; chance is 0.25


def test_paired_difference_is_the_paired_t_interval():
    rng = np.random.default_rng(0)
    a = [{"group": str(g), **{k: float(v) for k, v in zip(SCALAR_KEYS, rng.random(4))}} for g in range(5)]
    b = [{"group": str(g), **{k: float(v) for k, v in zip(SCALAR_KEYS, rng.random(4))}} for g in reversed(range(5))]
    diff = metrics.paired_difference(a, b)
    by = {f["group"]: f for f in b}
    ci = stats.ttest_rel([f["wf1"] for f in a], [by[f["group"]]["wf1"] for f in a]).confidence_interval(0.95)
    assert diff["wf1"].low == pytest.approx(ci.low) and diff["wf1"].high == pytest.approx(ci.high)
    assert diff["wf1"].mean == pytest.approx(np.mean([f["wf1"] - by[f["group"]]["wf1"] for f in a]))
    assert diff.n_folds == 5 and diff.method == "paired t interval over folds, 95%"
    assert diff.to_json()["wf1"] == {"mean": diff["wf1"].mean, "low": diff["wf1"].low, "high": diff["wf1"].high}
    one = metrics.paired_difference(a[:1], [by["0"]])
    assert one["acc"].low is None and one["acc"].mean == pytest.approx(a[0]["acc"] - by["0"]["acc"])
    with pytest.raises(ValueError, match="same folds on both sides"):
        metrics.paired_difference(a, b[:3])


def test_cv_json_carries_the_baseline_beside_the_head(cv_run):
    report, _ = cv_run
    base = report["baseline"]
    assert base["sets"] == {"a": "audio", "t": "text"}
    assert set(base["mean"]) == SCALAR_KEYS == set(base["std"]) and 0 <= base["mean"]["acc"] <= 1
    assert [f["group"] for f in base["folds"]] == [f["group"] for f in report["folds"]]
    for head, probe in zip(report["folds"], base["folds"]):
        assert SCALAR_KEYS | {"n_test", "confusion", "group", "improvised"} <= set(probe)
        assert probe["n_train"] == head["n_train"] and probe["n_test"] == head["n_test"]
    assert base["mean"]["wf1"] == pytest.approx(np.mean([f["wf1"] for f in base["folds"]]))
    d = base["diff"]["wf1"]
    assert d["mean"] == pytest.approx(report["mean"]["wf1"] - base["mean"]["wf1"])
    assert d["low"] <= d["mean"] <= d["high"]
    classical = report["classical"]
    assert classical["sets"] == {"a": "functionals"} and classical["mean"]["acc"] > 0.6


def test_cv_tables_show_both_baselines_and_the_interval(cv_run):
    report, out = cv_run
    table = (out / "folds.md").read_text()
    assert table.startswith("| fold | acc | wf1 | ua | macro_f1 | n_test | best_epoch | baseline_acc | baseline_wf1 "
                            "| classical_acc | classical_wf1 |")
    d = report["baseline"]["diff"]["wf1"]
    assert (f"| baseline (a=audio, t=text) | {100 * report['baseline']['diff']['acc']['mean']:+.2f} "
            f"[{100 * report['baseline']['diff']['acc']['low']:+.2f}, ") in table
    assert f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]" in table
    assert "Classes (4): hap, neu, ang, sad." in table
    lines = (out / "folds.csv").read_text().splitlines()
    assert lines[0] == "fold,acc,wf1,ua,macro_f1,n_test,best_epoch,baseline_acc,baseline_wf1,classical_acc,classical_wf1"
    assert lines[1].split(",")[7] == f"{100 * report['baseline']['folds'][0]['acc']:.2f}"
    assert lines[-3].startswith("head-classical mean,") and lines[-3].split(",")[2] == f"{100 * report['classical']['diff']['wf1']['mean']:.2f}"


def test_baseline_command_alone(small_corpus, functionals_store, cv_run, tmp_path):
    manifest, store, _ = small_corpus
    report, _ = cv_run
    result = CliRunner().invoke(cli, ["baseline", "--manifest", str(manifest), "--store", str(store), "--store", str(functionals_store),
                                      "--modalities", "a,t", "--baseline-sets", "a=functionals", "--seed", "0",
                                      "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    alone = json.loads(result.stdout)
    assert alone["baseline"]["mean"] == report["baseline"]["mean"]  # the same folds as cv's
    assert alone["classical"]["mean"] == report["classical"]["mean"]
    assert (tmp_path / "baseline.md").read_text().startswith("| probe | fold | acc | wf1 | ua | macro_f1 | n_test | n_train |")
    assert json.loads((tmp_path / "baseline.json").read_text())["baseline"]["mean"] == alone["baseline"]["mean"]
    result = CliRunner().invoke(cli, ["baseline", "--manifest", str(manifest), "--store", str(store), "--baseline-sets", "audio"])
    assert result.exit_code == 1
    assert result.output == ("Error: --baseline-sets item 'audio': write MODALITY=SET with MODALITY one of ['a', 't', 'v'], "
                             "e.g. a=egemaps-functionals\n")


def test_ablation_rows_carry_baseline_reference_and_classical_intervals(small_corpus, functionals_store, tiny_cfg, tmp_path):
    from train.ablate import run_ablation

    manifest, store, rows = small_corpus
    report = run_ablation(tiny_cfg.replace(epochs=1), rows, [store, functionals_store], tmp_path, settings=["A", "A+T"],
                          lambdas=[1.0], progress=False, classical=BaselineSpec({"a": "functionals"}))
    assert report.reference == Setting(("a", "t")) and report.classes == ("hap", "neu", "ang", "sad")
    a, at = report.rows
    assert a.cv.baseline.sets == {"a": "audio"} and at.cv.baseline.sets == {"a": "audio", "t": "text"}
    assert at.vs_reference["wf1"].mean == 0.0
    assert a.vs_reference["wf1"].mean == pytest.approx(a.cv.mean["wf1"] - at.cv.mean["wf1"])
    assert a.vs_classical["acc"].mean == pytest.approx(a.cv.mean["acc"] - report.classical.summary.mean["acc"])
    assert a.to_json()["vs_baseline"] == a.cv.baseline.diff.to_json()
    assert json.loads((tmp_path / "ablation.json").read_text()) == json.loads(json.dumps(report.to_json()))
    md = (tmp_path / "ablation.md").read_text()
    assert ("| setting | ACC | WF1 | WF1 improvised | baseline WF1 | WF1 - baseline | WF1 - classical | WF1 - A+T "
            "| paper ACC | paper WF1 |") in md
    d = a.vs_reference["wf1"]
    assert f"| {100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}] |" in md
    assert "95% paired t interval over the folds" in md and "classical: the same probe over a=functionals" in md
    header = (tmp_path / "ablation.csv").read_text().splitlines()[0]
    assert header == "setting,ACC,WF1,WF1 improvised,baseline WF1,WF1 - baseline,WF1 - classical,WF1 - A+T,paper ACC,paper WF1"
    assert json.loads((tmp_path / "A" / "cv.json").read_text())["baseline"]["mean"] == a.cv.baseline.summary.mean
