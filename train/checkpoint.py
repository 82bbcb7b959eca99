"""A fold's checkpoint as it is read back: the folder's config.json and model.pt (written by
:func:`train.report.write_fold`), for `train predict` and for the learned layer weights of a cv report."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from train.data import DataError
from train.model import ModelConfig
from train.report import CHECKPOINT, CHECKPOINT_CONFIG


@dataclass(frozen=True)
class Checkpoint:
    """What a fold's folder records: the training config's JSON, the classes in the model's output
    order, the input modalities, each input set's description (name, identity, dim, layers,
    provenance; empty in checkpoints older than set descriptions), and the weights."""

    folder: Path
    train: Mapping[str, Any]
    classes: tuple[str, ...]
    inputs: tuple[str, ...]
    sets: Mapping[str, Mapping[str, Any]]
    state: Mapping[str, torch.Tensor]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Checkpoint:
        folder = Path(folder)
        config, weights = folder / CHECKPOINT_CONFIG, folder / CHECKPOINT
        if not config.is_file() or not weights.is_file():
            raise DataError(f"{folder}: not a checkpoint folder (needs {CHECKPOINT_CONFIG} and {CHECKPOINT}); "
                            f"pass a fold's output folder, e.g. OUT/fold-1")
        try:
            meta = json.loads(config.read_text(encoding="utf-8"))
            train, classes, inputs = meta["train"], tuple(meta["classes"]), tuple(meta["inputs"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{config}: not a checkpoint config written by `train` ({type(err).__name__}: {err}); "
                            "copy the fold's folder again or retrain it") from err
        return cls(folder=folder, train=train, classes=classes, inputs=inputs,
                   sets=meta.get("sets") or {}, state=torch.load(weights, map_location="cpu", weights_only=True))

    @property
    def model(self) -> ModelConfig:
        try:
            return ModelConfig.from_json(self.train["model"])
        except ValueError as err:  # ModelConfig's checks: a config.json from another version, or edited
            raise DataError(f"{self.folder / CHECKPOINT_CONFIG}: its model config cannot be used here: {err}") from err

    @staticmethod
    def present(folder: Path) -> bool:
        """Whether ``folder`` holds a checkpoint (a fold run with an output folder)."""
        return (folder / CHECKPOINT).is_file() and (folder / CHECKPOINT_CONFIG).is_file()
