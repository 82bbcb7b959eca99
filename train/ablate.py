"""The paper's ablations (Tables 1 and 2) in one run: modality sets, and lambda for A+V+T.

Each setting is a full cross-validation; the folds of every setting that shares one architecture
(the lambdas of A+V+T) train as one batched ensemble (:mod:`train.ensemble`). The table shows
mean +- std ACC and WF1 beside the paper's IEMOCAP figures.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from emocache.scheduler import check_scheduler, dask_client
from train.baseline import BaselineSpec, baselines, run_probe
from train.baseline import summarise as summarise_probe
from train.config import ConfigError, TrainConfig, normalise_modalities
from train.cv import class_note, cv_report, fold_members, join_notes, local_features, synthetic_note
from train.data import as_rows
from train.dispatch import modalities_read, run_members
from train.invocation import invocation
from train.metrics import paired_difference
from train.paths import check_out_dir
from train.results import AblationReport, AblationRow, CVReport, Setting

SETTINGS = ("A", "T", "V", "A+T", "A+V", "A+V+T")
LAMBDAS = (0.0, 0.01, 0.1, 1.0, 10.0)

# The paper's IEMOCAP 6-class 5-fold figures (ACC, WF1), keyed by our setting labels.
PAPER = {
    "A": (66.06, 65.59), "T": (58.74, 58.63), "V": (29.88, 26.31), "A+T": (67.75, 67.45), "A+V": (66.33, 64.14),
    "A+V+T, lambda=1": (70.26, 70.29), "A+V+T, lambda=0": (67.41, 67.31), "A+V+T, lambda=0.01": (68.23, 67.94),
    "A+V+T, lambda=0.1": (69.34, 69.12), "A+V+T, lambda=10": (65.06, 64.49),
}


def plan(settings: Sequence[str] = SETTINGS, lambdas: Sequence[float] = LAMBDAS) -> list[Setting]:
    """Every run of the grid, in order. Lambdas apply to the three-modality setting only: the margin
    loss needs three modalities; the others keep the config's lambda."""
    runs = []
    for text in settings:
        name = text.strip().upper().replace(" ", "")
        if name.replace("+", "") == "" or any(c not in "ATV+" for c in name):
            raise ConfigError(f"setting {text!r}: use modality letters joined by +, e.g. {', '.join(SETTINGS)}")
        modalities = normalise_modalities(name)
        runs += [Setting(modalities, float(lam)) for lam in lambdas] if len(modalities) == 3 else [Setting(modalities)]
    return runs


def reference(results: Sequence[CVReport], cfg: TrainConfig) -> int:
    """The row every setting is compared with: the one with the most modalities at the config's lambda
    (A+V+T, lambda=1 in the paper's grid), else the first of the most modalities."""
    most = max(len(r.config.model.modalities) for r in results)
    candidates = [i for i, r in enumerate(results) if len(r.config.model.modalities) == most]
    return next((i for i in candidates if results[i].config.lam == cfg.lam), candidates[0])


def run_ablation(cfg: TrainConfig, manifest, store, out_dir: str | os.PathLike | None = None, *,
                 settings: Sequence[str] = SETTINGS, lambdas: Sequence[float] = LAMBDAS,
                 scheduler: str | None = None, note: str | None = None, progress: bool = True,
                 classical: BaselineSpec | None = None, sequential: bool = False) -> AblationReport:
    """Cross-validate every setting, with the linear probe on each setting's inputs on the same folds.

    Each row carries the setting's cross-validation with its ``baseline``, and paired differences over
    folds against the reference setting (:func:`reference`) and the classical probe.
    ``sequential``: every fold one after another instead of batched ensembles."""
    check_scheduler(scheduler)
    check_out_dir(out_dir, "ablate")
    rows = as_rows(manifest)
    runs = plan(settings, lambdas)
    note = join_notes(synthetic_note(rows), note)
    cache: dict = {}  # pooled sets for the probes, computed once for all settings
    out = Path(out_dir) if out_dir is not None else None
    results: list[CVReport] = []
    run = invocation(manifest, store, sequential)  # each setting's report, too, names the manifest and stores
    with dask_client(scheduler) as client:
        # One read of every modality any setting needs; each setting uses its subset.
        data = local_features(client, rows, store, cfg.sets, modalities_read(s.modalities for s in runs))
        configs = [(setting, setting.config(cfg)) for setting in runs]
        # Every fold of every setting at once: one ensemble per architecture, on Dask side by side.
        members = [fold_members(run_cfg, rows, None if out is None else out / setting.folder) for setting, run_cfg in configs]
        flat = run_members([m for ms in members for m in ms], manifest, store, client=client, data=data,
                           progress=progress, desc="ablate", sequential=sequential)
        start = 0
        for (setting, run_cfg), ms in zip(configs, members):
            folds = flat[start:start + len(ms)]
            start += len(ms)
            if not results:
                note = join_notes(note, class_note(run_cfg, folds[0].classes, progress))
            baseline, _ = baselines(run_cfg, rows, store, [f.to_json() for f in folds], None, data, cache)
            results.append(cv_report(folds, run_cfg, note, setting=setting, baseline=baseline, run=run))
            if out is not None:
                from train.report import write_cv

                write_cv(out / setting.folder, results[-1].to_json())
    ref = reference(results, cfg)
    extra = summarise_probe(run_probe(cfg, rows, store, classical), None, classical) if classical else None
    ref_folds = results[ref].fold_json()
    report = AblationReport(note=note, classes=results[0].classes, reference=runs[ref], rows=tuple(
        AblationRow(r, PAPER.get(r.setting.label), paired_difference(r.fold_json(), ref_folds),
                    paired_difference(r.fold_json(), extra.fold_json()) if extra else None) for r in results),
        classical=extra, run=run)
    if out is not None:
        from train.report import write_ablation

        write_ablation(out, report.to_json())
    return report
