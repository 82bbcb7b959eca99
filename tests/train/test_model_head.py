"""The stage-2 head: every ablation mode builds, trains and ignores padding; config and input checks."""
from __future__ import annotations

import json

import pytest
import torch

from train.layers import LayerSum, TimePool, masked_pool_time
from train.losses import total_loss
from train.model import MODALITIES, EmotionModel, InputSpec, ModelConfig, build_model

N_CLASSES = 4
DIMS = {"a": 10, "t": 7, "v": 9}
LAYERS = 3
TINY = dict(d=16, heads=2, n_blocks=2, lvc_codewords=4, ff_mult=2)

# id -> (config overrides, audio stored with several layers)
MODES = {
    "A": (dict(modalities=("a",)), False),
    "T": (dict(modalities=("t",)), False),
    "V": (dict(modalities=("v",)), False),
    "A+T": (dict(modalities=("a", "t")), False),
    "A+V": (dict(modalities=("a", "v")), False),
    "A+V+T": (dict(), False),
    "A+V+T-nogate": (dict(gate=False), False),
    "A+V+T-layers": (dict(), True),
    "A+V+T-pool2": (dict(frame_pool=2), False),
    "A-layers-pool2": (dict(modalities=("a",), frame_pool=2), True),
    # Non-paper options: statistics pooling and a recurrent audio branch.
    "A-stats": (dict(modalities=("a",), pooling="stats"), False),
    "A-gru-stats": (dict(modalities=("a",), audio_branch="gru", pooling="stats"), False),
    "A-agru": (dict(modalities=("a",), audio_branch="agru"), False),
    "T-stats": (dict(modalities=("t",), pooling="stats"), False),
    "A+T-gru": (dict(modalities=("a", "t"), audio_branch="gru"), False),
    "A+V+T-stats-gru": (dict(pooling="stats", audio_branch="gru"), False),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny matrices: on a shared 2-core machine, a second intra-op thread only adds waiting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(mode: str, **extra) -> EmotionModel:
    overrides, layered = MODES[mode]
    cfg = ModelConfig(**(TINY | overrides | extra))
    specs = {m: InputSpec(DIMS[m], LAYERS if (m == "a" and layered) else None) for m in MODALITIES}
    return build_model(cfg, specs, N_CLASSES)


def _layered(model: EmotionModel) -> bool:
    return model.inputs["a"].spec.layers is not None if "a" in model.inputs else False


def _features(model: EmotionModel, m: str, frames: int, gen: torch.Generator) -> torch.Tensor:
    if m == "a" and _layered(model):
        return torch.randn(LAYERS, frames, DIMS[m], generator=gen)
    return torch.randn(frames, DIMS[m], generator=gen)


def _collate(model: EmotionModel, rows: list[dict[str, torch.Tensor]], fill: float = float("nan")):
    """Pad each modality to its longest row with ``fill``; masks True on real frames."""
    batch = {}
    for m in rows[0]:
        longest = max(r[m].shape[-2] for r in rows)
        xs, masks = [], []
        for r in rows:
            x = r[m]
            pad_shape = (*x.shape[:-2], longest - x.shape[-2], x.shape[-1])
            xs.append(torch.cat([x, torch.full(pad_shape, fill)], dim=-2))
            masks.append(torch.arange(longest) < x.shape[-2])
        batch[m] = (torch.stack(xs), torch.stack(masks))
    return batch


def _rows(model, lengths: list[dict[str, int]], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [{m: _features(model, m, n[m], gen) for m in MODALITIES} for n in lengths]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_builds_runs_backward_and_learns(mode):
    torch.manual_seed(0)
    model = _model(mode, dropout=0.0)
    lengths = [dict(a=9, t=5, v=6), dict(a=4, t=3, v=6), dict(a=7, t=6, v=6), dict(a=5, t=2, v=6)]
    batch = _collate(model, _rows(model, lengths))
    labels = torch.tensor([0, 1, 2, 1])
    three = len(model.cfg.modalities) == 3

    out = model(batch)
    assert out.logits.shape == (4, N_CLASSES)
    if three:
        assert out.z is not None and out.z.shape == (4, 3, 16)
    else:
        assert out.z is None

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        loss, parts = total_loss(model(batch), labels, lam=1.0, alpha=0.5)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        first = loss.item() if first is None else first
        if not three:
            assert parts["margin"] == 0.0
    assert loss.item() < 0.5 * first, (first, loss.item())


def _padding_cases():
    for mode, (overrides, _) in MODES.items():
        for padded in (*overrides.get("modalities", MODALITIES), "all"):
            yield pytest.param(mode, padded, id=f"{mode}-pad-{padded}")


@pytest.mark.parametrize("mode, padded", list(_padding_cases()))
def test_padding_never_changes_a_prediction(mode, padded):
    torch.manual_seed(1)
    model = _model(mode).eval()
    short = dict(a=7, t=3, v=5)
    longer = {m: (n + 6 if padded in (m, "all") else n) for m, n in short.items()}
    rows = _rows(model, [longer, short, longer | {"a": longer["a"] + 3}], seed=2)
    with torch.no_grad():
        alone = model(_collate(model, rows[1:2]))
        inside = model(_collate(model, rows))
    torch.testing.assert_close(inside.logits[1:2], alone.logits, atol=1e-5, rtol=0)
    if alone.z is not None:
        torch.testing.assert_close(inside.z[1:2], alone.z, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["A+V+T", "A+V+T-pool2", "A+T", "A+V", "A+V+T-stats-gru"])
def test_every_modality_read_changes_the_prediction(mode):
    torch.manual_seed(2)
    model = _model(mode).eval()
    rows = _rows(model, [dict(a=6, t=4, v=5)], seed=3)
    with torch.no_grad():
        base = model(_collate(model, rows)).logits
        for m in model.cfg.modalities:
            changed = [dict(rows[0])]
            changed[0][m] = rows[0][m] + 1.0
            assert not torch.allclose(model(_collate(model, changed)).logits, base, atol=1e-4), m


def test_forward_features_names_its_streams():
    model = _model("A+V+T-pool2").eval()
    batch = _collate(model, _rows(model, [dict(a=9, t=5, v=6), dict(a=4, t=3, v=6)]))
    feats = model.forward_features(batch)
    assert set(feats) == {"x_a", "mask_a", "x_t", "mask_t", "x_v", "mask_v", "fused", "fused_mask"}
    assert feats["x_a"].shape == (2, 5, 16) and feats["mask_a"].tolist() == [[True] * 5, [True, True, False, False, False]]
    assert feats["x_t"].shape == (2, 3, 16) and feats["x_v"].shape == (2, 3, 16)
    assert feats["fused"].shape == (2, 5, 16) and torch.equal(feats["fused_mask"], feats["mask_a"])
    out = model.forward_head(feats)
    assert torch.equal(out.logits, model(batch).logits)
    assert out.embedding.shape == (2, 16)


def test_stats_pooling_is_the_masked_mean_and_std_and_widens_the_embedding():
    x = torch.tensor([[[1.0], [3.0], [float("nan")]], [[2.0], [2.0], [8.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    pooled = TimePool(1, "stats", eps=0.0)(x, mask)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 1.0], [4.0, 8.0 ** 0.5]]))
    model = _model("A+V+T-stats-gru").eval()
    batch = _collate(model, _rows(model, [dict(a=5, t=3, v=4), dict(a=3, t=2, v=4)]))
    out = model(batch)
    assert out.embedding.shape == (2, 32) and out.z.shape == (2, 3, 16)
    assert "a" in model.branches and "a" not in _model("A").branches
    with pytest.raises(ValueError, match=r"pooling 'max' is not one of \['mean', 'stats'\]"):
        ModelConfig(pooling="max")
    with pytest.raises(ValueError, match=r"audio_branch 'lstm' is not one of \['none', 'gru', 'agru'\]"):
        ModelConfig(audio_branch="lstm")


def test_a_one_frame_utterance_trains_with_stats_pooling():
    # Functionals are stored as one frame per utterance: the std is 0 there, its gradient must stay finite.
    torch.manual_seed(0)
    model = _model("A-stats", dropout=0.0)
    batch = {"a": (torch.randn(4, 1, DIMS["a"]), torch.ones(4, 1, dtype=torch.bool))}
    loss, _ = total_loss(model(batch), torch.tensor([0, 1, 2, 3]), lam=1.0, alpha=0.5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gate_follows_the_ablation_table():
    assert all(b.gate is not None for b in _model("A+V+T").fusion)
    assert all(b.gate is None for b in _model("A+V+T-nogate").fusion)
    assert len(_model("A+T").fusion) == TINY["n_blocks"] and _model("A+T").shared is None
    assert len(_model("V").fusion) == 0 and _model("V").shared is None
    with pytest.raises(ValueError, match="gate=True needs all three modalities"):
        ModelConfig(modalities=("a", "t"), gate=True)


def test_config_json_round_trip_and_canonical_modalities():
    cfg = ModelConfig(modalities=("v", "a", "t"), d=32, heads=8, d_shared=8, gate=False, frame_pool=3)
    assert cfg.modalities == ("a", "t", "v")
    text = json.dumps(cfg.to_json())
    assert ModelConfig.from_json(json.loads(text)) == cfg
    assert ModelConfig.from_json(ModelConfig().to_json()) == ModelConfig()
    with pytest.raises(ValueError, match=r"unknown model config keys \['width'\]"):
        ModelConfig.from_json({"width": 3})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(modalities=("t", "v")), "audio is the query stream"),
        (dict(modalities=()), "non-empty set"),
        (dict(modalities=("a", "x")), r"from \['a', 't', 'v'\]"),
        (dict(d=30, heads=4), "divisible by heads"),
        (dict(d=9, heads=3), "must be even"),
        (dict(dropout=1.0), "dropout must be in"),
        (dict(n_blocks=0), "n_blocks must be a positive integer"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_bad_batches_get_clear_errors():
    model = _model("A+V+T-layers").eval()
    batch = _collate(model, _rows(model, [dict(a=5, t=3, v=4), dict(a=3, t=2, v=4)]))
    x_a, m_a = batch["a"]
    with pytest.raises(ValueError, match=r"batch\['a'\] \(audio\): expected x of shape \(B, 3, T, 10\)"):
        model(batch | {"a": (x_a[:, 0], m_a)})
    with pytest.raises(ValueError, match="batch lacks modalities \\['t'\\]"):
        model({k: v for k, v in batch.items() if k != "t"})
    x_t, m_t = batch["t"]
    with pytest.raises(ValueError, match="real frames must come first"):
        model(batch | {"t": (x_t, m_t.flip(1))})
    empty = m_t.clone()
    empty[1] = False
    with pytest.raises(ValueError, match=r"at least one real frame \(rows with none: \[1\]\)"):
        model(batch | {"t": (x_t, empty)})
    with pytest.raises(ValueError, match="feature width 8 != InputSpec.dim 7"):
        model(batch | {"t": (torch.zeros(2, 3, 8), m_t)})
    with pytest.raises(ValueError, match="no InputSpec for modalities \\['v'\\]"):
        build_model(ModelConfig(**TINY), {"a": InputSpec(3), "t": InputSpec(3)}, N_CLASSES)


def test_layer_sum_starts_as_the_layer_average():
    x = torch.randn(2, 4, 5, 3)
    torch.testing.assert_close(LayerSum(4)(x), x.mean(dim=1))


def test_frame_pool_averages_real_frames_only():
    x = torch.arange(1.0, 8.0).view(1, 7, 1).repeat(2, 1, 1)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    pooled, pooled_mask = masked_pool_time(x, mask, 2)
    assert pooled[0, :, 0].tolist() == [1.5, 3.5, 5.5, 7.0]
    assert pooled[1, :2, 0].tolist() == [1.5, 3.0]
    assert pooled_mask.tolist() == [[True] * 4, [True, True, False, False]]
