"""The paper's ablations (Tables 1 and 2) in one run: modality sets, and lambda for A+V+T.

Each setting is a full cross-validation; the folds of every setting that shares one architecture
(the lambdas of A+V+T) train as one batched ensemble (:mod:`train.ensemble`). The table shows
mean +- std ACC and WF1 beside the paper's IEMOCAP figures.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from train.config import ConfigError, TrainConfig, normalise_modalities
from train.baseline import BaselineSpec, baselines, run_probe
from train.baseline import summarise as summarise_probe
from train.cv import class_note, dask_client, fold_members, join_notes, summarise_folds, synthetic_note
from train.ensemble import run_members
from train.metrics import paired_difference
from train.data import as_rows, load_features
from train.invocation import invocation

SETTINGS = ("A", "T", "V", "A+T", "A+V", "A+V+T")
LAMBDAS = (0.0, 0.01, 0.1, 1.0, 10.0)

# The paper's IEMOCAP 6-class 5-fold figures (ACC, WF1), keyed by our setting labels.
PAPER = {
    "A": (66.06, 65.59), "T": (58.74, 58.63), "V": (29.88, 26.31), "A+T": (67.75, 67.45), "A+V": (66.33, 64.14),
    "A+V+T, lambda=1": (70.26, 70.29), "A+V+T, lambda=0": (67.41, 67.31), "A+V+T, lambda=0.01": (68.23, 67.94),
    "A+V+T, lambda=0.1": (69.34, 69.12), "A+V+T, lambda=10": (65.06, 64.49),
}


def plan(settings: Sequence[str] = SETTINGS, lambdas: Sequence[float] = LAMBDAS) -> list[tuple[str, tuple[str, ...], float | None]]:
    """(label, modalities, lambda or None for 'the config's') for every run of the grid.

    Lambdas apply to the three-modality setting only: the margin loss needs three modalities."""
    runs = []
    for setting in settings:
        name = setting.strip().upper().replace(" ", "")
        if name.replace("+", "") == "" or any(c not in "ATV+" for c in name):
            raise ConfigError(f"setting {setting!r}: use modality letters joined by +, e.g. {', '.join(SETTINGS)}")
        modalities = normalise_modalities(name)
        label = "+".join(c for c in "AVT" if c.lower() in modalities) if len(modalities) > 1 else name
        if len(modalities) == 3:
            runs += [(f"{label}, lambda={lam:g}", modalities, float(lam)) for lam in lambdas]
        else:
            runs.append((label, modalities, None))
    return runs


def reference(results: Sequence[dict[str, Any]], cfg: TrainConfig) -> int:
    """The row every setting is compared with: the one with the most modalities at the config's lambda
    (A+V+T, lambda=1 in the paper's grid), else the first of the most modalities."""
    most = max(len(r["config"]["model"]["modalities"]) for r in results)
    candidates = [i for i, r in enumerate(results) if len(r["config"]["model"]["modalities"]) == most]
    return next((i for i in candidates if results[i]["config"]["lam"] == cfg.lam), candidates[0])


def slug(label: str) -> str:
    return label.replace(", ", "_").replace("+", "").replace("=", "")


def run_ablation(cfg: TrainConfig, manifest, store, out_dir: str | os.PathLike | None = None, *,
                 settings: Sequence[str] = SETTINGS, lambdas: Sequence[float] = LAMBDAS,
                 scheduler: str | None = None, note: str | None = None, progress: bool = True,
                 classical: BaselineSpec | None = None, sequential: bool = False) -> dict[str, Any]:
    """Cross-validate every setting, with the linear probe on each setting's inputs on the same folds.

    Returns ``{"note", "reference", "classical"?, "rows": [...]}``; each row carries the setting's
    cv summary, its ``baseline``, and paired differences over folds: ``vs_baseline``,
    ``vs_reference`` (against the reference setting, :func:`reference`) and ``vs_classical``.
    ``sequential``: every fold one after another instead of batched ensembles."""
    rows = as_rows(manifest)
    runs = plan(settings, lambdas)
    note = join_notes(synthetic_note(rows), note)
    data = None
    cache: dict = {}  # pooled sets for the probes, computed once for all settings
    out = Path(out_dir) if out_dir is not None else None
    results = []
    with dask_client(scheduler) as client:
        if client is None:
            # One read of every modality any setting needs; each setting uses its subset.
            needed = tuple(m for m in ("a", "t", "v") if any(m in mods for _, mods, _ in runs))
            data = load_features(rows, store, cfg.sets, needed)
        configs = [(label, cfg.replace(modalities=modalities, **({} if lam is None else {"lam": lam})))
                   for label, modalities, lam in runs]
        # Every fold of every setting at once: one ensemble per architecture, on Dask side by side.
        members = [fold_members(run_cfg, rows, None if out is None else out / slug(label)) for label, run_cfg in configs]
        flat = run_members([m for ms in members for m in ms], manifest if client is not None else rows, store,
                           client=client, data=data, progress=progress, desc="ablate", sequential=sequential)
        start = 0
        for (label, run_cfg), ms in zip(configs, members):
            folds = [r.to_json() for r in flat[start:start + len(ms)]]
            start += len(ms)
            if not results:
                note = join_notes(note, class_note(run_cfg, folds[0]["classes"], progress))
            summary = summarise_folds(folds, folds[0]["classes"], run_cfg, note)
            summary["setting"] = label
            summary |= baselines(run_cfg, rows, store, folds, None, data, cache)
            results.append(summary)
            if out is not None:
                from train.report import write_cv

                write_cv(out / slug(label), summary)
    ref = reference(results, cfg)
    extra = summarise_probe(run_probe(cfg, rows, store, classical), None, classical) if classical else None
    report = {"note": note, "classes": results[0]["classes"], "reference": results[ref]["setting"], "rows": [
        {"setting": r["setting"], "modalities": list(r["config"]["model"]["modalities"]), "lam": r["config"]["lam"],
         "mean": r["mean"], "std": r["std"], "improvised": r.get("improvised"), "paper": PAPER.get(r["setting"]),
         "folds": r["folds"], "baseline": r["baseline"], "vs_baseline": r["baseline"]["diff"],
         "vs_reference": paired_difference(r["folds"], results[ref]["folds"]),
         **({"vs_classical": paired_difference(r["folds"], extra["folds"])} if extra else {})} for r in results]}
    if extra:
        report["classical"] = extra
    report["run"] = invocation(manifest, store)
    if out is not None:
        from train.report import write_ablation

        write_ablation(out, report)
    return report
