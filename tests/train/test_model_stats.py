"""Input standardisation: training-split statistics are model buffers, so checkpoints carry them."""
from __future__ import annotations

import torch

from train.model import InputSpec, ModelConfig, build_model


def _batch(B=3, T=7, D=5, L=None, scale=50.0, shift=30.0):
    g = torch.Generator().manual_seed(0)
    shape = (B, L, T, D) if L else (B, T, D)
    x = torch.randn(shape, generator=g) * scale + shift
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False
    return x, mask


def _model(L=None):
    torch.manual_seed(0)
    cfg = ModelConfig(modalities=("a",), d=8, heads=2, n_blocks=1, dropout=0.0)
    return build_model(cfg, {"a": InputSpec(dim=5, layers=L)}, n_classes=3).eval()


def test_stats_standardise_exactly_like_prestandardised_inputs():
    x, mask = _batch()
    mean, std = x[mask].mean(0), x[mask].std(0)
    with_stats = _model()
    with_stats.set_input_stats({"a": (mean, std)})
    plain = _model()
    expected = plain({"a": ((x - mean) / std, mask)}).logits
    got = with_stats({"a": (x, mask)}).logits
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain({"a": (x, mask)}).logits)


def test_layered_stats_are_per_layer():
    x, mask = _batch(L=2)
    x[:, 1] += 100.0
    frames = x.permute(1, 0, 2, 3)[:, mask]  # (L, frames, D)
    mean, std = frames.mean(1), frames.std(1)
    model = _model(L=2)
    model.set_input_stats({"a": (mean, std)})
    expected = _model(L=2)({"a": ((x - mean[None, :, None]) / std[None, :, None], mask)}).logits
    torch.testing.assert_close(model({"a": (x, mask)}).logits, expected)


def test_stats_travel_in_the_state_dict_and_constant_channels_are_not_scaled():
    model = _model()
    std = torch.tensor([2.0, 0.0, 1.0, 1.0, 1.0])
    model.set_input_stats({"a": (torch.ones(5), std)})
    state = model.state_dict()
    assert torch.equal(state["inputs.a.feat_mean"], torch.ones(5))
    assert state["inputs.a.feat_std"].tolist() == [2.0, 1.0, 1.0, 1.0, 1.0]
    fresh = _model()
    fresh.load_state_dict(state)
    x, mask = _batch()
    torch.testing.assert_close(fresh({"a": (x, mask)}).logits, model({"a": (x, mask)}).logits)


def test_input_stats_use_only_the_frames_of_the_given_utterances():
    import numpy as np

    from train.data import FeatureData, ModalityData
    from train.stats import input_stats

    rng = np.random.default_rng(0)
    lengths = [3, 5, 2, 4]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    data = rng.normal(size=(2, offsets[-1], 6)).astype(np.float16)  # two layers
    data[:, offsets[3]:] += 1000.0  # utterance 3 (not in the index) would move the stats a lot
    md = ModalityData("audio", data, offsets, dim=6, layers=2, provenance={}, identity="x")
    fd = FeatureData(["u0", "u1", "u2", "u3"], None, ("a", "b"), np.array([0, 1, 0, 1]), {"a": md})
    mean, std = input_stats(fd, [0, 1, 2])["a"]
    frames = data[:, : offsets[3]].astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), frames.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), frames.std(axis=1), rtol=1e-4, atol=1e-6)
    assert mean.shape == (2, 6)
