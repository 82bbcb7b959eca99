"""`train tune`: trials from scikit-learn, scored on validation only (garbage test groups change nothing),
the choice written as a preset file that --preset accepts, each fold's own choice then tested once, nested."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

import features
from features.provenance import Provenance
from manifests.io import manifest_hash, write_manifest
from train.baseline import BaselineSpec, run_probe
from train.cli import cli
from train.data import load_features
from train.presets import preset
from train.tune import TuneError, choose, choose_per_fold, make_trials, plan_trials, score_trials

CLASSES = ("hap", "neu", "ang", "sad")
SPACE = {"lr": [3e-3, 3e-4], "d": [8, 12]}


def test_trials_come_from_the_grid_or_the_sampler(tiny_cfg):
    grid = make_trials(tiny_cfg, SPACE)
    assert [t.params for t in grid] == [{"d": 8, "lr": 3e-3}, {"d": 8, "lr": 3e-4}, {"d": 12, "lr": 3e-3}, {"d": 12, "lr": 3e-4}]
    assert grid[2].config.model.d == 12 and grid[2].config.lr == 3e-3 and grid[2].config.epochs == tiny_cfg.epochs
    sampled = make_trials(tiny_cfg, {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": {"low": 2, "high": 5}}, 6)
    assert len(sampled) == 6 and all(1e-4 <= t.params["lr"] <= 1e-2 and isinstance(t.params["epochs"], int)
                                     and 2 <= t.params["epochs"] <= 5 for t in sampled)
    assert [t.params for t in sampled] == [t.params for t in make_trials(tiny_cfg, {"lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                                                                      "epochs": {"low": 2, "high": 5}}, 6)]
    assert len(make_trials(tiny_cfg, SPACE, 3)) == 3  # a cut grid is sampled without repeats
    default = plan_trials(tiny_cfg, None, None)
    assert len(default) == 12 and len({json.dumps(t.params, sort_keys=True) for t in default}) == 12
    assert set(default[0].params) == {"lr", "d", "dropout", "weight_decay", "epochs"}
    assert len(plan_trials(tiny_cfg, SPACE, None)) == 4
    with pytest.raises(TuneError, match=r"^space: 'seed' cannot be searched; searchable fields: \["):
        make_trials(tiny_cfg, {"seed": [0, 1]})
    with pytest.raises(TuneError, match=r"^space: 'val_fraction' cannot be searched"):  # trials must share validation rows
        make_trials(tiny_cfg, {"val_fraction": [0.1, 0.3]})
    # A range draws what the field holds, whatever the bounds are written as.
    dropout = [t.params["dropout"] for t in make_trials(tiny_cfg, {"dropout": {"low": 0, "high": 1}}, 4)]
    assert all(isinstance(p, float) and 0 <= p <= 1 for p in dropout) and len(set(dropout)) == 4
    with pytest.raises(TuneError, match=r"need low < high"):
        make_trials(tiny_cfg, {"lr": {"low": 1e-2, "high": 1e-3}})
    with pytest.raises(TuneError, match=r"trial 0 \{'optimizer': 'lion'\}: optimizer 'lion' is not one of"):
        make_trials(tiny_cfg, {"optimizer": ["lion"]})
    with pytest.raises(TuneError, match=r"^trial 0 \{'d': 9\}: d=9 must be divisible by heads=2$"):
        make_trials(tiny_cfg, {"d": [9]})


def _garbage_copy(tmp_path, rows, store, group: str):
    """The manifest and store with ``group``'s labels rotated to another class and its features replaced by noise."""
    bad_rows = [dataclasses.replace(r, label=CLASSES[(CLASSES.index(r.label) + 1) % 4]) if r.group == group else r for r in rows]
    manifest = write_manifest(bad_rows, tmp_path / f"bad-{group}.jsonl")
    path = tmp_path / f"bad-{group}.h5"
    data = load_features(rows, store, {"a": "audio", "t": "text", "v": "video"}, ("a", "t", "v"))
    rng = np.random.default_rng(1)
    with features.open_store(str(path), mode="a") as out:
        for m, md in data.modalities.items():
            prov = Provenance.now(encoder="random:test", manifest_hash=manifest_hash(bad_rows), dtype="float16", dim=md.dim,
                                  layers=None if md.layers is None else f"0-{md.layers - 1}")
            with out.writer(md.set_name, prov, layers=md.layers) as w:
                for i, r in enumerate(bad_rows):
                    x = md.data[..., md.offsets[i]:md.offsets[i + 1], :].astype(np.float32)
                    w.write(r.utt_id, rng.normal(scale=50.0, size=x.shape).astype(np.float32) if r.group == group else x)
    return manifest, path, bad_rows


def test_no_test_peeking_garbage_test_groups_change_no_score_and_no_choice(small_corpus, tiny_cfg, tmp_path):
    manifest, store, rows = small_corpus
    trials = make_trials(tiny_cfg.replace(epochs=3), SPACE)
    clean = score_trials(trials, rows, store, progress=False)
    assert all(f.passes == ("train", "val") for folds in clean for f in folds)  # no pass over any test group
    spliced = [[None] * 3 for _ in trials]
    clean_picks = choose_per_fold(choose(trials, clean)[1])
    for k, group in enumerate(["1", "2", "3"]):
        bad_manifest, bad_store, bad_rows = _garbage_copy(tmp_path, rows, store, group)
        # The corruption is real: a model that reads the test group sees it.
        probe = lambda m, s: run_probe(tiny_cfg, m, s, BaselineSpec({"a": "audio"}))[k].scores["acc"]
        assert probe(bad_manifest, bad_store) != probe(manifest, store)
        # Fold `group` tests on the garbage; its validation scores are the clean ones, exactly.
        dirty = score_trials(trials, bad_manifest, bad_store, progress=False)
        for t in range(len(trials)):
            assert dirty[t][k] == clean[t][k]
            spliced[t][k] = dirty[t][k]
        # The other folds train or validate on the garbage, so a choice over all folds would see it;
        # the choice for this fold's test reads this fold alone.
        assert any(dirty[t][j] != clean[t][j] for t in range(len(trials)) for j in range(3) if j != k)
        assert choose_per_fold(choose(trials, dirty)[1])[group] == clean_picks[group]
    assert choose(trials, spliced) == choose(trials, clean)
    assert len({s.score for s in choose(trials, clean)[1]}) > 1  # the trials do differ: the choice means something


@pytest.mark.slow
def test_tune_cli_on_dask_writes_a_preset_that_cv_runs(small_corpus, tmp_path):
    manifest, store, _ = small_corpus
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": [3e-3, 3e-4], "epochs": [2]}))
    tiny = ["--d", "8", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0", "--modalities", "a,t"]
    out = tmp_path / "tune"
    result = CliRunner().invoke(cli, ["tune", "--manifest", str(manifest), "--store", str(store), "--space", str(space),
                                      "--scheduler", "local:2", "--out", str(out), "--json", *tiny])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [t["params"] for t in report["trials"]] == [{"epochs": 2, "lr": 3e-3}, {"epochs": 2, "lr": 3e-4}]
    best = max(report["trials"], key=lambda t: t["score"])
    assert report["chosen"]["number"] == best["number"] and report["preset"] == str(out / "preset.json")
    assert all(0 <= f["best_val_wf1"] <= 1 and f["passes"] == ["train", "val"] for t in report["trials"] for f in t["folds"])
    chosen = json.loads((out / "preset.json").read_text())
    assert chosen["lr"] == best["params"]["lr"] and chosen["model"]["d"] == 8 and chosen["model"]["modalities"] == ["a", "t"]
    assert preset(str(out / "preset.json")).lr == best["params"]["lr"]
    assert "baseline" in report["test"] and set(report["test"]["mean"]) == {"acc", "wf1", "ua", "macro_f1"}
    assert (out / "test" / "cv.json").is_file() and (out / "tune.md").read_text().startswith("Selection: mean over folds")
    # The test is nested: each fold ran the trial best on its own validation split.
    groups = [f["group"] for f in best["folds"]]
    picks = {g: max(report["trials"], key=lambda t: (t["folds"][k]["best_val_wf1"], -t["number"]))["number"]
             for k, g in enumerate(groups)}
    assert {g: c["trial"] for g, c in report["fold_choices"].items()} == picks
    tested = json.loads((out / "test" / "cv.json").read_text())
    for fold in tested["folds"]:
        ran = json.loads((out / "test" / f"fold-{fold['group']}" / "config.json").read_text())
        assert ran["train"]["lr"] == report["trials"][picks[fold["group"]]]["params"]["lr"]
    # The preset file runs everywhere --preset goes; where a fold chose the same trial, its figures come again.
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--preset", str(out / "preset.json"),
                                      "--out", str(tmp_path / "again"), "--json"])
    assert result.exit_code == 0, result.output
    again = {f["group"]: f for f in json.loads(result.stdout)["folds"]}
    same = [f for f in tested["folds"] if picks[f["group"]] == best["number"]]
    assert same and all(f["wf1"] == again[f["group"]]["wf1"] and f["acc"] == again[f["group"]]["acc"] for f in same)


def test_bad_preset_files_and_spaces_are_named(small_corpus, tmp_path):
    manifest, store, _ = small_corpus
    base = ["--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, ["cv", *base, "--preset", str(tmp_path / "none.json")])
    assert result.output == (f"Error: preset file {tmp_path / 'none.json'} does not exist; presets: ['fast', 'paper'], "
                             "or a preset file FILE.json\n")
    result = CliRunner().invoke(cli, ["cv", *base, "--preset", "quick"])
    assert result.output == "Error: unknown preset 'quick'; presets: ['fast', 'paper'], or a preset file FILE.json\n"
    (tmp_path / "space.json").write_text('{"lr": []}')
    result = CliRunner().invoke(cli, ["tune", *base, "--space", str(tmp_path / "space.json")])
    assert result.output == f"Error: space file {tmp_path / 'space.json'}: 'lr' has an empty list of values\n"
    result = CliRunner().invoke(cli, ["tune", *base, "--val", "none"])
    assert result.output == "Error: tuning needs validation data: the base config has val='none'; use --val dialog\n"
