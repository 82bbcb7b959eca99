"""Figures (matplotlib, Agg back-end, so they render with no display), each written atomically."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the back-end)
import numpy as np  # noqa: E402

from emocache.atomic import atomic_write  # noqa: E402


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


def layer_scores(report: dict[str, Any], path: Path) -> Path:
    """`train layers`: the probe's ACC and WF1 per layer, mean over folds with a +- std bar and each
    fold as a faint dot; the layer-average probe's WF1 as a dashed line."""
    layers = report["layers"]
    fig, ax = plt.subplots(figsize=(2.0 + 0.5 * len(layers), 3.8))
    x = np.arange(len(layers))
    for key, label, colour, shift in (("acc", "ACC", "tab:blue", -0.08), ("wf1", "WF1", "tab:orange", 0.08)):
        ax.errorbar(x + shift, [r["mean"][key] for r in layers], yerr=[r["std"][key] for r in layers], fmt="o-",
                    capsize=3, color=colour, label=f"{label} (mean +- std over folds)")
        for i, r in enumerate(layers):
            ax.plot([i + shift] * len(r["folds"]), [f[key] for f in r["folds"]], ".", color=colour, alpha=0.35)
    ax.axhline(report["average"]["mean"]["wf1"], ls="--", color="gray", label="WF1, probe on the layer average")
    ax.set_xticks(x, [r["layer"] for r in layers])
    ax.set_xlabel(f"layer (hidden state) of set {report['set']!r}")
    ax.set_ylabel("linear probe, test folds")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def layer_weights(weights: dict[str, Any], path: Path) -> Path:
    """`train cv` on a multi-layer set: each fold's learned layer weights (softmax of the LayerSum
    logits) as bars, one panel per modality."""
    fig, axes = plt.subplots(1, len(weights), figsize=(0.5 + 3.5 * len(weights), 3.5), squeeze=False)
    for ax, (modality, entry) in zip(axes[0], weights.items()):
        n_layers, folds = len(entry["layers"]), entry["folds"]
        width = 0.8 / max(len(folds), 1)
        for k, f in enumerate(folds):
            ax.bar(np.arange(n_layers) - 0.4 + width * (k + 0.5), f["weights"], width, label=f"fold {f['group']}")
        ax.axhline(1 / n_layers, ls="--", color="gray", lw=1, label="uniform")
        ax.set_xticks(range(n_layers), entry["layers"])
        ax.set_xlabel(f"layer of set {entry['set']!r} ({modality})")
        ax.set_ylabel("learned weight")
        ax.legend(fontsize=7)
    return _save(fig, path)


def setting_bars(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """`train ablate`: WF1 per setting (mean +- std over folds) beside the probe on the same inputs."""
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * len(rows), 3.8))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["mean"]["wf1"] for r in rows], 0.4, yerr=[r["std"]["wf1"] for r in rows], capsize=3, label="head")
    ax.bar(x + 0.2, [r["baseline"]["mean"]["wf1"] for r in rows], 0.4, yerr=[r["baseline"]["std"]["wf1"] for r in rows],
           capsize=3, label="baseline (linear probe)")
    ax.set_xticks(x, [r["setting"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("WF1, mean +- std over folds")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def trial_scores(trials: Sequence[dict[str, Any]], chosen: int, path: Path) -> Path:
    """`train tune`: each trial's validation score, the chosen one highlighted."""
    fig, ax = plt.subplots(figsize=(2.0 + 0.35 * len(trials), 3.5))
    numbers = [t["number"] for t in trials]
    ax.bar(numbers, [t["score"] for t in trials], color=["tab:orange" if n == chosen else "tab:blue" for n in numbers])
    ax.set_xticks(numbers, [str(n) for n in numbers])
    ax.set_xlabel("trial (orange: chosen)")
    ax.set_ylabel("mean best validation WF1")
    ax.set_ylim(0, 1)
    return _save(fig, path)
