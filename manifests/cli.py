"""``manifests``: write and inspect corpus manifests (JSON Lines, one utterance per line)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from democorpus.corpus import make_demo_corpus
from emocache.cli import domain_errors

from .csvcorpus import parse_csv
from .iemocap import CLASS_SETS, STANDARD_COUNTS, compare_counts, parse_iemocap
from .io import read_manifest, write_manifest
from .recipes import RECIPES, Recipe, StandardCountError
from .schema import Utterance
from .summary import SYNTHETIC_BANNER, Summary, summarize


@click.group()
def cli() -> None:
    """Write and inspect corpus manifests.

    A manifest is a JSON Lines file, one utterance per line (id, label, group,
    media paths, times, transcript): what extract and train read.

    Recipes read a public corpus exactly as it is distributed: iemocap, emodb,
    ravdess, cremad, meld, msp-podcast (each with --expect-standard to check it
    against the published counts). Any other corpus: csv.
    """


def _warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def _write(rows: list[Utterance], problems: list[str], out: Path, *, synthetic: bool, nothing: str) -> Summary:
    """Warn about ``problems``, write ``rows`` to ``out`` and return their summary.

    ``nothing``: what the error says when there are no rows (before "; nothing written")."""
    _warn(problems)
    if not rows:
        raise click.ClickException(f"{nothing}; nothing written")
    write_manifest(rows, out)
    return summarize(rows, synthetic=synthetic)


def _show(summary: Summary, as_json: bool, payload: dict, note: str | None = None) -> None:
    """The summary as JSON with ``payload`` added, or as its table followed by ``note``."""
    if as_json:
        click.echo(json.dumps(summary.to_json() | payload, indent=2))
        return
    click.echo(summary.table())
    if note is not None:
        click.echo(note)


@cli.command("iemocap")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write (JSONL).")
@click.option(
    "--classes", type=click.Choice(CLASS_SETS), default="six", show_default=True,
    help="six: hap neu ang exc sad fru; four: exc merged into hap, hap neu ang sad; all: every label.",
)
@click.option("--expect-standard", is_flag=True, help="Fail unless the counts per session are the usual ones (7,380 six-class, 5,531 four-class).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@domain_errors
def iemocap_command(root: Path, out: Path, classes: str, expect_standard: bool, as_json: bool) -> None:
    """Manifest of an untouched IEMOCAP_full_release tree.

    ROOT is the IEMOCAP_full_release folder (or the one above it). Reads Session1..5: EmoEvaluation summary lines, transcriptions, sentence wavs
    and dialog videos. Utterances whose wav is missing are reported and left out.
    """
    if expect_standard and classes not in STANDARD_COUNTS:
        raise click.UsageError(f"--expect-standard needs --classes {' or '.join(STANDARD_COUNTS)}: there is no standard count for {classes!r}")
    result = parse_iemocap(root, classes=classes)
    summary = _write(result.rows, result.problems, out, synthetic=result.synthetic,
                     nothing=f"{result.root}: no {classes}-class utterance with a wav found")
    note = f"wrote {len(result.rows)} utterances to {out}"
    if result.missing_audio:
        note += f"; {len(result.missing_audio)} left out for a missing wav"
    if result.dropped:
        note += "; labels outside the setting: " + ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items()))
    _show(summary, as_json, {
        "manifest": str(out),
        "root": str(result.root),
        "classes_setting": classes,
        "missing_audio": result.missing_audio,
        "dropped_labels": dict(sorted(result.dropped.items())),
        "problems": result.problems,
    }, note)
    if expect_standard:
        expected = STANDARD_COUNTS[classes]
        differences = compare_counts(result.rows, expected)
        if differences:
            figures = " / ".join(f"{n:,}" for _, n in sorted(expected.items()))
            raise click.ClickException(
                f"the {classes}-class counts differ from the standard IEMOCAP figures "
                f"({sum(expected.values()):,} in all: {figures} for sessions 1-5):\n  "
                + "\n  ".join(differences)
                + f"\n(the manifest was written to {out} all the same; check that the tree is complete and untouched)"
            )


def _recipe_options(func):
    func = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")(func)
    func = click.option("--expect-standard", is_flag=True, help="Fail unless the corpus matches its published counts (naming what differs).")(func)
    func = click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write (JSONL).")(func)
    return click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))(func)


def recipe_command(recipe: Recipe) -> click.Command:
    """``manifests NAME ROOT --out FILE [--expect-standard] [--json]`` and the recipe's own choices:
    warnings, the manifest, its summary, then the check against the published counts."""

    @domain_errors
    def run(root: Path, out: Path, expect_standard: bool, as_json: bool, **options: str) -> None:
        result = recipe.parse(root, **options)
        summary = _write(result.rows, result.problems, out, synthetic=False, nothing=f"{result.root}: no {result.corpus} recording found")
        note = f"wrote {len(result.rows)} {result.corpus} utterances to {out}"
        if result.dropped:
            note += "; left out: " + ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items()))
        _show(summary, as_json, {
            "manifest": str(out), "corpus": result.corpus, "root": str(result.root), "standard": result.standard,
            "differences": result.differences, "dropped": dict(sorted(result.dropped.items())), "problems": result.problems,
        }, note)
        if expect_standard:
            try:
                result.require_standard()
            except StandardCountError as err:
                raise click.ClickException(f"{err}\n(the manifest was written to {out} all the same)") from err

    for option in reversed(recipe.options):
        run = click.option(f"--{option.name.replace('_', '-')}", type=click.Choice(option.choices), default=recipe.default(option),
                           show_default=True, help=option.help)(run)
    return click.command(recipe.name, help=recipe.help)(_recipe_options(run))


for _recipe in RECIPES.values():
    cli.add_command(recipe_command(_recipe))


@cli.command("csv")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write (JSONL).")
@click.option("--id-col", required=True, help="Column with the utterance id (unique).")
@click.option("--audio-col", required=True, help="Column with the audio path (relative paths are read from the table's folder).")
@click.option("--label-col", required=True, help="Column with the emotion label.")
@click.option("--group-col", required=True, help="Column that becomes the fold key (speaker, session, actor...).")
@click.option("--text-col", default=None, help="Column with the transcript.")
@click.option("--video-col", default=None, help="Column with a video path.")
@click.option("--speaker-col", default=None,
              help="Column with the speaker, when the group column is not it (validation splits then keep speakers apart).")
@click.option("--corpus", default="custom", show_default=True, help="Corpus name stored in every row.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@domain_errors
def csv_command(
    table: Path, out: Path, id_col: str, audio_col: str, label_col: str, group_col: str,
    text_col: str | None, video_col: str | None, speaker_col: str | None, corpus: str, as_json: bool,
) -> None:
    """Manifest of any corpus listed in a table.

    TABLE is a CSV file (TSV when it ends in .tsv) with one row per utterance,
    for a corpus without a recipe; the group column is the fold key.
    """
    rows = parse_csv(
        table, id_col=id_col, audio_col=audio_col, label_col=label_col, group_col=group_col,
        text_col=text_col, video_col=video_col, speaker_col=speaker_col, corpus=corpus,
    )
    summary = _write(rows, [], out, synthetic=False, nothing=f"{table}: no utterance")
    _show(summary, as_json, {"manifest": str(out)}, f"wrote {len(rows)} utterances to {out}")


@cli.command("demo")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--utterances", default=400, show_default=True, type=click.IntRange(min=30), help="Six-class utterances (spread over 5 sessions).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed; the same seed gives byte-identical files.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write its six-class manifest here.")
@click.option(
    "--workers", type=click.IntRange(min=1), default=min(2, os.cpu_count() or 1), show_default=True,
    help="Processes writing dialogs; the files are the same for any number.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@domain_errors
def demo_command(out: Path, utterances: int, seed: int, manifest: Path | None, workers: int, as_json: bool) -> None:
    """Write the SYNTHETIC IEMOCAP-layout demo corpus.

    Writes OUT/IEMOCAP_full_release: five sessions of synthetic speech,
    transcripts and drawn faces in the layout of the real release. A demo and
    test bed, never a benchmark.
    """
    reused = (out / "IEMOCAP_full_release").exists()
    root = make_demo_corpus(out, utterances=utterances, seed=seed, progress=not as_json, workers=workers)
    payload: dict = {"root": str(root), "synthetic": True, "utterances": utterances, "seed": seed, "reused": reused}
    summary = None
    if manifest is not None:
        result = parse_iemocap(root, classes="six")
        summary = _write(result.rows, result.problems, manifest, synthetic=True, nothing=f"{root}: no six-class utterance")
        payload |= {"manifest": str(manifest), "summary": summary.to_json()}
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(SYNTHETIC_BANNER)
    click.echo(f"corpus: {root}" + (" (already there with this size and seed: reused)" if reused else ""))
    if summary is None:
        click.echo(f"next: manifests iemocap {root} --out demo.jsonl")
        return
    click.echo(summary.table(banner=False))
    click.echo(f"wrote the six-class manifest to {manifest}")


@cli.command("summary")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@domain_errors
def summary_command(manifest: Path, as_json: bool) -> None:
    """Counts per class and group of a manifest."""
    summary = summarize(read_manifest(manifest))
    _show(summary, as_json, {"manifest": str(manifest)})
