"""The one training loop: :func:`train_fold` trains on every group but one and tests on it.

Folds, cross-validation, ablations and the Dask workers all call this function;
:func:`run_epoch` is the one pass over data, for training and for evaluation.
"""
from __future__ import annotations

import copy
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from manifests import Utterance
from train import metrics
from train.config import TrainConfig
from train.data import FeatureData, as_rows, iter_batches, load_features
from train.folds import Split, split_fold
from train.losses import total_loss
from train.model import build_model
from train.stats import input_stats


@dataclass
class EpochOutput:
    """What one pass over a split gives: mean losses, and predictions by row index."""

    loss: float
    ce: float
    margin: float
    index: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    seconds_data: float = 0.0
    seconds_total: float = 0.0


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
    torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def run_epoch(model: torch.nn.Module, data: FeatureData, index: Sequence[int], cfg: TrainConfig, *,
              train: bool, optimizer: torch.optim.Optimizer | None = None,
              rng: np.random.Generator | None = None, desc: str = "") -> EpochOutput:
    """One pass over the rows ``index``: trains when ``train`` (batches shuffled with ``rng``),
    else evaluates without gradients. Losses are weighted by batch size."""
    import time

    model.train(train)
    totals = {"loss": 0.0, "ce": 0.0, "margin": 0.0}
    seen, preds, probs, order = 0, [], [], []
    t_data = 0.0
    t0 = time.perf_counter()
    batches = iter_batches(data, index, cfg.batch_size, rng if train else None)
    bar = tqdm(total=len(index), desc=desc, unit="utt", leave=False, file=sys.stderr, disable=not desc)
    with torch.set_grad_enabled(train):
        while True:
            t1 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            batch = batch.to(cfg.device)
            t_data += time.perf_counter() - t1
            out = model(batch.inputs)
            loss, parts = total_loss(out, batch.labels, cfg.lam, cfg.alpha)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
            n = len(batch.index)
            seen += n
            totals["loss"] += float(loss.detach()) * n
            totals["ce"] += float(parts["ce"]) * n
            totals["margin"] += float(parts["margin"]) * n
            p = torch.softmax(out.logits.detach().float(), dim=-1).cpu().numpy()
            probs.append(p)
            preds.append(p.argmax(axis=1))
            order.append(batch.index)
            bar.update(n)
    bar.close()
    seen = max(seen, 1)
    cat = (lambda xs, empty: np.concatenate(xs) if xs else empty)
    return EpochOutput(
        loss=totals["loss"] / seen, ce=totals["ce"] / seen, margin=totals["margin"] / seen,
        index=cat(order, np.zeros(0, np.int64)), y_pred=cat(preds, np.zeros(0, np.int64)),
        probs=cat(probs, np.zeros((0, len(data.classes)), np.float32)),
        seconds_data=t_data, seconds_total=time.perf_counter() - t0)


def _scores(data: FeatureData, out: EpochOutput) -> dict[str, Any]:
    return metrics.compute(data.labels[out.index], out.y_pred, len(data.classes))


def _improvised(data: FeatureData, out: EpochOutput) -> dict[str, Any] | None:
    flags = np.array([data.rows[i].improvised is True for i in out.index], dtype=bool)
    if not any(data.rows[i].improvised is not None for i in out.index) or not flags.any():
        return None
    return metrics.compute(data.labels[out.index[flags]], out.y_pred[flags], len(data.classes))


def train_fold(cfg: TrainConfig, manifest: str | os.PathLike | Sequence[Utterance], store, test_group: str,
               out_dir: str | os.PathLike | None = None, *, data: FeatureData | None = None,
               progress: bool = True, test: bool = True) -> FoldResult:
    """Train on every group but ``test_group``, test on it, and (with ``out_dir``) write the fold's outputs.

    ``store`` is a path/URL or an open store; ``data`` skips loading (the features of the
    same manifest, already in memory, e.g. shared by the folds of one cross-validation).
    ``test=False`` (model selection, `train tune`): no pass over the test group at all; the
    result holds the training and validation history only (empty ``metrics``), and nothing is written."""
    if not test and out_dir is not None:
        raise ValueError("train_fold(test=False) writes no outputs: pass out_dir=None")
    rows = as_rows(manifest)
    seed_everything(cfg.seed, cfg.num_threads)
    if data is None:
        data = load_features(rows, store, cfg.sets, cfg.model.modalities)
    split: Split = split_fold(rows, test_group, cfg.val, cfg.val_fraction, cfg.seed)
    model = build_model(cfg.model, data.specs(), len(data.classes))
    model.set_input_stats(input_stats(data, split.train))
    model = model.to(cfg.device)
    optimizer = make_optimizer(cfg, model)
    rng = np.random.default_rng(cfg.seed)

    history: list[dict[str, float]] = []
    timing: list[dict[str, float]] = []
    passes: list[str] = []
    best_wf1, best_epoch, best_state = -1.0, cfg.epochs, None
    epochs = tqdm(range(1, cfg.epochs + 1), desc=f"fold {test_group}", unit="epoch", file=sys.stderr,
                  disable=not progress)
    for epoch in epochs:
        tr = run_epoch(model, data, split.train, cfg, train=True, optimizer=optimizer, rng=rng,
                       desc="train" if progress else "")
        passes.append("train")
        record = {"epoch": epoch, "train_loss": tr.loss, "train_ce": tr.ce, "train_margin": tr.margin}
        timing.append({"epoch": epoch, "seconds": tr.seconds_total, "seconds_data": tr.seconds_data})
        if split.val:
            va = run_epoch(model, data, split.val, cfg, train=False)
            passes.append("val")
            scores = _scores(data, va)
            record |= {"val_loss": va.loss, "val_acc": scores["acc"], "val_wf1": scores["wf1"]}
            if scores["wf1"] > best_wf1:  # strict: ties keep the earlier epoch
                best_wf1, best_epoch = scores["wf1"], epoch
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            epochs.set_postfix(loss=f"{tr.loss:.3f}", val_wf1=f"{scores['wf1']:.3f}")
        history.append(record)

    if not test:
        return FoldResult(
            group=split.test_group, classes=data.classes, metrics={}, last=None, improvised=None,
            best_epoch=best_epoch if best_state is not None else cfg.epochs, history=history,
            n_train=len(split.train), n_val=len(split.val), val_unit=split.val_unit, passes=passes, timing=timing)
    # Testing starts here, after every epoch has run; nothing above reads split.test.
    last_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    last_out = None
    if best_state is not None and best_epoch != cfg.epochs:
        model.load_state_dict(best_state)
        test_out = run_epoch(model, data, split.test, cfg, train=False)
        passes.append("test:best")
        model.load_state_dict(last_state)
        last_out = run_epoch(model, data, split.test, cfg, train=False)
        passes.append("test:last")
        reported_state = best_state
    else:
        test_out = run_epoch(model, data, split.test, cfg, train=False)
        passes.append("test:last" if not split.val else "test:best")
        reported_state = last_state
        best_epoch = cfg.epochs
    reported = _scores(data, test_out)
    result = FoldResult(
        group=split.test_group, classes=data.classes, metrics=reported,
        last=_scores(data, last_out) if last_out is not None else (reported if split.val else None),
        improvised=_improvised(data, test_out), best_epoch=best_epoch, history=history,
        n_train=len(split.train), n_val=len(split.val), val_unit=split.val_unit, passes=passes,
        predictions=_predictions(data, test_out), timing=timing)
    if out_dir is not None:
        from train.report import write_fold

        write_fold(Path(out_dir), cfg, data, result, reported_state)
    return result


def _predictions(data: FeatureData, out: EpochOutput) -> list[dict[str, Any]]:
    return [{"utt_id": data.rows[i].utt_id, "label": data.rows[i].label, "pred": data.classes[int(p)]}
            for i, p in zip(out.index.tolist(), out.y_pred.tolist())]
