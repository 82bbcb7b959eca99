"""``features``: inspect, verify, convert and merge feature stores.

Each command parses, makes one library call, and prints; errors of the store
(``emocache.errors.EmocacheError``) become one-line messages (exit 1) through
``emocache.cli.domain_errors``; anything else keeps its traceback.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator

import click
from tqdm import tqdm

from emocache.cli import domain_errors
from emocache.errors import ExitCode
from features.base import FINISHED_PART, backends
from features.convert import convert as convert_store
from features.convert import merge as merge_stores
from features.store import open_store
from features.verify import verify as verify_store


@contextlib.contextmanager
def progress_bar(desc: str, *, disable: bool = False) -> Iterator[Callable[[int], None]]:
    """A ``progress`` callback whose bar starts at the first utterance: an error found before any
    (no store there, a bad manifest) then prints alone, not after an empty bar on its line."""
    bar = None

    def update(n: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=desc, unit="utt", disable=disable, leave=False)
        bar.update(n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


@click.group()
def cli() -> None:
    """Inspect, verify, convert and merge emocache feature stores.

    Formats by suffix: .h5/.hdf5 HDF5, .zarr Zarr v3. STORE is a path, or for Zarr stores also an http(s):// or s3:// URL (read only).

    Exit codes: 0 success; 1 the store cannot be read or the operation was
    refused (the message says why); 2 bad usage; 3 `verify` found missing or
    corrupt utterances.
    """


@cli.command("ls")
@click.argument("store")
@domain_errors
def ls(store: str) -> None:
    """List the feature sets of STORE with their utterance counts."""
    with open_store(store) as s:
        rows = [(name, s[name].info) for name in s.set_names()]
    for name, info in rows:
        layers = "" if info.layers is None else f" x {info.layers} layers"
        click.echo(f"{name}\t{info.count} utterances\t{info.dim} dims{layers}\t{info.dtype}\t{info.failed} failed")


def store_info(store: str) -> dict:
    """What `features info --json` prints: the store's format and, per set, its info and failures."""
    with open_store(store) as s:
        out = {"store": s.location, "format": s.format, "sets": {}}
        for name in s.set_names():
            fs = s[name]
            out["sets"][name] = fs.info.to_json() | {
                # Parts still being written; the finished data is not one of them.
                "parts": sorted({seg.part for seg in fs.segments} - {FINISHED_PART}),
                "finished": any(seg.part == FINISHED_PART for seg in fs.segments) and len(fs.segments) == 1,
                "failures": [f.to_json() for f in fs.failures()],
            }
    return out


@cli.command("info")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {\"sets\": {NAME: {\"count\", \"dim\", \"failed\", ...}}}.")
@domain_errors
def info(store: str, as_json: bool) -> None:
    """Show each set of STORE, its failures and provenance.

    Per set: utterance count, dims, layers, dtype, frame rate, bytes, whether
    it is finished (features/FORMAT.md) and which parts writers are adding,
    identity, provenance, the totals of what the encoder counted per utterance
    (e.g. video frames without a face), and every standing failure (id, stage,
    time, error).
    """
    data = store_info(store)
    if as_json:
        click.echo(json.dumps(data, indent=1, sort_keys=True))
        return
    click.echo(f"{data['store']} ({data['format']}): {len(data['sets'])} sets")
    for name, s in data["sets"].items():
        prov = s["provenance"]
        click.echo(f"\n[{name}]")
        click.echo(f"  utterances   {s['count']}")
        click.echo(f"  shape        {'(T, %d)' % s['dim'] if s['layers'] is None else '(%d, T, %d)' % (s['layers'], s['dim'])}")
        click.echo(f"  dtype        {s['dtype']}")
        click.echo(f"  frame rate   {s['frame_rate'] if s['frame_rate'] is not None else '-'}")
        click.echo(f"  bytes        {s['nbytes']}")
        click.echo(f"  finished     {'yes' if s['finished'] else 'no (run `features compact`)'}")
        click.echo(f"  parts        {', '.join(s['parts']) or '-'}")
        click.echo(f"  identity     {s['identity']}")
        click.echo(f"  encoder      {prov['encoder']}")
        click.echo(f"  manifest     {prov['manifest_hash']}")
        click.echo(f"  weights      {prov['weights_sha256'] or '-'}")
        click.echo(f"  layers kept  {prov['layers'] or '-'}")
        click.echo(f"  preprocessing {json.dumps(prov['preprocessing'], sort_keys=True)}")
        if s["counts"]:
            click.echo(f"  counts       {', '.join(f'{k} {v}' for k, v in s['counts'].items())}")
        click.echo(f"  made by      emocache {prov['package_version']} ({prov['git_commit'] or 'no git'}) on {prov['host'] or '?'} at {prov['created'] or '?'}")
        click.echo(f"  failed       {s['failed']}")
        for f in s["failures"]:
            click.echo(f"    {f['utt_id']}\t{f['stage']}\t{f['time']}\t{f['error']}")


@cli.command("verify")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Also check that every utterance of this manifest is in every set.")
@domain_errors
def verify(store: str, as_json: bool, manifest: str | None) -> None:
    """Recompute every utterance's checksum and check the store's structure.

    Every set the store lists must open, with all its segments and records.
    Prints one line per missing, corrupt, conflicting or (with --manifest)
    absent utterance, or unreadable set (set, id, kind, detail), and exits 3
    if there is any.
    """
    with progress_bar("verify", disable=as_json) as progress:
        report = verify_store(store, progress=progress, manifest=manifest)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1, sort_keys=True))
    else:
        for set_name, utt_id, kind, detail in report.problems:
            click.echo(f"{set_name}\t{utt_id}\t{kind}\t{detail}")
        total = sum(report.checked.values())
        if report.ok:
            click.echo(f"ok: {total} utterances in {len(report.checked)} sets match their checksums")
        else:
            click.echo(f"FAILED: {len(report.problems)} problems in {report.location}", err=True)
    if not report.ok:
        raise SystemExit(ExitCode.INCOMPLETE)


@cli.command("convert")
@click.argument("src")
@click.argument("dst")
@domain_errors
def convert(src: str, dst: str) -> None:
    """Copy store SRC into a new store DST (HDF5 <-> Zarr).

    DST's suffix picks its format. Values, ids, failures and provenance are
    copied bit for bit; each utterance's checksum is checked on the way.
    """
    with progress_bar("convert") as progress:
        report = convert_store(src, dst, progress=progress)
    for name, n in report.copied.items():
        click.echo(f"{name}: {n} utterances copied, {report.failures[name]} failures carried")


@cli.command("merge")
@click.argument("dst")
@click.argument("srcs", nargs=-1, required=True)
@click.option("--set", "sets", multiple=True, help="Merge only this set (repeatable; default all).")
@click.option("--part", default="main", show_default=True, help="The part of DST to write into.")
@domain_errors
def merge(dst: str, srcs: tuple[str, ...], sets: tuple[str, ...], part: str) -> None:
    """Copy the sets of stores (or parts) SRCS into DST.

    DST is created if absent. Utterances DST already has are skipped; a set
    whose identity differs between DST and a source is refused, naming both.
    """
    with progress_bar("merge") as progress:
        report = merge_stores(dst, srcs, sets=sets or None, part=part, progress=progress)
    for name, n in report.copied.items():
        click.echo(f"{name}: {n} utterances copied, {report.skipped[name]} already there, {report.failures[name]} failures carried")


@cli.command("rm")
@click.argument("store")
@click.argument("name")
@domain_errors
def rm(store: str, name: str) -> None:
    """Delete feature set NAME from STORE, all its parts included.

    Refused while any writer holds one of its parts.
    """
    with open_store(store, "a") as s:
        s.delete_set(name)
    click.echo(f"deleted set {name!r} from {store}")


@cli.command("compact")
@click.argument("store")
@domain_errors
def compact(store: str) -> None:
    """Finish STORE: lay every set out as one standard group (features/FORMAT.md).

    The last writer to close does this itself; run it after parallel parts,
    or after a writer was killed. An HDF5 store becomes one self-contained
    file; a Zarr store gets fresh consolidated metadata for URL readers.
    Refused while any writer of STORE is open. `features consolidate STORE`
    is the same command under its name from before stores were finished.
    """
    with open_store(store, "a") as s:
        s.finish()
    done = "consolidated" if click.get_current_context().info_name == "consolidate" else "finished"
    click.echo(f"{done} {store}")


cli.add_command(compact, "consolidate")


@cli.command("upload")
@click.argument("store")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@domain_errors
def upload(store: str, url: str, as_json: bool) -> None:
    """Publish the local Zarr STORE to URL (s3://bucket/key.zarr).

    Data goes first and the metadata last, so readers never see it half-done.
    Stores are written locally (extract into a path), then uploaded with this command;
    the S3 endpoint and credentials come as for reading (EMOCACHE_STORAGE_OPTIONS, AWS_*).
    """
    from features.upload import upload_store

    result = upload_store(store, url)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(f"uploaded {result.files} files ({result.bytes} bytes) of {store} to {url}; "
                   f"removed {result.removed} stale file(s)")


@cli.command("formats")
def formats() -> None:
    """List the store back-ends and the suffixes that select them."""
    for name, cls in sorted(backends().items()):
        click.echo(f"{name}\t{' '.join(cls.suffixes)}")


if __name__ == "__main__":
    cli()
