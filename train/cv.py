"""Cross-validation: every leave-one-group-out fold, in this process or in parallel on Dask.

In this process the features are read once and the folds train as one batched ensemble
(:mod:`train.ensemble`; ``sequential=True``: one after another). On Dask each ensemble is one
task that opens the store and reads the features inside its worker (nothing big travels
through the scheduler); a fixed seed gives the same figures either way, as long as
``num_threads`` is the same (1 by default, as the workers run).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path

from democorpus.marker import synthetic_root
from emocache.scheduler import check_scheduler, dask_client
from manifests import SIX_CLASSES, Utterance
from train.baseline import BaselineSpec, baselines
from train.config import TrainConfig
from train.data import FeatureData, as_rows, load_features
from train.dispatch import modalities_read, run_members
from train.ensemble import Member
from train.folds import groups
from train.invocation import Invocation, invocation
from train.loop import FoldResult
from train.paths import check_out_dir, child_dir, encode_component
from train.results import CVReport, ProbeReport, Setting, Summary


def synthetic_note(rows: Sequence[Utterance]) -> str | None:
    """A warning line when the manifest's corpus is emocache's synthetic demo (its README.txt says so)."""
    corpora = {r.corpus.lower() for r in rows}
    if any("demo" in c or "synthetic" in c for c in corpora):
        return "SYNTHETIC DEMO CORPUS: these figures say nothing about emotion recognition."
    root = synthetic_root(rows[0].audio)
    if root is not None:
        return f"SYNTHETIC DEMO CORPUS ({root}): these figures say nothing about emotion recognition."
    return None


def paper_run(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` trains the paper's head with the paper's settings (the ``paper`` preset, any
    device, seed, sets, modalities or validation)."""
    from train.presets import PRESETS

    ref = PRESETS["paper"]
    same = ("lr", "batch_size", "epochs", "lam", "alpha", "optimizer", "weight_decay", "grad_clip")
    model = dataclasses.replace(cfg.model, modalities=ref.model.modalities)
    return model == ref.model and all(getattr(cfg, f) == getattr(ref, f) for f in same)


def class_note(cfg: TrainConfig, classes: Sequence[str], progress: bool = True) -> str | None:
    """Prints the class set on stderr; for a paper run whose classes are not the paper's six, the warning
    line the reports carry."""
    if progress:
        print(f"classes ({len(classes)}): {', '.join(classes)}", file=sys.stderr)
    if not paper_run(cfg) or tuple(classes) == SIX_CLASSES:
        return None
    warning = (f"WARNING: a paper run on {len(classes)} classes ({', '.join(classes)}), not the paper's six "
               f"({', '.join(SIX_CLASSES)}): its figures do not compare with the paper's.")
    if progress:
        print(warning, file=sys.stderr)
    return warning


def join_notes(*notes: str | None) -> str | None:
    return " ".join(n for n in notes if n) or None


def cv_report(folds: Sequence[FoldResult], cfg: TrainConfig, note: str | None, *, baseline: ProbeReport,
              classical: ProbeReport | None = None, setting: Setting | None = None,
              run: Invocation | None = None, fold_configs: Mapping[str, TrainConfig] | None = None) -> CVReport:
    """The folds with mean and std over them, beside the probes."""
    return CVReport(classes=tuple(folds[0].classes), summary=Summary.of([f.to_json() for f in folds]),
                    folds=tuple(folds), config=cfg, improvised=Summary.improvised([f.improvised for f in folds]),
                    note=note, setting=setting, baseline=baseline, classical=classical, run=run,
                    fold_configs=dict(fold_configs) if fold_configs else None)


def local_features(client, rows: Sequence[Utterance], store, sets: dict[str, str],
                   modalities: Sequence[str]) -> FeatureData | None:
    """The features that training and the probes share, read once here; None on Dask, where every
    task reads its own inside its worker (:func:`train.dispatch.run_members`)."""
    return None if client is not None else load_features(rows, store, sets, tuple(modalities))


def fold_dir(out_dir: str | os.PathLike | None, group: str) -> Path | None:
    """Where the fold testing on ``group`` writes its outputs: always a folder directly inside ``out_dir``."""
    return None if out_dir is None else child_dir(out_dir, f"fold-{encode_component(group)}")


def fold_members(cfg: TrainConfig, rows: Sequence[Utterance], out_dir: Path | None,
                 fold_configs: Mapping[str, TrainConfig] | None = None) -> list[Member]:
    """One member per leave-one-group-out fold of ``cfg`` (or of ``fold_configs[group]``), in group order."""
    chosen = fold_configs or {}
    return [Member(chosen.get(g, cfg), g, fold_dir(out_dir, g)) for g in groups(rows)]


def run_cv(cfg: TrainConfig, manifest, store, out_dir: str | os.PathLike | None = None, *,
           scheduler: str | None = None, note: str | None = None, progress: bool = True,
           classical: BaselineSpec | None = None, client=None, sequential: bool = False,
           fold_configs: Mapping[str, TrainConfig] | None = None) -> CVReport:
    """Every fold, then mean and std, and the linear probe on the same folds (``baseline``;
    ``classical``: the probe over those sets too); with ``out_dir`` also the per-fold outputs and the
    cv tables and plots. ``client``: a Dask client already open (instead of ``scheduler``).
    ``sequential``: the folds one after another, not as one batched ensemble. ``fold_configs``: a
    config per test group that replaces ``cfg`` for that fold (``train tune``'s per-fold choices;
    the probe and the report's config stay ``cfg``'s)."""
    check_scheduler(scheduler)
    check_out_dir(out_dir, "cv")
    rows = as_rows(manifest)
    out = Path(out_dir) if out_dir is not None else None
    members = fold_members(cfg, rows, out, fold_configs)
    with nullcontext(client) if client is not None else dask_client(scheduler) as client:
        data = local_features(client, rows, store, cfg.sets,
                              modalities_read([cfg.model.modalities] + [m.cfg.model.modalities for m in members]))
        folds = run_members(members, manifest, store, client=client, data=data, progress=progress,
                            desc="cv", sequential=sequential)
    notes = join_notes(synthetic_note(rows), class_note(cfg, folds[0].classes, progress), note)
    baseline, extra = baselines(cfg, rows, store, [f.to_json() for f in folds], classical, data)
    report = cv_report(folds, cfg, notes, baseline=baseline, classical=extra, run=invocation(manifest, store, sequential),
                       fold_configs=fold_configs)
    if out is not None:
        from train.report import write_cv

        write_cv(out, report.to_json())
    return report
