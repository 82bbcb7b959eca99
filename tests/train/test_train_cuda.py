"""The CUDA-only parts of training: device-resident inputs, TF32/bf16 and graph capture (``compile``).

They run only where torch sees a GPU; CI has none and skips them. ``bench/gpu.sh`` runs this file
first on a lent GPU machine, before it times anything.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from train.cv import fold_members
from train.data import load_features
from train.dispatch import train_grouped

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def folds(small_corpus, tiny_cfg):
    """Trains the corpus's folds as one ensemble with ``tiny_cfg`` (dropout off unless overridden) and the given overrides."""
    _, store, rows = small_corpus
    cfg = tiny_cfg.replace(dropout=0.0)
    data = load_features(rows, [store], cfg.sets, ("a", "t", "v"))

    def train(**overrides):
        return train_grouped(fold_members(cfg.replace(**overrides), rows, None), rows, data, progress=False)

    return train


def losses(results) -> np.ndarray:
    return np.array([[h["train_loss"] for h in r.history] for r in results])


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_cuda_ensemble_trains_as_on_the_cpu(folds, dropout):
    """Dropout too: its masks are a hash of seed, step and coordinates (train.dropout), the same on both."""
    cpu, gpu = folds(dropout=dropout), folds(device="cuda", dropout=dropout)
    np.testing.assert_allclose(losses(gpu), losses(cpu), rtol=1e-3)
    for c, g in zip(cpu, gpu):
        assert g.best_epoch == c.best_epoch
        assert abs(g.metrics["wf1"] - c.metrics["wf1"]) <= 0.05


def test_a_cuda_run_is_reproducible(folds):
    first, again = folds(device="cuda"), folds(device="cuda")
    np.testing.assert_array_equal(losses(again), losses(first))
    assert [r.metrics for r in again] == [r.metrics for r in first]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_captured_step_trains_as_the_eager_one(folds, dropout):
    eager, captured = folds(device="cuda", dropout=dropout), folds(device="cuda", compile=True, dropout=dropout)
    np.testing.assert_allclose(losses(captured), losses(eager), rtol=1e-3)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_trains_near_fp32(folds, precision):
    fp32, reduced = folds(device="cuda"), folds(device="cuda", precision=precision)
    assert np.isfinite(losses(reduced)).all()
    np.testing.assert_allclose(losses(reduced), losses(fp32), rtol=0.05)


def test_inputs_that_would_not_fit_on_the_gpu_train_from_the_host(folds, monkeypatch, capsys):
    import train.batches

    resident = folds(device="cuda")
    monkeypatch.setattr(train.batches, "DEVICE_HEADROOM", 1.0)  # no room: every run pads on the host
    host = folds(device="cuda")
    assert "do not fit on the GPU" in capsys.readouterr().err
    np.testing.assert_allclose(losses(host), losses(resident), rtol=1e-5)


def test_cuda_runs_the_fused_gru_and_it_equals_the_stepped_one(monkeypatch):
    """On CUDA masked_gru takes cuDNN's kernel per member and direction, silently (no weight-layout
    warning escapes), with the stepped recurrence's outputs and gradients (TF32 off)."""
    from types import SimpleNamespace

    import train.layers
    from train.layers import BiGRUWeights, masked_gru

    calls = []
    fused_gru = train.layers._fused_gru
    monkeypatch.setattr(train.layers, "_fused_gru", lambda *args: calls.append(1) or fused_gru(*args))
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    params, _ = torch.func.stack_module_state([BiGRUWeights(16, 8).cuda() for _ in range(3)])
    gru = SimpleNamespace(hidden_size=8, **params)
    x = torch.randn(3, 4, 9, 16, device="cuda", requires_grad=True)
    mask = torch.arange(9, device="cuda") < torch.tensor([[9, 2, 5, 1], [3, 9, 9, 4], [6, 7, 8, 9]], device="cuda")[..., None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = masked_gru(gru, x, mask)
        grads = torch.autograd.grad(fused.pow(2).sum(), [x, *params.values()])
    assert calls
    stepped = masked_gru(gru, x, mask, fused=False)
    stepped_grads = torch.autograd.grad(stepped.pow(2).sum(), [x, *params.values()])
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(fused, stepped, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, stepped_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("members", [None, 3])
def test_the_gru_operator_of_compiled_steps_passes_torch_s_checks_on_cuda(check_gru_operator, members):
    """``emocache::gru_direction`` on CUDA: cuDNN's kernel inside an operator, its backward cuDNN's
    forward again under ``torch.func.vjp``; the same checks as on the CPU (see the fixture)."""
    check_gru_operator("cuda", members)
