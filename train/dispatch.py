"""Where members train: grouped into one ensemble per architecture, here or as Dask tasks.

:func:`run_members` is what cross-validation, ablations and tuning call: in this process the
members go to :func:`train_grouped`, which trains each group of one architecture as one
:class:`train.ensemble` ensemble; with a Dask client each ensemble is one task
(:func:`emocache.scheduler.run_tasks`), queued costliest first.
"""
from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from train.config import ConfigError, TrainConfig
from train.data import FeatureData
from train.ensemble import Member, ensemble_key, train_members
from train.model import MODALITIES


def modalities_read(modality_sets: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Every modality that any of these members (or settings) reads, in :data:`train.model.MODALITIES`
    order: what one load of the store must hold for all of them."""
    wanted = {m for modalities in modality_sets for m in modalities}
    return tuple(m for m in MODALITIES if m in wanted)


def train_grouped(members: Sequence[Member], rows, data: FeatureData, *, progress: bool = True, test: bool = True,
                  sequential: bool = False, desc: str = "ensemble") -> list:
    """Every member, as one ensemble per :func:`ensemble_key` (``sequential``: one K = 1 run each, in
    order); results in the members' order. ``data`` holds every modality any member reads."""
    results: dict[int, Any] = {}
    if sequential:
        for i, m in enumerate(tqdm(members, desc=desc, unit="fold", file=sys.stderr, disable=not progress)):
            results[i] = train_members([m], rows, data.select(m.cfg.model.modalities), progress=progress, test=test,
                                       desc=f"fold {m.test_group}")[0]
        return [results[i] for i in range(len(members))]
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(ensemble_key(m.cfg), []).append(i)
    for n, idx in enumerate(groups.values()):
        sub = [members[i] for i in idx]
        out = train_members(sub, rows, data.select(sub[0].cfg.model.modalities), progress=progress, test=test,
                            desc=f"{desc} {n + 1}/{len(groups)} ({len(sub)} members)")
        results.update(zip(idx, out))
    return [results[i] for i in range(len(members))]


@dataclass(frozen=True)
class EnsembleTask:
    """One ensemble (or one member, sequentially) as a Dask task: plain data, the worker opens the stores."""

    cfgs: tuple[dict[str, Any], ...]
    groups: tuple[str, ...]
    out_dirs: tuple[str | None, ...]
    manifest: str
    stores: tuple[str, ...]
    test: bool


def _task(task: EnsembleTask) -> list:
    """One ensemble inside a Dask worker: loads the store itself."""
    from train.data import as_rows, load_features

    rows = as_rows(task.manifest)
    configs = [TrainConfig.from_json(c) for c in task.cfgs]
    modalities = modalities_read(c.model.modalities for c in configs)
    data = load_features(rows, list(task.stores), configs[0].sets, modalities)
    members = [Member(c, g, None if o is None else Path(o)) for c, g, o in zip(configs, task.groups, task.out_dirs)]
    return train_grouped(members, rows, data, progress=False, test=task.test)


def cost(cfg: TrainConfig) -> float:
    """A member's rough training cost, to order Dask tasks: epochs times the square of its modalities
    (measured on the demo: A, T and V cost alike, two modalities about 2.5 times one, three about 4.5
    times one, each fold)."""
    return cfg.epochs * len(cfg.model.modalities) ** 2


def dask_tasks(members: Sequence[Member], sequential: bool) -> list[list[int]]:
    """Member indices per Dask task, costliest first: one task per ensemble (``sequential``: per member).
    Dask starts tasks in the order they are queued: the big ensembles start first and the small ones
    fill in after them, so that no worker trains the last big ensemble alone while the others idle.
    (Ensembles are never split, so that the figures never depend on the number of workers: a member
    draws its own dropout masks (:mod:`train.dropout`), but float rounding depends on which members
    share a call, and over many epochs a rounding difference can grow into another best epoch.)"""
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(str(i) if sequential else ensemble_key(m.cfg), []).append(i)
    return sorted(groups.values(), key=lambda idx: -sum(cost(members[i].cfg) for i in idx))


def _absolute(path: str | os.PathLike) -> str:
    """A path as a worker must get it: workers on other machines (``tcp://``) run in folders of their
    own, where a relative path would put a fold's outputs, or look for the manifest. URLs stay as they are."""
    text = os.fspath(path)
    return text if "://" in text else os.path.abspath(text)


def run_members(members: Sequence[Member], manifest, store, *, client=None, data: FeatureData | None = None,
                test: bool = True, sequential: bool = False, progress: bool = True, desc: str = "train") -> list:
    """Every member's FoldResult, in order: in this process (``data``: the features, loaded if None), or
    with a Dask ``client`` one task per ensemble (:func:`dask_tasks`; ``sequential``: per member), all
    queued at once, costliest first, so ensembles of different architectures run side by side. The same
    seed gives the same figures either way."""
    from emocache.scheduler import SchedulerError, device_problem_on_workers, run_tasks
    from train.data import as_rows, load_features, store_locations

    if client is None:
        rows = as_rows(manifest)
        if data is None:
            modalities = modalities_read(x.cfg.model.modalities for x in members)
            data = load_features(rows, store, members[0].cfg.sets, modalities)
        return train_grouped(members, rows, data, progress=progress, test=test, sequential=sequential, desc=desc)
    stores = store_locations(store)
    if not isinstance(manifest, (str, os.PathLike)) or not all(isinstance(s, (str, os.PathLike)) for s in stores):
        raise SchedulerError("running folds on Dask needs the manifest and the stores as paths, so that each worker opens them")
    for device in sorted({m.cfg.device for m in members}):  # refused here, before any task fails on a worker
        problem = device_problem_on_workers(client, device)
        if problem is not None:
            raise ConfigError(problem)
    plan = dask_tasks(members, sequential)
    tasks = [EnsembleTask(tuple(members[i].cfg.to_json() for i in idx), tuple(members[i].test_group for i in idx),
                          tuple(None if members[i].out_dir is None else _absolute(members[i].out_dir) for i in idx),
                          _absolute(manifest), tuple(_absolute(s) for s in stores), test) for idx in plan]
    bar = tqdm(total=len(members), desc=desc, unit="fold", file=sys.stderr, disable=not progress)
    token = uuid.uuid4().hex[:8]  # keys unique per call: a client may run several
    try:
        outcomes = run_tasks(_task, tasks, client=client, keys=[f"{desc}-{token}-{n}" for n in range(len(tasks))],
                             on_done=lambda n, _: bar.update(len(plan[n])))
    finally:
        bar.close()  # an error's one line then starts on a line of its own
    results: dict[int, Any] = {}
    for idx, outcome in zip(plan, outcomes):
        results.update(zip(idx, outcome.unwrap()))
    return [results[i] for i in range(len(members))]
