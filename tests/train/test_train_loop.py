"""The one loop on a small real store: every ablation mode trains, seeds reproduce, test comes last."""
from __future__ import annotations

import json

import pytest
import torch

from train.config import TrainConfig
from train.data import load_features
from train.loop import train_fold

MODES = [("a",), ("t",), ("v",), ("a", "t"), ("a", "v"), ("a", "t", "v")]
SETS = {"a": "audio", "t": "text", "v": "video"}


@pytest.fixture(scope="module")
def data(small_corpus):
    _, store, rows = small_corpus
    return load_features(rows, store, SETS, ("a", "t", "v"))


@pytest.mark.parametrize("modalities", MODES, ids=["+".join(m) for m in MODES])
def test_every_ablation_mode_trains(small_corpus, data, tiny_cfg, modalities):
    _, store, rows = small_corpus
    cfg = tiny_cfg.replace(modalities=modalities, epochs=1)
    result = train_fold(cfg, rows, store, "2", data=data.select(modalities), progress=False)
    assert result.metrics["n_test"] == 24 and len(result.history) == 1
    assert result.history[0]["train_loss"] > 0
    assert (result.history[0]["train_margin"] > 0) == (len(modalities) == 3)
    assert sum(map(sum, result.metrics["confusion"])) == 24


def test_same_seed_same_metrics(small_corpus, data, tiny_cfg, tmp_path):
    manifest, store, rows = small_corpus
    first = train_fold(tiny_cfg, manifest, store, "1", tmp_path / "one", progress=False)  # loads the store itself
    second = train_fold(tiny_cfg, rows, store, "1", tmp_path / "two", data=data, progress=False)
    assert (tmp_path / "one" / "metrics.json").read_text() == (tmp_path / "two" / "metrics.json").read_text()
    assert first.metrics == second.metrics
    other = train_fold(tiny_cfg.replace(seed=5), rows, store, "1", data=data, progress=False)
    assert other.history[0]["train_loss"] != first.history[0]["train_loss"]


def test_test_group_is_read_after_training_once_per_checkpoint(small_corpus, data, tiny_cfg):
    _, store, rows = small_corpus
    cfg = tiny_cfg.replace(epochs=3)
    result = train_fold(cfg, rows, store, "3", data=data, progress=False)
    training = ["train", "val"] * 3
    assert result.passes[:6] == training
    if result.best_epoch == 3:
        assert result.passes[6:] == ["test:best"] and result.last == result.metrics
    else:
        assert result.passes[6:] == ["test:best", "test:last"]
    best_val = max(h["val_wf1"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_wf1"] == best_val
    assert min(h["epoch"] for h in result.history if h["val_wf1"] == best_val) == result.best_epoch

    fixed = train_fold(cfg.replace(val="none"), rows, store, "3", data=data, progress=False)
    assert fixed.passes == ["train"] * 3 + ["test:last"] and fixed.n_val == 0 and fixed.best_epoch == 3
    assert "val_wf1" not in fixed.history[0]


def test_fold_outputs_and_checkpoint(small_corpus, data, tiny_cfg, tmp_path):
    _, store, rows = small_corpus
    result = train_fold(tiny_cfg, rows, store, "1", tmp_path, data=data, progress=False)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert TrainConfig.from_json(meta["train"]) == tiny_cfg
    assert meta["classes"] == ["hap", "neu", "ang", "sad"]
    assert meta["inputs"] == {"a": {"dim": 12, "layers": 2}, "t": {"dim": 8, "layers": None}, "v": {"dim": 10, "layers": None}}
    assert meta["sets"]["a"]["identity"] == data.modalities["a"].identity
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["wf1"] == result.metrics["wf1"] and saved["improvised"]["n_test"] == 16
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 1 + 24
    assert not list(tmp_path.glob(".*partial"))
