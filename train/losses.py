"""Losses of the head: the margin loss of homogeneous feature discrepancy learning (paper Eq. 6) and Eq. 8."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from train.model import ModelOutput

# Anchors per chunk are chosen so that one (chunk, N, N) slab stays under this many elements
# (16 Mi, 64 MiB of float32): at batch 64 with three modalities (N = 192) the whole cube is one slab.
_MAX_SLAB = 1 << 24


def _hinge_sum(cos_rows: Tensor, positive: Tensor, negative: Tensor, alpha: float | Tensor) -> Tensor:
    """Sum of max(0, alpha - cos[i, j] + cos[i, k]) over valid (j, k) for anchors i: all (..., c, N) -> (...).

    ``alpha``: a number, or one per leading index (a tensor of the leading shape)."""
    if isinstance(alpha, Tensor):
        alpha = alpha[..., None, None, None]
    hinge = torch.relu(alpha - cos_rows.unsqueeze(-1) + cos_rows.unsqueeze(-2))  # (..., c, j, k)
    valid = positive.unsqueeze(-1) & negative.unsqueeze(-2)
    return torch.where(valid, hinge, torch.zeros((), dtype=hinge.dtype, device=hinge.device)).sum(dim=(-3, -2, -1))


def margin_loss(z: Tensor, labels: Tensor, alpha: float | Tensor = 0.5) -> Tensor:
    """Paper Eq. 6 over one batch: z (B, M, D), labels (B,) -> scalar; with a leading member axis
    (stacked ensemble members) z (K, B, M, D), labels (K, B), ``alpha`` a number or (K,) -> (K,).

    The elements are the pairs (b, m), i = b * M + m, with modality m[i] = m and class c[i] = labels[b].
    The triplet set holds every (i, j, k) with m[i] != m[j], m[i] == m[k], c[i] == c[j], c[i] != c[k];
    the loss is the mean over it of max(0, alpha - cos(z_i, z_j) + cos(z_i, z_k)), and 0 (still part
    of the graph, with zero gradient) where it is empty. Computed from one (N, N) cosine matrix,
    N = B * M, with masked tensor algebra: the (anchor, j, k) cube at once up to _MAX_SLAB elements,
    beyond that in anchor chunks recomputed in the backward pass (never a Python loop over triplets).
    """
    if z.dim() not in (3, 4):
        raise ValueError(f"z must have shape (B, M, D) or (K, B, M, D), got {tuple(z.shape)}")
    lead, (batch, mods) = z.shape[:-3], z.shape[-3:-1]
    if labels.shape != lead + (batch,):
        raise ValueError(f"labels must have shape {tuple(lead) + (batch,)}, got {tuple(labels.shape)}")
    n = batch * mods
    unit = F.normalize(z.reshape(lead + (n, z.shape[-1])), dim=-1)
    cos = unit @ unit.transpose(-2, -1)  # (..., N, N)
    modality = torch.arange(mods, device=z.device).repeat(batch)
    cls = labels.to(z.device).repeat_interleave(mods, dim=-1)
    same_mod = modality.unsqueeze(0) == modality.unsqueeze(1)
    same_cls = cls.unsqueeze(-1) == cls.unsqueeze(-2)
    positive = ~same_mod & same_cls  # (i, j): other modality, same class
    negative = same_mod & ~same_cls  # (i, k): same modality, other class
    # An empty triplet set has a hinge sum of exactly 0: dividing by max(count, 1) gives the 0 without
    # a host synchronisation, so the step batches over ensemble members.
    count = (positive.sum(dim=-1) * negative.sum(dim=-1)).sum(dim=-1).clamp_min(1)
    chunk = max(1, _MAX_SLAB // (math.prod(lead) * n * n))
    if chunk >= n:
        return _hinge_sum(cos, positive, negative, alpha) / count.to(cos.dtype)
    total = z.sum(dim=(-3, -2, -1)) * 0.0
    # Several slabs: recompute each in the backward pass, so the graph never holds the whole cube.
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        total = total + checkpoint(_hinge_sum, cos[..., rows, :], positive[..., rows, :], negative[..., rows, :], alpha,
                                   use_reentrant=False)
    return total / count.to(total.dtype)


def loss_terms(out: ModelOutput, labels: Tensor, lam: float | Tensor, alpha: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Paper Eq. 8 without host synchronisation: (CE + lam * L_mar, CE, L_mar), all tensors.

    With z None (fewer than three modalities) L_mar is 0. Stacked ensemble members (logits (K, B, C),
    labels (K, B)) give one value of each per member, (K,); ``lam`` and ``alpha`` may then be (K,)
    tensors. With lam == 0 the margin adds exactly 0 to the loss and its gradient, and L_mar is still
    reported for the lambda = 0 ablation."""
    logits = out.logits
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    ce = ce.view(labels.shape).mean(dim=-1)
    if out.z is None:
        return ce, ce.detach(), torch.zeros_like(ce)
    if isinstance(lam, (int, float)) and lam == 0:
        with torch.no_grad():
            mar = margin_loss(out.z, labels, alpha)
        return ce, ce.detach(), mar
    mar = margin_loss(out.z, labels, alpha)
    return ce + lam * mar, ce.detach(), mar.detach()


def total_loss(out: ModelOutput, labels: Tensor, lam: float, alpha: float) -> tuple[Tensor, dict[str, float]]:
    """Paper Eq. 8: CE + lam * L_mar -> (loss, {"ce": ..., "margin": ...}) (:func:`loss_terms`, as floats)."""
    loss, ce, mar = loss_terms(out, labels, lam, alpha)
    return loss, {"ce": float(ce), "margin": float(mar)}
