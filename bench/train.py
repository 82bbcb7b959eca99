"""Stage-2 training speed on an IEMOCAP-sized synthetic store.

    python bench/train.py [--device cpu|cuda] [--scale 1.0] [--dir DIR] [--batches-paper 20] [--results FILE]

Workload: 7,380 utterances (times ``--scale``) in five sessions, six classes in
IEMOCAP's proportions; durations lognormal with IEMOCAP's mean (4.55 s) and 95th
percentile (11 s), clipped to [0.5 s, 34 s] (one utterance is exactly 34 s); the
paper's feature shapes: audio 768-d at 50 frames/s (one layer), text 768-d with
~4.4 tokens per second of speech (~20 per utterance), video 1280-d x 16 frames;
float16, written through the ``features`` API (HDF5). Values are noise: speed only.

Measures, for fold 1 (test session 1, validation carved by dialog):
- the one-time load of the three sets (``read_all`` each);
- seconds per training epoch with the ``fast`` and ``paper`` presets, and the share of
  it spent making batches (gather, pad, cast) rather than in the model. Each is timed on a
  random subset of the training utterances (``--utts-fast``, ``--utts-paper``) and
  extrapolated linearly to the whole training split: batches are length-bucketed
  within a random subset, so a subset's batches look like the epoch's;
- the two-stage payoff: the same ``fast`` training steps, audio only, on cached features
  against recomputing frozen wav2vec 2.0 base features from the waveform every step (as
  s3prl's upstream/downstream training does). The encoder has wav2vec 2.0 base's
  architecture with random weights (the cost of a forward does not depend on the weights);
  a lower bound on the payoff, since text and video encoders would be recomputed too.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import features  # noqa: E402
from features.provenance import Provenance  # noqa: E402
from manifests import SIX_CLASSES, Utterance  # noqa: E402
from manifests.io import manifest_hash, write_manifest  # noqa: E402
from train.data import load_features  # noqa: E402
from train.folds import split_fold  # noqa: E402
from train.loop import make_optimizer, run_epoch, seed_everything  # noqa: E402
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


def time_training(cfg, data, index, label: str) -> dict:
    seed_everything(cfg.seed, cfg.num_threads)
    model = build_model(cfg.model, data.specs(), len(data.classes)).to(cfg.device)
    opt = make_optimizer(cfg, model)
    warm = index[: 2 * cfg.batch_size]
    run_epoch(model, data, warm, cfg, train=True, optimizer=opt, rng=np.random.default_rng(1))
    out = run_epoch(model, data, index, cfg, train=True, optimizer=opt, rng=np.random.default_rng(0), desc=label)
    return {"utts": len(index), "seconds": out.seconds_total, "seconds_data": out.seconds_data}


def time_recompute(cfg, data, rows, index, seconds: np.ndarray, device: str) -> dict:
    """Audio-only fast-preset steps, features recomputed by a frozen wav2vec 2.0 base from waveforms."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    encoder = Wav2Vec2Model(Wav2Vec2Config()).to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    cfg = cfg.replace(modalities=("a",))
    seed_everything(cfg.seed, cfg.num_threads)
    head = build_model(cfg.model, {"a": InputSpec(AUDIO_DIM)}, len(data.classes)).to(device)
    opt = make_optimizer(cfg, head)
    from train.data import batch_order
    from train.losses import total_loss

    lengths = data.lengths()
    batches = batch_order(lengths, index, cfg.batch_size, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    t_encoder, t0 = 0.0, time.perf_counter()
    for chunk in batches:
        samples = (seconds[chunk] * 16000).astype(int)
        wave = torch.zeros(len(chunk), int(samples.max()))
        for j, s in enumerate(samples):
            wave[j, :s] = torch.from_numpy(rng.standard_normal(s).astype(np.float32))
        mask_s = torch.arange(wave.shape[1]) < torch.from_numpy(samples)[:, None]
        t1 = time.perf_counter()
        with torch.no_grad():
            hidden = encoder(wave.to(device), attention_mask=mask_s.long().to(device)).last_hidden_state
        frames = torch.from_numpy(np.array([encoder._get_feat_extract_output_lengths(int(s)) for s in samples]))
        mask = torch.arange(hidden.shape[1]) < frames[:, None]
        t_encoder += time.perf_counter() - t1
        out = head({"a": (hidden, mask.to(device))})
        loss, _ = total_loss(out, torch.from_numpy(data.labels[chunk]).to(device), cfg.lam, cfg.alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"utts": len(index), "seconds": time.perf_counter() - t0, "seconds_encoder": t_encoder}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of IEMOCAP's 7,380 utterances")
    ap.add_argument("--dir", default="/tmp/emocache-bench-train")
    ap.add_argument("--utts-fast", type=int, default=800)
    ap.add_argument("--utts-paper", type=int, default=40)
    ap.add_argument("--utts-recompute", type=int, default=48)
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
    fig = {"utterances": n, "audio_hours": float(seconds.sum() / 3600), "device": args.device}

    t = time.perf_counter()
    data = load_features(manifest, str(store), {"a": "audio", "t": "text", "v": "video"}, ("a", "t", "v"))
    fig["load_s"] = time.perf_counter() - t
    fig["load_gb"] = sum(md.data.nbytes for md in data.modalities.values()) / 1e9
    split = split_fold(data.rows, "1", "dialog", 0.1, 0)
    fig["n_train"] = len(split.train)
    pick = np.random.default_rng(1)
    for name, utts in (("fast", args.utts_fast), ("paper", args.utts_paper)):
        cfg = preset(name, device=args.device)
        if args.device != "cpu" and name == "fast":
            cfg = cfg.replace(num_threads=0)
        subset = pick.choice(split.train, size=min(utts, len(split.train)), replace=False)
        r = time_training(cfg, data, subset, name)
        r["epoch_s"] = r["seconds"] * len(split.train) / r["utts"]
        r["data_share"] = r["seconds_data"] / r["seconds"]
        fig[name] = r
    cfg = preset("fast", device=args.device)
    subset = pick.choice(split.train, size=min(args.utts_recompute, len(split.train)), replace=False)
    cached = time_training(cfg.replace(modalities=("a",)), data.select(("a",)), subset, "cached (audio)")
    recompute = time_recompute(cfg, data, data.rows, subset, seconds, args.device)
    fig["cached_audio"] = cached | {"epoch_s": cached["seconds"] * len(split.train) / cached["utts"]}
    fig["recompute_audio"] = recompute | {"epoch_s": recompute["seconds"] * len(split.train) / recompute["utts"]}
    fig["payoff"] = recompute["seconds"] / cached["seconds"]
    print(json.dumps(fig, indent=2))
    if args.results:
        with open(args.results, "a", encoding="utf-8") as out:
            out.write(report(fig) + "\n")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    import os

    return f"{os.cpu_count()} cores, {model}{gpu}, torch {torch.__version__}"


def report(fig: dict) -> str:
    h = lambda s: f"{s / 3600:.2f} h" if s > 5400 else f"{s / 60:.1f} min" if s > 90 else f"{s:.1f} s"  # noqa: E731
    lines = [
        f"### {dt.date.today().isoformat()}, {machine()}, device {fig['device']}",
        "",
        f"{fig['utterances']} utterances ({fig['audio_hours']:.1f} h of speech), fold 1: {fig['n_train']} training utterances.",
        f"Load of the three sets into memory (one `read_all` each): {fig['load_s']:.1f} s for {fig['load_gb']:.2f} GB.",
        "",
        "| measure | fast | paper |",
        "| --- | --- | --- |",
        f"| utterances timed (of the epoch) | {fig['fast']['utts']} | {fig['paper']['utts']} |",
        f"| epoch time, extrapolated | {h(fig['fast']['epoch_s'])} | {h(fig['paper']['epoch_s'])} |",
        f"| share of epoch time making batches | {100 * fig['fast']['data_share']:.2f}% | {100 * fig['paper']['data_share']:.2f}% |",
        "",
        f"Two-stage payoff (fast preset, audio only, {fig['cached_audio']['utts']} utterances timed):"
        f" cached features {h(fig['cached_audio']['epoch_s'])} per epoch;"
        f" recomputing frozen wav2vec 2.0 base features each step {h(fig['recompute_audio']['epoch_s'])}"
        f" (encoder {100 * fig['recompute_audio']['seconds_encoder'] / fig['recompute_audio']['seconds']:.0f}% of it):"
        f" **{fig['payoff']:.0f}x** slower.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
