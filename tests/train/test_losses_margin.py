"""The margin loss (paper Eq. 6) against a direct loop over every triplet, and Eq. 8."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import train.losses as losses
from train.losses import margin_loss, total_loss
from train.model import ModelOutput


def _reference(z: np.ndarray, labels: np.ndarray, alpha: float) -> float:
    """Eq. 6 written out: every element pair (b, m), every triplet by three nested loops."""
    batch, mods, _ = z.shape
    items = [(b, m) for b in range(batch) for m in range(mods)]

    def cos(p, q):
        u, v = z[p], z[q]
        return float(np.dot(u, v) / (max(np.linalg.norm(u), 1e-12) * max(np.linalg.norm(v), 1e-12)))

    terms = []
    for bi, mi in items:
        for bj, mj in items:
            for bk, mk in items:
                if mi != mj and mi == mk and labels[bi] == labels[bj] and labels[bi] != labels[bk]:
                    terms.append(max(0.0, alpha - cos((bi, mi), (bj, mj)) + cos((bi, mi), (bk, mk))))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_margin_loss_matches_triplet_loop(seed):
    rng = np.random.default_rng(seed)
    batch = int(rng.integers(2, 9))
    mods = int(rng.integers(2, 4))
    classes = int(rng.integers(2, 4))
    labels = rng.integers(0, classes, size=batch)
    z = rng.normal(size=(batch, mods, 5))
    alpha = float(rng.choice([0.1, 0.5, 1.0]))
    got = margin_loss(torch.tensor(z), torch.tensor(labels), alpha)
    assert math.isclose(float(got), _reference(z, labels, alpha), rel_tol=1e-9, abs_tol=1e-12)


def test_margin_loss_chunked_anchors_give_the_same_value_and_gradient(monkeypatch):
    rng = np.random.default_rng(11)
    z_np = rng.normal(size=(7, 3, 4))
    labels = np.array([0, 1, 1, 2, 0, 1, 2])

    def value_and_grad():
        z = torch.tensor(z_np, requires_grad=True)
        loss = margin_loss(z, torch.tensor(labels), 0.5)
        loss.backward()
        return loss.item(), z.grad

    whole, whole_grad = value_and_grad()
    monkeypatch.setattr(losses, "_MAX_SLAB", 21 * 21 * 2)  # two anchors per slab, 11 slabs
    chunked, chunked_grad = value_and_grad()
    assert math.isclose(chunked, whole, rel_tol=1e-12)
    assert math.isclose(chunked, _reference(z_np, labels, 0.5), rel_tol=1e-9)
    torch.testing.assert_close(chunked_grad, whole_grad, rtol=1e-12, atol=1e-12)


def test_margin_loss_has_the_gradient_of_the_loop():
    rng = np.random.default_rng(3)
    labels = torch.tensor([0, 1, 0, 2])
    z = torch.tensor(rng.normal(size=(4, 3, 6)), requires_grad=True)
    margin_loss(z, labels, 0.5).backward()
    eps = 1e-6
    numeric = np.zeros(z.shape)
    base = z.detach().numpy()
    for idx in np.ndindex(*z.shape):
        up, down = base.copy(), base.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (_reference(up, labels.numpy(), 0.5) - _reference(down, labels.numpy(), 0.5)) / (2 * eps)
    np.testing.assert_allclose(z.grad.numpy(), numeric, atol=1e-6)


@pytest.mark.parametrize(
    "labels, mods",
    [([2, 2, 2, 2], 3), ([1], 3), ([0, 1, 2], 1)],
    ids=["one-class", "one-sample", "one-modality"],
)
def test_no_triplet_gives_a_differentiable_zero(labels, mods):
    z = torch.randn(len(labels), mods, 4, requires_grad=True)
    loss = margin_loss(z, torch.tensor(labels), 0.5)
    assert loss.requires_grad and loss.item() == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_margin_loss_is_zero_past_the_margin_and_pays_the_shortfall():
    # Modality features equal to a one-hot of the class: positives cos 1, negatives cos 0.
    labels = torch.tensor([0, 1, 2, 0])
    z = torch.nn.functional.one_hot(labels, 3).float().unsqueeze(1).expand(-1, 3, -1)
    assert float(margin_loss(z, labels, 0.5)) == 0.0
    assert math.isclose(float(margin_loss(z, labels, 1.5)), 0.5, rel_tol=1e-6)


def test_margin_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"z must have shape \(B, M, D\)"):
        margin_loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        margin_loss(torch.randn(4, 3, 2), torch.zeros(5, dtype=torch.long))


def test_total_loss_is_ce_plus_lambda_margin():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 2])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    mar = margin_loss(z, labels, 0.3)
    loss, parts = total_loss(ModelOutput(logits=logits, z=z), labels, lam=0.1, alpha=0.3)
    assert torch.allclose(loss, ce + 0.1 * mar)
    assert parts == pytest.approx({"ce": ce.item(), "margin": mar.item()})

    loss0, parts0 = total_loss(ModelOutput(logits=logits, z=z), labels, lam=0.0, alpha=0.3)
    assert torch.allclose(loss0, ce)
    assert parts0["margin"] == pytest.approx(mar.item())  # still reported for the lambda = 0 ablation
    loss0.backward()
    assert z.grad is None

    loss_none, parts_none = total_loss(ModelOutput(logits=logits, z=None), labels, lam=1.0, alpha=0.3)
    assert torch.allclose(loss_none, ce) and parts_none["margin"] == 0.0
