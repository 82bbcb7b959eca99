"""The head with the defaults against simple baselines on real speech, leave-one-speaker-out.

    python bench/real_speech.py --corpus ../shared/corpora/emodb-dev --work /tmp/rs-bench [--json out.json]
    python bench/real_speech.py --manifest corpus.jsonl --work /tmp/rs-bench

``--corpus DIR`` is a folder laid out like emodb-dev: ``labels.csv`` (columns ``id``, ``path``,
``emotion``, ``speaker``) and the audio it names; the manifest is built with ``manifests csv``'s
library call, the speaker being the fold key. ``--manifest`` takes any manifest instead.

Into stores under ``--work`` it extracts (once; a rerun reuses complete sets) the audio with the
offline default encoder (:data:`extract.base.DEFAULTS`, as ``extract run --modality audio`` does)
and the eGeMAPSv02 functionals. Then, on the same leave-one-group-out folds:

- ``classical``: eGeMAPSv02 functionals (88 per utterance), standardised, scikit-learn's
  LogisticRegression (``train.baseline``: C = 1, tol 1e-8, max_iter 5000), fit on the head's training rows
  (the training speakers less the validation speaker the head picks its epoch on);
- ``classical, all training speakers``: the same fit on every training speaker, the protocol of
  emodb-dev's README reference figure (a stronger baseline than the head's own rows give);
- ``probe``: ``train.baseline``'s linear probe on the default audio set (mean and std over time of
  each channel, standardised, the same LogisticRegression), fit on the head's training rows;
- ``head``: ``train cv --modalities a`` with the default preset (:func:`train.cv.run_cv`), which
  also fits the two probes above on exactly its folds and training rows.

It prints one table (mean ACC and WF1 over folds per method, and the head's ratio to each
baseline) and writes every fold's figures as JSON. No setting is chosen here: this is the check
of defaults chosen elsewhere on validation data (bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extract.base import DEFAULTS  # noqa: E402
from extract.pipeline import run_extraction  # noqa: E402
from manifests import read_manifest, write_manifest  # noqa: E402
from manifests.csvcorpus import parse_csv  # noqa: E402
from train import metrics  # noqa: E402
from train.baseline import BaselineSpec, fit_predict  # noqa: E402
from train.cv import run_cv  # noqa: E402
from train.data import class_list, load_features  # noqa: E402
from train.folds import groups, split_fold  # noqa: E402
from train.presets import preset  # noqa: E402

FUNCTIONALS = "opensmile:eGeMAPSv02-functionals"
FUNCTIONALS_SET = "egemaps-functionals"
DEFAULT_PRESET = "fast"  # train cv's default


def build_manifest(corpus: Path, work: Path) -> Path:
    rows = parse_csv(corpus / "labels.csv", id_col="id", audio_col="path", label_col="emotion",
                     group_col="speaker", corpus=corpus.name)
    return write_manifest(rows, work / "manifest.jsonl")


def extract(manifest: Path, work: Path, spec: str, set_name: str) -> Path:
    store = work / f"{set_name}.h5"
    t0 = time.perf_counter()
    summary = run_extraction(manifest, store, "audio", set_name=set_name, encoder=spec, progress=False)
    if summary.failed:
        raise SystemExit(f"{spec}: {summary.failed} utterances failed to extract; see `features info {store}`")
    print(f"extract {spec} -> {store}: {summary.done} new, {summary.skipped} reused, "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return store


def utterance_vectors(manifest: Path, store: Path, set_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) per-utterance vectors of a one-frame-per-utterance set (functionals), and labels."""
    data = load_features(read_manifest(manifest), store, {"a": set_name}, ("a",))
    md = data.modalities["a"]
    if md.data.ndim != 2 or not np.array_equal(md.lengths, np.ones_like(md.lengths)):
        raise SystemExit(f"{store}: set {set_name!r} is not one frame per utterance")
    return md.data.astype(np.float64), data.labels


def logistic_cv(manifest: Path, x: np.ndarray, y: np.ndarray) -> dict:
    """``train.baseline``'s scaler + logistic regression, fit on EVERY training group of each fold."""
    rows = read_manifest(manifest)
    n_classes = len(class_list(rows))
    folds = []
    for g in groups(rows):
        split = split_fold(rows, g, val="none")
        pred = fit_predict(x, y, split, seed=0)
        folds.append({"group": g, **metrics.compute(y[list(split.test)], pred, n_classes)})
    return {**metrics.summarise(folds), "folds": folds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--corpus", type=Path, help="folder with labels.csv (id, path, emotion, speaker) and the audio")
    where.add_argument("--manifest", type=Path, help="any manifest (its groups are the folds)")
    ap.add_argument("--work", type=Path, required=True, help="folder for the manifest and the feature stores")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here (default: WORK/real_speech.json)")
    ap.add_argument("--preset", default=DEFAULT_PRESET, help="the head's preset (default: train cv's default)")
    ap.add_argument("--scheduler", default=None, help="run the head's folds on Dask, e.g. local:2")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(args.corpus, args.work) if args.corpus else args.manifest

    default_spec = DEFAULTS["audio"]
    audio_store = extract(manifest, args.work, default_spec, "audio")
    func_store = extract(manifest, args.work, FUNCTIONALS, FUNCTIONALS_SET)

    cfg = preset(args.preset, modalities=("a",), sets={"a": "audio"})
    t0 = time.perf_counter()
    cv = run_cv(cfg, manifest, [audio_store, func_store], scheduler=args.scheduler,
                classical=BaselineSpec({"a": FUNCTIONALS_SET}), progress=True).to_json()  # as its cv.json
    t_cv = time.perf_counter() - t0
    reference = logistic_cv(manifest, *utterance_vectors(manifest, func_store, FUNCTIONALS_SET))

    methods = {"head": cv, "classical": cv["classical"], "classical, all training speakers": reference,
               "probe": cv["baseline"]}
    table = {name: {"acc": r["mean"]["acc"], "wf1": r["mean"]["wf1"], "acc_std": r["std"]["acc"],
                    "wf1_std": r["std"]["wf1"], "per_fold": {f["group"]: {"acc": f["acc"], "wf1": f["wf1"]} for f in r["folds"]}}
             for name, r in methods.items()}
    ratios = {f"head/{b}": {k: table["head"][k] / table[b][k] for k in ("acc", "wf1")} for b in table if b != "head"}
    report = {
        "manifest": str(Path(manifest).resolve()), "groups": groups(read_manifest(manifest)),
        "default_audio_encoder": default_spec, "classical_features": FUNCTIONALS, "preset": args.preset,
        "head_config": cfg.to_json(), "table": table, "ratios": ratios,
        "paired_diff": {"head-classical": cv["classical"]["diff"], "head-probe": cv["baseline"]["diff"]},
        "head_folds": [{k: f[k] for k in ("group", "acc", "wf1", "ua", "macro_f1", "n_test", "best_epoch", "n_train", "n_val")}
                       for f in cv["folds"]],
        "seconds_cv": round(t_cv, 1),
    }
    out = args.json or args.work / "real_speech.json"
    out.write_text(json.dumps(report, indent=1))

    labels = {"head": f"head, preset `{args.preset}`, audio only ({default_spec})",
              "classical": "eGeMAPSv02 functionals + standardisation + LR, the head's training rows",
              "classical, all training speakers": "the same, fit on all training speakers (emodb-dev README protocol)",
              "probe": f"linear probe on {default_spec} (mean, std over time) + LR, the head's training rows"}
    print(f"{len(report['groups'])} folds, leave one group out; default audio encoder {default_spec}; preset {args.preset}")
    print("| method | ACC | WF1 | head/method ACC | head/method WF1 |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in table.items():
        ratio = ratios.get(f"head/{name}")
        cells = f"{ratio['acc']:.3f} | {ratio['wf1']:.3f}" if ratio else "- | -"
        print(f"| {labels[name]} | {100 * row['acc']:.1f} +- {100 * row['acc_std']:.1f} | "
              f"{100 * row['wf1']:.1f} +- {100 * row['wf1_std']:.1f} | {cells} |")
    for name, diff in report["paired_diff"].items():
        print(f"{name}: {json.dumps(diff)}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
