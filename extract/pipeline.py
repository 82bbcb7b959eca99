"""Stage 1: run a frozen encoder over a manifest and write its features into a store.

:func:`extract_manifest` takes one :class:`~extract.options.ExtractOptions`;
:func:`run_extraction` is the same with keywords. It works out what is pending
(a rerun skips everything already committed, and earlier failures unless asked),
then runs :func:`extract.loop.extract_rows` here or shards on Dask
(:mod:`extract.cluster`), and sums up what happened in an :class:`ExtractSummary`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from emocache.devices import cuda_devices, device_problem
from emocache.errors import ExitCode
from emocache.scheduler import dask_client, device_problem_on_workers, gpu_resource_problem
from features import STORE_DTYPES
from features.provenance import Provenance
from manifests import manifest_hash, read_manifest

from .base import Encoder, EncoderConfigError, check_choice
from .loop import Tally, extract_rows
from .options import Batching, EncoderOptions, ExtractOptions
from .staged import Publication, publish_when_complete, remote_complete, staged_target


@dataclass(frozen=True)
class ExtractSummary:
    """What one run did.

    ``done``: utterances written by this run; ``skipped``: already in the set;
    ``failed``: utterances recorded as failed by this run; ``failed_before``:
    failures of earlier runs left alone (``--retry-failed`` tries them again).
    ``failures`` lists ``(utt_id, stage, message)`` for both.
    ``encode_seconds`` is the time spent in :meth:`Encoder.encode` alone.
    ``notes``: the encoder's warnings about the run (truncated transcripts, frames
    without a face...); `extract run` prints them under its summary. ``left``:
    utterances of the manifest that ``--limit`` left for a later run.
    """

    set_name: str
    identity: str
    encoder: str
    done: int
    skipped: int
    failed: int
    seconds: float
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    failed_before: int = 0
    already_complete: bool = False
    media_seconds: float = 0.0
    encode_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    publish: Publication | None = None  # a run into an s3:// store: published, or why not yet
    left: int = 0

    @property
    def exit_code(self) -> int:
        """:attr:`ExitCode.INCOMPLETE` when some utterance failed, in this run or before; else 0 (also when
        ``--limit`` left some for a later run: that is what was asked)."""
        return int(ExitCode.INCOMPLETE if self.failed or self.failed_before else ExitCode.OK)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failures"] = [{"utt_id": u, "stage": s, "message": m} for u, s, m in self.failures]
        data["exit_code"] = self.exit_code
        if self.publish is None:  # runs into a path print what they always did
            del data["publish"]
        return data


def build_provenance(encoder: Encoder, manifest_hash_: str, store_dtype: str, compute_dtype: str, **stats: Any) -> Provenance:
    """The provenance of the set ``encoder`` makes from a manifest with this content hash.

    ``compute_dtype`` is the dtype the encoder runs in on the device that extracts; it is
    part of the identity for encoders whose values depend on it, so float16 GPU features
    and float32 CPU features never mix in one set. It is passed, not read from
    ``encoder``, because a distributed run describes the set with an encoder it builds
    on the client, on the CPU. :class:`~extract.options.ExtractOptions` has checked it.
    """
    check_choice("--store-dtype", store_dtype, STORE_DTYPES)
    preprocessing = encoder.preprocessing()
    if encoder.computes_in_dtype:
        preprocessing = {**preprocessing, "compute_dtype": compute_dtype}
    return Provenance.now(
        encoder=encoder.provenance_spec,
        manifest_hash=manifest_hash_,
        dtype=store_dtype,
        dim=encoder.dim,
        weights_sha256=encoder.weights_sha256(),
        layers=encoder.layers,
        preprocessing=preprocessing,
        stats=stats,
    )


def extract_manifest(
    manifest_path: str | os.PathLike, store_path: str | os.PathLike, options: ExtractOptions, *, progress: bool = True,
    staging: str | os.PathLike | None = None,
) -> ExtractSummary:
    """Extract ``options.modality`` features for every utterance of a manifest into ``options.set_name`` of a store.

    Resumes: utterances already in the set are skipped, and so are earlier failures
    unless ``options.retry_failed``. With ``options.scheduler`` the pending utterances
    run on a Dask cluster (:mod:`extract.cluster`). An ``s3://`` store is written through a
    local staging copy (in folder ``staging``) and published when the set is complete
    (:mod:`extract.staged`).
    """
    from features import open_store

    started = time.perf_counter()
    if options.scheduler is None and options.gpu:  # on a cluster, the workers are asked (extract.cluster)
        problem = device_problem(options.device, cuda_devices())
        if problem is not None:
            raise EncoderConfigError(problem)
    staged = staged_target(store_path, staging, options.scheduler)  # None: a local store, written in place
    rows = read_manifest(manifest_path)
    set_name = options.set_name
    # A distributed run builds its encoders on the workers; this one only describes the set.
    enc = options.create_encoder(describe_only=options.scheduler is not None)
    store_dtype = options.store_dtype or enc.default_store_dtype
    prov = build_provenance(enc, manifest_hash(rows), store_dtype, options.dtype, device=options.device)
    if staged is not None:
        nothing_to_do = remote_complete(staged, set_name, prov, rows, options.retry_failed, started)
        if nothing_to_do is not None:
            return nothing_to_do

    with dask_client(options.scheduler, gpu=options.gpu) as client:
        if client is not None:  # asked before the store is touched, so that a refusal leaves nothing behind
            problem = device_problem_on_workers(client, options.device) or (gpu_resource_problem(client) if options.gpu else None)
            if problem is not None:
                raise EncoderConfigError(problem)
        if staged is not None:
            store_path = staged.prepare()
        with open_store(store_path, mode="a") as store:
            with store.writer(set_name, prov, frame_rate=enc.frame_rate, layers=enc.num_layers) as writer:
                done_before, failed_before = set(writer.done), set(writer.failed)
                retry = options.retry_failed
                pending = [r for r in rows if r.utt_id not in done_before and (retry or r.utt_id not in failed_before)]
                left_failed = [] if retry else [r.utt_id for r in rows if r.utt_id in failed_before and r.utt_id not in done_before]
                left = 0
                if options.limit is not None:
                    left = max(0, len(pending) - options.limit)
                    pending = pending[: options.limit]
                tally = Tally()
                if pending and client is None:
                    tally = extract_rows(enc, writer, pending, batching=options.batching, store_dtype=store_dtype, progress=progress, desc=set_name)
            old_failures = []
            if left_failed:
                recorded = {f.utt_id: f for f in store[set_name].failures()}
                old_failures = [(u, recorded[u].stage, recorded[u].error) for u in left_failed if u in recorded]
        if pending and client is not None:
            from .cluster import extract_on_cluster

            tally = extract_on_cluster(client, store_path, options, prov, pending, describer=enc, progress=progress)
            # The parts' writers leave the store unfinished (finish=False); finishing once, after
            # all of them, makes it one standard file or tree (features/FORMAT.md). A writer still open
            # on another set (another run) finishes it when it closes, as SHARING.md promises.
            from features.finish import finish_when_last

            with open_store(store_path, mode="a") as store:
                finish_when_last(store)
        else:
            tally.notes.extend(enc.notes())
    in_manifest = {r.utt_id for r in rows}
    summary = ExtractSummary(
        set_name=set_name,
        identity=prov.identity(),
        encoder=prov.encoder,
        done=tally.done,
        skipped=len(done_before & in_manifest),
        failed=len(tally.failures),
        seconds=time.perf_counter() - started,
        failures=tally.failures + old_failures,
        failed_before=len(left_failed),
        already_complete=not pending,
        left=left,
        media_seconds=tally.media_seconds,
        encode_seconds=tally.encode_seconds,
        notes=tally.notes,
    )
    return summary if staged is None else publish_when_complete(staged, summary, rows)


def run_extraction(
    manifest_path: str | os.PathLike,
    store_path: str | os.PathLike,
    modality: str,
    *,
    set_name: str | None = None,
    encoder: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    store_dtype: str | None = None,
    batch_seconds: float | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    options: dict[str, Any] | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    staging: str | os.PathLike | None = None,
) -> ExtractSummary:
    """:func:`extract_manifest` with the options as keywords, named as ``extract run``'s flags are.

    ``encoder`` is a spec (``opensmile:eGeMAPSv02``, ``hf:/models/w2v``, ``minilm``...;
    default :data:`extract.base.DEFAULTS`); ``options`` the encoder options
    (``{"layers": "all"}``: the fields of :class:`~extract.options.EncoderOptions`).
    The rest is as :class:`~extract.options.ExtractOptions` says.
    """
    extract_options = ExtractOptions(
        modality, encoder=encoder, set_name=set_name, device=device, dtype=dtype, store_dtype=store_dtype,
        batching=Batching(cost=batch_seconds, size=batch_size), limit=limit, retry_failed=retry_failed,
        encoder_options=EncoderOptions.from_dict(options), scheduler=scheduler,
    )
    return extract_manifest(manifest_path, store_path, extract_options, progress=progress, staging=staging)
