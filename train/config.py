"""The training configuration: one frozen dataclass, stored beside every checkpoint as JSON."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from emocache.devices import device_name_problem
from emocache.errors import EmocacheError
from train.model import MODALITIES, ModelConfig, known_fields

# Modality key -> the feature-set name `extract` writes by default.
DEFAULT_SETS = {"a": "audio", "t": "text", "v": "video"}
OPTIMIZERS = ("adam", "adamw", "sgd")
VAL_MODES = ("dialog", "none")
PRECISIONS = ("fp32", "tf32", "bf16")


class ConfigError(EmocacheError, ValueError):
    """A configuration value out of range; the message names the field and the valid choices."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes what a fold trains, apart from the data.

    ``val``: ``"dialog"`` carves a validation split off the training groups (see
    :mod:`train.folds`) and tests the epoch with the best validation weighted F1;
    ``"none"`` trains ``epochs`` epochs and tests the last.
    ``grad_clip``: max global gradient norm, ``None`` for none.
    ``num_threads``: torch CPU threads, 1 by default: the head's ops are small, so more
    intra-op threads on a few cores only fight over them; parallelism comes from folds side
    by side (one ensemble, or Dask workers). 0 leaves torch's default. Results on the CPU
    are reproducible for a fixed seed and thread count.
    ``precision`` (CUDA only): ``"fp32"`` (every preset), ``"tf32"`` (TF32 matmuls, ~10-bit
    mantissa) or ``"bf16"`` (bfloat16 autocast). ``compile`` (CUDA only): capture the step as one
    graph with dynamic shapes (:func:`train.ensemble.compile_step`), CUDA graphs recorded per length
    bin. On CUDA the GRUs run through cuDNN, one call per member and direction, each GRU one operator
    in the graph and outside its CUDA graphs (:func:`train.layers.masked_gru`). None of these is
    measured on a GPU yet: none was lent while they were written (compile times on the CPU:
    bench/RESULTS.md).
    ``sets``: modality key -> feature-set name in the store.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    lr: float = 1e-3
    batch_size: int = 16
    epochs: int = 15
    lam: float = 1.0
    alpha: float = 0.5
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    val: str = "dialog"
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    grad_clip: float | None = 1.0
    num_threads: int = 1
    precision: str = "fp32"
    compile: bool = False
    sets: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SETS))

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.val not in VAL_MODES:
            raise ConfigError(f"val {self.val!r} is not one of {list(VAL_MODES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        problem = device_name_problem(self.device)
        if problem is not None:
            raise ConfigError(problem)
        cuda_only = [f"precision={self.precision!r}"] * (self.precision != "fp32") + ["compile=True"] * self.compile
        if cuda_only and self.device == "cpu":
            raise ConfigError(f"{' and '.join(cuda_only)} {'is' if len(cuda_only) == 1 else 'are'} for CUDA devices; "
                              "device 'cpu' trains in fp32 without compile")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.lam < 0 or self.alpha < 0:
            raise ConfigError(f"lambda and alpha must be >= 0, got lambda={self.lam} alpha={self.alpha}")
        unknown = sorted(set(self.model.modalities) - set(MODALITIES))
        if unknown:
            raise ConfigError(f"unknown modalities {unknown}; valid: {list(MODALITIES)}")
        missing = [m for m in self.model.modalities if m not in self.sets]
        if missing:
            raise ConfigError(f"no feature-set name for modalities {missing}; give them with --sets, e.g. a=audio")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed; model fields (d, frame_pool, modalities...) are accepted too."""
        model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
        model_changes = {k: changes.pop(k) for k in list(changes) if k in model_fields}
        if model_changes:
            if "modalities" in model_changes:
                model_changes["modalities"] = normalise_modalities(model_changes["modalities"])
            changes["model"] = _model(dataclasses.replace, changes.get("model", self.model), **model_changes)
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["model"] = self.model.to_json()
        values["sets"] = dict(self.sets)
        return values

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        values = known_fields(cls, data, "TrainConfig field(s)", ConfigError)
        if "model" in values:
            values["model"] = _model(ModelConfig.from_json, values["model"])
        return cls(**values)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def _model(make, *args: Any, **kwargs: Any) -> ModelConfig:
    """``make(...)`` a ModelConfig, its checks of values (``d``, ``heads``, ``dropout``...) raised as ConfigError."""
    try:
        return make(*args, **kwargs)
    except ValueError as err:  # ModelConfig's own validation: a field out of range, an unknown key
        raise ConfigError(str(err)) from err


def normalise_modalities(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"a,t,v"``, ``"A+V+T"`` or a sequence -> modality keys in canonical order (audio, text, video)."""
    if isinstance(value, str):
        parts = [p for p in value.replace("+", ",").split(",") if p.strip()]
    else:
        parts = list(value)
    keys = {p.strip().lower()[:1] for p in parts}
    unknown = sorted(k for k in keys if k not in MODALITIES)
    if unknown or not keys:
        raise ConfigError(f"modalities {value!r}: use a non-empty subset of {list(MODALITIES)} (a=audio, t=text, v=video)")
    return tuple(m for m in MODALITIES if m in keys)


def parse_sets(text: str) -> dict[str, str]:
    """``"a=audio,t=text"`` -> ``{"a": "audio", "t": "text"}`` on top of the defaults."""
    sets = dict(DEFAULT_SETS)
    for item in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, name = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in MODALITIES or not name.strip():
            raise ConfigError(f"--sets item {item!r}: write MODALITY=SET with MODALITY one of {list(MODALITIES)}, e.g. a=audio,t=text,v=video")
        sets[key] = name.strip()
    return sets
