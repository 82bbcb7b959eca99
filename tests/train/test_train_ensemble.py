"""The batched ensemble: members equal their sequential runs, and its parts equal what they replace."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from train.data import load_features, make_batch, pool_frames, prepare
from train.batches import length_bin, pad_members
from train.dispatch import train_grouped
from train.ensemble import Ensemble, Member, ensemble_key, train_members
from train.layers import BiGRUWeights, masked_gru, reversal, zero_padding
from train.loop import train_fold
from train.model import build_model
from train.stats import input_stats

SETS = {"a": "audio", "t": "text", "v": "video"}


@pytest.fixture(scope="module")
def data(small_corpus):
    _, store, rows = small_corpus
    return load_features(rows, store, SETS, ("a", "t", "v"))


def _packed(gru, x, mask):
    lengths = mask.sum(dim=1)
    out, _ = gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return zero_padding(h, mask)


def test_gru_weights_are_an_nn_gru_s_names_shapes_and_seeded_values():
    torch.manual_seed(3)
    ours = BiGRUWeights(6, 4)
    torch.manual_seed(3)
    theirs = torch.nn.GRU(6, 4, batch_first=True, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


def test_masked_gru_equals_the_packed_gru_with_its_gradients():
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 4, batch_first=True, bidirectional=True)
    x = torch.randn(3, 7, 6, requires_grad=True)
    mask = torch.arange(7) < torch.tensor([7, 3, 1])[:, None]
    ours, ref = masked_gru(gru, x, mask), _packed(gru, x, mask)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    g_ours = torch.autograd.grad(ours.pow(2).sum(), [x, *gru.parameters()])
    g_ref = torch.autograd.grad(ref.pow(2).sum(), [x, *gru.parameters()])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_reversal_reverses_each_utterance_s_real_frames_only():
    mask = torch.arange(5) < torch.tensor([5, 3, 1])[:, None]
    assert reversal(mask).tolist() == [[4, 3, 2, 1, 0], [2, 1, 0, 3, 4], [0, 1, 2, 3, 4]]
    assert torch.equal(reversal(mask).gather(-1, reversal(mask)), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize("members", [None, 3])
def test_the_fused_gru_equals_the_stepped_one_with_its_gradients(members):
    """torch's GRU kernel per member and direction (what CUDA runs) against the stepped recurrence,
    for one model's weights and for stacked members' (each with its own lengths); padding frames hold
    noise, which must reach no real frame's output."""
    torch.manual_seed(0)
    grus = [BiGRUWeights(6, 4) for _ in range(members or 1)]
    gru = grus[0]
    if members:
        params, _ = torch.func.stack_module_state(grus)
        gru = SimpleNamespace(hidden_size=4, **params)
    lead = (members,) if members else ()
    x = torch.randn(*lead, 3, 7, 6, requires_grad=True)
    lengths = torch.tensor([[7, 3, 1], [2, 7, 5], [7, 7, 4]][:members or 1]).reshape(*lead, 3)
    mask = torch.arange(7) < lengths.unsqueeze(-1)
    weights = [getattr(gru, n + s) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
               for s in ("", "_reverse")]
    stepped, fused = masked_gru(gru, x, mask, fused=False), masked_gru(gru, x, mask, fused=True)
    torch.testing.assert_close(fused, stepped, atol=1e-6, rtol=1e-5)
    assert not fused[~mask].any()
    g_stepped = torch.autograd.grad(stepped.pow(2).sum(), [x, *weights])
    g_fused = torch.autograd.grad(fused.pow(2).sum(), [x, *weights])
    for a, b in zip(g_fused, g_stepped):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not g_fused[0][~mask].any()


def test_a_compiled_step_holds_the_fused_gru_as_one_operator_and_compiles_once_for_every_length():
    """What lets a CUDA step compile once with dynamic shapes, not once per length bin: the fused GRU is
    one opaque operator in the graph, with no graph break around it (traced, its loop over frames would
    be unrolled anew for each length). Traced with AOT autograd's eager backend, which decomposes what
    inductor would; outputs and gradients equal the eager ones."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch.manual_seed(0)
    gru, proj = BiGRUWeights(6, 4), torch.nn.Linear(6, 6)

    def step(x, mask):
        return (masked_gru(gru, torch.tanh(proj(x)), mask, fused=True) * 2).sum(-1)

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, backend=counter, dynamic=True, fullgraph=True)
    weights = [x for x in gru.parameters()] + [x for x in proj.parameters()]
    for frames in (5, 9, 13):
        x = torch.randn(3, frames, 6, requires_grad=True)
        mask = torch.arange(frames) < torch.tensor([frames, 2, 4])[:, None]
        out, want = compiled(x, mask), step(x, mask)
        torch.testing.assert_close(out, want)
        for got, ref in zip(torch.autograd.grad(out.pow(2).sum(), [x, *weights]),
                            torch.autograd.grad(want.pow(2).sum(), [x, *weights])):
            torch.testing.assert_close(got, ref)
    torch._dynamo.reset()
    assert counter.frame_count == 1
    targets = {node.target for node in counter.graphs[0].graph.nodes}
    assert torch.ops.emocache.gru_direction.default in targets


@pytest.mark.parametrize("members", [None, 3])
def test_the_gru_operator_passes_torch_s_operator_checks(check_gru_operator, members):
    """Schema, fake tensors, autograd and gradient layouts of ``emocache::gru_direction`` (see the
    fixture), for one model's weights and for stacked members'."""
    check_gru_operator("cpu", members)


def test_a_compiled_ensemble_run_is_one_graph_and_trains_as_the_eager_one(data, small_corpus, monkeypatch):
    """The step ``compile`` captures on CUDA (:func:`train.ensemble.compile_step`), traced here on the
    CPU and run as traced (the eager backend; AOT autograd's part is in the GRU test above): the paper
    head with its GRUs and dropout, every fold in one ensemble, is one graph (a graph break would
    raise), compiled once for all lengths and member subsets and at most once more, for batches of
    one; the losses are the eager run's."""
    from torch._dynamo.testing import CompileCounterWithBackend

    import train.ensemble
    from train.cv import fold_members
    from train.presets import preset

    _, _, rows = small_corpus
    cfg = preset("paper", d=8, heads=2, n_blocks=1, epochs=1, batch_size=3, seed=0)
    eager = train_grouped(fold_members(cfg, rows, None), rows, data, progress=False)
    counter = CompileCounterWithBackend("eager")
    init = Ensemble.__init__

    def compiled_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._train_step = train.ensemble.compile_step(self._forward, backend=counter)

    monkeypatch.setattr(Ensemble, "__init__", compiled_init)
    torch._dynamo.reset()
    compiled = train_grouped(fold_members(cfg, rows, None), rows, data, progress=False)
    torch._dynamo.reset()
    assert 1 <= counter.frame_count <= 2
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose([h["train_loss"] for h in c.history], [h["train_loss"] for h in e.history], rtol=1e-5)


def test_prepared_inputs_give_the_model_s_own_standardise_and_pool(data, tiny_cfg):
    index = np.arange(10)
    stats = input_stats(data, index)
    model = build_model(tiny_cfg.model, data.specs(), len(data.classes)).eval()
    model.set_input_stats(stats)
    raw = make_batch(data, index)
    ready = make_batch(prepare(pool_frames(data, tiny_cfg.model.frame_pool), stats), index)
    with torch.no_grad():
        want = model(raw.inputs).logits
        got = model(ready.inputs, prepared=True, check=False).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_length_bins_pad_little_and_repeat():
    assert [length_bin(n) for n in (1, 8, 9, 17, 33, 100)] == [1, 8, 10, 20, 40, 112]
    assert all(n <= length_bin(n) <= 1.25 * n for n in range(1, 3000))
    assert len({length_bin(n) for n in range(1, 1800)}) < 45


@pytest.mark.parametrize("opt", ["adamw", "adam", "sgd"])
def test_the_batched_optimiser_is_torch_s(data, tiny_cfg, opt):
    """Stacked over members, one update is torch.optim's for each member, clipping per member."""
    cfg = tiny_cfg.replace(optimizer=opt, dropout=0.0, modalities=("a", "t"), lr=1e-2, weight_decay=0.1, grad_clip=0.05)
    torch.manual_seed(0)
    models = [build_model(cfg.model, data.specs(), len(data.classes)) for _ in range(2)]
    ens = Ensemble([cfg, cfg.replace(lr=3e-3)], models, prepared=False)
    refs = [torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD][["adamw", "adam", "sgd"].index(opt)]
    kwargs = {"momentum": 0.9} if opt == "sgd" else {}
    opts = [refs(m.parameters(), lr=lr, weight_decay=0.1, **kwargs) for m, lr in zip(models, (1e-2, 3e-3))]
    for step in range(3):
        grads = {n: torch.randn_like(p) for n, p in ens.params.items()}
        for n, p in ens.params.items():
            p.grad = grads[n].clone()
        ens.update([0, 1] if step != 1 else [0])
        for k, (m, o) in enumerate(zip(models, opts)):
            if k == 1 and step == 1:
                continue
            for n, p in m.named_parameters():
                p.grad = grads[n][k].clone()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.05)
            o.step()
    for k, m in enumerate(models):
        for n, p in m.named_parameters():
            torch.testing.assert_close(ens.params[n][k].detach(), p.detach(), atol=1e-6, rtol=1e-5)


def test_a_lambda_0_member_s_shared_encoder_is_neither_updated_nor_counted_in_its_clipping_norm(data, tiny_cfg):
    """As in a model of its own, where the margin loss's shared encoder gets no gradient at lambda 0. (SGD:
    Adam's steps barely change with the clipping coefficient.)"""
    cfg = tiny_cfg.replace(optimizer="sgd", dropout=0.0, lr=1e-2, weight_decay=0.1, grad_clip=0.05)
    torch.manual_seed(0)
    models = [build_model(cfg.model, data.specs(), len(data.classes)) for _ in range(2)]
    ens = Ensemble([cfg, cfg.replace(lam=0.0)], models, prepared=False)
    opts = [torch.optim.SGD(m.parameters(), lr=1e-2, weight_decay=0.1, momentum=0.9) for m in models]
    shared = [n for n in ens.params if n.startswith("shared.")]
    assert shared
    for _ in range(2):
        # the shared encoder's gradients dominate the norm wherever they are (wrongly) counted
        grads = {n: torch.randn_like(p) * (1e3 if n in shared else 1.0) for n, p in ens.params.items()}
        for n, p in ens.params.items():
            p.grad = grads[n].clone()
        ens.update([0, 1])
        for k, (m, o) in enumerate(zip(models, opts)):
            for n, p in m.named_parameters():
                p.grad = None if (k == 1 and n in shared) else grads[n][k].clone()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.05)
            o.step()
    for k, m in enumerate(models):
        for n, p in m.named_parameters():
            torch.testing.assert_close(ens.params[n][k].detach(), p.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_member_equals_its_sequential_run(small_corpus, data, tiny_cfg, tmp_path, dropout):
    """Same seed, dropout off or on: each fold of a 3-member ensemble gives its sequential run's metrics
    (tolerance 1e-4 on losses and scores: float rounding differs where batches are padded together).
    With dropout, each member's masks are its own (train.dropout), whoever shares its calls."""
    _, store, rows = small_corpus
    cfg = tiny_cfg.replace(dropout=dropout, epochs=2)
    members = [Member(cfg, g, tmp_path / f"ens-{g}") for g in ("1", "2", "3")]
    together = train_members(members, rows, data, progress=False)
    for g, got in zip(("1", "2", "3"), together):
        alone = train_fold(cfg, rows, store, g, tmp_path / f"seq-{g}", data=data, progress=False)
        assert got.best_epoch == alone.best_epoch and got.passes == alone.passes
        assert got.metrics["confusion"] == alone.metrics["confusion"]
        assert got.metrics["wf1"] == pytest.approx(alone.metrics["wf1"], abs=1e-4)
        for a, b in zip(got.history, alone.history):
            assert a.keys() == b.keys()
            assert all(a[key] == pytest.approx(b[key], abs=1e-4) for key in a)
        assert (tmp_path / f"ens-{g}" / "model.pt").is_file() and (tmp_path / f"ens-{g}" / "metrics.json").is_file()
        assert (tmp_path / f"ens-{g}" / "predictions.csv").read_text() == (tmp_path / f"seq-{g}" / "predictions.csv").read_text()


def test_with_dropout_an_ensemble_run_is_reproducible_and_settings_group_by_architecture(small_corpus, data, tiny_cfg):
    _, _, rows = small_corpus
    members = [Member(tiny_cfg.replace(lam=lam), g) for lam in (0.0, 1.0) for g in ("1", "3")]
    members.append(Member(tiny_cfg.replace(modalities=("a",)), "2"))
    assert len({ensemble_key(m.cfg) for m in members}) == 2
    first = train_grouped(members, rows, data, progress=False)
    second = train_grouped(members, rows, data, progress=False)
    assert [r.to_json() for r in first] == [r.to_json() for r in second]
    assert [r.group for r in first] == ["1", "3", "1", "3", "2"]
    assert first[0].history[0]["train_margin"] > 0 and first[-1].history[0]["train_margin"] == 0


def test_cv_sequential_gives_the_ensemble_s_figures_without_dropout(small_corpus, tiny_cfg, tmp_path):
    from click.testing import CliRunner

    from train.cli import cli
    from train.cv import run_cv

    manifest, store, _ = small_corpus
    cfg = tiny_cfg.replace(dropout=0.0, epochs=1)
    batched = run_cv(cfg, manifest, str(store), tmp_path / "batched", progress=False)
    one_by_one = run_cv(cfg, manifest, str(store), tmp_path / "seq", progress=False, sequential=True)
    assert [f["confusion"] for f in batched["folds"]] == [f["confusion"] for f in one_by_one["folds"]]
    assert batched["mean"]["wf1"] == pytest.approx(one_by_one["mean"]["wf1"], abs=1e-4)
    for command in ("cv", "ablate", "tune"):
        assert "--sequential" in CliRunner().invoke(cli, [command, "--help"]).output
    assert "--sequential" not in CliRunner().invoke(cli, ["fold", "--help"]).output


def test_step_groups_batch_members_of_one_size_and_similar_length():
    from train.batches import PAD_SLACK, step_groups

    groups = step_groups([(16, 30), (16, 31), (16, 200), (8, 30), (16, 190)], [0, 1, 2, 3, 4])
    assert sorted(map(sorted, groups)) == [[0, 1], [2, 4], [3]]
    for g in groups:  # no group pads its members beyond the slack
        assert len(g) * max(length_bin([30, 31, 200, 30, 190][m]) for m in g) <= PAD_SLACK * sum(
            length_bin([30, 31, 200, 30, 190][m]) for m in g)


def test_device_resident_batches_equal_the_host_padded_ones(data, tiny_cfg):
    """The CUDA input path (inputs held on the device in their stored dtype, batches gathered there), run
    on the CPU: the same shapes, masks, padding and values as the host path (float32 sets such as
    ComParE's, whose values exceed float16, are never rounded to it)."""
    from train.batches import gather_members, pad_members, resident

    pooled = [data, prepare(pool_frames(data, 2), input_stats(data, np.arange(30)))]  # stored and prepared inputs
    chunks = [np.array([3, 0, 17]), np.array([5, 9, 1])]
    cache: dict = {}
    host = pad_members(pooled, chunks, "cpu")
    device = gather_members([resident(d, "cpu", cache) for d in pooled], chunks, "cpu")
    assert len(cache) == 2 * len(data.modalities)  # one copy per array
    assert data.modalities["a"].layers == 2 and host.keys() == device.keys()
    for m, (x, mask) in host.items():
        got, got_mask = device[m]
        assert got.dtype == torch.float32 and got.shape == x.shape and torch.equal(got_mask, mask)
        assert torch.equal(got, x)


def test_inputs_stay_on_the_host_when_they_would_not_fit_on_the_gpu(data):
    """Folds sharing an array count it once; inputs that would leave less than the headroom free are
    padded on the host, and the line says how much they need and what would help."""
    from train.batches import DEVICE_HEADROOM, residency

    need = sum(md.data.nbytes for md in data.modalities.values())
    total = 4 * need
    room = need + DEVICE_HEADROOM * total
    assert residency([data, data, data], free=int(room), total=total) is None
    line = residency([data, data.select(("a",))], free=int(room) - 1, total=total)
    assert line == (f"inputs of {need / 1e9:.1f} GB do not fit on the GPU beside room to train ({(room - 1) / 1e9:.1f} of "
                    f"{total / 1e9:.1f} GB free, 25% kept): each batch is padded in host memory and copied over (slower); "
                    "fewer stored layers or frame pooling would let them fit")


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_members_with_unequal_batches_equal_their_sequential_runs(small_corpus, data, tiny_cfg, dropout):
    """Members whose batches differ in size at some steps (another validation fraction each), with the
    video branch's BatchNorm: a step then runs most members on the stacked weights, one member on a
    stand-in batch whose statistics are thrown away, and the others on copies of their weights. With
    dropout too: a member's masks do not depend on which call it ran in."""
    from train.folds import split_fold

    _, _, rows = small_corpus
    cfg = tiny_cfg.replace(dropout=dropout, epochs=2, batch_size=6)
    cfgs = [cfg.replace(val_fraction=f) for f in (0.1, 0.3, 0.5)]
    sizes = [len(split_fold(rows, "1", c.val, c.val_fraction, c.seed).train) for c in cfgs]
    assert len({n % cfg.batch_size for n in sizes}) == 3 and len({-(-n // cfg.batch_size) for n in sizes}) > 1
    together = train_members([Member(c, "1") for c in cfgs], rows, data, progress=False)
    for c, got in zip(cfgs, together):
        alone = train_members([Member(c, "1")], rows, data, progress=False)[0]
        assert got.best_epoch == alone.best_epoch and got.metrics["confusion"] == alone.metrics["confusion"]
        for a, b in zip(got.history, alone.history):
            assert all(a[key] == pytest.approx(b[key], abs=1e-4) for key in a)


def test_dask_tasks_queue_the_costliest_ensembles_first(tiny_cfg):
    from train.dispatch import dask_tasks

    audio, both = tiny_cfg.replace(modalities=("a",)), tiny_cfg.replace(modalities=("a", "t", "v"))
    members = [Member(audio, g) for g in "123"] + [Member(both, g) for g in "12"] + [Member(audio.replace(epochs=9), "1")]
    assert dask_tasks(members, sequential=False) == [[3, 4], [5], [0, 1, 2]]
    assert dask_tasks(members, sequential=True) == [[3], [4], [5], [0], [1], [2]]


@pytest.mark.slow
def test_the_training_step_traces_as_one_graph(data, tiny_cfg):
    """What CUDA graph capture (``compile``) needs, checked on the CPU: the whole step (model, losses)
    compiles with ``fullgraph=True``, i.e. without a host synchronisation or an untraceable module, and
    computes what the eager step computes."""
    cfg = tiny_cfg.replace(dropout=0.3)
    torch.manual_seed(0)
    models = [build_model(cfg.model, data.specs(), len(data.classes)) for _ in range(2)]
    ens = Ensemble([cfg, cfg.replace(lam=0.5, seed=1)], models, prepared=False)
    chunks = [np.arange(0, 8), np.arange(8, 16)]
    inputs = pad_members([data, data], chunks, "cpu")
    labels = torch.from_numpy(np.stack([data.labels[c] for c in chunks]))
    ens.base.train(True)
    keys = ens._keys([0, 1], train=True)
    compiled = torch.compile(ens._forward, backend="aot_eager", fullgraph=True)
    got = compiled(ens.params, ens.buffers, keys, inputs, labels, ens.lam, ens.alpha)
    got_grads = torch.autograd.grad(got[0].sum(), list(ens.params.values()), allow_unused=True)
    want = ens._forward(ens.params, ens.buffers, keys, inputs, labels, ens.lam, ens.alpha)
    want_grads = torch.autograd.grad(want[0].sum(), list(ens.params.values()), allow_unused=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    for a, b in zip(got_grads, want_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
