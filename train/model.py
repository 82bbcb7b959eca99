"""The stage-2 head (docs/MODEL.md): per-modality branches, gated cross-modal attention, shared encoder.

Ablation modes (paper 4.1, docs/MODEL.md):
  one modality (A, T or V)  branch -> masked mean -> classifier; no cross-modal attention, no z
  two (A+T, A+V)            n_blocks stacked CM blocks, audio as query, no gate, no z
  three (A+V+T)             n_blocks stacked gated blocks (two CM blocks each), z for the margin loss

Two options that are NOT the paper's, both off by default (and in the ``paper`` preset), standard for
frame-level descriptors in speech emotion recognition: ``pooling="stats"`` (mean and standard deviation
over time of the final stream, instead of the mean) and ``audio_branch`` (a recurrent branch on the
projected audio frames, which the paper feeds to fusion as they are).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from train.layers import (
    AGRU,
    ClassifierHead,
    CrossModalBlock,
    GatedCrossModalBlock,
    InputProjection,
    LayerSum,
    RecurrentBranch,
    TimePool,
    masked_mean,
    masked_pool_time,
    zero_padding,
)
from train.lvc import AGRULVC
from train.members import LayerNorm, Linear, stacked

MODALITIES = ("a", "t", "v")  # audio (major), text, video
_NAMES = {"a": "audio", "t": "text", "v": "video"}
POOLINGS = TimePool.MODES
AUDIO_BRANCHES = ("none", "gru", "agru")


def known_fields(cls: type, data: dict[str, Any], what: str, error: type[Exception]) -> dict[str, Any]:
    """``data`` as a dict of ``cls``'s fields; ``error`` names the unknown keys and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {what} {unknown}; valid: {sorted(known)}")
    return dict(data)


@dataclass(frozen=True)
class ModelConfig:
    """The head's hyper-parameters; the paper's values are the defaults.

    ``modalities`` is a set: it is stored in MODALITIES order, which is also the order of z's M axis.
    ``gate``: None means the paper's reading (a gate with three modalities only); False with three
    modalities replaces the gate by the plain average of the two cross-modal streams (our ablation);
    True with fewer than three is an error. ``frame_pool`` > 1 mean-pools every input sequence in time
    by that factor before the branches (a CPU lever; 1 in the paper).
    ``pooling``: how the final stream becomes one vector, ``"mean"`` (the paper) or ``"stats"`` (mean and
    std, ours). ``audio_branch``: ``"none"`` (the paper: X^a is the projected audio), ``"gru"`` (x +
    BiGRU(x), LayerNorm) or ``"agru"`` (the text branch's A-GRU); both ours. z for the margin loss is
    always the mean of each unfused stream, as in the paper.
    """

    modalities: tuple[str, ...] = MODALITIES
    d: int = 256
    heads: int = 4
    n_blocks: int = 3
    lvc_codewords: int = 16
    d_shared: int | None = None
    dropout: float = 0.1
    frame_pool: int = 1
    gate: bool | None = None
    ff_mult: int = 4
    pooling: str = "mean"
    audio_branch: str = "none"

    def __post_init__(self) -> None:
        mods = tuple(self.modalities)
        unknown = [m for m in mods if m not in MODALITIES]
        if not mods or unknown or len(set(mods)) != len(mods):
            raise ValueError(
                f"modalities {list(mods)} must be a non-empty set of distinct names from {list(MODALITIES)}"
            )
        if len(mods) == 2 and "a" not in mods:
            raise ValueError(
                f"modalities {list(mods)}: with two modalities audio is the query stream and must be one of "
                "them (valid pairs: a+t, a+v)"
            )
        object.__setattr__(self, "modalities", tuple(m for m in MODALITIES if m in mods))
        if self.gate and len(mods) != 3:
            raise ValueError(f"gate=True needs all three modalities, got {list(mods)}; leave gate unset")
        for name in ("d", "heads", "n_blocks", "lvc_codewords", "frame_pool", "ff_mult"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.d % self.heads:
            raise ValueError(f"d={self.d} must be divisible by heads={self.heads}")
        if self.d % 2:
            raise ValueError(f"d={self.d} must be even: the bidirectional GRU has d/2 units per direction")
        if self.d_shared is not None and self.d_shared < 1:
            raise ValueError(f"d_shared must be a positive integer or None, got {self.d_shared}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {list(POOLINGS)}")
        if self.audio_branch not in AUDIO_BRANCHES:
            raise ValueError(f"audio_branch {self.audio_branch!r} is not one of {list(AUDIO_BRANCHES)}")

    @property
    def use_gate(self) -> bool:
        """Whether the gated blocks gate (only ever with three modalities)."""
        return len(self.modalities) == 3 and self.gate is not False

    @property
    def uses_margin(self) -> bool:
        """Whether the model gives z for the margin loss (three modalities only)."""
        return len(self.modalities) == 3

    @property
    def shared_dim(self) -> int:
        return self.d if self.d_shared is None else self.d_shared

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["modalities"] = list(self.modalities)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelConfig":
        values = known_fields(cls, data, "model config keys", ValueError)
        if "modalities" in values:
            values["modalities"] = tuple(values["modalities"])
        return cls(**values)


@dataclass(frozen=True)
class InputSpec:
    """One stored feature set as the head sees it: width D, and L when it holds several layers."""

    dim: int
    layers: int | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"input dim must be positive, got {self.dim}")
        if self.layers is not None and self.layers < 1:
            raise ValueError(f"input layers must be positive or None, got {self.layers}")


@dataclass
class ModelOutput:
    """logits (B, C); z (B, M, d_shared) shared-encoder outputs of the unfused streams in
    cfg.modalities order, None below three modalities; embedding (B, d), or (B, 2d) with
    pooling="stats", the pooled final stream."""

    logits: Tensor
    z: Tensor | None
    embedding: Tensor | None = None


class ModalityInput(nn.Module):
    """Stored features -> projected sequence: [layer sum] -> frame pooling -> Linear + LayerNorm + dropout.

    x (B, T, D) or (B, L, T, D), mask (B, T) -> (B, T', d), (B, T') with T' = ceil(T / frame_pool).
    The layer sum and the pooling are both linear per channel, so their order is free; pooling before
    the projection saves the most work.
    """

    def __init__(self, name: str, spec: InputSpec, dim: int, frame_pool: int, dropout: float):
        super().__init__()
        self.name = name
        self.spec = spec
        self.frame_pool = frame_pool
        # Per-channel standardisation of the stored features (per layer when there are several).
        # Buffers, not parameters: they are set once from the training split (never the test
        # session) and travel with the checkpoint, so prediction standardises the same way.
        stat_shape = (spec.layers, 1, spec.dim) if spec.layers is not None else (spec.dim,)
        self.stat_dims = len(stat_shape)  # stacked members' statistics add K in front
        self.register_buffer("feat_mean", torch.zeros(stat_shape))
        self.register_buffer("feat_std", torch.ones(stat_shape))
        self.layer_sum = LayerSum(spec.layers) if spec.layers is not None else None
        self.proj = InputProjection(spec.dim, dim, dropout)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        """Standardise inputs with these per-channel statistics: (D,) or (L, D) for a layered set.

        Channels whose std is ~0 (constant over the training frames) are left unscaled.
        """
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(self.feat_mean.shape)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(self.feat_std.shape)
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: Tensor, mask: Tensor, prepared: bool = False, check: bool = True) -> tuple[Tensor, Tensor]:
        """``prepared``: x is already standardised and pooled in time (:func:`train.data.prepare`, once
        per fold: both steps have no parameters), so only the layer sum and projection run here.
        ``check=False`` skips the shape and mask checks, whose host synchronisations a training step
        cannot afford (the data path checks its batches once per fold instead)."""
        if check:
            self._check(x, mask)
        if not prepared:
            x = (x - stacked(self.feat_mean, self.stat_dims, x.dim())) / stacked(self.feat_std, self.stat_dims, x.dim())
        # Zero the padding first: a NaN there would otherwise reach the weight gradients as 0 * NaN.
        if self.layer_sum is not None:
            x = self.layer_sum(zero_padding(x, mask.unsqueeze(-2).expand(x.shape[:-1])))
        else:
            x = zero_padding(x, mask)
        if not prepared:
            x, mask = masked_pool_time(x, mask, self.frame_pool)
        return zero_padding(self.proj(x), mask), mask

    def _check(self, x: Tensor, mask: Tensor) -> None:
        where = f"batch[{self.name!r}] ({_NAMES[self.name]})"
        if self.spec.layers is None:
            if x.dim() != 3:
                raise ValueError(
                    f"{where}: expected x of shape (B, T, {self.spec.dim}), got {tuple(x.shape)}; "
                    "a set with several layers needs InputSpec(layers=L)"
                )
        elif x.dim() != 4 or x.shape[1] != self.spec.layers:
            raise ValueError(
                f"{where}: expected x of shape (B, {self.spec.layers}, T, {self.spec.dim}), got {tuple(x.shape)}"
            )
        if x.shape[-1] != self.spec.dim:
            raise ValueError(f"{where}: feature width {x.shape[-1]} != InputSpec.dim {self.spec.dim}")
        if mask.dtype != torch.bool or mask.shape != (x.shape[0], x.shape[-2]):
            raise ValueError(
                f"{where}: mask must be bool of shape {(x.shape[0], x.shape[-2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        lengths = mask.sum(dim=1)
        if not bool((lengths > 0).all()):
            raise ValueError(f"{where}: every utterance needs at least one real frame (rows with none: "
                             f"{(lengths == 0).nonzero().flatten().tolist()})")
        prefix = torch.arange(mask.shape[1], device=mask.device) < lengths.unsqueeze(1)
        if not bool((prefix == mask).all()):
            raise ValueError(f"{where}: real frames must come first in every row (mask = prefix of True)")


class EmotionModel(nn.Module):
    """The paper's head over cached features. Build it with :func:`build_model`.

    ``forward(batch)``: batch[m] = (x, mask), x (B, T_m, D_m) or (B, L, T_m, D_m), mask (B, T_m) bool,
    True = real frame, real frames first. Only cfg.modalities are read. Returns a :class:`ModelOutput`.
    """

    def __init__(self, cfg: ModelConfig, inputs: dict[str, InputSpec], n_classes: int):
        super().__init__()
        missing = [m for m in cfg.modalities if m not in inputs]
        if missing:
            raise ValueError(f"no InputSpec for modalities {missing}; got specs for {sorted(inputs)}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        self.cfg = cfg
        self.n_classes = n_classes
        self.inputs = nn.ModuleDict(
            {m: ModalityInput(m, inputs[m], cfg.d, cfg.frame_pool, cfg.dropout) for m in cfg.modalities}
        )
        branches: dict[str, nn.Module] = {}
        if "a" in cfg.modalities and cfg.audio_branch == "gru":
            branches["a"] = RecurrentBranch(cfg.d)
        elif "a" in cfg.modalities and cfg.audio_branch == "agru":
            branches["a"] = AGRU(cfg.d, cfg.heads, cfg.dropout)
        if "t" in cfg.modalities:
            branches["t"] = AGRU(cfg.d, cfg.heads, cfg.dropout)
        if "v" in cfg.modalities:
            branches["v"] = AGRULVC(cfg.d, cfg.heads, cfg.lvc_codewords, cfg.dropout)
        self.branches = nn.ModuleDict(branches)  # in the paper audio has none: X^a is the projected sequence
        n = len(cfg.modalities)
        if n == 3:
            self.fusion = nn.ModuleList(
                GatedCrossModalBlock(cfg.d, cfg.heads, cfg.ff_mult, cfg.dropout, cfg.use_gate)
                for _ in range(cfg.n_blocks)
            )
        elif n == 2:
            self.fusion = nn.ModuleList(
                CrossModalBlock(cfg.d, cfg.heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.n_blocks)
            )
        else:
            self.fusion = nn.ModuleList()
        # The pre-norm stack leaves its output unnormalised; a final LayerNorm as in MulT's encoder.
        self.fusion_norm = LayerNorm(cfg.d) if n > 1 else nn.Identity()
        self.shared = Linear(cfg.d, cfg.shared_dim) if cfg.uses_margin else None
        self.pool = TimePool(cfg.d, cfg.pooling)
        self.head = ClassifierHead(cfg.d, n_classes, cfg.dropout, in_dim=self.pool.out_dim)

    def set_input_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Per-channel (mean, std) of each modality's stored features, from the training split.

        Modalities not in ``stats`` keep the identity standardisation (mean 0, std 1).
        """
        for name, (mean, std) in stats.items():
            if name not in self.inputs:
                raise ValueError(f"input statistics for {name!r}, which this model does not read ({sorted(self.inputs)})")
            self.inputs[name].set_stats(mean, std)

    def forward_features(self, batch: dict[str, tuple[Tensor, Tensor]], prepared: bool = False,
                         check: bool = True) -> dict[str, Tensor]:
        """Branch outputs and the fused stream.

        Keys: ``x_<m>`` (B, T_m', d) and ``mask_<m>`` (B, T_m') for each modality m (the UNFUSED
        X^a, X^t, X^v after frame pooling, padding 0), ``fused`` (B, T_f, d) and ``fused_mask``
        (B, T_f): the final stream (the audio timeline with two or three modalities; the single
        branch's own with one).
        """
        missing = [m for m in self.cfg.modalities if m not in batch]
        if missing:
            raise ValueError(f"batch lacks modalities {missing} (model reads {list(self.cfg.modalities)})")
        feats: dict[str, Tensor] = {}
        for m in self.cfg.modalities:
            x, mask = self.inputs[m](*batch[m], prepared=prepared, check=check)
            if m in self.branches:
                x = self.branches[m](x, mask)
            feats[f"x_{m}"], feats[f"mask_{m}"] = x, mask
        mods = self.cfg.modalities
        if len(mods) == 1:
            fused, fused_mask = feats[f"x_{mods[0]}"], feats[f"mask_{mods[0]}"]
        else:
            fused, fused_mask = feats["x_a"], feats["mask_a"]
            if len(mods) == 3:
                for block in self.fusion:
                    fused = block(fused, feats["x_t"], feats["mask_t"], feats["x_v"], feats["mask_v"])
            else:
                other = mods[1]
                for block in self.fusion:
                    fused = block(fused, feats[f"x_{other}"], feats[f"mask_{other}"])
            fused = self.fusion_norm(fused)
        feats["fused"], feats["fused_mask"] = fused, fused_mask
        return feats

    def forward_head(self, features: dict[str, Tensor]) -> ModelOutput:
        """Time pooling of the fused stream -> classifier; z from the unfused streams (three modalities)."""
        embedding = self.pool(features["fused"], features["fused_mask"])
        logits = self.head(embedding)
        z = None
        if self.shared is not None:
            pooled = [masked_mean(features[f"x_{m}"], features[f"mask_{m}"]) for m in self.cfg.modalities]
            z = self.shared(torch.stack(pooled, dim=-2))
        return ModelOutput(logits=logits, z=z, embedding=embedding)

    def forward(self, batch: dict[str, tuple[Tensor, Tensor]], prepared: bool = False, check: bool = True) -> ModelOutput:
        """``prepared`` and ``check``: see :meth:`ModalityInput.forward`."""
        return self.forward_head(self.forward_features(batch, prepared, check))


def build_model(cfg: ModelConfig, inputs: dict[str, InputSpec], n_classes: int) -> EmotionModel:
    """The head for ``cfg`` over stored feature sets ``inputs`` (keyed by modality) and C = n_classes."""
    return EmotionModel(cfg, inputs, n_classes)
