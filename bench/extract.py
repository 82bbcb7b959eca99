"""Extraction pipeline overhead: wall time of the pipeline over the encoder's own forward time.

    python bench/extract.py [--utterances 40] [--repeats 3] [--torch-threads N] [--only NAME ...] [--json OUT]

Target: the pipeline (decode-ahead threads, encode, write-behind into a store,
commits) takes at most 1.15 x the time the encoder's ``encode`` alone takes on
the same batches.

For each encoder it builds the encoder once, plans the batches the pipeline
plans, then alternates ``--repeats`` times between
  forward: every item loaded beforehand, ``encode`` timed batch by batch under
           ``torch.inference_mode()`` (the sum of those times), and
  pipeline: ``extract.loop.extract_rows`` from the manifest rows into a
           fresh HDF5 store (wall time, load and write included),
and prints the best of each and their ratio. Model loading is outside both.
"load s" is the time to load every item in one thread, for scale: where it
exceeds the forward time (the hog video encoder, whose forward is nearly free)
the pipeline is bound by decoding and face detection, not by the encoder, and
the ratio measures those, not the pipeline. "bound s" is the slowest stage run
alone, max(forward, serial load / load threads); "vs bound" (pipeline / bound)
is the pipeline's overhead whichever stage limits it.

Encoders: openSMILE eGeMAPSv02 LLDs; MiniLM (the shipped all-MiniLM-L6-v2);
a wav2vec2 with wav2vec2-base's conv feature encoder (7 layers, 512 channels)
and a 4-layer 384-d transformer, random weights saved and loaded by path;
the default video encoder (hog) and timm's tf_efficientnet_b0 (the architecture of
the paper's face model, random weights saved to a file and loaded with ``weights``)
when the corpus has video.
Corpus: the synthetic IEMOCAP-layout demo corpus (``democorpus.corpus``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from extract.base import create_encoder  # noqa: E402
from extract.batching import plan_batches  # noqa: E402
from extract.loop import default_load_threads, extract_rows  # noqa: E402
from extract.pipeline import build_provenance  # noqa: E402
from features import open_store  # noqa: E402
from manifests import manifest_hash  # noqa: E402


def bench_wav2vec2(root: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    path = root / "w2v-base-conv-small-transformer"
    if not path.is_dir():
        torch.manual_seed(0)
        config = Wav2Vec2Config(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536)
        Wav2Vec2Model(config).eval().save_pretrained(path)
        Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True).save_pretrained(path)
    return path


def bench_timm_weights(root: Path) -> Path:
    """A state dict of timm's tf_efficientnet_b0 (HSEmotion's architecture) with random weights.

    The forward costs the same whatever the weights; the real file is not available
    offline, and these features are never used for anything but timing.
    """
    import timm

    path = root / "tf_efficientnet_b0-random.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save(timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0).state_dict(), path)
    return path


def demo_rows(root: Path, utterances: int):
    from democorpus.corpus import make_demo_corpus
    from manifests.iemocap import parse_iemocap

    corpus = make_demo_corpus(root / "corpus", utterances=utterances, seed=3, progress=False)
    return parse_iemocap(corpus, classes="six").rows


def forward_seconds(encoder, batches) -> tuple[float, float]:
    """(seconds of encode alone, seconds of loading every item in one thread)."""
    t0 = time.perf_counter()
    loaded = [[encoder.load(utt) for utt in batch] for batch in batches]
    load = time.perf_counter() - t0
    total = 0.0
    with torch.inference_mode():
        for items in loaded:
            t0 = time.perf_counter()
            encoder.encode(items)
            total += time.perf_counter() - t0
    return total, load


def pipeline_seconds(encoder, rows, name: str, store_dir: Path) -> float:
    prov = build_provenance(encoder, manifest_hash(rows), "float16", encoder.dtype)
    store_path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=store_dir)) / "store.h5"
    with open_store(str(store_path), mode="a") as store:
        with store.writer(name, prov, frame_rate=encoder.frame_rate, layers=encoder.num_layers) as writer:
            t0 = time.perf_counter()
            tally = extract_rows(encoder, writer, rows, progress=False)
            writer.commit()
            seconds = time.perf_counter() - t0
    if tally.failures:
        raise SystemExit(f"{name}: {len(tally.failures)} failures in the benchmark corpus: {tally.failures[:3]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=40,
                        help="utterances of the synthetic demo corpus to extract (at least 30, the corpus's smallest)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--only", nargs="*", default=None, help="opensmile, minilm, wav2vec2, video, timm-b0")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.utterances < 30:
        parser.error(f"--utterances {args.utterances}: the demo corpus has at least 30")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = demo_rows(work, args.utterances)
    cases = [
        ("opensmile", "audio", "opensmile:eGeMAPSv02", {}),
        ("minilm", "text", "minilm", {}),
        ("wav2vec2", "audio", f"hf:{bench_wav2vec2(work)}", {}),
        ("video", "video", None, {}),
        ("timm-b0", "video", "timm:tf_efficientnet_b0", {"weights": str(bench_timm_weights(work))}),
    ]
    machine = f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    print(f"# {machine}\n# {len(rows)} utterances of the synthetic demo corpus, best of {args.repeats}")
    threads = default_load_threads()
    print(f"# {threads} load threads; bound = max(forward, serial load / load threads), the slowest stage run alone")
    print(f"{'encoder':<10} {'batches':>7} {'load s':>7} {'forward s':>9} {'pipeline s':>10} {'ratio':>6} {'bound s':>7} {'vs bound':>8}")
    results = []
    for name, modality, spec, options in cases:
        if args.only and name not in args.only:
            continue
        subset = [r for r in rows if modality != "video" or r.video]
        if not subset:
            print(f"{name:<10} skipped: the corpus has no {modality}")
            continue
        encoder = create_encoder(modality, spec, options=options)
        batches = plan_batches(subset, encoder)
        forward, loads, pipeline = [], [], []
        for _ in range(args.repeats):
            f, load = forward_seconds(encoder, batches)
            forward.append(f)
            loads.append(load)
            pipeline.append(pipeline_seconds(encoder, subset, name, work))
        best_f, best_l, best_p = min(forward), min(loads), min(pipeline)
        bound = max(best_f, best_l / threads)
        results.append({"encoder": name, "spec": encoder.spec, "utterances": len(subset), "batches": len(batches),
                        "load_serial_s": best_l, "forward_s": best_f, "pipeline_s": best_p, "ratio": best_p / best_f,
                        "load_threads": threads, "bound_s": bound, "vs_bound": best_p / bound,
                        "forward_all": forward, "load_all": loads, "pipeline_all": pipeline})
        print(f"{name:<10} {len(batches):>7} {best_l:>7.2f} {best_f:>9.2f} {best_p:>10.2f} {best_p / best_f:>6.2f} {bound:>7.2f} {best_p / bound:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
