"""Classification metrics (scikit-learn) per fold, and their mean and std over folds."""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

# The scalar figures, in the order tables show them.
SCALARS = ("acc", "wf1", "ua", "macro_f1")


def compute(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> dict[str, Any]:
    """acc, weighted F1 (wf1), unweighted accuracy (ua = balanced accuracy), macro F1 (ua and macro F1
    average over the classes that occur in ``y_true``), n_test and the confusion matrix (rows true, columns predicted, classes in the fold's fixed order)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(n_classes))
    return {
        "acc": float(accuracy_score(y_true, y_pred)),
        "wf1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        # balanced accuracy = mean recall over the classes that occur in y_true
        "ua": _balanced_accuracy(y_true, y_pred),
        # over the classes that occur in y_true, as ua: left to itself sklearn would also average in
        # a class that occurs only among the predictions (F1 0), so folds would average different sets
        "macro_f1": float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)),
        "n_test": int(len(y_true)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if not len(y_true):
        return 0.0
    with warnings.catch_warnings():
        # Predicting a class absent from a small split is expected, not a problem.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def summarise(folds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"mean": {...}, "std": {...}, "confusion": summed, "n_test": total}`` over per-fold metrics.

    std is the population std over folds (ddof=0), as 5-fold papers usually report."""
    if not folds:
        raise ValueError("no folds to summarise")
    values = {k: np.array([f[k] for f in folds], dtype=np.float64) for k in SCALARS}
    return {
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std()) for k, v in values.items()},
        "confusion": np.sum([np.asarray(f["confusion"]) for f in folds], axis=0).tolist(),
        "n_test": int(sum(f["n_test"] for f in folds)),
    }


INTERVAL = "paired t interval over folds, 95%"


@dataclass(frozen=True)
class Interval:
    """A mean difference over folds and its interval (``low``/``high`` None with one fold)."""

    mean: float
    low: float | None
    high: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PairedDifference:
    """``a`` minus ``b`` over the same folds, per scalar (:data:`SCALARS`), with how the intervals were made."""

    scalars: Mapping[str, Interval]
    n_folds: int
    method: str

    def __getitem__(self, scalar: str) -> Interval:
        return self.scalars[scalar]

    def to_json(self) -> dict[str, Any]:
        return {**{k: v.to_json() for k, v in self.scalars.items()}, "n_folds": self.n_folds, "method": self.method}


def paired_difference(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], level: float = 0.95) -> PairedDifference:
    """``a`` minus ``b`` (fold JSONs), paired by fold ``group``: per scalar the mean difference over folds
    and a ``level`` interval from the t distribution with n - 1 degrees of freedom."""
    from scipy import stats

    by_group = {f["group"]: f for f in b}
    missing = [f["group"] for f in a if f["group"] not in by_group]
    if missing or len(a) != len(b):
        raise ValueError(f"paired comparison needs the same folds on both sides; unmatched: {missing or sorted(by_group)}")
    n = len(a)
    out: dict[str, Interval] = {}
    for k in SCALARS:
        d = np.array([f[k] - by_group[f["group"]][k] for f in a], dtype=np.float64)
        mean = float(d.mean())
        if n < 2:
            out[k] = Interval(mean, None, None)
            continue
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / np.sqrt(n))
        out[k] = Interval(mean, mean - half, mean + half)
    return PairedDifference(out, n, INTERVAL if level == 0.95 else f"paired t interval over folds, {100 * level:g}%")
