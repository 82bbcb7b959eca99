"""The one training loop: :func:`train_fold` trains on every group but one and tests on it.

Folds, cross-validation, ablations, tuning and the Dask workers all call it or its batched form,
:func:`train.ensemble.train_members`, of which a fold alone is the K = 1 case: one loop either way.
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from manifests import Utterance
from train import metrics
from train.config import TrainConfig
from train.data import FeatureData, as_rows, load_features
from train.folds import Split
from train.paths import check_out_dir


@dataclass
class FoldResult:
    """One fold: the metrics of the reported checkpoint (best validation epoch, or the last with
    ``val="none"``), the last epoch's beside them, and the history per epoch.

    ``timing`` (seconds per training epoch, and of it making batches) is kept out of
    :meth:`to_json`, so that the same seed gives the same metrics JSON.
    ``passes`` lists every pass over data in the order it ran (``train``, ``val``,
    ``test:best``, ``test:last``): the test group is read only after training, once per
    reported checkpoint.
    """

    group: str
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    last: dict[str, Any] | None
    improvised: dict[str, Any] | None
    best_epoch: int
    history: list[dict[str, float]]
    n_train: int
    n_val: int
    val_unit: str | None
    passes: list[str] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    timing: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group, **self.metrics, "classes": list(self.classes), "best_epoch": self.best_epoch,
            "last": self.last, "improvised": self.improvised, "n_train": self.n_train, "n_val": self.n_val,
            "val_unit": self.val_unit, "history": self.history, "passes": self.passes,
        }


def seed_everything(seed: int, num_threads: int = 0) -> None:
    """Same seed and thread count -> same numbers on the CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Deterministic kernels without warn-only: on the CPU every op the head uses has one; on CUDA
    # train.ensemble.configure_device sets the cuBLAS workspace that determinism needs.
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every new uninitialised tensor with NaN, to expose reads of it: a
    # debugging aid that costs a pass over each gradient and activation (a fifth of a `fast` step on
    # ComParE inputs). Nothing here reads memory it has not written.
    torch.utils.deterministic.fill_uninitialized_memory = False
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def train_fold(cfg: TrainConfig, manifest: str | os.PathLike | Sequence[Utterance], store, test_group: str,
               out_dir: str | os.PathLike | None = None, *, data: FeatureData | None = None,
               progress: bool = True, test: bool = True) -> FoldResult:
    """Train on every group but ``test_group``, test on it, and (with ``out_dir``) write the fold's outputs.

    ``store`` is a path/URL or an open store; ``data`` skips loading (the features of the
    same manifest, already in memory, e.g. shared by the folds of one cross-validation).
    ``test=False`` (model selection, `train tune`): no pass over the test group at all; the
    result holds the training and validation history only (empty ``metrics``), and nothing is written."""
    from train.ensemble import Member, train_members

    if not test and out_dir is not None:
        raise ValueError("train_fold(test=False) writes no outputs: pass out_dir=None")
    check_out_dir(out_dir, "fold")
    rows = as_rows(manifest)
    if data is None:
        data = load_features(rows, store, cfg.sets, cfg.model.modalities)
    member = Member(cfg, test_group, None if out_dir is None else Path(out_dir))
    return train_members([member], rows, data, progress=progress, test=test, desc=f"fold {test_group}")[0]


def finish_fold(cfg: TrainConfig, data: FeatureData, split: Split, test_out, last_out, history, timing, passes,
                best_epoch: int, state: dict[str, torch.Tensor], out_dir: Path | None) -> FoldResult:
    """A tested fold's result from its test pass(es) (``last_out``: of the last epoch, when the reported
    checkpoint is an earlier one); with ``out_dir`` its outputs are written there."""
    reported = _scores(data, test_out)
    result = FoldResult(
        group=split.test_group, classes=data.classes, metrics=reported,
        last=_scores(data, last_out) if last_out is not None else (reported if split.val else None),
        improvised=_improvised(data, test_out), best_epoch=best_epoch, history=history,
        n_train=len(split.train), n_val=len(split.val), val_unit=split.val_unit, passes=passes,
        predictions=_predictions(data, test_out), timing=timing)
    if out_dir is not None:
        from train.report import write_fold

        write_fold(Path(out_dir), cfg, data, result, state)
    return result


def _scores(data: FeatureData, out) -> dict[str, Any]:
    return metrics.compute(data.labels[out.index], out.y_pred, len(data.classes))


def _improvised(data: FeatureData, out) -> dict[str, Any] | None:
    flags = np.array([data.rows[i].improvised is True for i in out.index], dtype=bool)
    if not any(data.rows[i].improvised is not None for i in out.index) or not flags.any():
        return None
    return metrics.compute(data.labels[out.index[flags]], out.y_pred[flags], len(data.classes))


def _predictions(data: FeatureData, out) -> list[dict[str, Any]]:
    return [{"utt_id": data.rows[i].utt_id, "label": data.rows[i].label, "pred": data.classes[int(p)]}
            for i, p in zip(out.index.tolist(), out.y_pred.tolist())]
