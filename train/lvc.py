"""The video branch A-GRU-LVC (paper 2.1, Fig. 1): a global A-GRU and a local Learnable Visual Center.

The LVC follows CFPNet's EVC over a frame sequence instead of a pixel grid.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from train.layers import AGRU, zero_padding
from train.members import BatchNorm1d, LayerNorm, Linear, linear, stacked


class LearnableVisualCenter(nn.Module):
    """Learnable Visual Center: x (B, T, d), mask (B, T) -> (B, T, d), padding frames 0.

    K codewords c_k with smoothing factors s_k:
      a_ik = softmax_k(-s_k * ||x_i - c_k||^2)
      e_k  = sum over REAL frames i of a_ik (x_i - c_k)                     (B, K, d)
      E    = mean_k ReLU(BN(e_k))                                            (B, d)
      out_i = x_i * sigmoid(W E)      the same channel scaling for every frame

    BN is ``BatchNorm1d(K)`` over the (B, K, d) residuals, as in CFPNet: one statistic per codeword,
    taken over B * d values, so it is well defined at batch size 2 and even 1 in training. In eval mode
    it uses its running statistics, so a sample's output never depends on its batch neighbours; in
    training, as with any BatchNorm, it does.

    Initialisation (ours; CFPNet's draws s_k at random): the inputs are LayerNormed, so c_k ~ N(0, 1)
    matches their scale, and every s_k starts at 1/sqrt(d). Equal s_k keep the common ||x_i||^2 term
    from favouring one codeword, and 1/sqrt(d) gives assignment logits of unit-order spread: soft, not
    uniform.
    """

    def __init__(self, dim: int, codewords: int):
        super().__init__()
        if codewords < 1:
            raise ValueError(f"the LVC needs at least one codeword, got {codewords}")
        self.codewords = nn.Parameter(torch.randn(codewords, dim))
        self.smoothing = nn.Parameter(torch.full((codewords,), 1.0 / math.sqrt(dim)))
        self.bn = BatchNorm1d(codewords)
        self.fc = Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = zero_padding(x, mask)
        nd = x.dim()
        # ||x_i - c_k||^2 expanded, so no (B, T, K, d) tensor is built.
        dist = (
            x.pow(2).sum(-1, keepdim=True)
            - 2.0 * linear(x, self.codewords)
            + stacked(self.codewords.pow(2).sum(-1), 1, nd)
        )  # (B, T, K)
        assign = torch.softmax(-stacked(self.smoothing, 1, nd) * dist, dim=-1)
        assign = assign * mask.unsqueeze(-1).to(assign.dtype)
        # e_k = sum_i a_ik x_i - (sum_i a_ik) c_k
        encoded = assign.transpose(-2, -1) @ x - assign.sum(dim=-2).unsqueeze(-1) * stacked(self.codewords, 2, nd)  # (B, K, d)
        centre = torch.relu(self.bn(encoded)).mean(dim=-2)  # (B, d)
        scale = torch.sigmoid(self.fc(centre)).unsqueeze(-2)  # (B, 1, d)
        return zero_padding(x * scale, mask)


class AGRULVC(nn.Module):
    """A-GRU-LVC: X^v = LayerNorm(AGRU(x) + LVC(x)); x (B, T, d), mask (B, T) -> (B, T, d), padding 0."""

    def __init__(self, dim: int, heads: int, codewords: int, dropout: float):
        super().__init__()
        self.global_branch = AGRU(dim, heads, dropout)
        self.local_branch = LearnableVisualCenter(dim, codewords)
        self.norm = LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.global_branch(x, mask) + self.local_branch(x, mask)
        return zero_padding(self.norm(out), mask)
