"""Search the audio head's settings on a real-speech corpus, scored on VALIDATION data only.

    python bench/real_speech_search.py --manifest emodb.jsonl --store egemaps_lld=a.h5 --store compare_func=b.h5 \
        --out search.json [--configs 40] [--seeds 0 1 2] [--top 8] [--workers 2]

Every trial is one setting trained with :func:`train.loop.train_fold` on each leave-one-group-out
fold. Within a fold, the validation split is one group (speaker) of the TRAINING groups, drawn with
the seed (rows get ``speaker = group`` so the split is by speaker), and the score is the weighted F1
on it after each epoch. The test group's figures are never read: only ``history`` (train loss,
validation scores) leaves a trial.

A setting's score at E epochs is the mean validation WF1 over folds, seeds and the epochs E-2..E+2
(a plateau, not one lucky epoch), which is what ``val="none"`` with ``epochs=E`` would be chosen on.
Stage 1 runs every setting with the first seed; stage 2 reruns the ``--top`` settings with the other
seeds. The choice: among the stage-2 settings whose plateau is within ``TIE`` of the best, the one
with the best mean of each run's best-epoch WF1 (the criterion of ``val="dialog"`` and `train tune`;
bench/RESULTS.md, "The choice"). Settings come from scikit-learn's ParameterGrid (the
functionals, whose search is cheap) and ParameterSampler (the frame-level sets).

Needs no GPU; ``--workers`` processes, one torch thread each.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.model_selection import ParameterGrid, ParameterSampler  # noqa: E402

from manifests.io import read_manifest  # noqa: E402
from train.folds import groups  # noqa: E402
from train.presets import preset  # noqa: E402

FUNCTIONALS_SPACE = {
    "d": [64, 128], "dropout": [0.2, 0.4], "lr": [3e-4, 1e-3], "weight_decay": [0.01, 0.1],
    "frame_pool": [1], "pooling": ["mean"], "audio_branch": ["none"],
}
FRAMES_SPACE = {
    "d": [64, 128], "dropout": [0.2, 0.4], "lr": [3e-4, 1e-3], "weight_decay": [0.01, 0.1],
    "frame_pool": [4, 10], "pooling": ["mean", "stats"], "audio_branch": ["none", "gru"],
}
WINDOW = 2
# Plateau scores this close are a tie (the 8 finalists in RESULTS spanned 0.003).
TIE = 0.005

_CACHE: dict = {}


def _rows(manifest: str):
    return [dataclasses.replace(r, speaker=r.group) for r in read_manifest(manifest)]


def _trial(manifest: str, store: str, setting: dict, epochs: int, seed: int, group: str) -> dict:
    """One fold of one setting: the validation history only."""
    import torch

    from train.data import load_features
    from train.loop import train_fold

    torch.set_num_threads(1)
    key = (manifest, store, setting["set"])
    if key not in _CACHE:
        rows = _rows(manifest)
        _CACHE[key] = (rows, load_features(rows, store, {"a": setting["set"]}, ("a",), check_hash=False))
    rows, data = _CACHE[key]
    knobs = {k: v for k, v in setting.items() if k != "set"}
    cfg = preset("fast", modalities=("a",), sets={"a": setting["set"]}, epochs=epochs, seed=seed,
                 val="dialog", val_fraction=0.2, num_threads=1, **knobs)
    result = train_fold(cfg, rows, None, group, data=data, progress=False)
    return {"group": group, "seed": seed, "val_wf1": [h["val_wf1"] for h in result.history],
            "val_acc": [h["val_acc"] for h in result.history]}


def choose(stage2: list[dict]) -> dict:
    """The chosen stage-2 setting (module docstring): plateaus within TIE of the best are a tie, which
    the best-epoch score breaks."""
    top = max(r["val_wf1"] for r in stage2)
    return max((r for r in stage2 if r["val_wf1"] >= top - TIE), key=lambda r: r["val_wf1_max_over_epochs"])


def _score(trials: list[dict], epochs: int) -> dict:
    wf1 = np.array([t["val_wf1"] for t in trials])  # (runs, epochs)
    acc = np.array([t["val_acc"] for t in trials])
    best_e, best = None, -1.0
    curve = []
    for e in range(1 + WINDOW, epochs - WINDOW + 1):
        s = float(wf1[:, e - 1 - WINDOW:e + WINDOW].mean())
        curve.append((e, s))
        if s > best:
            best_e, best = e, s
    window = slice(best_e - 1 - WINDOW, best_e + WINDOW)
    per_group: dict[str, list[float]] = {}
    for t, row in zip(trials, wf1[:, window].mean(axis=1)):
        per_group.setdefault(t["group"], []).append(float(row))
    group_means = [float(np.mean(v)) for v in per_group.values()]
    return {"epochs": best_e, "val_wf1": best, "val_acc": float(acc[:, window].mean()),
            "val_wf1_std_over_groups": float(np.std(group_means)),
            "val_wf1_max_over_epochs": float(wf1.max(axis=1).mean()), "runs": len(trials),
            "curve": [(e, round(s, 4)) for e, s in curve[::5]]}


def run_settings(pool, manifest, stores, settings, epochs, seeds, keys):
    futures = []
    for i, s in enumerate(settings):
        for seed in seeds:
            for g in keys:
                futures.append((i, pool.submit(_trial, manifest, stores[s["set"]], s, epochs, seed, g)))
    by_setting: dict[int, list[dict]] = {}
    for done, (i, f) in enumerate(futures, 1):
        by_setting.setdefault(i, []).append(f.result())
        if done % 50 == 0:
            print(f"  {done}/{len(futures)} trials", file=sys.stderr, flush=True)
    return by_setting


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--store", action="append", required=True, metavar="SET=PATH",
                    help="a feature set and its store; sets whose name holds 'func' are functionals")
    ap.add_argument("--out", required=True)
    ap.add_argument("--configs", type=int, default=24, help="frame-level settings drawn per frame-level set")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    stores = dict(item.split("=", 1) for item in args.store)
    keys = groups(_rows(args.manifest))
    settings = []
    for name in stores:
        if "func" in name:
            settings += [{"set": name, **p} for p in ParameterGrid(FUNCTIONALS_SPACE)]
        else:
            settings += [{"set": name, **p} for p in ParameterSampler(FRAMES_SPACE, args.configs, random_state=0)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        print(f"stage 1: {len(settings)} settings x {len(keys)} folds, seed {args.seeds[0]}", file=sys.stderr)
        first = run_settings(pool, args.manifest, stores, settings, args.epochs, args.seeds[:1], keys)
        stage1 = [{"setting": s, **_score(first[i], args.epochs)} for i, s in enumerate(settings)]
        order = sorted(range(len(settings)), key=lambda i: -stage1[i]["val_wf1"])
        top = order[:args.top]
        print(f"stage 2: top {len(top)} with seeds {args.seeds[1:]}", file=sys.stderr)
        more = run_settings(pool, args.manifest, stores, [settings[i] for i in top], args.epochs, args.seeds[1:], keys)
    stage2 = [{"setting": settings[i], **_score(first[i] + more[j], args.epochs)} for j, i in enumerate(top)]
    stage2.sort(key=lambda r: -r["val_wf1"])
    report = {"manifest": os.path.abspath(args.manifest), "seeds": args.seeds, "epochs_max": args.epochs,
              "window": WINDOW, "spaces": {"functionals": FUNCTIONALS_SPACE, "frames": FRAMES_SPACE},
              "configs_per_frame_set": args.configs, "seconds": round(time.perf_counter() - t0, 1),
              "stage1": sorted(stage1, key=lambda r: -r["val_wf1"]), "stage2": stage2, "chosen": choose(stage2)}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{'set':14} {'d':>4} {'drop':>5} {'lr':>7} {'wd':>5} {'fp':>3} {'pool':>5} {'branch':>6} {'E':>3} "
          f"{'valWF1':>7} {'valACC':>7} {'sd/grp':>6}")
    for r in stage2:
        s = r["setting"]
        print(f"{s['set']:14} {s['d']:>4} {s['dropout']:>5} {s['lr']:>7} {s['weight_decay']:>5} {s['frame_pool']:>3} "
              f"{s['pooling']:>5} {s['audio_branch']:>6} {r['epochs']:>3} {r['val_wf1']:7.3f} {r['val_acc']:7.3f} "
              f"{r['val_wf1_std_over_groups']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
