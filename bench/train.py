"""Stage-2 training speed on an IEMOCAP-sized synthetic store: K folds one after another against
the same K folds as one batched ensemble (train.ensemble).

    python bench/train.py [--device cpu|cuda] [--scale 0.1] [--folds 5] [--paper-utts 60] [--results FILE]
        [--protocol-epochs 50] [--protocol-fraction 1] [--compile] [--json FILE]

Workload: 7,380 utterances (times ``--scale``) in five sessions, six classes in
IEMOCAP's proportions; durations lognormal with IEMOCAP's mean (4.55 s) and 95th
percentile (11 s), clipped to [0.5 s, 34 s] (one utterance is exactly 34 s); the
paper's feature shapes: audio 768-d at 50 frames/s (one layer), text 768-d with
~4.4 tokens per second of speech (~20 per utterance), video 1280-d x 16 frames;
float16, written through the ``features`` API (HDF5). Values are noise: speed only.

Measures, in one run and on the same data:
- ``fast``: one epoch of ``--folds`` leave-one-session-out folds (validation and test passes
  included) trained with ``sequential=True`` and then as one ensemble; the share of the
  ensemble's epoch spent making batches;
- ``paper``: the same on ``--paper-utts`` utterances only (batch 2 is slow on a CPU), extrapolated
  linearly to an epoch of the whole store's folds (the table says so);
- with ``--device cuda`` also the paper's protocol (5 folds x 50 epochs at batch 2 on the store)
  and the Tables 1-2 grid (6 settings + 4 more lambdas, 5 folds each) as ensembles, wall time of
  their training; ``--protocol-epochs 2 --protocol-fraction 0.05`` runs 2 epochs of each on 5% of
  the utterances and extrapolates, to fit a device's time limit (``--json`` keeps the figures of
  every stage done). bench/GPU.md has the one-call recipe for a lent GPU machine.
- ``--flops``: each side's matmul arithmetic, counted, and the seconds it takes at this device's
  measured matmul rate: the floor under any batching of the folds;
- ``--payoff``: the two-stage payoff, cached features against recomputing frozen wav2vec 2.0 base
  features from the waveform every step (slow on a CPU: the encoder dominates).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from timing import seconds_per_call  # noqa: E402

import features  # noqa: E402
from features.provenance import Provenance  # noqa: E402
from manifests import SIX_CLASSES, Utterance  # noqa: E402
from manifests.io import manifest_hash, write_manifest  # noqa: E402
from train.cv import fold_members  # noqa: E402
from train.data import FeatureData, load_features  # noqa: E402
from train.dispatch import train_grouped  # noqa: E402
from train.ensemble import Member, ensemble_key  # noqa: E402
from train.loop import seed_everything  # noqa: E402
from train.model import InputSpec, build_model  # noqa: E402
from train.presets import preset  # noqa: E402

N = 7380
MEAN_S, P95_S, MIN_S, MAX_S = 4.55, 11.0, 0.5, 34.0
AUDIO_FPS, AUDIO_DIM, TEXT_DIM, TOKENS_PER_S, VIDEO_DIM, VIDEO_FRAMES = 50, 768, 768, 4.4, 1280, 16
# IEMOCAP's six-class counts (hap, neu, ang, exc, sad, fru).
COUNTS = (595, 1708, 1103, 1041, 1084, 1849)


def durations(n: int, rng: np.random.Generator) -> np.ndarray:
    z = 1.6448536269514722  # lognormal: mean = exp(mu + s^2/2), p95 = exp(mu + z s)
    sigma = z - math.sqrt(z * z - 2 * math.log(P95_S / MEAN_S))
    mu = math.log(MEAN_S) - sigma * sigma / 2
    seconds = np.clip(rng.lognormal(mu, sigma, n), MIN_S, MAX_S)
    seconds[int(np.argmax(seconds))] = MAX_S
    return seconds


def make_rows(n: int, rng: np.random.Generator) -> list[Utterance]:
    labels = rng.choice(len(SIX_CLASSES), size=n, p=np.array(COUNTS) / sum(COUNTS))
    rows = []
    for i in range(n):
        session = 1 + i * 5 // n
        dialog = f"Ses0{session}F_{'impro' if (i // 50) % 2 else 'script'}{i // 50:03d}"
        rows.append(Utterance(utt_id=f"{dialog}_{'FM'[i % 2]}{i % 50:03d}", label=SIX_CLASSES[labels[i]], group=str(session),
                              audio=f"/bench/{i}.wav", corpus="bench-synthetic", session=session, dialog=dialog,
                              speaker=f"{session}{'FM'[i % 2]}", improvised=bool((i // 50) % 2)))
    return rows


def build_store(path: Path, rows: list[Utterance], seconds: np.ndarray, rng: np.random.Generator) -> None:
    """Write the three sets; frames are slices of one noise pool (generating 2.6 GB of fresh noise is the slow part)."""
    pool = rng.standard_normal((1 << 16, 1280)).astype(np.float16)
    mhash = manifest_hash(rows)
    shapes = {
        "audio": (AUDIO_DIM, np.maximum(1, np.round(seconds * AUDIO_FPS)).astype(int), AUDIO_FPS),
        "text": (TEXT_DIM, np.maximum(1, np.round(seconds * TOKENS_PER_S)).astype(int), None),
        "video": (VIDEO_DIM, np.full(len(rows), VIDEO_FRAMES), None),
    }
    with features.open_store(str(path), mode="a") as store:
        for name, (dim, lengths, rate) in shapes.items():
            prov = Provenance.now(encoder=f"bench:noise-{name}", manifest_hash=mhash, dtype="float16", dim=dim)
            with store.writer(name, prov, frame_rate=rate) as w:
                for i, (row, n) in enumerate(zip(rows, lengths)):
                    start = int(rng.integers(0, len(pool) - n))
                    w.write(row.utt_id, pool[start:start + n, :dim])
                    if i % 512 == 511:
                        w.commit()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn) -> dict:
    """Wall and process CPU time of ``fn()``, with the load average before and after."""
    load, cpu, start = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
    value = fn()
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu, "load": [load, os.getloadavg()[0]],
            "value": value}


def compare(cfg, rows: list[Utterance], data: FeatureData, folds: int, repeat: int = 1) -> dict:
    """Wall and CPU time of ``folds`` folds of ``cfg`` as one ensemble, then one after another (same data,
    same run), ``repeat`` times, alternating which goes first; one 1-epoch fold of each first, so that
    imports and first calls count against neither."""
    members = fold_members(cfg, rows, None)[:folds]
    warm = [dataclasses.replace(members[0], cfg=cfg.replace(epochs=1))]
    train_grouped(warm, rows, data, progress=False)
    train_grouped(warm, rows, data, progress=False, sequential=True)
    runs = []
    for r in range(repeat):
        pair = {}
        for sequential in ((False, True) if r % 2 == 0 else (True, False)):
            pair["sequential" if sequential else "ensemble"] = timed(
                lambda: train_grouped(members, rows, data, progress=False, sequential=sequential))
        runs.append(pair)
    results = runs[0]["ensemble"].pop("value")
    for pair in runs:
        for side in pair.values():
            side.pop("value", None)
    epoch = results[0].timing[0]
    best = {side: min(runs, key=lambda p: p[side]["wall_s"])[side] for side in ("ensemble", "sequential")}
    return {"folds": len(members), "epochs": cfg.epochs, "n_train": [r.n_train for r in results],
            "n_val": [r.n_val for r in results], "runs": runs,
            "sequential_s": best["sequential"]["wall_s"], "ensemble_s": best["ensemble"]["wall_s"],
            "speedup": best["sequential"]["wall_s"] / best["ensemble"]["wall_s"],
            "cpu_speedup": best["sequential"]["cpu_s"] / best["ensemble"]["cpu_s"],
            "data_share": epoch["seconds_data"] / epoch["seconds"]}


def matmul_rate(device: str, threads: int) -> float:
    """This device's fp32 batched-matmul rate (FLOP/s, best of 5) at the shape of the ``fast`` preset's
    feed-forward layer on an ensemble of 5 (the layer that dominates its training), with ``threads``
    torch threads, as the training runs."""
    if threads > 0:
        torch.set_num_threads(threads)
    a = torch.randn(5, 1280, 512, device=device)
    b = torch.randn(5, 512, 128, device=device)
    best = min(seconds_per_call(lambda: torch.bmm(a, b), 10, device) for _ in range(5))
    return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2] / best


def matmul_floor(cfg, rows: list[Utterance], data: FeatureData, folds: int) -> dict:
    """The matmul arithmetic of the same runs as :func:`compare`, counted (torch's ``FlopCounterMode``:
    matmuls, forward and backward, in training, validation and test passes; an untimed run of each side,
    slow under the counter), and the seconds it takes at this device's measured :func:`matmul_rate`:
    however little else an ensemble did, it could not train faster than that. Everything else a step does
    (elementwise work, the optimiser, batches) comes on top, on both sides."""
    from torch.utils.flop_counter import FlopCounterMode

    members = fold_members(cfg, rows, None)[:folds]
    rate = matmul_rate(cfg.device, cfg.num_threads)
    out = {"matmul_gflops_per_s": rate / 1e9}
    for side, sequential in (("ensemble", False), ("sequential", True)):
        with FlopCounterMode(display=False) as counter:
            train_grouped(members, rows, data, progress=False, sequential=sequential)
        out[f"{side}_gflop"] = counter.get_total_flops() / 1e9
        out[f"{side}_floor_s"] = counter.get_total_flops() / rate
    return out


def subset(rows: list[Utterance], data: FeatureData, n: int, rng: np.random.Generator) -> tuple[list[Utterance], FeatureData]:
    """``n`` utterances, as many per session, with their features (no copy of other rows' frames needed)."""
    by_group: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_group.setdefault(r.group, []).append(i)
    keep = np.sort(np.concatenate([rng.choice(ix, size=min(len(ix), n // len(by_group)), replace=False)
                                   for ix in by_group.values()]))
    from train.data import ModalityData

    mods = {}
    for m, md in data.modalities.items():
        frames = np.concatenate([np.arange(md.offsets[i], md.offsets[i + 1]) for i in keep])
        offsets = np.concatenate([[0], np.cumsum(md.lengths[keep])]).astype(np.int64)
        mods[m] = ModalityData(md.set_name, np.take(md.data, frames, axis=-2), offsets, md.dim, md.layers,
                               md.provenance, md.identity)
    sub_rows = [rows[i] for i in keep]
    return sub_rows, FeatureData([r.utt_id for r in sub_rows], sub_rows, data.classes, data.labels[keep], mods)


PROTOCOL_EPOCHS = 50


def timed_protocol(members: list[Member], rows: list[Utterance], data: FeatureData, scale: float) -> dict:
    """Wall time of training ``members`` grouped into ensembles, as cv and ablate group them (training,
    validation and test passes; no probe, no reports), extrapolated to the paper's 50 epochs on
    ``scale`` times as many utterances: each ensemble's missing epochs cost what its last epoch's
    training and validation passes did (run 2 epochs or more with ``compile``, so that the last one
    holds no graph capture), and time grows linearly with the utterances (the whole wall time is
    scaled, fixed costs too, so the estimate errs high)."""
    t = time.perf_counter()
    results = train_grouped(members, rows, data, progress=False)
    wall = time.perf_counter() - t
    timings = {ensemble_key(m.cfg): r.timing for m, r in zip(members, results)}  # members of one ensemble share passes
    epochs = members[0].cfg.epochs
    last = [tm[-1]["seconds"] + tm[-1]["seconds_val"] for tm in timings.values()]
    return {"epochs": epochs, "utterances": len(rows), "scale": scale, "members": len(members),
            "ensembles": len(timings), "wall_s": wall, "last_epoch_s": last,
            "full_s": scale * (wall + max(0, PROTOCOL_EPOCHS - epochs) * sum(last))}


def gpu_protocols(rows: list[Utterance], data: FeatureData, device: str, epochs: int, fraction: float,
                  compile_step: bool) -> Iterator[tuple[str, dict]]:
    """The paper's protocol (5 folds x 50 epochs at batch 2), then the Tables 1-2 grid (6 modality
    settings + 4 more lambdas, 5 folds each), as ensembles on ``device``: ``epochs`` epochs on
    ``fraction`` of the utterances (as many per session), extrapolated by :func:`timed_protocol`.
    Yields each one's figures as soon as it has them."""
    from train.ablate import plan

    sub_rows, sub_data = rows, data
    if fraction < 1:
        sub_rows, sub_data = subset(rows, data, max(50, int(len(rows) * fraction)), np.random.default_rng(3))
    scale = len(rows) / len(sub_rows)
    cfg = preset("paper", device=device, epochs=epochs, compile=compile_step)
    yield "paper_protocol", timed_protocol(fold_members(cfg, sub_rows, None), sub_rows, sub_data, scale)
    grid = [m for setting in plan() for m in fold_members(setting.config(cfg), sub_rows, None)]
    yield "tables_1_2", timed_protocol(grid, sub_rows, sub_data, scale)


def time_payoff(cfg, data, index, seconds: np.ndarray, device: str, recompute: bool) -> dict:
    """Audio-only fast-preset steps on cached features, or (``recompute``) on features a frozen
    wav2vec 2.0 base recomputes from the waveform each step, as s3prl's training does."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from train.data import batch_order, pad
    from train.losses import total_loss

    encoder = Wav2Vec2Model(Wav2Vec2Config()).to(device).eval() if recompute else None
    cfg = cfg.replace(modalities=("a",))
    seed_everything(cfg.seed, cfg.num_threads)
    head = build_model(cfg.model, {"a": InputSpec(AUDIO_DIM)}, len(data.classes)).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = batch_order(data.lengths(), index, cfg.batch_size, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    t_inputs, t0 = 0.0, time.perf_counter()
    for chunk in batches:
        t1 = time.perf_counter()
        if encoder is None:
            hidden, mask = pad(data.modalities["a"], chunk)
        else:
            samples = (seconds[chunk] * 16000).astype(int)
            wave = torch.zeros(len(chunk), int(samples.max()))
            for j, s in enumerate(samples):
                wave[j, :s] = torch.from_numpy(rng.standard_normal(s).astype(np.float32))
            mask_s = torch.arange(wave.shape[1]) < torch.from_numpy(samples)[:, None]
            with torch.no_grad():
                hidden = encoder(wave.to(device), attention_mask=mask_s.long().to(device)).last_hidden_state
            frames = torch.from_numpy(np.array([encoder._get_feat_extract_output_lengths(int(s)) for s in samples]))
            mask = torch.arange(hidden.shape[1]) < frames[:, None]
        t_inputs += time.perf_counter() - t1
        out = head({"a": (hidden.to(device), mask.to(device))})
        loss, _ = total_loss(out, torch.from_numpy(data.labels[chunk]).to(device), cfg.lam, cfg.alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"utts": len(index), "seconds": time.perf_counter() - t0, "seconds_inputs": t_inputs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of IEMOCAP's 7,380 utterances")
    ap.add_argument("--dir", default="/tmp/emocache-bench-train")
    ap.add_argument("--folds", type=int, default=5, help="how many folds to train, one after another and as one ensemble")
    ap.add_argument("--fast-epochs", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="time each comparison this many times (the best of each side is reported)")
    ap.add_argument("--paper-utts", type=int, default=60, help="utterances of the paper-preset comparison (CPU: keep it small)")
    ap.add_argument("--payoff", type=int, default=0, metavar="UTTS", help="also time the two-stage payoff on this many utterances")
    ap.add_argument("--protocol-epochs", type=int, default=PROTOCOL_EPOCHS,
                    help="with a CUDA device: epochs of the paper's protocol and of the Tables 1-2 grid actually run "
                         "(fewer than 50: the rest extrapolated from each ensemble's last epoch; use 2 or more)")
    ap.add_argument("--protocol-fraction", type=float, default=1.0,
                    help="with a CUDA device: run the protocols on this fraction of the utterances and extrapolate linearly")
    ap.add_argument("--compile", action="store_true", help="with a CUDA device: the protocols with TrainConfig.compile")
    ap.add_argument("--flops", action="store_true",
                    help="also count each side's matmul arithmetic and time it at this device's matmul rate: the "
                         "fastest any batching could train these folds (an extra untimed run of each side)")
    ap.add_argument("--json", default=None, help="write the figures as JSON to this file after each stage")
    ap.add_argument("--results", default=None, help="append the figures as Markdown to this file")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    n = max(50, int(N * args.scale))
    seconds = durations(n, rng)
    rows = make_rows(n, rng)
    folder = Path(args.dir)
    store = folder / f"iemocap-like-{n}.h5"
    manifest = write_manifest(rows, folder / f"iemocap-like-{n}.jsonl")
    done = folder / f"iemocap-like-{n}.complete"  # the store may be several files: a marker says it is whole
    if not done.exists():
        t = time.perf_counter()
        build_store(store, rows, seconds, rng)
        done.touch()
        print(f"store written in {time.perf_counter() - t:.1f} s: {store}", file=sys.stderr)
    fig = {"utterances": n, "audio_hours": float(seconds.sum() / 3600), "device": args.device,
           "load_before": os.getloadavg()}

    t = time.perf_counter()
    data = load_features(manifest, str(store), {"a": "audio", "t": "text", "v": "video"}, ("a", "t", "v"))
    fig["load_s"] = time.perf_counter() - t
    fig["load_gb"] = sum(md.data.nbytes for md in data.modalities.values()) / 1e9
    rows = data.rows
    fast = preset("fast", device=args.device, epochs=args.fast_epochs)
    fig["fast"] = compare(fast, rows, data, args.folds, args.repeat)
    if args.flops:
        fig["fast"]["floor"] = matmul_floor(fast, rows, data, args.folds)
    save(fig, args.json)
    print(json.dumps(fig["fast"]), file=sys.stderr)
    paper_rows, paper_data = subset(rows, data, args.paper_utts, np.random.default_rng(1))
    paper = preset("paper", device=args.device, epochs=1)
    fig["paper"] = compare(paper, paper_rows, paper_data, args.folds, args.repeat)
    if args.flops:
        fig["paper"]["floor"] = matmul_floor(paper, paper_rows, paper_data, args.folds)
    # An epoch of the whole store's folds: time scales with the utterances outside the test group
    # (training and validation both pass over them), counted alike on both sides.
    full_rest = sum(r.group != g for g in sorted({r.group for r in rows})[:args.folds] for r in rows)
    fig["paper"]["extrapolation"] = full_rest / (sum(fig["paper"]["n_train"]) + sum(fig["paper"]["n_val"]))
    save(fig, args.json)
    if args.device.startswith("cuda"):
        for key, figures in gpu_protocols(rows, data, args.device, args.protocol_epochs, args.protocol_fraction,
                                          args.compile):
            fig[key] = figures
            save(fig, args.json)
            print(json.dumps({key: figures}), file=sys.stderr, flush=True)
    if args.payoff:
        index = np.random.default_rng(2).choice(len(rows), size=min(args.payoff, len(rows)), replace=False)
        cfg = preset("fast", device=args.device)
        cached = time_payoff(cfg, data, index, seconds, args.device, recompute=False)
        recompute = time_payoff(cfg, data, index, seconds, args.device, recompute=True)
        fig["payoff"] = {"cached": cached, "recompute": recompute, "ratio": recompute["seconds"] / cached["seconds"]}
    fig["load_after"] = os.getloadavg()
    print(json.dumps(fig, indent=2))
    if args.results:
        with open(args.results, "a", encoding="utf-8") as out:
            out.write(report(fig) + "\n")


def save(fig: dict, path: str | None) -> None:
    """The figures so far, so that a run stopped later (a device's time limit) keeps them."""
    if path:
        Path(path).write_text(json.dumps(fig, indent=2, default=str), encoding="utf-8")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} cores, {model}{gpu}, torch {torch.__version__}"


def report(fig: dict) -> str:
    h = lambda s: f"{s / 3600:.2f} h" if s > 5400 else f"{s / 60:.1f} min" if s > 90 else f"{s:.1f} s"  # noqa: E731
    f, p = fig["fast"], fig["paper"]
    x = p["extrapolation"]
    lines = [
        f"### {dt.date.today().isoformat()}, {machine()}, device {fig['device']}",
        "",
        f"{fig['utterances']} utterances ({fig['audio_hours']:.1f} h of speech); load average "
        f"{fig['load_before'][0]:.1f} before, {fig['load_after'][0]:.1f} after.",
        "",
        "| measure | fast | paper |",
        "| --- | --- | --- |",
        f"| folds x epochs timed | {f['folds']} x {f['epochs']} (all utterances) | {p['folds']} x {p['epochs']} "
        f"({sum(p['n_train'])} training utterances in all) |",
        f"| sequential | {h(f['sequential_s'])} | {h(p['sequential_s'])} (an epoch of the whole store: {h(p['sequential_s'] * x)}, extrapolated) |",
        f"| one ensemble | {h(f['ensemble_s'])} | {h(p['ensemble_s'])} (extrapolated: {h(p['ensemble_s'] * x)}) |",
        f"| speedup, wall time (best of {len(f['runs'])} each) | **{f['speedup']:.2f}x** | **{p['speedup']:.2f}x** |",
        f"| speedup, process CPU time | **{f['cpu_speedup']:.2f}x** | **{p['cpu_speedup']:.2f}x** |",
        f"| share of the ensemble's epoch making batches | {100 * f['data_share']:.1f}% | {100 * p['data_share']:.1f}% |",
    ]
    if "floor" in f:
        fl = {name: c["floor"] for name, c in (("fast", f), ("paper", p))}
        lines += [
            f"| matmul arithmetic, counted: ensemble / sequential | {fl['fast']['ensemble_gflop']:.0f} / "
            f"{fl['fast']['sequential_gflop']:.0f} GFLOP | {fl['paper']['ensemble_gflop']:.0f} / {fl['paper']['sequential_gflop']:.0f} GFLOP |",
            f"| that arithmetic at this device's fp32 matmul rate ({fl['fast']['matmul_gflops_per_s']:.0f} GFLOP/s): "
            f"ensemble / sequential | {fl['fast']['ensemble_floor_s']:.1f} / {fl['fast']['sequential_floor_s']:.1f} s | "
            f"{fl['paper']['ensemble_floor_s']:.1f} / {fl['paper']['sequential_floor_s']:.1f} s |",
            f"| the most any batching could give: sequential wall / the ensemble's matmul time | "
            f"{f['sequential_s'] / fl['fast']['ensemble_floor_s']:.2f}x | {p['sequential_s'] / fl['paper']['ensemble_floor_s']:.2f}x |",
        ]
    lines += [
        "",
        "Each run (wall / process CPU time, load average before and after):",
        "",
    ]
    for name, c in (("fast", f), ("paper", p)):
        for i, pair in enumerate(c["runs"]):
            lines.append(f"- {name}, repeat {i + 1}: " + "; ".join(
                f"{side} {v['wall_s']:.1f} s / {v['cpu_s']:.1f} s (load {v['load'][0]:.1f} to {v['load'][1]:.1f})"
                for side, v in pair.items()))
    lines.append("")
    if "paper_protocol" in fig:
        for name, key, target in (("Paper protocol (5 folds x 50 epochs, batch 2)", "paper_protocol", "5 min"),
                                  ("Tables 1-2 grid (10 settings x 5 folds x 50 epochs)", "tables_1_2", "15 min")):
            g = fig[key]
            run = f"{g['epochs']} epochs on {g['utterances']} utterances run in {h(g['wall_s'])}"
            measured = g["epochs"] >= PROTOCOL_EPOCHS and g["scale"] == 1
            full = h(g["full_s"]) if measured else f"{h(g['full_s'])} extrapolated ({run})"
            lines.append(f"- {name}, {g['ensembles']} ensemble(s) of {g['members']} members in all: **{full}** (target {target}).")
        lines.append("")
    if "payoff" in fig:
        c, r = fig["payoff"]["cached"], fig["payoff"]["recompute"]
        lines += [f"Two-stage payoff ({c['utts']} utterances, audio only): cached {h(c['seconds'])}, recomputing "
                  f"wav2vec 2.0 base features {h(r['seconds'])}: **{fig['payoff']['ratio']:.0f}x**.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
