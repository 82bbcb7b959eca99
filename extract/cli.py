"""``extract``: stage 1, frozen encoders over a manifest into a feature store."""
from __future__ import annotations

import json

import click

from emocache.cli import domain_errors
from emocache.scheduler import SCHEDULER_HELP
from features import STORE_DTYPES

from .base import COMPUTE_DTYPES, DEFAULTS, MODALITIES


@click.group()
def cli() -> None:
    """Run frozen encoders over a manifest and cache their features in a store."""


@cli.command()
@click.option("--modality", required=True, type=click.Choice(MODALITIES), help="Which modality to extract.")
@click.option("--manifest", "manifest", required=True, type=click.Path(dir_okay=False), help="The manifest (JSONL) to extract.")
@click.option("--store", "store", required=True, help="The feature store: a .h5/.hdf5 file or a .zarr folder.")
@click.option("--set", "set_name", default=None, help="Name of the feature set in the store [default: the modality].")
@click.option("--encoder", default=None, help="Encoder spec, KIND or KIND:ARG (see `extract encoders`) [default: the modality's default].")
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu, cuda or cuda:N.")
@click.option("--dtype", type=click.Choice(COMPUTE_DTYPES), default=None, help="Compute dtype on the device [default: float16 on cuda, float32 on cpu].")
@click.option("--store-dtype", type=click.Choice(STORE_DTYPES), default=None, help="Dtype the features are stored in [default: float16; float32 for encoders whose values exceed float16, e.g. ComParE].")
@click.option("--batch-seconds", type=float, default=None, help="Total cost per batch: media seconds (audio, video) or tokens (text) [default: per encoder].")
@click.option("--batch-size", type=int, default=None, help="Utterances per batch (instead of --batch-seconds).")
@click.option("--limit", type=int, default=None, help="Extract at most N of the utterances still to do.")
@click.option("--retry-failed", is_flag=True, help="Try again the utterances that failed in earlier runs.")
@click.option("--layers", default=None, help="Hidden states to keep: last, all, or indices like 0,6,12 (hf encoders).")
@click.option("--weights", type=click.Path(exists=True), default=None, help="Weights file for encoders that take one.")
@click.option("--trust-pickle", is_flag=True, default=None, help="Allow a pickled (.pt/.pth) --weights file: only for files you trust.")
@click.option("--frames", type=int, default=None, help="Frames sampled per clip (video encoders).")
@click.option("--max-tokens", type=int, default=None, help="Truncate transcripts to this many tokens (text encoders) [default: the model's maximum].")
@click.option("--scheduler", default=None, help=SCHEDULER_HELP)
@click.option("--staging", type=click.Path(file_okay=False), default=None, help="Folder of the local staging copy of an s3:// --store (shared by all workers of a tcp:// scheduler) [default: ~/.cache/emocache/staging].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@domain_errors
def run(modality, manifest, store, set_name, encoder, device, dtype, store_dtype, batch_seconds, batch_size, limit,
        retry_failed, layers, weights, trust_pickle, frames, max_tokens, scheduler, staging, as_json) -> None:
    """Extract one modality's features for every utterance of a manifest.

    Resumes: utterances already in the set are skipped. Bad input (a missing or
    broken file, an empty transcript) is recorded as failed and the run goes on;
    the exit code is then 3 and `--retry-failed` tries those again. An s3://
    store is extracted into a local staging copy and published when the set is
    complete (features/SHARING.md).
    """
    from .pipeline import run_extraction

    summary = run_extraction(
        manifest, store, modality, set_name=set_name, encoder=encoder, device=device, dtype=dtype,
        store_dtype=store_dtype, batch_seconds=batch_seconds, batch_size=batch_size, limit=limit,
        retry_failed=retry_failed, scheduler=scheduler, progress=not as_json, staging=staging,
        options={"layers": layers, "weights": weights, "trust_pickle": trust_pickle, "frames": frames,
                 "max_tokens": max_tokens},
    )
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
    else:
        _print_summary(summary, store)
    if summary.exit_code:
        raise SystemExit(summary.exit_code)


_SHOWN_FAILURES = 25


def _print_summary(summary, store: str) -> None:
    if summary.already_complete:
        line = f"set {summary.set_name!r} in {store} is already complete for this manifest: {summary.skipped} utterances present, nothing to do"
        if summary.failed_before:
            line += f" ({summary.failed_before} failed in an earlier run; --retry-failed tries them again)"
        click.echo(line)
    else:
        click.echo(
            f"extracted {summary.done} utterances into set {summary.set_name!r} of {store} in {summary.seconds:.1f} s "
            f"({summary.skipped} already present, {summary.failed} failed"
            + (f", {summary.failed_before} failed earlier" if summary.failed_before else "")
            + ")"
        )
    if summary.left and summary.publish is None:  # a run into s3:// says it in its publish line
        click.echo(f"{summary.left} utterance(s) of the manifest still to extract (--limit); run again to go on")
    if summary.publish is not None:
        click.echo(summary.publish.describe())
    for note in summary.notes:
        click.echo(f"warning: {note}")
    if summary.failures:
        click.echo(f"{len(summary.failures)} utterance(s) failed:")
        for utt_id, stage, message in summary.failures[:_SHOWN_FAILURES]:
            click.echo(f"  {utt_id} [{stage}] {message}")
        if len(summary.failures) > _SHOWN_FAILURES:
            click.echo(f"  ... and {len(summary.failures) - _SHOWN_FAILURES} more (--json lists them all)")
        if not summary.already_complete:
            click.echo("fix them and rerun with --retry-failed")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def encoders(as_json: bool) -> None:
    """List the registered encoders per modality, with each modality's default."""
    from .base import registered

    table: dict[str, dict] = {}
    for modality in MODALITIES:
        kinds = sorted(kind for (m, kind) in registered(modality))
        table[modality] = {"default": DEFAULTS.get(modality), "encoders": kinds}
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    for modality, entry in table.items():
        click.echo(f"{modality}: {', '.join(entry['encoders']) or '(none)'} (default: {entry['default']})")
