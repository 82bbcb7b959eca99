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
from threadpoolctl import threadpool_limits

import features
from features.provenance import Provenance
from manifests.io import manifest_hash
from train import metrics
from train.baseline import MAX_ITER, TOL, BaselineSpec, fit_predict, pooled, run_probe, span_coordinates
from train.cli import cli
from train.data import load_features
from train.folds import Split, split_fold
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
    # The same fold by hand: the head's split, fit on all columns of its training rows only.
    data = load_features(rows, store, cfg.sets, ("a", "t"))
    split = split_fold(rows, "2", cfg.val, cfg.val_fraction, cfg.seed)
    x = np.concatenate([pooled(data.modalities["a"]), pooled(data.modalities["t"])], axis=1)
    tr, te = list(split.train), list(split.test)
    scaler = StandardScaler().fit(x[tr])
    clf = LogisticRegression(tol=TOL, max_iter=MAX_ITER).fit(scaler.transform(x[tr]), data.labels[tr])
    pred = clf.predict(scaler.transform(x[te]))
    assert folds[1].scores["acc"] == pytest.approx(accuracy_score(data.labels[te], pred))
    assert folds[1].scores["wf1"] == pytest.approx(f1_score(data.labels[te], pred, average="weighted"))
    assert folds[1].n_train == len(split.train) and folds[1].scores["n_test"] == len(split.test)
    assert np.mean([f.scores["acc"] for f in folds]) > 0.5  # the label signal is there; chance is 0.25


def synthetic_problem(n: int, p: int, amp: float, seed: int) -> tuple[np.ndarray, np.ndarray, Split]:
    """4 classes, a class signal of size ``amp`` in 40 columns (fewer when ``p`` is small), columns on
    scales 0.1..100, 5 constant columns; the first 3/4 of the rows train, the rest test."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, p))
    k = min(40, p - 5)
    x[:, 5:5 + k] += amp * rng.normal(size=(4, k))[y]
    x *= rng.uniform(0.1, 100, p)
    x[:, :5] = 7.0
    cut = 3 * n // 4
    return x, y, Split("1", tuple(range(cut)), (), tuple(range(cut, n)), None)


@pytest.mark.parametrize("n, p, amp", [(120, 3000, 0.7), (400, 40, 0.3)])
def test_the_fit_on_the_training_span_is_the_fit_on_all_columns(n, p, amp):
    x, y, split = synthetic_problem(n, p, amp, seed=n)
    tr, te = list(split.train), list(split.test)
    scaler = StandardScaler().fit(x[tr])
    x_train, x_test = scaler.transform(x[tr]), scaler.transform(x[te])
    with threadpool_limits(limits=1):
        full = LogisticRegression(C=1.0, tol=TOL, max_iter=MAX_ITER, random_state=0).fit(x_train, y[tr])
    z_train, z_test = span_coordinates(x_train, x_test)
    assert z_train.shape == (len(tr), min(len(tr), p)) and z_test.shape == (len(te), min(len(tr), p))
    span = LogisticRegression(C=1.0, tol=TOL, max_iter=MAX_ITER, random_state=0).fit(z_train, y[tr])
    assert full.n_iter_[0] < MAX_ITER and span.n_iter_[0] < MAX_ITER
    # Both reach the one optimum: the test rows' decision values agree to ~1e-5 (p > n) and ~1e-12
    # (p < n) as measured; the bound leaves a margin and is far below any decision a class hangs on.
    gap = np.abs(full.decision_function(x_test) - span.decision_function(z_test)).max()
    assert gap < 1e-3, gap
    np.testing.assert_array_equal(fit_predict(x, y, split, seed=0), full.predict(x_test))
    assert 0.4 < (full.predict(x_test) == y[te]).mean() < 0.95  # learnable, not trivial; chance is 0.25


def test_only_the_training_rows_define_the_span():
    x, y, split = synthetic_problem(120, 3000, 0.7, seed=1)
    pred = fit_predict(x, y, split, seed=0)
    other = x.copy()
    changed = list(split.test[:15])
    other[changed] = np.random.default_rng(2).normal(size=(15, 3000)) * 50
    again = fit_predict(other, y, split, seed=0)
    np.testing.assert_array_equal(again[15:], pred[15:])
    assert (again[:15] != pred[:15]).any()
    # The basis itself: the training rows' coordinates do not move with the test rows.
    x_train = StandardScaler().fit_transform(x[list(split.train)])
    np.testing.assert_array_equal(span_coordinates(x_train, x[changed])[0], span_coordinates(x_train, other[changed])[0])


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


def test_ua_and_macro_f1_average_over_the_classes_of_the_test_fold():
    """A class absent from a fold's truth counts in neither, whatever the predictions say: a stray
    prediction of it is one error on its true class, the same as any other wrong class."""
    y_true = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    stray_pred = [0, 0, 1, 1, 2, 2, 3, 3, 4, 5]
    stray = metrics.compute(y_true, stray_pred, n_classes=6)
    wrong = metrics.compute(y_true, [0, 0, 1, 1, 2, 2, 3, 3, 4, 0], n_classes=6)
    assert stray["macro_f1"] == pytest.approx(f1_score(y_true, stray_pred, labels=[0, 1, 2, 3, 4], average="macro"))
    assert stray["macro_f1"] > f1_score(y_true, stray_pred, average="macro")  # sklearn's default averages in class 5
    assert stray["macro_f1"] > wrong["macro_f1"]  # a wrong class 0 also costs class 0 precision
    assert stray["ua"] == wrong["ua"] == pytest.approx(0.9)
    assert len(stray["confusion"]) == 6


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
    assert table.startswith("| fold | acc | wf1 | ua | macro_f1 | n_test | best_epoch | last_acc | last_wf1 | baseline_acc "
                            "| baseline_wf1 | classical_acc | classical_wf1 |")
    d = report["baseline"]["diff"]["wf1"]
    assert (f"| baseline (a=audio, t=text) | {100 * report['baseline']['diff']['acc']['mean']:+.2f} "
            f"[{100 * report['baseline']['diff']['acc']['low']:+.2f}, ") in table
    assert f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]" in table
    assert "Classes (4): hap, neu, ang, sad." in table
    lines = (out / "folds.csv").read_text().splitlines()
    assert lines[0] == "fold,acc,wf1,ua,macro_f1,n_test,best_epoch,last_acc,last_wf1,baseline_acc,baseline_wf1,classical_acc,classical_wf1"
    # The last epoch's figures stand beside the chosen epoch's, per fold and as the mean over folds.
    assert lines[1].split(",")[7:9] == [f"{100 * report['folds'][0]['last'][k]:.2f}" for k in ("acc", "wf1")]
    mean = next(line.split(",") for line in lines if line.startswith("mean,"))
    assert mean[8] == f"{100 * np.mean([f['last']['wf1'] for f in report['folds']]):.2f}"
    assert lines[1].split(",")[9] == f"{100 * report['baseline']['folds'][0]['acc']:.2f}"
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
