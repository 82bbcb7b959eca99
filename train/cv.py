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
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any


from democorpus.marker import synthetic_root
from manifests import SIX_CLASSES, Utterance
from train import metrics
from train.config import TrainConfig
from train.baseline import BaselineSpec, baselines
from train.data import FeatureData, as_rows, load_features
from train.folds import groups
from train.ensemble import Member, run_members
from train.invocation import invocation
from train.paths import child_dir, encode_component


class SchedulerError(ValueError):
    """A --scheduler value that is neither local:N nor tcp://HOST:PORT."""


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


def summarise_folds(folds: list[dict[str, Any]], classes: Sequence[str], cfg: TrainConfig,
                    note: str | None) -> dict[str, Any]:
    report = {"classes": list(classes), **metrics.summarise(folds), "folds": folds}
    improvised = [f["improvised"] for f in folds if f.get("improvised")]
    if improvised and len(improvised) == len(folds):
        s = metrics.summarise(improvised)
        report["improvised"] = {"mean": s["mean"], "std": s["std"], "n_test": s["n_test"]}
    report["config"] = cfg.to_json()
    if note:
        report["note"] = note
    return report


@contextmanager
def dask_client(scheduler: str | None):
    """``None`` -> no client (sequential); ``local:N`` -> a LocalCluster of N one-thread worker
    processes; ``tcp://HOST:PORT`` -> an existing scheduler."""
    if scheduler is None:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        n = scheduler.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise SchedulerError(f"--scheduler {scheduler!r}: write local:N with N >= 1 workers")
        with LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
    elif scheduler.startswith("tcp://"):
        with Client(scheduler) as client:
            yield client
    else:
        raise SchedulerError(f"--scheduler {scheduler!r}: use local:N (a local cluster of N workers) or tcp://HOST:PORT")


def fold_dir(out_dir: str | os.PathLike | None, group: str) -> Path | None:
    """Where the fold testing on ``group`` writes its outputs: always a folder directly inside ``out_dir``."""
    return None if out_dir is None else child_dir(out_dir, f"fold-{encode_component(group)}")


def fold_members(cfg: TrainConfig, rows: Sequence[Utterance], out_dir: Path | None) -> list[Member]:
    """One member per leave-one-group-out fold of ``cfg``, in group order."""
    return [Member(cfg, g, fold_dir(out_dir, g)) for g in groups(rows)]


def run_folds(cfg: TrainConfig, manifest, store, out_dir: Path | None, *, client=None,
              data: FeatureData | None = None, progress: bool = True, desc: str = "cv",
              sequential: bool = False) -> list[dict[str, Any]]:
    """Every fold's JSON (FoldResult.to_json), in group order: all folds as one batched ensemble
    (:mod:`train.ensemble`), or with ``sequential`` one after another."""
    members = fold_members(cfg, as_rows(manifest), out_dir)
    return [r.to_json() for r in run_members(members, manifest, store, client=client, data=data, progress=progress,
                                             desc=desc, sequential=sequential)]


def run_cv(cfg: TrainConfig, manifest, store, out_dir: str | os.PathLike | None = None, *,
           scheduler: str | None = None, note: str | None = None, progress: bool = True,
           classical: BaselineSpec | None = None, client=None, sequential: bool = False) -> dict[str, Any]:
    """Every fold, then mean and std, and the linear probe on the same folds (``report["baseline"]``;
    ``classical``: the probe over those sets too, ``report["classical"]``); with ``out_dir`` also the
    per-fold outputs and the cv tables and plots. ``client``: a Dask client already open (instead of
    ``scheduler``). ``sequential``: the folds one after another, not as one batched ensemble."""
    rows = as_rows(manifest)
    data = None
    with nullcontext(client) if client is not None else dask_client(scheduler) as client:
        if client is None:
            data = load_features(rows, store, cfg.sets, cfg.model.modalities)
        folds = run_folds(cfg, manifest if client else rows, store, Path(out_dir) if out_dir else None,
                          client=client, data=data, progress=progress, sequential=sequential)
    notes = join_notes(synthetic_note(rows), class_note(cfg, folds[0]["classes"], progress), note)
    report = summarise_folds(folds, folds[0]["classes"], cfg, notes)
    report |= baselines(cfg, rows, store, folds, classical, data)
    report["run"] = invocation(manifest, store)
    if out_dir is not None:
        from train.report import write_cv

        write_cv(Path(out_dir), report)
    return report

