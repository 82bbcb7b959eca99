"""torch.func vmap over stacked modules against layers written with a leading member dimension.

    python bench/ensemble_layers.py [--members 5] [--batch 16] [--frames 23] [--d 64] [--repeat 200]

The head's typical chain at the `fast` preset's shapes (pre-norm, attention-free feed-forward block:
LayerNorm -> Linear(d, 4d) -> ReLU -> Linear(4d, d), residual, three times), forward and backward,
K members: (1) ``torch.func.functional_call`` under ``vmap`` over ``stack_module_state``, as
train/ensemble.py ran the model until 2026-12-06; (2) the same maths with (K, ...) weights and
``torch.baddbmm``, as the layers of train/members.py now run it. Prints ms per step for each (best of interleaved rounds), and K separate models' for scale.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=23)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    k, b, t, d = args.members, args.batch, args.frames, args.d
    models = [nn.Sequential(*(Block(d) for _ in range(3))) for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(k, b, t, d)
    run = vmap(lambda p, bu, xx: functional_call(base, (p, bu), (xx,)).pow(2).mean())

    def stacked(p, xx):
        xx = xx.reshape(k, b * t, d)
        for i in range(3):
            h = torch.nn.functional.layer_norm(xx, (d,)) * p[f"{i}.norm.weight"][:, None] + p[f"{i}.norm.bias"][:, None]
            h = torch.relu(torch.baddbmm(p[f"{i}.fc1.bias"][:, None], h, p[f"{i}.fc1.weight"].transpose(1, 2)))
            xx = xx + torch.baddbmm(p[f"{i}.fc2.bias"][:, None], h, p[f"{i}.fc2.weight"].transpose(1, 2))
        return xx.pow(2).mean(dim=(1, 2))

    def timed(fn) -> float:
        for _ in range(10):
            fn().sum().backward()
        start = time.perf_counter()
        for _ in range(args.repeat):
            fn().sum().backward()
        return 1000 * (time.perf_counter() - start) / args.repeat

    # Interleaved rounds, best of each: the machine may be shared.
    rounds = [(timed(lambda: run(params, buffers, x)), timed(lambda: stacked(params, x)),
               timed(lambda: models[0](x[0]).pow(2).mean()) * k) for _ in range(args.rounds)]
    vmap_ms, stacked_ms, single_ms = (min(r[i] for r in rounds) for i in range(3))
    print(json.dumps({"members": k, "vmap_ms": vmap_ms, "leading_dim_ms": stacked_ms, "k_single_models_ms": single_ms}))


if __name__ == "__main__":
    main()
