"""Extraction on a Dask cluster (``--scheduler local:N`` or ``tcp://HOST:PORT``, see :mod:`emocache.scheduler`).

The pending utterances are dealt into shards of similar total length. Each task
builds its worker's encoder once (cached per worker process) from the run's
:class:`~extract.options.ExtractOptions`, sent as JSON; opens the store inside the
task (never a handle inherited from the client: HDF5, Zarr and fsspec do not
survive that) and writes its own store part, so workers never write the same file
or shard. The reader presents the parts as one set; a resume skips what any part
committed. A failed shard does not stop the others: the errors are reported
together once they have finished, and what every shard committed is kept.

With ``--device cuda`` every task asks for the resource ``GPU=1``, so each worker
must declare it (``--resources GPU=1``; ``local:N`` does). On a node with several
GPUs, start dask-cuda's ``LocalCUDACluster`` (one worker per GPU, each seeing its
own) and pass its ``tcp://`` address: ``local:N`` puts every worker on ``cuda:0``.
"""
from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from emocache.errors import EmocacheError
from emocache.scheduler import run_tasks, worker_count
from features.provenance import Provenance
from manifests import Utterance

from .base import Encoder, create_encoder
from .loop import Tally, extract_rows
from .options import EncoderOptions, ExtractOptions


class ClusterError(EmocacheError, RuntimeError):
    """A shard could not run (a worker died, the store refused a part...); a rerun resumes."""


@dataclass(frozen=True)
class Shard:
    """One Dask task: encode ``rows`` into part ``part`` of the set. Plain JSON but for the class itself."""

    store_path: str
    #: :meth:`ExtractOptions.to_json` of the run.
    options: dict[str, Any]
    #: :meth:`Provenance.to_json` of the set, as the client described it.
    provenance: dict[str, Any]
    part: str
    rows: list[dict[str, Any]]


@functools.lru_cache(maxsize=4)
def _worker_encoder(modality: str, spec: str, device: str, dtype: str, options: EncoderOptions) -> Encoder:
    return create_encoder(modality, spec, device=device, dtype=dtype, options=options.given())


def run_shard(shard: Shard) -> Tally:
    """Run one :class:`Shard` on a worker; returns its tally (notes included)."""
    from features import open_store

    from .pipeline import build_provenance

    options = ExtractOptions.from_json(shard.options)
    encoder = _worker_encoder(options.modality, options.encoder, options.device, options.dtype, options.encoder_options)
    prov = Provenance.from_json(shard.provenance)
    mine = build_provenance(encoder, prov.manifest_hash, prov.dtype, options.dtype)
    if mine.identity() != prov.identity():
        raise ClusterError(
            f"worker {os.uname().nodename} builds a different {options.modality} encoder than the client "
            f"(weights {mine.weights_sha256} vs {prov.weights_sha256}, preprocessing {mine.preprocessing} vs {prov.preprocessing}): "
            "give every node the same model files and package versions"
        )
    utts = [Utterance.from_json(r) for r in shard.rows]
    with open_store(shard.store_path, mode="a") as store:
        # finish=False: the client finishes the store once, after every part has closed.
        with store.writer(options.set_name, prov, frame_rate=encoder.frame_rate, layers=encoder.num_layers,
                          part=shard.part, finish=False) as writer:
            tally = extract_rows(encoder, writer, utts, batching=options.batching, store_dtype=prov.dtype, progress=False)
    tally.notes.extend(encoder.notes())
    return tally


def deal_shards(rows: Sequence[Utterance], encoder: Encoder, n_shards: int) -> list[list[Utterance]]:
    """Deal rows, longest first, round-robin into ``n_shards`` shards of similar total cost."""
    ordered = sorted(rows, key=lambda r: (-encoder.cost(r), r.utt_id))
    shards = [ordered[i::n_shards] for i in range(n_shards)]
    return [s for s in shards if s]


def extract_on_cluster(
    client: Any,
    store_path: str | os.PathLike,
    options: ExtractOptions,
    provenance: Provenance,
    rows: Sequence[Utterance],
    *,
    describer: Encoder,
    progress: bool,
    shards_per_worker: int = 2,
) -> Tally:
    """Run the pending ``rows`` on ``client``'s cluster (whose workers the caller has found able to run
    ``options.device``); returns the summed tally.

    ``describer`` is the client's copy of the encoder, used here only for costs.
    """
    from tqdm import tqdm

    # Workers may run elsewhere (tcp://) or in another folder: give them an absolute path.
    store_path = str(store_path) if "://" in str(store_path) else os.path.abspath(store_path)
    n_workers = worker_count(client)
    shards = deal_shards(rows, describer, n_workers * shards_per_worker)
    run_id = secrets.token_hex(4)
    tasks = [
        Shard(store_path, options.to_json(), provenance.to_json(), f"{run_id}-{i:03d}", [r.to_json() for r in shard])
        for i, shard in enumerate(shards)
    ]
    with tqdm(total=len(rows), unit="utt", desc=f"{options.set_name} ({n_workers} workers)", disable=not progress) as bar:
        outcomes = run_tasks(
            run_shard, tasks, client=client, keys=[f"extract-{t.part}" for t in tasks],
            resources={"GPU": 1} if options.gpu else None, stop_on_error=False,
            on_done=lambda i, _: bar.update(len(tasks[i].rows)),
        )
    tally = Tally()
    errors = []
    for outcome in outcomes:
        if outcome.error is not None:
            errors.append(f"{outcome.key}: {type(outcome.error).__name__}: {outcome.error}")
        else:
            tally.add(outcome.value)
    if errors:
        raise ClusterError(
            f"{len(errors)} of {len(tasks)} shard(s) failed; what they committed is kept, rerun to finish: " + "; ".join(errors)
        )
    return tally
