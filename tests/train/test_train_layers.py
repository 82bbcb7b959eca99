"""`train layers` and the head's learned layer weights, on a real all-layers store: the demo corpus
extracted with a tiny transformers wav2vec 2.0 saved with save_pretrained and loaded by path
(`extract run --encoder hf:DIR --layers all`)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from extract.cli import cli as extract_cli
from train.cli import cli

TINY = ["--d", "8", "--epochs", "2", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0"]


def _extract_helpers():
    """tests/extract/conftest.py, whose builders of tiny real models these tests share."""
    spec = importlib.util.spec_from_file_location("extract_test_models", Path(__file__).parents[1] / "extract" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extract(manifest: Path, store: Path, model: Path, layers: str, set_name: str) -> None:
    result = CliRunner().invoke(extract_cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", str(store),
                                              "--encoder", f"hf:{model}", "--layers", layers, "--set", set_name, "--json"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def layered(demo_manifest, tmp_path_factory):
    """(manifest, store): every hidden state of a 2-layer wav2vec2 (3 of them) as set 'audio', hidden
    state 1 alone as set 'audio-l1'."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("layered")
    model = _extract_helpers()._tiny_wav2vec2(root / "tiny-w2v", layer_norm=False)
    store = root / "features.h5"
    _extract(demo_manifest, store, model, "all", "audio")
    _extract(demo_manifest, store, model, "1", "audio-l1")
    return demo_manifest, store


@pytest.fixture(scope="module")
def scan(layered, tmp_path_factory):
    manifest, store = layered
    out = tmp_path_factory.mktemp("layers")
    result = CliRunner().invoke(cli, ["layers", "--manifest", str(manifest), "--store", str(store), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_layers_scores_each_hidden_state_on_the_cv_folds(scan, demo_manifest):
    report, out = scan
    from manifests import read_manifest

    groups = sorted({r.group for r in read_manifest(demo_manifest)}, key=int)
    assert [r["layer"] for r in report["layers"]] == ["0", "1", "2"] and report["set"] == "audio"
    for r in report["layers"]:
        assert [f["group"] for f in r["folds"]] == groups
        for k in ("acc", "wf1"):
            values = [f[k] for f in r["folds"]]
            assert r["mean"][k] == pytest.approx(np.mean(values)) and r["std"][k] == pytest.approx(np.std(values))
    assert report["sets"]["a"]["layers"] == 3 and report["sets"]["a"]["provenance"]["layers"] == "all"
    assert json.loads((out / "layers.json").read_text())["layers"] == report["layers"]
    assert (out / "layers.png").read_bytes()[:4] == b"\x89PNG" and (out / "report.html").is_file()
    md = (out / "layers.md").read_text()
    assert "| layer | ACC | WF1 | UA | macro-F1 |" in md and "| average of layers (the baseline) |" in md
    first = report["layers"][0]
    assert f"| 0 | {100 * first['mean']['acc']:.2f} +- {100 * first['std']['acc']:.2f} |" in md
    assert len((out / "layers.csv").read_text().splitlines()) == 1 + 3 * len(groups)


def test_each_layer_is_the_baseline_probe_on_that_layer_alone(scan, layered):
    """Layer 1 of the scan gives what `train baseline` gives on a set holding hidden state 1 only, and
    the scan's average row is `train baseline` on the all-layers set."""
    report, _ = scan
    manifest, store = layered
    for sets, expected in (("a=audio-l1", report["layers"][1]), ("a=audio", report["average"])):
        result = CliRunner().invoke(cli, ["baseline", "--manifest", str(manifest), "--store", str(store), "--modalities", "a",
                                          "--sets", sets, "--json"])
        assert result.exit_code == 0, result.output
        probe = json.loads(result.stdout)["baseline"]
        assert [(f["group"], f["acc"], f["wf1"]) for f in probe["folds"]] == \
            [(f["group"], f["acc"], f["wf1"]) for f in expected["folds"]], sets


def test_cv_on_an_all_layers_store_plots_the_learned_layer_weights(layered, tmp_path):
    manifest, store = layered
    out = tmp_path / "cv"
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--out", str(out),
                                      "--modalities", "a", "--json", *TINY])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "cv.json").read_text())
    assert report["mean"] == json.loads(result.stdout)["mean"]
    weights = report["layer_weights"]["a"]
    assert weights["set"] == "audio" and weights["layers"] == ["0", "1", "2"]
    assert [f["group"] for f in weights["folds"]] == [f["group"] for f in report["folds"]]
    for f in weights["folds"]:
        logits = torch.load(out / f"fold-{f['group']}" / "model.pt", weights_only=True)["inputs.a.layer_sum.logits"]
        assert f["weights"] == pytest.approx(torch.softmax(logits.double(), 0).tolist())
        assert sum(f["weights"]) == pytest.approx(1) and f["weights"] != pytest.approx([1 / 3] * 3, abs=1e-6)
    assert weights["mean"] == pytest.approx(np.mean([f["weights"] for f in weights["folds"]], axis=0).tolist())
    assert (out / "layer_weights.png").read_bytes()[:4] == b"\x89PNG"
    assert "| fold | layer 0 | layer 1 | layer 2 |" in (out / "folds.md").read_text()


def test_layers_refuses_a_single_layer_set(layered, tmp_path):
    manifest, store = layered
    result = CliRunner().invoke(cli, ["layers", "--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path),
                                      "--sets", "a=audio-l1"])
    assert result.exit_code == 1
    assert result.output == ("Error: feature set 'audio-l1' (modality 'a') holds a single layer; `train layers` needs a set "
                             "extracted with several, e.g. `extract run --encoder hf:DIR --layers all`\n")
    assert not (tmp_path / "layers.json").exists()
