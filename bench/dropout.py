"""Counter-based dropout (train/dropout.py) against torch's own, at the presets' shapes.

    python bench/dropout.py [--members 5] [--repeat 200] [--device cpu] [--json FILE]

For each shape, one dropout site's forward and backward: ``F.dropout`` (torch's generator: one
``bernoulli_`` and a product) against :class:`train.dropout.Dropout` with its keys set, as an
ensemble runs it (a hash of key and coordinates per element, about fifteen integer operators). Prints
microseconds per site for each, best of interleaved rounds, and their ratio.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, not bench/train.py

from timing import best_of_rounds, micro_bench_args, write_figures  # noqa: E402

from train.dropout import Dropout, dropout_keys  # noqa: E402

# (name, shape after the member axis, p): the `fast` preset on the demo (B 16, d 128, 4 heads, frame pooling
# 10) and the `paper` preset on IEMOCAP-like lengths (B 2, d 256, 225 audio frames, 30 text tokens).
SHAPES = [
    ("fast feed-forward hidden (B, 1, 4d)", (16, 1, 512), 0.4),
    ("fast projection (B, T, d)", (16, 3, 128), 0.4),
    ("fast attention (B, H, 1, T)", (16, 4, 1, 23), 0.4),
    ("paper feed-forward hidden (B, T_a, 4d)", (2, 225, 1024), 0.1),
    ("paper attention (B, H, T_a, T_t)", (2, 4, 225, 30), 0.1),
]


def main() -> None:
    args = micro_bench_args(__doc__.splitlines()[0], repeat=200, rounds=5)
    k = args.members
    rows = []
    for name, shape, p in SHAPES:
        x = torch.randn((k,) + shape, device=args.device, requires_grad=True)
        drop = Dropout(p).to(args.device)
        drop.counter_based = True
        drop.keys = torch.from_numpy(dropout_keys(range(k), [0] * k, 1)).to(args.device)

        def ours(drop=drop, x=x):
            drop(x).sum().backward()

        def torchs(x=x, p=p):
            F.dropout(x, p, True).sum().backward()

        best = {label: 1e6 * seconds for label, seconds in
                best_of_rounds({"ours": ours, "torch": torchs}, args.rounds, args.repeat, args.device).items()}
        rows.append({"site": name, "shape": [k, *shape], "p": p, "us_counter_based": round(best["ours"], 1),
                     "us_torch": round(best["torch"], 1), "ratio_torch_over_ours": round(best["torch"] / best["ours"], 2)})
        print(f"{name:42s} {str((k,) + shape):22s} counter-based {best['ours']:8.1f} us   "
              f"torch {best['torch']:8.1f} us   torch / ours {best['torch'] / best['ours']:.2f}x", flush=True)
    write_figures(args, sites=rows)


if __name__ == "__main__":
    main()
