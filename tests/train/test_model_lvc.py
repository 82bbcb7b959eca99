"""The Learnable Visual Center against its formula written frame by frame, and its BatchNorm choices."""
from __future__ import annotations

import torch

from train.lvc import AGRULVC, LearnableVisualCenter


def _direct(lvc: LearnableVisualCenter, x: torch.Tensor, n_real: int) -> torch.Tensor:
    """One utterance x (T, d) with n_real real frames, each step of the formula spelled out."""
    codewords, smoothing = lvc.codewords, lvc.smoothing
    k_count = codewords.shape[0]
    encoded = torch.zeros(k_count, x.shape[1], dtype=x.dtype)
    for i in range(n_real):
        logits = torch.stack([-smoothing[k] * ((x[i] - codewords[k]) ** 2).sum() for k in range(k_count)])
        assign = torch.softmax(logits, dim=0)
        for k in range(k_count):
            encoded[k] += assign[k] * (x[i] - codewords[k])
    normed = lvc.bn(encoded.unsqueeze(0))[0]  # eval mode: running statistics
    centre = torch.relu(normed).mean(dim=0)
    scale = torch.sigmoid(lvc.fc(centre))
    out = torch.zeros_like(x)
    out[:n_real] = x[:n_real] * scale
    return out


def test_lvc_matches_its_formula_and_ignores_padding():
    torch.manual_seed(0)
    lvc = LearnableVisualCenter(dim=6, codewords=3).double()
    with torch.no_grad():  # a trained-looking state: non-trivial smoothing and BN statistics
        lvc.smoothing.copy_(torch.tensor([0.2, 0.5, 1.0]))
        lvc.bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1]))
        lvc.bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    lvc.eval()
    x = torch.randn(2, 5, 6, dtype=torch.double)
    x[1, 3:] = float("nan")
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        out = lvc(x, mask)
        torch.testing.assert_close(out[0], _direct(lvc, x[0], 5))
        torch.testing.assert_close(out[1], _direct(lvc, x[1], 3))


def test_video_branch_trains_at_batch_size_one_and_is_batch_independent_in_eval():
    torch.manual_seed(1)
    branch = AGRULVC(dim=8, heads=2, codewords=4, dropout=0.0)
    x = torch.randn(3, 5, 8)
    mask = torch.ones(3, 5, dtype=torch.bool)
    branch.train()
    branch(x[:1], mask[:1]).sum().backward()  # BatchNorm1d(K) takes statistics over d values per codeword
    assert branch.local_branch.codewords.grad is not None
    branch.eval()
    with torch.no_grad():
        torch.testing.assert_close(branch(x, mask)[2:], branch(x[2:], mask[2:]), atol=1e-6, rtol=0)
