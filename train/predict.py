"""Label utterances with a trained fold's checkpoint, from their cached features.

The store's sets must hold features made the same way as those the checkpoint was
trained on (encoder, weights, layers, preprocessing, dtype, dim); only the manifest
they were extracted from may differ, so that new recordings can be labelled.
"""
from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.config import TrainConfig
from train.data import DataError, FeatureData, find_sets, iter_batches, load_features, load_set, open_stores
from train.model import ModelConfig, build_model
from train.report import CHECKPOINT, CHECKPOINT_CONFIG, write_csv, write_json

# Provenance fields that change feature values, apart from the manifest they came from.
FEATURE_FIELDS = ("encoder", "weights_sha256", "layers", "preprocessing", "dtype", "dim")


def load_checkpoint(checkpoint: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    folder = Path(checkpoint)
    config, weights = folder / CHECKPOINT_CONFIG, folder / CHECKPOINT
    if not config.is_file() or not weights.is_file():
        raise DataError(f"{folder}: not a checkpoint folder (needs {CHECKPOINT_CONFIG} and {CHECKPOINT}); "
                        f"pass a fold's output folder, e.g. OUT/fold-1")
    return json.loads(config.read_text(encoding="utf-8")), torch.load(weights, map_location="cpu", weights_only=True)


def _check_features(meta: dict[str, Any], fs, where: str, modality: str) -> None:
    trained = meta["sets"][modality]["provenance"]
    have = fs.info.provenance.to_json()
    for key in FEATURE_FIELDS:
        if trained.get(key) != have.get(key):
            raise DataError(
                f"{where}: feature set {fs.info.name!r} ({modality}) differs from the features the checkpoint was trained on: "
                f"{key} is {have.get(key)!r} here, {trained.get(key)!r} in the checkpoint. "
                f"Extract the recordings with the checkpoint's encoder settings (its config.json, \"sets\")")


def predict(checkpoint: str | os.PathLike, store, manifest=None, *, batch_size: int = 64,
            device: str = "cpu") -> dict[str, Any]:
    """``{"classes": [...], "predictions": [{"utt_id", "pred", "probs": {class: p}, ["label"]}]}``
    for every utterance of ``manifest`` or, without one, of the store's sets (which must then
    hold the same utterances)."""
    meta, state = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_json(meta["train"])
    modalities = tuple(meta["inputs"])
    with ExitStack() as stack:
        stores = open_stores(store, stack)
        found = find_sets(stores, cfg.sets, modalities)
        for m, (fs, where) in found.items():
            _check_features(meta, fs, where, m)
        sets = {m: fs for m, (fs, _) in found.items()}
        if manifest is not None:
            data = load_features(manifest, [s for s, _ in stores], cfg.sets, modalities, labelled=False)
            labels = [r.label for r in data.rows]
        else:
            ids = list(sets[modalities[0]].ids)
            for m, fs in sets.items():
                if set(fs.ids) != set(ids):
                    raise DataError(f"sets {cfg.sets[modalities[0]]!r} and {cfg.sets[m]!r} hold different utterances "
                                    f"({len(ids)} and {len(fs.ids)}); pass --manifest to choose which to label")
            data = FeatureData(ids=ids, rows=None, classes=(), labels=None,
                               modalities={m: load_set(fs, ids, cfg.sets[m]) for m, fs in sets.items()})
            labels = None
    model = build_model(ModelConfig.from_json(meta["train"]["model"]), data.specs(), len(meta["classes"]))
    model.load_state_dict(state)
    model.to(device).eval()
    classes = meta["classes"]
    probs = np.zeros((len(data.ids), len(classes)), dtype=np.float32)
    with torch.no_grad():
        for batch in iter_batches(data, range(len(data.ids)), batch_size):
            out = model(batch.to(device).inputs)
            probs[batch.index] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
    predictions = []
    for i, utt_id in enumerate(data.ids):
        row = {"utt_id": utt_id, "pred": classes[int(probs[i].argmax())],
               "probs": {c: float(p) for c, p in zip(classes, probs[i])}}
        if labels is not None:
            row["label"] = labels[i]
        predictions.append(row)
    return {"classes": classes, "checkpoint": str(checkpoint), "predictions": predictions}


def write_predictions(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """``.json``: the whole result; ``.csv``: utt_id, [label,] pred, one probability column per class."""
    path = Path(path)
    if path.suffix == ".json":
        return write_json(path, result)
    if path.suffix != ".csv":
        raise DataError(f"{path}: write predictions to a .csv or a .json file")
    classes = result["classes"]
    has_label = any("label" in p for p in result["predictions"])
    header = ["utt_id", *(["label"] if has_label else []), "pred", *(f"p_{c}" for c in classes)]
    rows = [[p["utt_id"], *([p.get("label", "")] if has_label else []), p["pred"],
             *(f"{p['probs'][c]:.6f}" for c in classes)] for p in result["predictions"]]
    return write_csv(path, header, rows)
