"""`train layers`: which stored layer of a frozen encoder carries the emotion, by the linear probe.

On a set extracted with several layers (``extract run --layers all``), the probe of
:mod:`train.baseline` (per utterance the mean and std over time, standardised on the fold's
training rows, logistic regression) is fitted on each layer alone, on the very folds and
training rows of `train cv` (:func:`train.folds.split_fold` with the run's ``val``,
``val_fraction`` and ``seed``). Beside the layers stands the usual baseline: the same probe
on the layer average. The figures are test-fold scores of every layer side by side, an
analysis: nothing here chooses a layer.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from train import metrics
from train.baseline import FIT, BaselineSpec, pooled, probe_fold, run_probe
from train.baseline import summarise as summarise_probe
from train.config import TrainConfig
from train.cv import synthetic_note
from train.data import DataError, as_rows, load_features
from train.folds import groups, split_fold
from train.invocation import Invocation, invocation
from train.paths import check_out_dir
from train.results import ProbeFold, ProbeReport, Summary

FOLD_KEYS = ("group", *metrics.SCALARS, "n_test", "n_train")
METHOD = f"one layer at a time: mean and std over time, standardised on the training rows, {FIT}"


def layer_labels(spec: str | None, n_layers: int) -> list[str]:
    """The hidden-state index of each of ``n_layers`` stored layers, from the set's provenance
    ``layers`` ("all", or picked indices such as "2,0"); positions 0..L-1 when it names them otherwise."""
    parts = [p.strip() for p in str(spec or "").split(",")]
    if len(parts) == n_layers and all(p.isdigit() for p in parts):
        return parts
    return [str(i) for i in range(n_layers)]


@dataclass(frozen=True)
class LayerScore:
    """The probe on one stored layer: its hidden-state label, its position in the set, every fold."""

    layer: str
    index: int
    summary: Summary
    folds: tuple[ProbeFold, ...]

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "index": self.index, "mean": dict(self.summary.mean), "std": dict(self.summary.std),
                "n_test": self.summary.n_test,
                "folds": [{k: fold[k] for k in FOLD_KEYS} for fold in (f.to_json() for f in self.folds)]}


@dataclass(frozen=True)
class LayersReport:
    """`train layers`: the probe on each stored layer of one set, beside the probe on their average."""

    classes: tuple[str, ...]
    modality: str
    set: str
    layers: tuple[LayerScore, ...]
    average: ProbeReport
    set_info: dict[str, Any]
    config: TrainConfig
    note: str | None
    run: Invocation

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "classes": list(self.classes), "modality": self.modality, "set": self.set, "method": METHOD,
            "layers": [r.to_json() for r in self.layers], "average": self.average.to_json(),
            "sets": {self.modality: self.set_info}, "config": self.config.to_json()}
        if self.note:
            out["note"] = self.note
        out["run"] = self.run.to_json()
        return out


def run_layers(cfg: TrainConfig, manifest, store, out_dir: str | os.PathLike | None = None, *,
               modality: str = "a", progress: bool = True) -> LayersReport:
    """The probe on each stored layer of ``cfg.sets[modality]``, every fold of `train cv`; with
    ``out_dir`` also layers.md, layers.json, layers.png and report.html."""
    check_out_dir(out_dir, "layers")
    rows = as_rows(manifest)
    name = cfg.sets[modality]
    spec = BaselineSpec({modality: name})
    data = load_features(rows, store, spec.sets, spec.modalities)
    md = data.modalities[modality]
    if (md.layers or 1) < 2:
        raise DataError(f"feature set {name!r} (modality {modality!r}) holds a single layer; `train layers` needs "
                        "a set extracted with several, e.g. `extract run --encoder hf:DIR --layers all`")
    labels = layer_labels(md.provenance.get("layers"), md.layers)
    splits = [split_fold(rows, g, cfg.val, cfg.val_fraction, cfg.seed) for g in groups(rows)]
    layers = []
    for i in tqdm(range(md.layers), desc="layers", unit="layer", file=sys.stderr, disable=not progress):
        x = pooled(dataclasses.replace(md, data=md.data[i], layers=None))
        folds = [probe_fold(x, data, split, cfg.seed) for split in splits]
        layers.append(LayerScore(labels[i], i, Summary.of([f.to_json() for f in folds]), tuple(folds)))
    report = LayersReport(
        classes=tuple(data.classes), modality=modality, set=name, layers=tuple(layers),
        average=summarise_probe(run_probe(cfg, rows, store, spec, data=data), None, spec), set_info=md.describe(),
        config=cfg, note=synthetic_note(rows), run=invocation(manifest, store))
    if out_dir is not None:
        from train.report import write_layers

        write_layers(Path(out_dir), report.to_json())
    return report
