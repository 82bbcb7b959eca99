"""K folds or settings of one architecture trained as one batched model, stepped together.

Every member keeps its own weights, optimiser state, data order (its seed's), validation choice
of epoch, checkpoint and report: a member is the training :func:`train.loop.train_fold` would give
it alone (with the same seed, the same metrics up to float rounding, dropout included: each member's
masks come from its own seed and step, :mod:`train.dropout`; see tests/train/test_train_ensemble.py).
The members' weights are stacked (``torch.func``'s ``stack_module_state``) and one step runs the
model once on them, every input carrying a leading member axis: the head's layers take stacked
weights (:mod:`train.members`), so each of its many small operators runs once for K members.
``train_fold`` is the K = 1 case.

Shapes repeat: each batch is padded to a length bin (:mod:`train.batches`), and the step holds no
host synchronisation (masked GRU, checks once per fold in :mod:`train.data`, branchless losses).
On CUDA (``device.startswith("cuda")``; written, not yet run on a GPU) each fold's cached inputs are
copied to the GPU once in its stored dtype (float16 for most sets) and every batch is gathered and cast
to float32 there (:func:`train.batches.gather_members`); where they would not fit beside room to train,
batches are padded in host memory as on the CPU, and a line on stderr says so
(:func:`train.batches.residency`). ``TrainConfig.precision`` allows TF32 or bf16 autocast, and
``TrainConfig.compile`` captures the step as one graph (:func:`compile_step`): compiled once for
every shape, each GRU one opaque operator in it, CUDA graphs recorded per shape (the length bins keep
their number small).
"""
from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from emocache.devices import device_problem
from train.batches import STAND_INS, Call, free_memory, gather_members, pad_members, residency, resident, step_groups
from train.config import ConfigError, TrainConfig
from train.data import FeatureData, batch_order, check_lengths, pool_frames, prepare
from train.dropout import Dropout, dropout_keys
from train.folds import Split, split_fold
from train.losses import loss_terms
from train.model import build_model
from train.stats import input_stats

# Fields that members of one ensemble may differ in; every other field must agree.
PER_MEMBER = ("lr", "lam", "alpha", "weight_decay", "grad_clip", "seed", "val_fraction")


def ensemble_key(cfg: TrainConfig) -> str:
    """Configs with the same key can train as one ensemble (same architecture, schedule and device)."""
    same = {f: TrainConfig.__dataclass_fields__[f].default for f in PER_MEMBER}
    same["grad_clip"] = None if cfg.grad_clip is None else 1.0  # clipping or not is shared, the norm per member
    return cfg.replace(**same).dumps()


@dataclass
class Member:
    """One fold of one setting: its config, test group, and where its outputs go (None: nowhere)."""

    cfg: TrainConfig
    test_group: str
    out_dir: Path | None = None


class _State:
    """One member's fold: split, data (prepared for it), stats, data-order rng."""

    def __init__(self, member: Member, rows, data: FeatureData, cache: dict):
        cfg = member.cfg
        self.member = member
        self.split: Split = split_fold(rows, member.test_group, cfg.val, cfg.val_fraction, cfg.seed)
        # Members with the same training rows (one fold under several lambdas, seeds, lrs) share
        # their statistics and prepared inputs: one copy per fold, not per member.
        key = tuple(self.split.train)
        pool = cfg.model.frame_pool
        if pool > 1 and "pooled" not in cache:
            cache["pooled"] = pool_frames(data, pool)  # fold-independent: once per run
        if key not in cache:
            stats = input_stats(data, self.split.train)
            cache[key] = (stats, prepare(cache["pooled"], stats) if pool > 1 else data)
        self.stats, self.data = cache[key]
        self.prepared = cfg.model.frame_pool > 1
        self.order_lengths = data.lengths()
        self.resident: dict | None = None  # set by train_members where the inputs fit on the GPU
        self.rng = np.random.default_rng(cfg.seed)


class Ensemble:
    """K models of one architecture as stacked parameters; :meth:`forward` and :meth:`update` run them together."""

    def __init__(self, cfgs: Sequence[TrainConfig], models: Sequence[torch.nn.Module], prepared: bool):
        self.cfgs = list(cfgs)
        self.cfg = cfgs[0]
        self.device = self.cfg.device
        self.prepared = prepared
        self.base = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(list(models))
        self.params = {n: _matmul_layout(p.detach().to(self.device)).requires_grad_(True) for n, p in params.items()}
        # Every member's dropout masks are its own (train.dropout): keys from its seed and step count,
        # passed with each call, so a member trains as it would alone, whoever shares its calls.
        self.sites = [n for n, m in self.base.named_modules() if isinstance(m, Dropout)]
        for j, n in enumerate(self.sites):
            self.base.get_submodule(n).counter_based = True
            self.base.get_submodule(n).site = j
        keys = {f"{n}.keys" for n in self.sites}
        self.buffers = {n: b.to(self.device) for n, b in buffers.items() if n not in keys}
        k = len(models)
        dev = self.device
        self.moments = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in self.params.items()}
        # Each member's step count, as the fused optimisers read it (a tensor on the device), and on the host.
        self.steps = [torch.zeros((), device=dev) for _ in range(k)]
        self.counts = [0] * k
        # With lambda = 0 the shared encoder gets no gradient in a model of its own, so torch's optimisers
        # leave it alone (no decay either): the same here, per member.
        self.owned = [[n for n in self.params if not (c.lam == 0 and n.startswith("shared."))] for c in cfgs]
        # (K,) which members own a parameter, for those that not all own; and each member's clipping norm.
        self.owns = {n: torch.tensor([n in o for o in self.owned], device=dev)
                     for n in self.params if any(n not in o for o in self.owned)}
        self.clip = torch.tensor([c.grad_clip or 0.0 for c in cfgs], device=dev)
        self._view_members()
        self.lam = torch.tensor([c.lam for c in cfgs], device=dev)
        self.alpha = torch.tensor([c.alpha for c in cfgs], device=dev)
        self._train_step = self._forward
        if self.device.startswith("cuda") and self.cfg.compile:
            # Evaluation passes, a small share of the work, run eagerly rather than compile every graph
            # again without gradients.
            self._train_step = compile_step(self._forward)

    def _run(self, train: bool, *args):
        return (self._train_step if train else self._forward)(*args)

    def _forward(self, params, buffers, keys, inputs, labels, lam, alpha):
        bf16 = self.device.startswith("cuda") and self.cfg.precision == "bf16"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = functional_call(self.base, (params, buffers, keys), (inputs,), {"prepared": self.prepared, "check": False})
        loss, ce, mar = loss_terms(out, labels, lam, alpha)
        return loss, ce, mar, torch.softmax(out.logits.detach().float(), dim=-1)

    def _view_members(self) -> None:
        """Each member's parameters and optimiser moments as flat views into the stacked tensors (the
        fused optimisers copy a non-contiguous tensor in and out; every layout here is dense)."""
        flat = {n: [_by_member(t) for t in (p.detach(), *self.moments[n])] for n, p in self.params.items()}
        self.views = [tuple([flat[n][j][i] for n in names] for j in range(3)) for i, names in enumerate(self.owned)]

    def forward(self, calls: Sequence[Call], train: bool):
        """Run ``calls`` (training: and backward their summed loss). Returns per call (loss, ce, mar, probs),
        each with one row per member of the call (:attr:`Call.rows` says which are real)."""
        self.base.train(train)
        with torch.set_grad_enabled(train):
            if train:
                for p in self.params.values():
                    p.grad = None
            outs, losses, subsets = [], [], []
            for call in calls:
                if call.full:
                    out = self._run_all(call, train)
                    loss = out[0] if len(call.members) == len(self.cfgs) else out[0] * self._weight(call.members)
                else:
                    sel = torch.tensor(call.members, device=self.device)
                    params = {n: _matmul_layout(p.detach()[sel]).requires_grad_(train) for n, p in self.params.items()}
                    buffers = {n: b[sel].clone() for n, b in self.buffers.items()}
                    out = self._run(train, params, buffers, self._keys(call.members, train), call.inputs, call.labels,
                                    self.lam[sel], self.alpha[sel])
                    for n, b in buffers.items():  # BatchNorm's running statistics, updated in the call
                        self.buffers[n] = self.buffers[n].index_put((sel,), b)  # out of place: a graph may hold it
                    subsets.append((sel, params))
                    loss = out[0]
                outs.append(out)
                losses.append(loss.sum())
            if train:
                sum(losses).backward()
                with torch.no_grad():
                    for sel, params in subsets:  # a subset's own copies of its weights got its gradients
                        for n, leaf in params.items():
                            if leaf.grad is not None:
                                p = self.params[n]
                                if p.grad is None:
                                    p.grad = torch.zeros_like(p)
                                p.grad.index_add_(0, sel, leaf.grad)
        return outs

    def _run_all(self, call: Call, train: bool):
        """Every member on the stacked weights as they are; those outside the call (on stand-in inputs)
        keep their BatchNorm statistics."""
        outside = train and bool(self.buffers) and len(call.members) < len(self.cfgs)
        buffers = {n: b.clone() for n, b in self.buffers.items()} if outside else self.buffers
        out = self._run(train, self.params, buffers, self._keys(range(len(self.cfgs)), train), call.inputs, call.labels,
                        self.lam, self.alpha)
        if outside:  # out of place: the graph may hold the old statistics
            inside = self._weight(call.members).bool()
            for n, b in buffers.items():
                self.buffers[n] = torch.where(inside.view((-1,) + (1,) * (b.dim() - 1)), b, self.buffers[n])
        return out

    def _keys(self, members: Sequence[int], train: bool) -> dict[str, torch.Tensor]:
        """Each dropout site's keys for a call's rows (``members``): their seeds and optimiser steps so far.
        Nothing outside training, where dropout draws nothing."""
        if not train:
            return {}
        keys = dropout_keys([self.cfgs[i].seed for i in members], [self.counts[i] for i in members], len(self.sites))
        keys = torch.from_numpy(keys).to(self.device, non_blocking=True)  # no wait for the device, as the batches
        return {f"{site}.keys": keys for site in self.sites}

    def _weight(self, members: Sequence[int]) -> torch.Tensor:
        """(K,) 1 for ``members``, 0 for the others."""
        weight = torch.zeros(len(self.cfgs), device=self.device)
        weight[list(members)] = 1.0
        return weight

    @torch.no_grad()
    def update(self, members: Sequence[int]) -> None:
        """One optimiser step for ``members`` (indices), each with its own lr, decay, clip and step count:
        torch's own fused Adam, AdamW and SGD (momentum 0.9) kernels, one call per member over views of
        its slices of the stacked tensors (one sweep over each weight, not one operator per
        parameter and per term), and clip_grad_norm_'s clipping, every member's norm in one pass."""
        flat = {n: _by_member(p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in self.params.items()}
        grads = {n: g.unbind(0) for n, g in flat.items()}
        scales = None  # the fused kernels divide the gradients by it: clip_grad_norm_'s coefficient, inverted
        if self.cfg.grad_clip is not None:
            # Every member's norm at once, over the parameters it owns, as clip_grad_norm_ takes it: the norm
            # of the parameters' norms.
            norms = [torch.linalg.vector_norm(g, dim=1) for g in flat.values()]
            norms = [torch.where(self.owns[n], norm, 0.0) if n in self.owns else norm for n, norm in zip(flat, norms)]
            total = torch.linalg.vector_norm(torch.stack(norms, dim=1), dim=1)
            scales = torch.clamp(self.clip / (total + 1e-6), max=1.0).reciprocal()
        opt = self.cfg.optimizer
        for k in members:
            cfg = self.cfgs[k]
            params, exp_avgs, exp_avg_sqs = self.views[k]
            member_grads = [grads[n][k] for n in self.owned[k]]
            self.counts[k] += 1
            self.steps[k] += 1
            scale = None if scales is None else scales[k]
            if opt == "sgd":
                torch._fused_sgd_(params, member_grads, exp_avgs, weight_decay=cfg.weight_decay, momentum=0.9,
                                  lr=cfg.lr, dampening=0.0, nesterov=False, maximize=False,
                                  is_first_step=self.counts[k] == 1, grad_scale=scale)
                continue
            fused = torch._fused_adamw_ if opt == "adamw" else torch._fused_adam_
            fused(params, member_grads, exp_avgs, exp_avg_sqs, [], [self.steps[k]] * len(params), lr=cfg.lr,
                  beta1=0.9, beta2=0.999, weight_decay=cfg.weight_decay, eps=1e-8, amsgrad=False, maximize=False,
                  grad_scale=scale)

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s state_dict (parameters and buffers), on the CPU, as ordinary contiguous tensors
        (whatever memory order the stacked ones are held in)."""
        return {n: t[k].detach().cpu().clone(memory_format=torch.contiguous_format)
                for n, t in (self.params | self.buffers).items()}

    @torch.no_grad()
    def load(self, k: int, state: dict[str, torch.Tensor]) -> None:
        for n, t in (self.params | self.buffers).items():
            t[k] = state[n].to(t.device)


def compile_step(forward, backend: str | Callable = "inductor"):
    """``forward`` (:meth:`Ensemble._forward`) compiled as the training step: one graph (``fullgraph``:
    a graph break is an error, not a silent split into pieces) with dynamic shapes, so that every length
    bin, batch size and member subset shares it (a batch of one is compiled apart: torch specialises
    sizes 0 and 1). Each GRU is one operator in it (:func:`train.layers.masked_gru`). With inductor,
    the ``reduce-overhead`` mode records CUDA graphs per shape, around the GRUs; other backends
    (tests) take no mode."""
    mode = "reduce-overhead" if backend == "inductor" else None
    compiled = torch.compile(forward, backend=backend, mode=mode, dynamic=True, fullgraph=True)
    # Two tracing settings, both torch's private configuration (torch 2.14): each avoided compile is
    # a minute on this CPU (bench/RESULTS.md). The model's floats (dropout rates, eps) are constants of
    # a run: traced as symbols, each compile was traced twice. Without duck sizing, a length or batch
    # size that happens to equal a width (a text of 8 tokens, 8 heads) ties no guard to the width,
    # which would recompile at the next length.
    compiled = torch._dynamo.config.patch(specialize_float=True)(compiled)
    return torch.fx.experimental._config.patch(use_duck_shape=False)(compiled)


def _matmul_layout(p: torch.Tensor) -> torch.Tensor:
    """A stacked weight matrix (K, out, in) held in (K, in, out) memory order, the same values: the
    batched matmul of :func:`train.members.linear` runs fastest on it and gives its gradient in that
    order too, so autograd never copies one into the other (on the ComParE projection, 6,373 x 128 at
    K = 5: 7.5 ms against 16 ms a forward and backward; bench/RESULTS.md). Other tensors as they are.
    A tensor of its own, not a transposed view: a compiled step guards on a view's base as well."""
    if p.dim() != 3:
        return p
    _, rows, cols = p.shape
    return torch.empty_strided(p.shape, (rows * cols, 1, rows), dtype=p.dtype, device=p.device).copy_(p)


def _by_member(t: torch.Tensor) -> torch.Tensor:
    """A stacked (K, ...) tensor as (K, n), each member's values in memory order: a view for the layouts
    used here, each member one dense block (``view`` raises rather than copy)."""
    order = sorted(range(1, t.dim()), key=lambda d: -t.stride(d))
    return t.permute(0, *order).view(t.shape[0], -1)


@dataclass
class _Pass:
    """One member's pass over data: mean losses and predictions by row index."""

    loss: float
    ce: float
    margin: float
    index: np.ndarray
    probs: np.ndarray
    seconds_data: float = 0.0
    seconds_total: float = 0.0

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, np.int64)


def run_pass(ens: Ensemble, states: Sequence[_State], indices: Sequence[Sequence[int] | None], *, train: bool,
             desc: str = "") -> list[_Pass | None]:
    """One epoch (``train``: shuffled with each member's rng, one optimiser step per batch) or one
    evaluation pass, for every member whose index is not None, all stepped together."""
    t0 = time.perf_counter()
    k = len(states)
    orders = [None if ix is None else batch_order(st.order_lengths, ix, st.member.cfg.batch_size, st.rng if train else None)
              for st, ix in zip(states, indices)]
    n_steps = max(len(o) for o in orders if o is not None)
    dev = ens.device
    totals = torch.zeros(3, k, dtype=torch.float64, device=dev)
    probs: list[list[torch.Tensor]] = [[] for _ in range(k)]
    seen = [[] for _ in range(k)]
    t_data = 0.0
    bar = tqdm(total=n_steps, desc=desc, unit="step", leave=False, file=sys.stderr, disable=not desc)
    for s in range(n_steps):
        t1 = time.perf_counter()
        live = [i for i, o in enumerate(orders) if o is not None and s < len(o)]
        groups = step_groups([(len(orders[i][s]), int(states[i].order_lengths[orders[i][s]].max())) for i in live], live)
        # The largest group runs on the stacked weights when at most STAND_INS members are outside it,
        # the other groups on copies of theirs.
        main = max(groups, key=len)
        calls = []
        for members in groups:
            full = members is main and len(members) >= k - STAND_INS
            slots = [i if i in members else members[0] for i in range(k)] if full else members
            chunks = [orders[i][s] for i in slots]
            if states[0].resident is not None:
                inputs = gather_members([states[i].resident for i in slots], chunks, dev)
            else:
                inputs = pad_members([states[i].data for i in slots], chunks, dev)
            labels = torch.from_numpy(np.stack([states[i].data.labels[c] for i, c in zip(slots, chunks)])).to(dev)
            calls.append(Call(members, full, inputs, labels))
        t_data += time.perf_counter() - t1
        outs = ens.forward(calls, train)
        if train:
            ens.update(live)
        for call, (loss, ce, mar, p) in zip(calls, outs):
            sel = torch.tensor(call.members, device=dev)
            n = torch.tensor([len(orders[i][s]) for i in call.members], dtype=torch.float64, device=dev)
            totals[:, sel] += torch.stack([loss.detach(), ce, mar])[:, call.rows].double() * n
            for j, i in zip(call.rows, call.members):
                probs[i].append(p[j])
                seen[i].append(orders[i][s])
        bar.update(1)
    bar.close()
    totals = totals.cpu().numpy()
    seconds = time.perf_counter() - t0
    results: list[_Pass | None] = []
    for i in range(k):
        if orders[i] is None:
            results.append(None)
            continue
        count = max(sum(len(c) for c in seen[i]), 1)
        n_classes = len(states[i].data.classes)
        results.append(_Pass(
            loss=float(totals[0, i] / count), ce=float(totals[1, i] / count), margin=float(totals[2, i] / count),
            index=np.concatenate(seen[i]) if seen[i] else np.zeros(0, np.int64),
            probs=torch.cat(probs[i]).cpu().numpy() if probs[i] else np.zeros((0, n_classes), np.float32),
            seconds_data=t_data, seconds_total=seconds))
    return results


def configure_device(cfg: TrainConfig) -> None:
    """What reproducibility and speed need on the config's device, which must exist on this machine
    (:class:`ConfigError` naming the fix). CUDA (not run yet): TF32 as
    ``cfg.precision`` says; deterministic algorithms (set by seed_everything, without warn-only) need
    CUBLAS_WORKSPACE_CONFIG set before cuBLAS is first used in the process. Not reproducible on CUDA
    even so: runs with ``compile`` or bf16 across GPU models or driver versions."""
    # Checked here, not in TrainConfig: a config may be made on a machine without a GPU for workers with one.
    problem = device_problem(cfg.device, torch.cuda.device_count())
    if problem is not None:
        raise ConfigError(problem)
    if cfg.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        tf32 = cfg.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def train_members(members: Sequence[Member], rows, data: FeatureData, *, progress: bool = True,
                  test: bool = True, desc: str = "ensemble") -> list:
    """Train ``members`` (one :func:`ensemble_key`) as one ensemble; one FoldResult each, outputs written
    where a member has an ``out_dir``. ``test=False``: no pass over any test group (`train tune`)."""
    from train.loop import FoldResult, finish_fold, seed_everything

    keys = {ensemble_key(m.cfg) for m in members}
    if len(keys) != 1:
        raise ValueError(f"members of one ensemble must share everything but {list(PER_MEMBER)}; "
                         "group them with train.ensemble.ensemble_key")
    cfg = members[0].cfg
    configure_device(cfg)
    check_lengths(data)
    states, models, cache = [], [], {}
    for m in members:
        seed_everything(m.cfg.seed, m.cfg.num_threads)
        st = _State(m, rows, data, cache)
        model = build_model(m.cfg.model, data.specs(), len(data.classes))
        model.set_input_stats(st.stats)
        states.append(st)
        models.append(model)
    if cfg.device.startswith("cuda"):
        too_big = residency([st.data for st in states], *free_memory(cfg.device))
        if too_big is None:
            for st in states:
                st.resident = resident(st.data, cfg.device, cache)
        else:
            print(too_big, file=sys.stderr)
    ens = Ensemble([m.cfg for m in members], models, states[0].prepared)
    k = len(members)
    history: list[list[dict[str, float]]] = [[] for _ in range(k)]
    timing: list[list[dict[str, float]]] = [[] for _ in range(k)]
    passes: list[list[str]] = [[] for _ in range(k)]
    best = [(-1.0, cfg.epochs, None)] * k
    has_val = [bool(st.split.val) for st in states]
    epochs = tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch", file=sys.stderr, disable=not progress)
    for epoch in epochs:
        trained = run_pass(ens, states, [st.split.train for st in states], train=True, desc="train" if progress else "")
        validated = run_pass(ens, states, [st.split.val if v else None for st, v in zip(states, has_val)],
                             train=False) if any(has_val) else [None] * k
        for i, (tr, va) in enumerate(zip(trained, validated)):
            passes[i].append("train")
            record = {"epoch": epoch, "train_loss": tr.loss, "train_ce": tr.ce, "train_margin": tr.margin}
            timing[i].append({"epoch": epoch, "seconds": tr.seconds_total, "seconds_data": tr.seconds_data,
                              "seconds_val": va.seconds_total if va is not None else 0.0, "members": k})
            if va is not None:
                passes[i].append("val")
                scores = _scores(states[i].data, va)
                record |= {"val_loss": va.loss, "val_acc": scores["acc"], "val_wf1": scores["wf1"]}
                if scores["wf1"] > best[i][0]:  # strict: ties keep the earlier epoch
                    best[i] = (scores["wf1"], epoch, ens.state(i))
            history[i].append(record)
    results = []
    if not test:
        for i, st in enumerate(states):
            results.append(FoldResult(
                group=st.split.test_group, classes=data.classes, metrics={}, last=None, improvised=None,
                best_epoch=best[i][1] if best[i][2] is not None else cfg.epochs, history=history[i],
                n_train=len(st.split.train), n_val=len(st.split.val), val_unit=st.split.val_unit,
                passes=passes[i], timing=timing[i]))
        return results
    # Testing starts here, after every epoch has run; nothing above reads a test split.
    last = [ens.state(i) for i in range(k)]
    reload = [b[2] is not None and b[1] != cfg.epochs for b in best]
    for i in range(k):
        if reload[i]:
            ens.load(i, best[i][2])
    tested = run_pass(ens, states, [st.split.test for st in states], train=False)
    last_tested = [None] * k
    if any(reload):
        for i in range(k):
            ens.load(i, last[i])
        again = run_pass(ens, states, [st.split.test if r else None for st, r in zip(states, reload)], train=False)
        last_tested = again
    for i, st in enumerate(states):
        if reload[i]:
            passes[i] += ["test:best", "test:last"]
            reported_state, best_epoch = best[i][2], best[i][1]
        else:
            passes[i].append("test:last" if not st.split.val else "test:best")
            reported_state, best_epoch = last[i], cfg.epochs
        results.append(finish_fold(members[i].cfg, data, st.split, tested[i], last_tested[i], history[i], timing[i],
                                   passes[i], best_epoch, reported_state, members[i].out_dir))
    return results


def _scores(data: FeatureData, out: _Pass) -> dict[str, Any]:
    from train import metrics

    return metrics.compute(data.labels[out.index], out.y_pred, len(data.classes))
