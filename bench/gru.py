"""The masked bidirectional GRU (train/layers.py), stepped against fused, at the presets' shapes.

    python bench/gru.py [--members 5] [--repeat 20] [--device cpu] [--json FILE]

For each shape, one A-GRU's recurrence forward and backward over K stacked members, each utterance
with its own length: the stepped recurrence (some ten operators per frame and direction, all members
at once) against torch's GRU kernel per member and direction (cuDNN on a GPU). Prints milliseconds
for each, best of interleaved rounds, and their ratio. On the CPU the stepped form is the faster;
``masked_gru`` fuses on CUDA only, and this says by how much that pays there.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, not bench/train.py

from timing import best_of_rounds, micro_bench_args, write_figures  # noqa: E402

from train.layers import BiGRUWeights, masked_gru  # noqa: E402

# (name, (B, T, d)): the `paper` preset on IEMOCAP-like lengths (B 2, d 256, text tokens in a length
# bin of 40, 16 video frames) and the `fast` preset on the demo (B 16, d 128, frames pooled by 10).
SHAPES = [
    ("paper text A-GRU", (2, 40, 256)),
    ("paper video A-GRU-LVC", (2, 16, 256)),
    ("fast text A-GRU", (16, 4, 128)),
]


def main() -> None:
    args = micro_bench_args(__doc__.splitlines()[0], repeat=20, rounds=3)
    torch.manual_seed(0)
    k = args.members
    rows = []
    for name, (b, t, d) in SHAPES:
        params, _ = torch.func.stack_module_state([BiGRUWeights(d, d // 2).to(args.device) for _ in range(k)])
        gru = SimpleNamespace(hidden_size=d // 2, **{n: p.requires_grad_() for n, p in params.items()})
        x = torch.randn(k, b, t, d, device=args.device, requires_grad=True)
        lengths = torch.randint(max(1, t // 2), t + 1, (k, b), device=args.device)
        mask = torch.arange(t, device=args.device) < lengths.unsqueeze(-1)

        def run(fused: bool, gru=gru, x=x, mask=mask):
            masked_gru(gru, x, mask, fused=fused).sum().backward()

        fns = {"stepped": functools.partial(run, False), "fused": functools.partial(run, True)}
        best = {label: 1e3 * seconds for label, seconds in best_of_rounds(fns, args.rounds, args.repeat, args.device).items()}
        rows.append({"gru": name, "shape": [k, b, t, d], "ms_stepped": round(best["stepped"], 2),
                     "ms_fused": round(best["fused"], 2), "ratio_stepped_over_fused": round(best["stepped"] / best["fused"], 2)})
        print(f"{name:24s} {str((k, b, t, d)):18s} stepped {best['stepped']:8.2f} ms   fused {best['fused']:8.2f} ms   "
              f"stepped / fused {best['stepped'] / best['fused']:.2f}x", flush=True)
    write_figures(args, shapes=rows)


if __name__ == "__main__":
    main()
