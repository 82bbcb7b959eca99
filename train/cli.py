"""`train`: stage 2 on cached features (fold, cv, ablate, baseline, tune, layers, predict). Thin over the library."""
from __future__ import annotations

import functools
import json
import sys
from typing import Any

import click

from emocache.cli import domain_errors
from emocache.errors import ExitCode
from train.ablate import LAMBDAS, SETTINGS, run_ablation
from train.config import PRECISIONS, VAL_MODES, TrainConfig, parse_sets
from train.cv import run_cv
from train.presets import PRESETS, preset


_PRESET_HELP = (f"Starting configuration: one of {', '.join(sorted(PRESETS))}, or a preset file (FILE.json, e.g. "
                "the one `train tune` writes); the flags below override its fields. 'paper' is the paper's (for a GPU), "
                "'fast' ours for CPUs.")


def _training_options(fn=None, *, sequential: bool = True):
    if fn is None:
        return functools.partial(_training_options, sequential=sequential)
    options = [
        click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False), help="The manifest (JSONL) the store was extracted from."),
        click.option("--store", required=True, multiple=True,
                     help="A feature store (.h5/.hdf5, .zarr, or a Zarr URL); repeat it for one store per modality."),
        click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder."),
        click.option("--preset", default="fast", show_default=True, help=_PRESET_HELP),
        click.option("--modalities", default=None, help="Comma-separated subset of a,t,v (audio, text, video). Default: the preset's (a,t,v)."),
        click.option("--sets", "sets_text", default=None, help="Feature-set names per modality, e.g. a=audio,t=text,v=video (the default)."),
        click.option("--lambda", "lam", type=float, default=None,
                     help="Weight of the margin loss (A+V+T only); in `train ablate`, the reference row's lambda."),
        click.option("--alpha", type=float, default=None, help="Margin of the margin loss."),
        click.option("--val", type=click.Choice(VAL_MODES), default=None,
                     help="dialog: validation split by dialog from the training groups, test the best epoch; none: test the last epoch."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs per fold (default: the preset's)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Utterances per step (default: the preset's)."),
        click.option("--lr", type=float, default=None, help="Learning rate (default: the preset's)."),
        click.option("--d", "d", type=click.IntRange(min=1), default=None, help="Common width of the head."),
        click.option("--frame-pool", type=click.IntRange(min=1), default=None, help="Mean-pool every sequence in time by K first."),
        click.option("--seed", type=int, default=None, help="Seed of the split, the initial weights, the data order and dropout."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1..."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="CUDA only: fp32 (every preset), tf32 matmuls or bf16 autocast."),
        click.option("--compile", "compile_step", is_flag=True, default=None,
                     help="CUDA only: capture the training step with torch.compile(mode='reduce-overhead') (CUDA graphs)."),
        click.option("--num-threads", type=click.IntRange(min=0), default=None, help="Torch CPU threads per process (default 1, as in every preset; 0: torch's default)."),
        click.option("--note", default=None, help="A line printed above the result tables."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (progress goes to stderr)."),
    ]
    if sequential:
        options.append(click.option("--sequential", is_flag=True,
                                    help="Train the folds one after another (the old way), not as one batched ensemble."))
    for option in reversed(options):
        fn = option(fn)
    return fn


def _config(options: dict[str, Any]) -> TrainConfig:
    # Commands without some training options (layers, baseline) leave them at the preset's value.
    overrides = {key: options.pop(key, None) for key in
                 ("modalities", "lam", "alpha", "val", "epochs", "batch_size", "lr", "d", "frame_pool", "seed",
                  "device", "num_threads", "precision")}
    if options.pop("compile_step", None):
        overrides["compile"] = True
    sets_text = options.pop("sets_text")
    if sets_text:
        overrides["sets"] = parse_sets(sets_text)
    return preset(options.pop("preset"), **overrides)


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


@click.group()
def cli() -> None:
    """Stage 2: train the light head on cached features, leave-one-group-out."""


@cli.command()
@click.option("--session", "--group", "group", required=True, help="The test group (the IEMOCAP session, 1..5; --group for CSV corpora).")
@_training_options(sequential=False)
@domain_errors
def fold(group: str, manifest: str, store: tuple[str, ...], out_dir: str, note: str | None, as_json: bool, **options: Any) -> None:
    """Train on every group but one and test on it."""
    from train.loop import train_fold
    from train.report import pct

    cfg = _config(options)
    result = train_fold(cfg, manifest, list(store), group, out_dir, progress=True)
    m = result.metrics
    text = (f"fold {result.group}: ACC {pct(m['acc'])}  WF1 {pct(m['wf1'])}  UA {pct(m['ua'])}  macro-F1 {pct(m['macro_f1'])}"
            f"  (n_test {m['n_test']}, epoch {result.best_epoch}); outputs in {out_dir}")
    if note:
        text = f"{note}\n{text}"
    _emit(result.to_json(), as_json, text)


_BASELINE_SETS = click.option(
    "--baseline-sets", "baseline_sets", default=None,
    help="A second, classical baseline: the same linear probe over these store sets, e.g. a=egemaps-functionals.")


def _classical(text: str | None):
    from train.baseline import parse_baseline_sets

    return parse_baseline_sets(text) if text else None


@cli.command()
@_training_options
@click.option("--scheduler", default=None, help="Run folds on Dask: local:N (N worker processes here) or tcp://HOST:PORT.")
@_BASELINE_SETS
@domain_errors
def cv(manifest: str, store: tuple[str, ...], out_dir: str, note: str | None, as_json: bool, scheduler: str | None,
       baseline_sets: str | None, sequential: bool, **options: Any) -> None:
    """Every fold, then mean and std over folds (tables and plots in --out).

    Beside the head: a linear probe on the same inputs and folds (the baseline column), and the
    head-minus-baseline difference with a 95% paired interval over folds."""
    from train.report import cv_markdown

    report = run_cv(_config(options), manifest, list(store), out_dir, scheduler=scheduler, note=note,
                    classical=_classical(baseline_sets), sequential=sequential)
    doc = report.to_json()
    _emit(doc, as_json, cv_markdown(doc) + f"outputs in {out_dir}")


@cli.command()
@_training_options
@click.option("--space", "space_file", default=None, type=click.Path(dir_okay=False),
              help="The search space, JSON: field -> [values] or {\"low\", \"high\", \"log\"}. Default: lr, d, dropout, weight_decay and epochs (train.tune.DEFAULT_SPACE) on top of --preset.")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="How many trials to draw (default: the whole grid of a --space of lists, else 12).")
@click.option("--scheduler", default=None, help="Run trials on Dask: local:N or tcp://HOST:PORT.")
@click.option("--test/--no-test", "run_test", default=True, show_default=True,
              help="After the choice, test once, nested, into OUT/test: each fold runs the trial best on its own validation split.")
@_BASELINE_SETS
@domain_errors
def tune(manifest: str, store: tuple[str, ...], out_dir: str, note: str | None, as_json: bool, space_file: str | None,
         trials: int | None, scheduler: str | None, run_test: bool, baseline_sets: str | None, sequential: bool,
         **options: Any) -> None:
    """Choose settings on validation data only, then test the choice once.

    Each trial runs every fold without its test group: scored by the mean over folds of the best
    validation WF1 (validation carved from the training groups). The best trial becomes OUT/preset.json,
    which --preset OUT/preset.json accepts. That choice has seen every group (each fold's test group
    is training data in the others), so the test is nested: each fold runs the trial best on its own
    validation split, tested once, into OUT/test."""
    from train.report import tune_markdown
    from train.tune import read_space, run_tune

    space = read_space(space_file) if space_file else None
    report = run_tune(_config(options), manifest, list(store), out_dir, space=space, n_trials=trials, scheduler=scheduler,
                      test=run_test, classical=_classical(baseline_sets), note=note, sequential=sequential)
    doc = report.to_json()
    _emit(doc, as_json, tune_markdown(doc) + f"outputs in {out_dir}")


@cli.command()
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False), help="The manifest (JSONL) the store was extracted from.")
@click.option("--store", required=True, multiple=True, help="A feature store; repeat it for one store per modality.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Write baseline.md, .csv, .json and report.html here.")
@click.option("--preset", default="fast", show_default=True, help=_PRESET_HELP)
@click.option("--modalities", default=None, help="Comma-separated subset of a,t,v. Default: the preset's.")
@click.option("--sets", "sets_text", default=None, help="Feature-set names per modality, e.g. a=audio,t=text,v=video.")
@click.option("--val", type=click.Choice(VAL_MODES), default=None, help="The validation mode of the folds (the probe trains on the head's training rows).")
@click.option("--seed", type=int, default=None, help="Seed of the validation split (as in `train cv`) and of the probe.")
@_BASELINE_SETS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@domain_errors
def baseline(manifest: str, store: tuple[str, ...], out_dir: str | None, preset: str, modalities: str | None,
             sets_text: str | None, val: str | None, seed: int | None, baseline_sets: str | None, as_json: bool) -> None:
    """The linear probe alone, on the folds of `train cv`.

    Per utterance the mean and std over time of each input set (multi-layer sets: of the layer
    average), standardised on the fold's training rows, then logistic regression."""
    from train.baseline import run_baseline
    from train.report import baseline_markdown

    cfg = _config({"preset": preset, "modalities": modalities, "sets_text": sets_text, "val": val, "seed": seed})
    report = run_baseline(cfg, manifest, list(store), out_dir, classical=_classical(baseline_sets))
    doc = report.to_json()
    _emit(doc, as_json, baseline_markdown(doc) + (f"outputs in {out_dir}" if out_dir else ""))


@cli.command()
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False), help="The manifest (JSONL) the store was extracted from.")
@click.option("--store", required=True, multiple=True, help="A feature store; repeat it for one store per modality.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Write layers.md, .csv, .json, layers.png and report.html here.")
@click.option("--modality", type=click.Choice(("a", "t", "v")), default="a", show_default=True,
              help="The modality whose multi-layer set is scanned.")
@click.option("--preset", default="fast", show_default=True, help=_PRESET_HELP)
@click.option("--sets", "sets_text", default=None, help="Feature-set names per modality, e.g. a=audio-layers.")
@click.option("--val", type=click.Choice(VAL_MODES), default=None, help="The validation mode of the folds (the probe trains on the head's training rows).")
@click.option("--seed", type=int, default=None, help="Seed of the validation split (as in `train cv`) and of the probe.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@domain_errors
def layers(manifest: str, store: tuple[str, ...], out_dir: str, modality: str, preset: str, sets_text: str | None,
           val: str | None, seed: int | None, as_json: bool) -> None:
    """The linear probe on each stored layer, on the folds of `train cv`.

    For a set extracted with `extract run --layers all`: per layer, the probe of `train baseline`
    on that layer alone; the score per layer with its spread over folds (layers.png), beside the
    probe on the layer average, in layers.md, layers.json and report.html."""
    from train.layerscan import run_layers
    from train.report import layers_markdown

    cfg = _config({"preset": preset, "sets_text": sets_text, "val": val, "seed": seed})
    report = run_layers(cfg, manifest, list(store), out_dir, modality=modality)
    doc = report.to_json()
    _emit(doc, as_json, layers_markdown(doc) + f"outputs in {out_dir}")


@cli.command()
@_training_options
@click.option("--settings", default=",".join(SETTINGS), show_default=True, help="Modality settings, comma-separated, e.g. A,T,A+V+T.")
@click.option("--lambdas", default=",".join(f"{x:g}" for x in LAMBDAS), show_default=True, help="Lambdas for the A+V+T setting.")
@click.option("--scheduler", default=None, help="Run folds on Dask: local:N or tcp://HOST:PORT.")
@_BASELINE_SETS
@domain_errors
def ablate(manifest: str, store: tuple[str, ...], out_dir: str, note: str | None, as_json: bool, settings: str, lambdas: str,
           scheduler: str | None, baseline_sets: str | None, sequential: bool, **options: Any) -> None:
    """The paper's ablations (Tables 1 and 2) beside the paper's figures.

    Cross-validates every modality setting, and every lambda for A+V+T; each setting stands beside
    the linear probe on its inputs, and beside the reference setting, with 95% paired intervals.
    The reference is A+V+T at --lambda (the preset's lambda when not given), one of --lambdas."""
    from train.report import ablation_markdown

    try:
        lams = [float(x) for x in lambdas.split(",") if x.strip()]
    except ValueError as err:
        raise click.ClickException(f"--lambdas {lambdas!r}: give numbers separated by commas, e.g. 0,0.1,1") from err
    if options["lam"] is not None and options["lam"] not in lams:
        # In an ablation --lambda trains nothing by itself: it only picks the reference row.
        raise click.ClickException(f"--lambda {options['lam']:g} picks the reference row of the ablation, so it must be "
                                   f"one of --lambdas {','.join(f'{x:g}' for x in lams)}")
    report = run_ablation(_config(options), manifest, list(store), out_dir, settings=[s for s in settings.split(",") if s.strip()],
                          lambdas=lams, scheduler=scheduler, note=note, classical=_classical(baseline_sets),
                          sequential=sequential)
    doc = report.to_json()
    _emit(doc, as_json, ablation_markdown(doc) + f"outputs in {out_dir}")


@cli.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False), help="A fold's output folder (model.pt + config.json).")
@click.option("--store", multiple=True, help="The feature store(s) holding the utterances to label; repeat for one per modality.")
@click.option("--manifest", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Label this manifest's utterances: from --store, or without it from their recordings (extracted as the checkpoint's were).")
@click.option("--audio", default=None, type=click.Path(exists=True, dir_okay=False), help="One recording to label: its audio file.")
@click.option("--video", default=None, type=click.Path(exists=True, dir_okay=False), help="Its video file (checkpoints with a video input).")
@click.option("--text", default=None, help="Its transcript (checkpoints with a text input).")
@click.option("--cache", default=None, type=click.Path(file_okay=False),
              help="Where features made from recordings are kept and reused [default: predict-cache beside the checkpoint folder].")
@click.option("--encoder", "encoders", multiple=True,
              help="[MODALITY=]SPEC: the encoder again where the checkpoint names only its folder, e.g. audio=hf:models/wav2vec2-base.")
@click.option("--weights", multiple=True, help="[MODALITY=]FILE: the weights file given to `extract run --weights`.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled (.pt/.pth) --weights file: only for files you trust.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False), help="Write the predictions to FILE.csv or FILE.json.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Utterances per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="Where the head (and any encoder) runs: cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as one JSON object on stdout.")
@domain_errors
def predict(checkpoint: str, store: tuple[str, ...], manifest: str | None, audio: str | None, video: str | None,
            text: str | None, cache: str | None, encoders: tuple[str, ...], weights: tuple[str, ...], trust_pickle: bool,
            out_file: str | None, batch_size: int, device: str, as_json: bool) -> None:
    """Label utterances with a trained checkpoint, from features or recordings.

    With --store, labels the features there. Without it, labels recordings never extracted
    (a --manifest, or one recording: --audio [--video] [--text]): extracts exactly what the
    checkpoint was trained on into --cache, and refuses an encoder that differs from training.
    Without --out, prints each utterance's predicted class and probability (from recordings:
    every class's); --out writes every class's probability to the file and prints how many
    utterances went to each class. Exit code 3 when some recordings could not be labelled."""
    from collections import Counter

    from train.checkpoint import Checkpoint
    from train.media import encoder_sources, trained_sets
    from train.predict import check_predictions_out, predict_media, write_predictions
    from train.predict import predict as run_predict

    one = audio is not None or video is not None or text is not None
    if one and (store or manifest):
        raise click.ClickException("--audio/--video/--text label one recording: leave out --store and --manifest")
    sources = None
    if encoders or weights or trust_pickle:
        sources = encoder_sources(trained_sets(Checkpoint.load(checkpoint)), encoders, weights, trust_pickle)
    common = {"cache": cache, "sources": sources, "batch_size": batch_size, "device": device}
    if out_file:
        check_predictions_out(out_file)  # before labelling, which may extract features for minutes
    if one:
        result = predict_media(checkpoint, audio=audio, video=video, text=text, progress=True, **common)
    else:
        result = run_predict(checkpoint, list(store) or None, manifest, progress=not store, **common)
    predictions = result.predictions
    if out_file:
        write_predictions(result, out_file)
        counts = Counter(p.pred for p in predictions)
        shown = (f"labelled {len(predictions)} utterances: "
                + ", ".join(f"{label} {counts[label]}" for label in sorted(counts))
                + f"; predictions and class probabilities written to {out_file}")
    else:
        if result.cache is None:
            shown = "\n".join(f"{p.utt_id}\t{p.pred}\t{max(p.probs.values()):.3f}" for p in predictions)
        else:
            shown = "\n".join(f"{p.utt_id}\t{p.pred}\t" + "  ".join(f"{c} {v:.3f}" for c, v in sorted(p.probs.items(), key=lambda cv: -cv[1]))
                             for p in predictions)
        print(f"{len(predictions)} utterance{'' if len(predictions) == 1 else 's'} labelled", file=sys.stderr)
    if result.cache is not None:
        print("features: " + ", ".join(f"{m} {result.extracted[m]} extracted, {result.reused[m]} from the cache"
                                      for m in result.extracted) + f" ({result.cache})", file=sys.stderr)
        for f in result.failures:
            print(f"not labelled: {f.utt_id} [{f.modality} {f.stage}] {f.message}", file=sys.stderr)
    _emit(result.to_json(), as_json, shown)
    if result.failures:
        raise SystemExit(ExitCode.INCOMPLETE)
