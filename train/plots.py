"""Figures (matplotlib, Agg back-end, so they render with no display), each written atomically."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the back-end)
import numpy as np  # noqa: E402

from train.report import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def learning_curve(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Training loss per epoch (left axis) and validation weighted F1 (right axis, when there is one)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    if history and "val_wf1" in history[0]:
        ax2 = ax.twinx()
        ax2.plot(epochs, [h["val_wf1"] for h in history], "s-", color="tab:orange", label="val WF1")
        ax2.set_ylabel("validation weighted F1", color="tab:orange")
        ax2.set_ylim(0, 1)
    ax.set_title(title)
    return _save(fig, path)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "summed over folds") -> Path:
    """Counts with each row (true class) also shown as a fraction of its total."""
    m = np.asarray(matrix, dtype=np.int64)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def fold_bars(folds: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy and weighted F1 per fold."""
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(folds), 3.5))
    x = np.arange(len(folds))
    ax.bar(x - 0.2, [f["acc"] for f in folds], 0.4, label="ACC")
    ax.bar(x + 0.2, [f["wf1"] for f in folds], 0.4, label="WF1")
    ax.set_xticks(x, [str(f["group"]) for f in folds])
    ax.set_xlabel("test group")
    ax.set_ylim(0, 1)
    ax.legend()
    return _save(fig, path)
