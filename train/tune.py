"""`train tune`: choose training and model settings on validation data only, then test the choice once.

A space (JSON) maps config fields to a list of values or to a range
``{"low": L, "high": H, "log": true|false}``. Trials come from scikit-learn: every point of
:class:`~sklearn.model_selection.ParameterGrid` when the space is all lists and ``trials``
does not cut it short, else ``trials`` draws of :class:`~sklearn.model_selection.ParameterSampler`
(seeded with the base config's seed).

A trial runs every leave-one-group-out fold with ``train_fold(..., test=False)``: it trains on
the fold's training rows, validates on the validation split carved from the training groups
(:mod:`train.folds`), and never makes a pass over the test group. Its score is the mean over
folds of each fold's best validation weighted F1. The trial with the highest score (the first
on ties) is the choice; its settings are written as a preset file (a TrainConfig's JSON) that
``--preset FILE`` accepts.

That choice has seen every group: a fold's test group is training or validation data in the other
folds, so the choice's own cross-validation would be an optimistic estimate. The test is nested
instead: each fold's test runs the trial that scored best on that fold's own validation split,
which its test group never enters (:func:`choose_per_fold`). Only after every choice is on disk
are those folds tested once, with the baseline on the same folds, into ``OUT/test``: an estimate
of what tuning this way gives on unseen groups.

In this process, trials that share one architecture train with all their folds as one batched
ensemble (:mod:`train.ensemble`); with a scheduler (:func:`emocache.scheduler.dask_client`) each
ensemble is one Dask task.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emocache.atomic import write_json
from emocache.errors import EmocacheError
from emocache.scheduler import check_scheduler, dask_client
from train.config import TrainConfig
from train.data import as_rows
from train.folds import groups
from train.invocation import Invocation, invocation
from train.model import ModelConfig
from train.paths import check_out_dir
from train.results import CVReport, ProbeReport

DEFAULT_TRIALS = 12
SELECTION = "mean over folds of each fold's best validation WF1 (validation carved from the training groups)"
TEST_SELECTION = ("nested: each fold's test runs the trial with the best validation WF1 on that fold's own "
                  "validation split, which never holds its test group")
# Fields a search may not change: they decide where or how reproducibly it runs, what it reads, or
# which validation data there is (trials scored on different validation rows would not compare).
FIXED = ("seed", "device", "num_threads", "sets", "val", "val_fraction")
# The space `train tune --preset NAME` searches when no --space is given.
DEFAULT_SPACE: dict[str, Any] = {
    "lr": [1e-3, 5e-4, 2e-4],
    "d": [32, 64, 128],
    "dropout": [0.1, 0.2, 0.3],
    "weight_decay": [0.0, 0.01],
    "epochs": [20, 40],
}


class TuneError(EmocacheError, ValueError):
    """A space that cannot be searched; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Trial:
    """One point of the space: its number, the changed fields, and the config they give."""

    number: int
    params: dict[str, Any]
    config: TrainConfig


def _searchable() -> set[str]:
    names = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(ModelConfig)}
    return names - set(FIXED) - {"model"}


def read_space(path: str | os.PathLike) -> dict[str, Any]:
    """A space file: a JSON object of field -> list of values, or {"low", "high", "log"}."""
    try:
        space = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TuneError(f"space file {os.fspath(path)} does not exist") from err
    except json.JSONDecodeError as err:
        raise TuneError(f"space file {os.fspath(path)}: not JSON ({err})") from err
    return check_space(space, where=f"space file {os.fspath(path)}")


def check_space(space: Any, where: str = "space") -> dict[str, Any]:
    if not isinstance(space, dict) or not space:
        raise TuneError(f"{where}: write a JSON object of field -> [values] or {{\"low\", \"high\", \"log\"}}, e.g. "
                        '{"lr": {"low": 1e-4, "high": 1e-2, "log": true}, "d": [32, 64]}')
    allowed = _searchable()
    for name, values in space.items():
        if name not in allowed:
            raise TuneError(f"{where}: {name!r} cannot be searched; searchable fields: {sorted(allowed)}")
        if isinstance(values, list):
            if not values:
                raise TuneError(f"{where}: {name!r} has an empty list of values")
        elif isinstance(values, dict):
            extra = sorted(set(values) - {"low", "high", "log"})
            if extra or not {"low", "high"} <= set(values):
                raise TuneError(f"{where}: {name!r}: a range is {{\"low\": L, \"high\": H, \"log\": true|false}}")
            if not values["low"] < values["high"] or (values.get("log") and values["low"] <= 0):
                raise TuneError(f"{where}: {name!r}: need low < high (and low > 0 for a log range), got {values}")
        else:
            raise TuneError(f"{where}: {name!r}: give a list of values or a range {{\"low\", \"high\", \"log\"}}")
    return space


def _integer_field(base: TrainConfig, name: str, spec: dict[str, Any]) -> bool:
    """Whether a range over ``name`` draws integers: as the field holds them (``dropout`` from 0 to 1 is a
    float range); for a field unset in ``base``, as the range's bounds are written."""
    holder = base.model if name in {f.name for f in dataclasses.fields(ModelConfig)} else base
    value = getattr(holder, name)
    if value is None:
        return isinstance(spec["low"], int) and isinstance(spec["high"], int)
    return isinstance(value, int) and not isinstance(value, bool)


def _distribution(spec: dict[str, Any], integer: bool):
    from scipy import stats

    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if integer and not log:
        return stats.randint(low, high + 1)
    return stats.loguniform(low, high) if log else stats.uniform(low, high - low)


def _plain(value: Any, integer: bool) -> Any:
    """numpy scalars -> Python (for JSON and dataclasses); int ranges sampled on a log scale -> int."""
    value = value.item() if isinstance(value, np.generic) else value
    return int(round(value)) if integer and isinstance(value, float) else value


def make_trials(base: TrainConfig, space: dict[str, Any], n_trials: int | None = None) -> list[Trial]:
    """The trials of ``space`` around ``base`` (see the module docstring); each config is checked here."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    space = check_space(space)
    grid = all(isinstance(v, list) for v in space.values())
    integer = {k for k, v in space.items() if isinstance(v, dict) and _integer_field(base, k, v)}
    if grid and (n_trials is None or n_trials >= len(ParameterGrid(space))):
        points = list(ParameterGrid(space))
    else:
        dists = {k: v if isinstance(v, list) else _distribution(v, k in integer) for k, v in space.items()}
        points = list(ParameterSampler(dists, n_iter=n_trials or DEFAULT_TRIALS, random_state=base.seed))
    trials = []
    for number, point in enumerate(points):
        params = {k: _plain(point[k], k in integer) for k in sorted(point)}
        try:
            cfg = base.replace(**params)
        except (ValueError, TypeError) as err:  # ConfigError, and ModelConfig's own checks
            raise TuneError(f"trial {number} {params}: {err}") from err
        trials.append(Trial(number, params, cfg))
    return trials


def plan_trials(base: TrainConfig, space: dict[str, Any] | None, n_trials: int | None) -> list[Trial]:
    """:func:`make_trials`; without ``space``, ``n_trials`` (default :data:`DEFAULT_TRIALS`) draws of
    :data:`DEFAULT_SPACE` (whose whole grid, 108 points, would be a long search)."""
    if space is None:
        return make_trials(base, DEFAULT_SPACE, n_trials or DEFAULT_TRIALS)
    return make_trials(base, space, n_trials)


@dataclass(frozen=True)
class TrialFold:
    """One fold of a trial: its best validation WF1 and the epoch it came at (never a test figure)."""

    group: str
    best_val_wf1: float
    best_epoch: int
    n_train: int
    n_val: int
    val_unit: str | None
    passes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "best_val_wf1": self.best_val_wf1, "best_epoch": self.best_epoch,
                "n_train": self.n_train, "n_val": self.n_val, "val_unit": self.val_unit, "passes": list(self.passes)}


@dataclass(frozen=True)
class TrialScore:
    """A trial's score: the mean over folds of the best validation WF1, and the median best epoch."""

    number: int
    params: dict[str, Any]
    score: float
    median_best_epoch: float
    folds: tuple[TrialFold, ...]

    def to_json(self, folds: bool = True) -> dict[str, Any]:
        out = {"number": self.number, "params": self.params, "score": self.score,
               "median_best_epoch": self.median_best_epoch}
        return out | {"folds": [f.to_json() for f in self.folds]} if folds else out


def validation_score(result) -> TrialFold:
    """One fold of a trial (a FoldResult trained with ``test=False``): its best validation WF1."""
    curve = [h["val_wf1"] for h in result.history]
    best = int(np.argmax(curve))  # the first epoch of the best
    return TrialFold(result.group, float(curve[best]), best + 1, result.n_train, result.n_val, result.val_unit,
                     tuple(sorted(set(result.passes))))


def score_trials(trials: Sequence[Trial], manifest, store, *, client=None, fold_groups: Sequence[str] | None = None,
                 progress: bool = True, sequential: bool = False) -> list[list[TrialFold]]:
    """Per trial, per fold: :func:`validation_score`. ``fold_groups``: only these folds (default: all).

    Trials that share one architecture (they differ in lr, weight decay, lambda, alpha, clip or seed)
    train with all their folds as one batched ensemble (:mod:`train.ensemble`), never testing."""
    from train.dispatch import run_members
    from train.ensemble import Member

    keys = list(fold_groups) if fold_groups is not None else groups(as_rows(manifest))
    jobs = [(t, g) for t in trials for g in keys]
    members = [Member(t.config, g) for t, g in jobs]
    folds = run_members(members, manifest, store, client=client, test=False, sequential=sequential, progress=progress,
                        desc="tune")
    results = {(t.number, g): validation_score(f) for (t, g), f in zip(jobs, folds)}
    return [[results[(t.number, g)] for g in keys] for t in trials]


def choose_per_fold(summaries: Sequence[TrialScore]) -> dict[str, int]:
    """Per test group, the index of the trial with the best validation WF1 on that fold alone (ties keep
    the earlier trial). The other folds' scores are left out: their training or validation rows hold
    this fold's test group."""
    return {fold.group: max(range(len(summaries)), key=lambda i: (summaries[i].folds[k].best_val_wf1, -i))
            for k, fold in enumerate(summaries[0].folds)}


def choose(trials: Sequence[Trial], scores: Sequence[Sequence[TrialFold]]) -> tuple[int, list[TrialScore]]:
    """(index of the chosen trial, one score per trial). The highest mean validation WF1 wins; ties keep the earlier trial."""
    summaries = [TrialScore(t.number, t.params, float(np.mean([f.best_val_wf1 for f in folds])),
                            float(np.median([f.best_epoch for f in folds])), tuple(folds))
                 for t, folds in zip(trials, scores)]
    best = max(range(len(summaries)), key=lambda i: (summaries[i].score, -i))
    return best, summaries


@dataclass(frozen=True)
class TuneReport:
    """A search: the space around ``base``, every trial's validation score, the choice (written as the
    preset file ``preset``), each test fold's own choice (``fold_choices``: group -> trial index), and
    (when run) the nested test of those choices, in ``test_dir``."""

    space: dict[str, Any]
    base: TrainConfig
    trials: tuple[TrialScore, ...]
    chosen: int
    fold_choices: dict[str, int]
    preset: str
    run: Invocation
    test: CVReport | None = None
    test_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"selection": SELECTION, "space": self.space, "base": self.base.to_json(), "n_trials": len(self.trials),
               "trials": [t.to_json() for t in self.trials], "chosen": self.trials[self.chosen].to_json(folds=False),
               "preset": self.preset, "test_selection": TEST_SELECTION,
               "fold_choices": {g: {"trial": self.trials[i].number, "params": self.trials[i].params}
                                for g, i in self.fold_choices.items()},
               "run": self.run.to_json()}
        if self.test is not None:
            cv = self.test
            out["test"] = {"dir": self.test_dir, "classes": list(cv.classes), "mean": dict(cv.mean), "std": dict(cv.std),
                           "baseline": _probe_figures(cv.baseline)}
            if cv.classical is not None:
                out["test"]["classical"] = _probe_figures(cv.classical)
        return out


def _probe_figures(probe: ProbeReport) -> dict[str, Any]:
    return {"sets": dict(probe.sets), "mean": dict(probe.summary.mean), "std": dict(probe.summary.std), "diff": probe.diff.to_json()}


def run_tune(base: TrainConfig, manifest, store, out_dir: str | os.PathLike, *, space: dict[str, Any] | None = None,
             n_trials: int | None = None, scheduler: str | None = None, test: bool = True, classical=None,
             note: str | None = None, progress: bool = True, sequential: bool = False) -> TuneReport:
    """Search, choose on validation scores, write ``OUT/preset.json`` and each fold's own choice, then
    (``test``) test those choices once, nested, into ``OUT/test``. Writes tune.json and tune.md.

    Without ``space``: :data:`DEFAULT_SPACE`, ``n_trials`` (default :data:`DEFAULT_TRIALS`) draws of it."""
    from train.cv import run_cv
    from train.report import write_tune

    check_scheduler(scheduler)
    check_out_dir(out_dir, "tune")
    if base.val == "none":
        raise TuneError("tuning needs validation data: the base config has val='none'; use --val dialog")
    trials = plan_trials(base, space, n_trials)
    space = DEFAULT_SPACE if space is None else space
    out = Path(out_dir)
    with dask_client(scheduler) as client:
        best, summaries = choose(trials, score_trials(trials, manifest, store, client=client, progress=progress,
                                                      sequential=sequential))
        per_fold = choose_per_fold(summaries)
        # Every choice is on disk before any test fold is read.
        preset_path = write_json(out / "preset.json", trials[best].config.to_json())
        report = TuneReport(space=space, base=base, trials=tuple(summaries), chosen=best, fold_choices=per_fold,
                            preset=str(preset_path), run=invocation(manifest, store, sequential))
        write_tune(out, report.to_json())
        if test:
            nested = ("Nested test of a search (../tune.json): each fold trained the trial that scored best on its own "
                      "validation split; the config below is the search's base.")
            cv = run_cv(base, manifest, store, out / "test", note=nested if note is None else f"{note} {nested}",
                        progress=progress, classical=classical, client=client, sequential=sequential,
                        fold_configs={g: trials[i].config for g, i in per_fold.items()})
            report = dataclasses.replace(report, test=cv, test_dir=str(out / "test"))
            write_tune(out, report.to_json())
    return report
