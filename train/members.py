"""Layers whose weights may carry a leading member axis: one model, or K stacked ensemble members.

A model built from these runs the same code either way. With one model's weights (``Linear.weight``
(out, in)) it is ordinary torch; with weights stacked over K members (``torch.func.stack_module_state``:
(K, out, in)), passed in with ``torch.func.functional_call``, every input carries the member axis in
front ((K, B, T, D)) and each operator runs once for all K members: a batched matmul instead of K
matmuls. K folds then pay the head's many small operators once, and only its arithmetic K times
(``vmap`` over the member axis, used before, paid about twice a one-member operator for each of
them: bench/RESULTS.md).

Every layer of the head therefore (a) reaches its weights through :func:`linear`, :func:`stacked` and
the classes below, and (b) indexes the other axes from the right (``dim=-2``, ``x.shape[:-2]``), so a
leading member axis passes through. Parameter and buffer names are torch's own, so checkpoints are
plain state_dicts of one model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def stacked(p: Tensor, plain_dim: int, ndim: int) -> Tensor:
    """A weight as it broadcasts against a tensor of ``ndim`` axes: one model's (``plain_dim`` axes) as
    it is; stacked members' (K, ...) with singleton axes after K, so that K meets the leading member axis."""
    if p.dim() == plain_dim:
        return p
    return p.reshape(p.shape[:1] + (1,) * (ndim - p.dim()) + p.shape[1:])


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` for one model's weight (out, in), or per member for a stacked one (K, out, in) with
    x (K, ..., in) -> (K, ..., out): one batched matmul over the members."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    flat = x.reshape(weight.shape[0], -1, x.shape[-1])
    wt = weight.transpose(1, 2)
    out = torch.bmm(flat, wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, wt)
    return out.view(x.shape[:-1] + (weight.shape[1],))


class Linear(nn.Linear):
    """``nn.Linear`` that also takes stacked members' weights (:func:`linear`)."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis that also takes stacked members' weights (K, d)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.dim() == 1:
            return super().forward(x)
        y = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        return y * stacked(self.weight, 1, x.dim()) + stacked(self.bias, 1, x.dim())


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on (B, C, L) inputs that also takes stacked members ((K, B, C, L), weights and
    statistics (K, C)): each member normalises with its own batch statistics and updates its own running
    statistics, as K separate layers would."""

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.dim() == 1:
            return super().forward(x)
        k, batch, channels = x.shape[:3]
        if self.training:
            self.num_batches_tracked.add_(1)
        # Members side by side as channels: (B, K * C, L); the statistics' flat views are updated in place.
        flat = x.transpose(0, 1).reshape(batch, k * channels, -1)
        out = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1), self.weight.reshape(-1),
                           self.bias.reshape(-1), self.training, self.momentum, self.eps)
        return out.view(batch, k, channels, -1).transpose(0, 1)
