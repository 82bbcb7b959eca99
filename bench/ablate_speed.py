"""`train ablate` as one batched ensemble per setting against `--sequential`, on the same data in one run.

    python bench/ablate_speed.py --manifest demo/manifest.jsonl --store demo/features/audio.h5 \
        --store demo/features/text.h5 --store demo/features/video.h5 [--repeat 2] [--results FILE]

Runs exactly the README demo's training step, `train ablate --preset fast --lambdas 1 --scheduler
local:2` (``--scheduler``, ``--preset`` and ``--lambdas`` override it), as a subprocess each way, back to
back, alternating which goes first in each repeat. For each run: wall time, CPU time of the command
and every process it started (the Dask workers included: ``getrusage(RUSAGE_CHILDREN)``, which counts
descendants once they have exited and been waited for, as LocalCluster's are), and the load average
before and after. Both runs must write the same set of files (every table, plot and fold output);
the script stops if they do not. Prints one JSON object per run and the ratios sequential / ensemble.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def run(args: argparse.Namespace, out: Path, sequential: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [str(Path(sys.executable).with_name("train")), "ablate", "--manifest", args.manifest,
               *[x for s in args.store for x in ("--store", s)], "--preset", args.preset, "--lambdas", args.lambdas,
               "--scheduler", args.scheduler, "--out", str(out)] + (["--sequential"] if sequential else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    load_before, cpu, start = os.getloadavg(), children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures = {"mode": "sequential" if sequential else "ensemble", "wall_s": time.perf_counter() - start,
               "cpu_s": children_cpu() - cpu, "load_before": load_before[0], "load_after": os.getloadavg()[0]}
    files = written(out)
    figures["files"] = len(files)
    if not any(f.endswith(".png") for f in files) or "ablation.md" not in files:
        raise SystemExit(f"{out}: no ablation.md or no plot written")
    return figures | {"_files": files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--store", action="append", required=True)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--lambdas", default="1")
    ap.add_argument("--scheduler", default="local:2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/emocache-bench-ablate")
    ap.add_argument("--results", default=None, help="append the figures as Markdown to this file")
    args = ap.parse_args()
    runs = []
    for r in range(args.repeat):
        order = (False, True) if r % 2 == 0 else (True, False)
        pair = {}
        for sequential in order:
            fig = run(args, Path(args.dir) / ("sequential" if sequential else "ensemble"), sequential)
            pair[fig["mode"]] = fig
            print(json.dumps({k: v for k, v in fig.items() if k != "_files"}), file=sys.stderr, flush=True)
        if pair["ensemble"].pop("_files") != pair["sequential"].pop("_files"):
            raise SystemExit("the two runs wrote different sets of files")
        pair["wall_ratio"] = pair["sequential"]["wall_s"] / pair["ensemble"]["wall_s"]
        pair["cpu_ratio"] = pair["sequential"]["cpu_s"] / pair["ensemble"]["cpu_s"]
        runs.append(pair)
        print(json.dumps(pair), flush=True)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(report(args, runs) + "\n")


def report(args: argparse.Namespace, runs: list[dict]) -> str:
    import torch

    lines = [f"`train ablate --preset {args.preset} --lambdas {args.lambdas} --scheduler {args.scheduler}`, "
             f"{dt.date.today().isoformat()}, {os.cpu_count()} cores, torch {torch.__version__}:", "",
             "| repeat | first | ensemble wall / CPU | sequential wall / CPU | load avg (start, end) | ratio wall / CPU |",
             "| --- | --- | --- | --- | --- | --- |"]
    for i, pair in enumerate(runs):
        e, s = pair["ensemble"], pair["sequential"]
        lines.append(f"| {i + 1} | {'ensemble' if i % 2 == 0 else 'sequential'} | {e['wall_s']:.0f} s / {e['cpu_s']:.0f} s "
                     f"| {s['wall_s']:.0f} s / {s['cpu_s']:.0f} s | ensemble {e['load_before']:.1f}, {e['load_after']:.1f}; "
                     f"sequential {s['load_before']:.1f}, {s['load_after']:.1f} | **{pair['wall_ratio']:.2f}x / "
                     f"{pair['cpu_ratio']:.2f}x** |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
