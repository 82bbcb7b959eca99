"""Named starting points for :class:`TrainConfig`; command-line flags override their fields.

``paper``: the values the paper states (Adam, lr 1e-5, batch 2, 50 epochs, lambda 1,
three gated blocks, d = 256, no frame pooling). On a 2-core CPU an IEMOCAP fold
takes hours with it; it is meant for a GPU.

``fast``: ours, for quick iteration on a CPU: a d = 64 head on 10x pooled frames, one torch
thread (with ops this small, more threads on a 2-core machine only add overhead), a 20%
validation split (10% of the demo's few dialogs gave a validation WF1 that swung by 0.2
between epochs). Tuned on the synthetic demo corpus ONLY (never on IEMOCAP), over lr,
dropout, weight decay, d, pooling and epochs, for A+V+T and then checked on each single
modality: there A+V+T beats every single modality (bench/RESULTS.md). It says nothing
about the best settings for real data.
"""
from __future__ import annotations

import json
import os
from typing import Any

from train.config import ConfigError, TrainConfig
from train.model import ModelConfig

PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        model=ModelConfig(modalities=("a", "t", "v"), d=256, heads=4, n_blocks=3, dropout=0.1, frame_pool=1),
        optimizer="adam", lr=1e-5, weight_decay=0.0, batch_size=2, epochs=50, lam=1.0, alpha=0.5, grad_clip=None,
        num_threads=1,
    ),
    "fast": TrainConfig(
        model=ModelConfig(modalities=("a", "t", "v"), d=64, heads=4, n_blocks=3, dropout=0.2, frame_pool=10),
        optimizer="adamw", lr=5e-4, weight_decay=0.01, batch_size=16, epochs=20, lam=1.0, alpha=0.5, grad_clip=1.0,
        val_fraction=0.2, num_threads=1,
    ),
}


def preset(name: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` (TrainConfig or ModelConfig fields; ``None`` values are ignored).

    ``name`` is one of :data:`PRESETS`, or the path of a preset file: a TrainConfig's JSON
    (:meth:`TrainConfig.to_json`), as `train tune` writes it."""
    text = os.fspath(name)
    if text in PRESETS:
        base = PRESETS[text]
    elif text.endswith(".json") or os.path.sep in text:
        base = load_preset(text)
    else:
        raise ConfigError(f"unknown preset {text!r}; presets: {sorted(PRESETS)}, or a preset file FILE.json")
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


def load_preset(path: str | os.PathLike) -> TrainConfig:
    """A preset file: the JSON of a TrainConfig."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as err:
        raise ConfigError(f"preset file {os.fspath(path)} does not exist; presets: {sorted(PRESETS)}, or a preset file FILE.json") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"preset file {os.fspath(path)}: not JSON ({err}); write a TrainConfig's JSON, as `train tune` does") from err
    if not isinstance(data, dict):
        raise ConfigError(f"preset file {os.fspath(path)}: expected a JSON object (a TrainConfig's fields)")
    try:
        return TrainConfig.from_json(data)
    except (TypeError, ConfigError) as err:
        raise ConfigError(f"preset file {os.fspath(path)}: {err}") from err
