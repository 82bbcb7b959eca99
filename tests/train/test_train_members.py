"""Layers with stacked members' weights (train/members.py) give each member what its own model gives."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, stack_module_state

from train.members import BatchNorm1d, LayerNorm, Linear, linear
from train.model import InputSpec, ModelConfig, build_model

K = 3


def _stacked_call(models, *inputs, **kwargs):
    """Run K models as one on their stacked weights; inputs carry the member axis in front."""
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    return functional_call(base, (params, buffers), inputs, kwargs), params, buffers


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_each_member(bias):
    torch.manual_seed(0)
    layers = [Linear(7, 5, bias=bias) for _ in range(K)]
    x = torch.randn(K, 4, 2, 7)
    out, _, _ = _stacked_call(layers, x)
    assert out.shape == (K, 4, 2, 5)
    for k in range(K):
        torch.testing.assert_close(out[k], torch.nn.functional.linear(x[k], layers[k].weight, layers[k].bias))


def test_linear_gradient_reaches_each_member_weight():
    torch.manual_seed(1)
    w = torch.randn(K, 5, 7, requires_grad=True)
    x = torch.randn(K, 4, 7)
    (linear(x, w) ** 2).sum().backward()
    for k in range(K):
        wk = w[k].detach().clone().requires_grad_(True)
        (torch.nn.functional.linear(x[k], wk) ** 2).sum().backward()
        torch.testing.assert_close(w.grad[k], wk.grad)


def test_layer_norm_matches_each_member():
    torch.manual_seed(2)
    norms = [LayerNorm(6) for _ in range(K)]
    for n in norms:
        torch.nn.init.normal_(n.weight)
        torch.nn.init.normal_(n.bias)
    x = torch.randn(K, 4, 3, 6)
    out, _, _ = _stacked_call(norms, x)
    for k in range(K):
        torch.testing.assert_close(out[k], torch.nn.functional.layer_norm(x[k], (6,), norms[k].weight, norms[k].bias))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_normalises_and_tracks_each_member_alone(training):
    torch.manual_seed(3)
    norms = [BatchNorm1d(4) for _ in range(K)]
    for n in norms:
        torch.nn.init.normal_(n.weight)
        n.running_mean.normal_()
        n.running_var.uniform_(0.5, 2.0)
        n.train(training)
    x = torch.randn(K, 5, 4, 6) * torch.arange(1, K + 1).view(K, 1, 1, 1)  # members' statistics differ
    out, _, buffers = _stacked_call(norms, x)
    for k in range(K):
        alone = copy.deepcopy(norms[k])
        torch.testing.assert_close(out[k], alone(x[k]))
        torch.testing.assert_close(buffers["running_mean"][k], alone.running_mean)
        torch.testing.assert_close(buffers["running_var"][k], alone.running_var)
        assert int(buffers["num_batches_tracked"][k]) == int(alone.num_batches_tracked)


MODES = [("a",), ("t",), ("v",), ("a", "t"), ("a", "v"), ("a", "t", "v")]


OPTIONS = {"paper": {}, "stats-agru": {"pooling": "stats", "audio_branch": "agru"}, "pool2": {"frame_pool": 2}}
CASES = [(m, name) for m in MODES for name in OPTIONS] + [(("a", "t", "v"), "no-gate")]
OPTIONS["no-gate"] = {"gate": False, "audio_branch": "gru"}


@pytest.mark.parametrize(("modalities", "option"), CASES, ids=["+".join(m) + "-" + o for m, o in CASES])
def test_whole_head_stacked_equals_each_member(modalities, option):
    """Every ablation mode and head option: the stacked head's logits, z and gradients are each member's own."""
    options = OPTIONS[option]
    torch.manual_seed(4)
    cfg = ModelConfig(modalities=modalities, d=16, heads=2, n_blocks=2, lvc_codewords=4, dropout=0.0, **options)
    specs = {"a": InputSpec(10, layers=3), "t": InputSpec(8), "v": InputSpec(12)}
    models = [build_model(cfg, specs, 4) for _ in range(K)]
    frames = {"a": 7, "t": 5, "v": 6}
    batch = {}
    for m in modalities:
        shape = (K, 3) + ((3,) if specs[m].layers else ()) + (frames[m], specs[m].dim)
        lengths = torch.randint(1, frames[m] + 1, (K, 3))
        mask = torch.arange(frames[m]) < lengths.unsqueeze(-1)
        batch[m] = (torch.randn(shape), mask)
    for model in models:
        model.train()  # BatchNorm in the video branch normalises with its batch
    out, params, _ = _stacked_call(models, batch, check=False)
    (out.logits.square().sum() + (0 if out.z is None else out.z.sum())).backward()
    for k, model in enumerate(models):
        mine = model({m: (x[k], mask[k]) for m, (x, mask) in batch.items()})
        torch.testing.assert_close(out.logits[k], mine.logits, atol=1e-5, rtol=1e-4)
        if mine.z is not None:
            torch.testing.assert_close(out.z[k], mine.z, atol=1e-5, rtol=1e-4)
        (mine.logits.square().sum() + (0 if mine.z is None else mine.z.sum())).backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(params[name].grad[k], p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_checkpointed_member_state_is_contiguous_and_loads_into_one_model():
    """The ensemble holds weight matrices in (K, in, out) memory order; a member's state_dict is plain."""
    from train.config import TrainConfig
    from train.ensemble import Ensemble

    torch.manual_seed(5)
    cfg = TrainConfig(model=ModelConfig(modalities=("t",), d=8, heads=2, n_blocks=1, dropout=0.0))
    models = [build_model(cfg.model, {"t": InputSpec(6)}, 3) for _ in range(2)]
    ens = Ensemble([cfg, cfg], models, prepared=False)
    assert not ens.params["head.fc1.weight"].is_contiguous()
    state = ens.state(1)
    assert all(t.is_contiguous() for t in state.values())
    fresh = build_model(cfg.model, {"t": InputSpec(6)}, 3)
    fresh.load_state_dict(state)
    for name, p in fresh.state_dict().items():
        torch.testing.assert_close(p, models[1].state_dict()[name])
