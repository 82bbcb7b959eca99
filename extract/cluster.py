"""Extraction on a Dask cluster: ``local:N`` (a LocalCluster on this machine) or
``tcp://host:port`` (a running scheduler, e.g. one dask-jobqueue started on SLURM).

The pending utterances are dealt into shards of similar total length. Each task
builds its worker's encoder once (cached per worker process), opens the store
inside the task (never a handle inherited from the client: HDF5, Zarr and fsspec
do not survive that) and writes its own store part, so workers never write the
same file or shard. The reader presents the parts as one set; a resume skips
what any part committed.

With ``--device cuda`` every task asks for the resource ``GPU=1``, so each worker
must declare it (``--resources GPU=1``; ``local:N`` does). On a node with several
GPUs, start dask-cuda's ``LocalCUDACluster`` (one worker per GPU, each seeing its
own) and pass its ``tcp://`` address: ``local:N`` puts every worker on ``cuda:0``.
"""
from __future__ import annotations

import functools
import os
import re
import secrets
from collections.abc import Sequence
from typing import Any

from features.provenance import Provenance
from manifests import Utterance

from .base import Encoder, EncoderConfigError, create_encoder


class ClusterError(RuntimeError):
    """A shard could not run (a worker died, the store refused a part...); a rerun resumes."""


@functools.lru_cache(maxsize=4)
def _worker_encoder(modality: str, spec: str | None, device: str, dtype: str, options: tuple[tuple[str, Any], ...]) -> Encoder:
    return create_encoder(modality, spec, device=device, dtype=dtype, options=dict(options))


def run_shard(
    store_path: str,
    set_name: str,
    modality: str,
    spec: str | None,
    provenance: dict[str, Any],
    part: str,
    rows: list[dict[str, Any]],
    *,
    device: str,
    dtype: str,
    options: dict[str, Any],
    batch_cost: float | None,
    batch_size: int | None,
    threads: int | None,
    commit_every: int,
) -> dict[str, Any]:
    """One Dask task: encode ``rows`` into part ``part`` of the set. Returns the shard's tally as JSON."""
    from features import open_store

    from .pipeline import build_provenance, extract_rows

    encoder = _worker_encoder(modality, spec, device, dtype, tuple(sorted(options.items())))
    prov = Provenance.from_json(provenance)
    mine = build_provenance(encoder, prov.manifest_hash, prov.dtype, dtype)
    if mine.identity() != prov.identity():
        raise ClusterError(
            f"worker {os.uname().nodename} builds a different {modality} encoder than the client "
            f"(weights {mine.weights_sha256} vs {prov.weights_sha256}, preprocessing {mine.preprocessing} vs {prov.preprocessing}): "
            "give every node the same model files and package versions"
        )
    utts = [Utterance.from_json(r) for r in rows]
    with open_store(store_path, mode="a") as store:
        # finish=False: the client finishes the store once, after every part has closed.
        with store.writer(set_name, prov, frame_rate=encoder.frame_rate, layers=encoder.num_layers, part=part, finish=False) as writer:
            tally = extract_rows(
                encoder, writer, utts, batch_cost=batch_cost, batch_size=batch_size, threads=threads,
                commit_every=commit_every, store_dtype=prov.dtype, progress=False,
            )
    return {
        "done": tally.done,
        "failures": tally.failures,
        "media_seconds": tally.media_seconds,
        "encode_seconds": tally.encode_seconds,
        "notes": encoder.notes(),
    }


def deal_shards(rows: Sequence[Utterance], encoder: Encoder, n_shards: int) -> list[list[Utterance]]:
    """Deal rows, longest first, round-robin into ``n_shards`` shards of similar total cost."""
    ordered = sorted(rows, key=lambda r: (-encoder.cost(r), r.utt_id))
    shards = [ordered[i::n_shards] for i in range(n_shards)]
    return [s for s in shards if s]


def check_scheduler(scheduler: str) -> None:
    """Refuse a ``--scheduler`` value that is neither ``local:N`` (N >= 1) nor ``tcp://HOST:PORT``."""
    match = re.fullmatch(r"local:(\d+)", scheduler)
    if match and int(match.group(1)) < 1:
        raise EncoderConfigError(f"--scheduler {scheduler}: local:N needs N >= 1 workers")
    if not match and not re.fullmatch(r"tcp://[^\s:/]+:\d+", scheduler):
        raise EncoderConfigError(f"--scheduler {scheduler!r}: use local:N (N worker processes here) or tcp://HOST:PORT (a running scheduler)")


def _connect(scheduler: str, device: str):
    from distributed import Client, LocalCluster

    check_scheduler(scheduler)
    match = re.fullmatch(r"local:(\d+)", scheduler)
    if match:
        n = int(match.group(1))
        kwargs: dict[str, Any] = {"resources": {"GPU": 1}} if device.startswith("cuda") else {}
        # Worker processes are spawned (distributed's default), never forked: HDF5, Zarr and fsspec handles do not survive a fork.
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, **kwargs)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="30s"), None
    except OSError as err:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err


def extract_on_cluster(
    scheduler: str,
    store_path: str | os.PathLike,
    set_name: str,
    modality: str,
    spec: str | None,
    provenance: Provenance,
    rows: Sequence[Utterance],
    *,
    describer: Encoder,
    device: str,
    dtype: str,
    options: dict[str, Any],
    batch_cost: float | None,
    batch_size: int | None,
    threads: int | None,
    commit_every: int,
    progress: bool,
    shards_per_worker: int = 2,
):
    """Run the pending ``rows`` on the cluster ``scheduler`` names; returns the summed :class:`~extract.pipeline.Tally`.

    ``describer`` is the client's copy of the encoder, used here only for costs.
    """
    from distributed import as_completed
    from tqdm import tqdm

    from .pipeline import Tally

    # Workers may run elsewhere (tcp://) or in another folder: give them an absolute path.
    store_path = str(store_path) if "://" in str(store_path) else os.path.abspath(store_path)
    client, cluster = _connect(scheduler, device)
    try:
        n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
        shards = deal_shards(rows, describer, n_workers * shards_per_worker)
        run_id = secrets.token_hex(4)
        resources = {"GPU": 1} if device.startswith("cuda") else None
        futures = {}
        for i, shard in enumerate(shards):
            fut = client.submit(
                run_shard, str(store_path), set_name, modality, spec, provenance.to_json(), f"{run_id}-{i:03d}",
                [r.to_json() for r in shard],
                device=device, dtype=dtype, options=options, batch_cost=batch_cost, batch_size=batch_size,
                threads=threads, commit_every=commit_every, resources=resources, pure=False, key=f"extract-{run_id}-{i:03d}",
            )
            futures[fut] = len(shard)
        tally = Tally()
        errors = []
        with tqdm(total=len(rows), unit="utt", desc=f"{set_name} ({n_workers} workers)", disable=not progress) as bar:
            for fut in as_completed(list(futures)):
                try:
                    result = fut.result()
                except Exception as err:  # noqa: BLE001 - reported after the other shards finish
                    errors.append(f"{fut.key}: {type(err).__name__}: {err}")
                else:
                    tally.add(
                        Tally(
                            done=result["done"],
                            failures=[tuple(f) for f in result["failures"]],
                            media_seconds=result["media_seconds"],
                            encode_seconds=result["encode_seconds"],
                        )
                    )
                    tally.notes.extend(result["notes"])
                bar.update(futures[fut])
        if errors:
            raise ClusterError(
                f"{len(errors)} of {len(futures)} shard(s) failed; what they committed is kept, rerun to finish: " + "; ".join(errors)
            )
        return tally
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
