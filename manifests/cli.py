"""``manifests``: write and inspect corpus manifests (JSON Lines, one utterance per line)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .csvcorpus import parse_csv
from .demo import make_demo_corpus
from .iemocap import CLASS_SETS, STANDARD_COUNTS, compare_counts, parse_iemocap
from .io import ManifestError, read_manifest, write_manifest
from .recipes import RecipeResult, parse_cremad, parse_emodb, parse_meld, parse_msppodcast, parse_ravdess
from .recipes.msppodcast import CLASS_SETS as MSP_CLASS_SETS
from .recipes.msppodcast import TEST_SETS as MSP_TEST_SETS
from .summary import SYNTHETIC_BANNER, summarize


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


@cli.command("iemocap")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write (JSONL).")
@click.option(
    "--classes", type=click.Choice(CLASS_SETS), default="six", show_default=True,
    help="six: hap neu ang exc sad fru; four: exc merged into hap, hap neu ang sad; all: every label.",
)
@click.option("--expect-standard", is_flag=True, help="Fail unless the counts per session are the usual ones (7,380 six-class, 5,531 four-class).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def iemocap_command(root: Path, out: Path, classes: str, expect_standard: bool, as_json: bool) -> None:
    """Manifest of an untouched IEMOCAP_full_release tree.

    ROOT is the IEMOCAP_full_release folder (or the one above it). Reads Session1..5: EmoEvaluation summary lines, transcriptions, sentence wavs
    and dialog videos. Utterances whose wav is missing are reported and left out.
    """
    if expect_standard and classes not in STANDARD_COUNTS:
        raise click.UsageError(f"--expect-standard needs --classes {' or '.join(STANDARD_COUNTS)}: there is no standard count for {classes!r}")
    try:
        result = parse_iemocap(root, classes=classes)
    except ManifestError as err:
        raise click.ClickException(str(err)) from err
    _warn(result.problems)
    if not result.rows:
        raise click.ClickException(f"{result.root}: no {classes}-class utterance with a wav found; nothing written")
    write_manifest(result.rows, out)
    summary = summarize(result.rows, synthetic=result.synthetic)
    if as_json:
        payload = summary.to_json() | {
            "manifest": str(out),
            "root": str(result.root),
            "classes_setting": classes,
            "missing_audio": result.missing_audio,
            "dropped_labels": dict(sorted(result.dropped.items())),
            "problems": result.problems,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(summary.table())
        note = f"wrote {len(result.rows)} utterances to {out}"
        if result.missing_audio:
            note += f"; {len(result.missing_audio)} left out for a missing wav"
        if result.dropped:
            note += "; labels outside the setting: " + ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items()))
        click.echo(note)
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


def _recipe(parse, root: Path, out: Path, expect_standard: bool, as_json: bool, **options) -> None:
    """Run one recipe: warnings, the manifest, its summary, then the check against the published counts."""
    try:
        result: RecipeResult = parse(root, **options)
    except ManifestError as err:
        raise click.ClickException(str(err)) from err
    _warn(result.problems)
    if not result.rows:
        raise click.ClickException(f"{result.root}: no {result.corpus} recording found; nothing written")
    write_manifest(result.rows, out)
    summary = summarize(result.rows, synthetic=False)
    if as_json:
        click.echo(json.dumps(summary.to_json() | {
            "manifest": str(out), "corpus": result.corpus, "root": str(result.root), "standard": result.standard,
            "differences": result.differences, "dropped": dict(sorted(result.dropped.items())), "problems": result.problems,
        }, indent=2))
    else:
        click.echo(summary.table())
        note = f"wrote {len(result.rows)} {result.corpus} utterances to {out}"
        if result.dropped:
            note += "; left out: " + ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items()))
        click.echo(note)
    if expect_standard:
        try:
            result.require_standard()
        except ManifestError as err:
            raise click.ClickException(f"{err}\n(the manifest was written to {out} all the same)") from err


def _recipe_options(func):
    func = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")(func)
    func = click.option("--expect-standard", is_flag=True, help="Fail unless the corpus matches its published counts (naming what differs).")(func)
    func = click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write (JSONL).")(func)
    return click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))(func)


@cli.command("emodb")
@_recipe_options
def emodb_command(root: Path, out: Path, expect_standard: bool, as_json: bool) -> None:
    """Manifest of EmoDB (Berlin) as distributed.

    ROOT holds its wav/ folder (or is the folder above it). Speaker, sentence and
    emotion come from each file name (03a01Fa.wav); the group is the speaker.
    --expect-standard: 535 clips, 10 speakers, 7 emotions.
    """
    _recipe(parse_emodb, root, out, expect_standard, as_json)


@cli.command("ravdess")
@_recipe_options
def ravdess_command(root: Path, out: Path, expect_standard: bool, as_json: bool) -> None:
    """Manifest of RAVDESS speech as distributed.

    ROOT holds Actor_01 .. Actor_24 (the unpacked audio-only zip, and the
    audio-video zips when you have them): one row per speech recording, audio from
    its 03-* WAV, video from its 01-* MP4; song is left out. The group is the actor.
    --expect-standard: 1440 recordings, 60 per actor.
    """
    _recipe(parse_ravdess, root, out, expect_standard, as_json)


@cli.command("cremad")
@_recipe_options
def cremad_command(root: Path, out: Path, expect_standard: bool, as_json: bool) -> None:
    """Manifest of CREMA-D as distributed.

    ROOT holds AudioWAV/, VideoFlash/ (optional) and VideoDemographics.csv.
    Sentence and emotion from each clip name (1001_DFA_ANG_XX.wav), gender from
    the demographics table; the group is the actor. --expect-standard: 7442 clips
    of 91 actors.
    """
    _recipe(parse_cremad, root, out, expect_standard, as_json)


@cli.command("meld")
@_recipe_options
def meld_command(root: Path, out: Path, expect_standard: bool, as_json: bool) -> None:
    """Manifest of MELD as distributed, with its own split.

    ROOT is MELD.Raw: the train/dev/test *_sent_emo.csv tables and the clip
    folders train_splits/, dev_splits_complete/, output_repeated_splits_test/.
    Rows carry their split; train then trains on train, selects on dev, tests on
    test. --expect-standard: 9989 / 1109 / 2610 utterances, every clip present.
    """
    _recipe(parse_meld, root, out, expect_standard, as_json)


@cli.command("msp-podcast")
@_recipe_options
@click.option("--classes", type=click.Choice(MSP_CLASS_SETS), default="eight", show_default=True,
              help="eight: A H S N U F D C; all: also O (other) and X (no agreement).")
@click.option("--test-set", type=click.Choice(MSP_TEST_SETS), default="Test1", show_default=True,
              help="The partition that becomes the test split; the other test sets are left out.")
def msppodcast_command(root: Path, out: Path, expect_standard: bool, as_json: bool, classes: str, test_set: str) -> None:
    """Manifest of MSP-Podcast as distributed, with its split.

    ROOT holds Labels/labels_consensus.csv and Audios/ (Transcripts/ is read when
    there). Train, Development and the test set become train, dev and test.
    --expect-standard: every labelled segment has its audio.
    """
    _recipe(parse_msppodcast, root, out, expect_standard, as_json, classes=classes, test_set=test_set)


@cli.command("csv")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write (JSONL).")
@click.option("--id-col", required=True, help="Column with the utterance id (unique).")
@click.option("--audio-col", required=True, help="Column with the audio path (relative paths are read from the table's folder).")
@click.option("--label-col", required=True, help="Column with the emotion label.")
@click.option("--group-col", required=True, help="Column that becomes the fold key (speaker, session, actor...).")
@click.option("--text-col", default=None, help="Column with the transcript.")
@click.option("--video-col", default=None, help="Column with a video path.")
@click.option("--corpus", default="custom", show_default=True, help="Corpus name stored in every row.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def csv_command(
    table: Path, out: Path, id_col: str, audio_col: str, label_col: str, group_col: str,
    text_col: str | None, video_col: str | None, corpus: str, as_json: bool,
) -> None:
    """Manifest of any corpus listed in a table.

    TABLE is a CSV file (TSV when it ends in .tsv) with one row per utterance,
    for a corpus without a recipe; the group column is the fold key.
    """
    try:
        rows = parse_csv(
            table, id_col=id_col, audio_col=audio_col, label_col=label_col, group_col=group_col,
            text_col=text_col, video_col=video_col, corpus=corpus,
        )
    except ManifestError as err:
        raise click.ClickException(str(err)) from err
    write_manifest(rows, out)
    summary = summarize(rows, synthetic=False)
    if as_json:
        click.echo(json.dumps(summary.to_json() | {"manifest": str(out)}, indent=2))
    else:
        click.echo(summary.table())
        click.echo(f"wrote {len(rows)} utterances to {out}")


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
def demo_command(out: Path, utterances: int, seed: int, manifest: Path | None, workers: int, as_json: bool) -> None:
    """Write the SYNTHETIC IEMOCAP-layout demo corpus.

    Writes OUT/IEMOCAP_full_release: five sessions of synthetic speech,
    transcripts and drawn faces in the layout of the real release. A demo and
    test bed, never a benchmark.
    """
    reused = (out / "IEMOCAP_full_release").exists()
    try:
        root = make_demo_corpus(out, utterances=utterances, seed=seed, progress=not as_json, workers=workers)
    except ManifestError as err:
        raise click.ClickException(str(err)) from err
    payload: dict = {"root": str(root), "synthetic": True, "utterances": utterances, "seed": seed, "reused": reused}
    summary = None
    if manifest is not None:
        result = parse_iemocap(root, classes="six")
        _warn(result.problems)
        write_manifest(result.rows, manifest)
        summary = summarize(result.rows, synthetic=True)
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
def summary_command(manifest: Path, as_json: bool) -> None:
    """Counts per class and group of a manifest."""
    try:
        rows = read_manifest(manifest)
    except ManifestError as err:
        raise click.ClickException(str(err)) from err
    summary = summarize(rows)
    if as_json:
        click.echo(json.dumps(summary.to_json() | {"manifest": str(manifest)}, indent=2))
    else:
        click.echo(summary.table())
