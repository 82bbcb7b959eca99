"""What the micro-benchmarks (bench/dropout.py, bench/gru.py) share: their options, one timing loop,
and their JSON file (a module beside them: each script runs with bench/ on its path)."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch


def seconds_per_call(fn: Callable[[], object], repeat: int, device: str) -> float:
    """Mean wall time of ``fn()`` over ``repeat`` calls in a row, with a CUDA device's queue drained
    before and after (its kernels run asynchronously: the time is the work's, not the launches')."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def best_of_rounds(fns: dict[str, Callable[[], object]], rounds: int, repeat: int, device: str) -> dict[str, float]:
    """Seconds per call of each of ``fns``, the best of ``rounds`` rounds that take them in turn (so that
    a busy spell on the machine hits all of them alike), each timing after one untimed call."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for label, fn in fns.items():
            fn()
            best[label] = min(best[label], seconds_per_call(fn, repeat, device))
    return best


def micro_bench_args(description: str, *, repeat: int, rounds: int) -> argparse.Namespace:
    """The micro-benchmarks' command line: --members, --repeat, --rounds, --device, --threads, --json;
    the torch thread count is set before returning."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--members", type=int, default=5, help="K, the ensemble's members (default 5)")
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (the presets train with 1)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args


def write_figures(args: argparse.Namespace, **figures: object) -> None:
    """With ``--json``, the run's setting (device, threads, members) and ``figures`` in that file."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "threads": args.threads, "members": args.members, **figures}, f, indent=2)
