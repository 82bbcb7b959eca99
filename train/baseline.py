"""The linear probe every head stands beside: pooled cached inputs, standardised, logistic regression.

Per utterance and set: the mean and the standard deviation over time of every channel
(a set stored with several layers is first averaged over its layers, so a 13-layer
wav2vec 2.0 set gives 2 x 768 values, not 2 x 13 x 768). The sets of a run are
concatenated, standardised with the statistics of the fold's TRAINING rows
(``Split.train``, the rows the head trains on; the head's validation rows are not
used) and classified by scikit-learn's ``LogisticRegression`` (lbfgs, C = 1,
``tol`` = :data:`TOL`, ``max_iter`` = :data:`MAX_ITER`), fit on the rows' coordinates in an
orthonormal basis of the span of the standardised training rows (:func:`span_coordinates`):
the same optimum as a fit on all the columns, reached with a few hundred columns instead of
thousands (ComParE: 12,746 columns, ~260 training rows).

The folds are the head's: :func:`train.folds.split_fold` with the run's ``val``,
``val_fraction`` and ``seed`` gives the very same :class:`~train.folds.Split`.

The classical baseline is the same probe over other sets of the store, e.g. the
eGeMAPSv02 functionals of the same audio (one frame per utterance, whose std is 0
and drops out in the standardisation): ``--baseline-sets a=NAME``.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from manifests import Utterance
from train import metrics
from train.config import TrainConfig
from train.data import FeatureData, ModalityData, as_rows, load_features
from train.folds import Split, groups, split_fold
from train.invocation import Invocation, invocation
from train.paths import check_out_dir
from train.results import ProbeFold, ProbeReport, Summary

MAX_ITER = 5000
# lbfgs stops when the largest gradient coordinate is below TOL. scikit-learn's 1e-4 stopped the fit
# on all ComParE columns after ~20 iterations, far from the optimum (the gradient spread thin over
# 12,746 coordinates), and where it stops depends on the basis; at 1e-8 the fit reaches the optimum,
# which is the same in every basis.
TOL = 1e-8
FIT = (f"LogisticRegression(C=1, tol={TOL:g}, max_iter={MAX_ITER}) in an orthonormal basis of the training rows' "
       "span (the optimum of the fit on all columns)")
METHOD = f"per set: mean and std over time (multi-layer sets: over the layer average), standardised on the training rows, {FIT}"


@dataclass(frozen=True)
class BaselineSpec:
    """Which sets a probe reads: modality -> set name (the run's ``cfg.sets`` for the input probe)."""

    sets: dict[str, str]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in ("a", "t", "v") if m in self.sets)


def pooled(md: ModalityData) -> np.ndarray:
    """(N, 2D) float64: per utterance the mean then the std over time (zeros for an empty utterance)."""
    n = len(md.offsets) - 1
    out = np.zeros((n, 2 * md.dim), dtype=np.float64)
    for i in range(n):
        s, e = md.offsets[i], md.offsets[i + 1]
        if e <= s:
            continue
        x = md.data[..., s:e, :]
        x = x.mean(axis=0, dtype=np.float64) if x.ndim == 3 else x.astype(np.float64)
        out[i, :md.dim] = x.mean(axis=0)
        out[i, md.dim:] = x.std(axis=0)
    return out


def probe_matrix(data: FeatureData, modalities: Sequence[str], cache: dict | None = None) -> np.ndarray:
    """The probe's input: the pooled sets of ``modalities`` side by side, (N, sum 2 D_m).

    ``cache``: pooled sets by (modality, set name), kept across the settings of one ablation."""
    cache = {} if cache is None else cache
    for m in modalities:
        key = (m, data.modalities[m].set_name)
        if key not in cache:
            cache[key] = pooled(data.modalities[m])
    return np.concatenate([cache[(m, data.modalities[m].set_name)] for m in modalities], axis=1)


def span_coordinates(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both row sets' coordinates in an orthonormal basis Q of a space holding ``x_train``'s rows: the Q
    of the QR decomposition of ``x_train``'s transpose (min(N_train, D) columns). Only ``x_train`` defines Q.

    Why the probe fits on these: with an L2 penalty the multinomial loss sees the weights W only through
    X W^T and ||W||^2, which an orthogonal change of basis keeps, and lbfgs from W = 0 keeps W in the
    span of the training rows, where the optimum lies; so a test row's part outside that span meets zero
    weight, and the fit on (N_train, min(N_train, D)) coordinates is the fit on all D columns. Only lbfgs's
    stopping test (the largest gradient coordinate) sees the basis: hence :data:`TOL`, which reaches the optimum."""
    test_q, r = scipy.linalg.qr_multiply(x_train.T, x_test, mode="right")
    return r.T, test_q  # x_train = R^T Q^T, so x_train @ Q = R^T


def fit_predict(x: np.ndarray, y: np.ndarray, split: Split, seed: int) -> np.ndarray:
    """Fit the scaler and the logistic regression on ``split.train``; predicted class of each ``split.test`` row.

    The regression runs on :func:`span_coordinates` of the standardised rows."""
    train, test = np.asarray(split.train, dtype=np.int64), np.asarray(split.test, dtype=np.int64)
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(C=1.0, tol=TOL, max_iter=MAX_ITER, random_state=seed)
    # One BLAS/OpenMP thread: lbfgs on a few hundred rows makes many small BLAS calls, which more
    # threads only make wait for each other (same predictions; the demo ablation's 30 fits took 61 s
    # of wall time with 2 threads on 2 busy cores, 9 s with one).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        x_train, x_test = span_coordinates(scaler.transform(x[train]), scaler.transform(x[test]))
        # A probe that has not fully converged after MAX_ITER is still a fair baseline; say so once in the log.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y[train])
    return clf.predict(x_test)


def probe_fold(x: np.ndarray, data: FeatureData, split: Split, seed: int) -> ProbeFold:
    """One fold's figures."""
    pred = fit_predict(x, data.labels, split, seed)
    test = np.asarray(split.test, dtype=np.int64)
    scores = metrics.compute(data.labels[test], pred, len(data.classes))
    flags = np.array([data.rows[i].improvised is True for i in test], dtype=bool)
    improvised = (metrics.compute(data.labels[test[flags]], pred[flags], len(data.classes))
                  if flags.any() else None)
    return ProbeFold(split.test_group, scores, tuple(data.classes), improvised, len(split.train), split.val_unit)


def run_probe(cfg: TrainConfig, manifest: str | os.PathLike | Sequence[Utterance], store, spec: BaselineSpec, *,
              data: FeatureData | None = None, cache: dict | None = None) -> list[ProbeFold]:
    """Every fold of ``cfg``'s cross-validation, the probe over ``spec``'s sets, in group order.

    ``data``: features already loaded for the manifest (must hold ``spec``'s modalities under its sets);
    ``cache``: see :func:`probe_matrix` (only with ``data``)."""
    rows = as_rows(manifest)
    if data is None:
        data, cache = load_features(rows, store, spec.sets, spec.modalities), None
    x = probe_matrix(data, spec.modalities, cache)
    return [probe_fold(x, data, split_fold(rows, g, cfg.val, cfg.val_fraction, cfg.seed), cfg.seed)
            for g in groups(rows)]


def summarise(folds: Sequence[ProbeFold], head_folds: Sequence[dict[str, Any]] | None, spec: BaselineSpec) -> ProbeReport:
    """The probe's folds with mean and std over them; ``head_folds`` (fold JSONs): head minus probe,
    paired over folds (:func:`train.metrics.paired_difference`)."""
    fold_json = [f.to_json() for f in folds]
    return ProbeReport(sets=dict(spec.sets), method=METHOD, summary=Summary.of(fold_json), folds=tuple(folds),
                       improvised=Summary.improvised([f.improvised for f in folds]),
                       diff=None if head_folds is None else metrics.paired_difference(head_folds, fold_json))


def input_spec(cfg: TrainConfig) -> BaselineSpec:
    """The probe on the run's own inputs: the sets of the run's modalities."""
    return BaselineSpec({m: cfg.sets[m] for m in cfg.model.modalities})


def baselines(cfg: TrainConfig, rows: list[Utterance], store, head_folds: Sequence[dict[str, Any]] | None,
              classical: BaselineSpec | None = None, data: FeatureData | None = None,
              cache: dict | None = None) -> tuple[ProbeReport, ProbeReport | None]:
    """The probe on the run's inputs (the baseline) and, with ``classical``, the probe over those sets."""
    spec = input_spec(cfg)
    usable = data if data is not None and all(m in data.modalities and data.modalities[m].set_name == spec.sets[m]
                                              for m in spec.modalities) else None
    baseline = summarise(run_probe(cfg, rows, store, spec, data=usable, cache=cache), head_folds, spec)
    extra = None if classical is None else summarise(run_probe(cfg, rows, store, classical), head_folds, classical)
    return baseline, extra


def parse_baseline_sets(text: str) -> BaselineSpec:
    """``"a=egemaps"`` or ``"a=egemaps,t=text"`` -> the sets of the classical baseline."""
    from train.config import ConfigError
    from train.model import MODALITIES

    sets = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, name = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in MODALITIES or not name.strip():
            raise ConfigError(f"--baseline-sets item {item!r}: write MODALITY=SET with MODALITY one of {list(MODALITIES)}, "
                              "e.g. a=egemaps-functionals")
        sets[key] = name.strip()
    if not sets:
        raise ConfigError("--baseline-sets is empty: write MODALITY=SET, e.g. a=egemaps-functionals")
    return BaselineSpec(sets)


@dataclass(frozen=True)
class BaselineReport:
    """`train baseline`: the probe alone on the run's inputs, and the classical probe, on ``config``'s folds."""

    classes: tuple[str, ...]
    baseline: ProbeReport
    classical: ProbeReport | None
    config: TrainConfig
    sets: dict[str, dict[str, Any]]  # the run's input sets: identity and provenance, by modality
    note: str | None
    run: Invocation

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"classes": list(self.classes), "baseline": self.baseline.to_json()}
        if self.classical is not None:
            out["classical"] = self.classical.to_json()
        out["sets"] = self.sets
        out["config"] = self.config.to_json()
        if self.note:
            out["note"] = self.note
        out["run"] = self.run.to_json()
        return out


def run_baseline(cfg: TrainConfig, manifest, store, out_dir: str | os.PathLike | None = None, *,
                 classical: BaselineSpec | None = None) -> BaselineReport:
    """The probe alone on ``cfg``'s folds; with ``out_dir``: baseline.json, baseline.md, baseline.csv and report.html."""
    from train.cv import synthetic_note

    check_out_dir(out_dir, "baseline")
    rows = as_rows(manifest)
    spec = input_spec(cfg)
    data = load_features(rows, store, spec.sets, spec.modalities)
    report = BaselineReport(
        classes=tuple(data.classes), baseline=summarise(run_probe(cfg, rows, store, spec, data=data), None, spec),
        classical=None if classical is None else summarise(run_probe(cfg, rows, store, classical), None, classical),
        config=cfg, sets={m: data.modalities[m].describe() for m in spec.modalities}, note=synthetic_note(rows),
        run=invocation(manifest, store))
    if out_dir is not None:
        from pathlib import Path

        from train.report import write_baseline

        write_baseline(Path(out_dir), report.to_json())
    return report
