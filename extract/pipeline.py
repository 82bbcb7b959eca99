"""Stage 1: run a frozen encoder over a manifest and write its features into a store.

The loop keeps the encoder busy: worker threads decode the next batches
(:meth:`Encoder.load`) into a bounded queue while the encoder runs
(:meth:`Encoder.encode`, under ``torch.inference_mode()``), and one writer thread
casts, writes and commits behind it. Bad input never stops a run: an utterance
that cannot be decoded or encoded is recorded as failed with the reason, and
the run goes on. Work is committed every few batches, so a killed run loses at
most those, and a rerun skips everything already committed.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.provenance import Provenance
from manifests import Utterance, manifest_hash, read_manifest

from .base import Encoder, EncoderConfigError, ExtractError, create_encoder
from .batching import check_batching, plan_batches
from .staged import Publication, publish_when_complete, remote_complete, staged_target

log = logging.getLogger(__name__)

STORE_DTYPES = ("float16", "float32")
COMPUTE_DTYPES = ("float16", "bfloat16", "float32")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class ExtractSummary:
    """What one run did.

    ``done``: utterances written by this run; ``skipped``: already in the set;
    ``failed``: utterances recorded as failed by this run; ``failed_before``:
    failures of earlier runs left alone (``--retry-failed`` tries them again).
    ``failures`` lists ``(utt_id, stage, message)`` for both.
    ``encode_seconds`` is the time spent in :meth:`Encoder.encode` alone.
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

    @property
    def exit_code(self) -> int:
        """0 when every utterance of the manifest is in the set, 3 when some failed."""
        return 3 if self.failed or self.failed_before else 0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failures"] = [{"utt_id": u, "stage": s, "message": m} for u, s, m in self.failures]
        data["exit_code"] = self.exit_code
        if self.publish is None:  # runs into a path print what they always did
            del data["publish"]
        return data


@dataclass
class Tally:
    """Counts from :func:`extract_rows`, summed over shards in a distributed run."""

    done: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    media_seconds: float = 0.0
    encode_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        self.done += other.done
        self.failures.extend(other.failures)
        self.media_seconds += other.media_seconds
        self.encode_seconds += other.encode_seconds
        self.notes.extend(other.notes)


def build_provenance(encoder: Encoder, manifest_hash_: str, store_dtype: str, compute_dtype: str, **stats: Any) -> Provenance:
    """The provenance of the set ``encoder`` makes from a manifest with this content hash.

    ``compute_dtype`` is the dtype the encoder runs in on the device that extracts; it is
    part of the identity for encoders whose values depend on it, so float16 GPU features
    and float32 CPU features never mix in one set. It is passed, not read from
    ``encoder``, because a distributed run describes the set with an encoder it builds
    on the client, on the CPU. :func:`run_extraction` has checked it.
    """
    if store_dtype not in STORE_DTYPES:
        raise EncoderConfigError(f"--store-dtype {store_dtype!r}: choose one of {list(STORE_DTYPES)}")
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
    threads: int | None = None,
    commit_every: int = 4,
    progress: bool = True,
    staging: str | os.PathLike | None = None,
) -> ExtractSummary:
    """Extract ``modality`` features for every utterance of a manifest into ``set_name`` of a store.

    ``encoder`` is a spec (``opensmile:eGeMAPSv02``, ``hf:/models/w2v``, ``minilm``...;
    default :data:`extract.base.DEFAULTS`), ``dtype`` the compute dtype (default
    float16 on cuda, float32 on cpu), ``store_dtype`` the stored one (default: the encoder's
    ``default_store_dtype``, float16 unless its values can exceed float16's range).
    ``batch_seconds`` is the total cost per batch (media seconds for audio and
    video, tokens for text). ``options`` holds the encoder options (``weights``,
    ``trust_pickle``, ``layers``, ``frames``, ``max_tokens``). ``scheduler``
    (``local:N`` or ``tcp://host:port``) runs the work on a Dask cluster.
    Resumes: utterances already in the set are skipped, and so are earlier
    failures unless ``retry_failed``. An ``s3://`` store is written through a local
    staging copy (in folder ``staging``) and published when the set is complete
    (``extract/staged.py``).
    """
    from features import open_store

    started = time.perf_counter()
    if dtype is None:
        dtype = "float16" if device.startswith("cuda") else "float32"
    if dtype not in COMPUTE_DTYPES:
        raise EncoderConfigError(f"--dtype {dtype!r}: choose one of {list(COMPUTE_DTYPES)}")
    if limit is not None and limit < 1:
        raise EncoderConfigError(f"--limit {limit}: must be at least 1")
    check_batching(batch_seconds, batch_size)
    if scheduler is not None:
        from .cluster import check_scheduler

        check_scheduler(scheduler)
    elif device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise EncoderConfigError(f"--device {device}: torch sees no CUDA device on this machine; use --device cpu")
    staged = staged_target(store_path, staging, scheduler)  # None: a local store, written in place
    rows = read_manifest(manifest_path)
    set_name = set_name or modality
    # A distributed run builds its encoders on the workers; this one only describes the set.
    enc = create_encoder(
        modality, encoder, device="cpu" if scheduler else device, dtype="float32" if scheduler else dtype, options=options
    )
    store_dtype = store_dtype or enc.default_store_dtype
    prov = build_provenance(enc, manifest_hash(rows), store_dtype, dtype, device=device)
    if staged is not None:
        nothing_to_do = remote_complete(staged, set_name, prov, rows, retry_failed, started)
        if nothing_to_do is not None:
            return nothing_to_do
        store_path = staged.prepare()

    with open_store(store_path, mode="a") as store:
        with store.writer(set_name, prov, frame_rate=enc.frame_rate, layers=enc.num_layers) as writer:
            done_before, failed_before = set(writer.done), set(writer.failed)
            pending = [r for r in rows if r.utt_id not in done_before and (retry_failed or r.utt_id not in failed_before)]
            left_failed = [] if retry_failed else [r.utt_id for r in rows if r.utt_id in failed_before and r.utt_id not in done_before]
            if limit is not None:
                pending = pending[:limit]
            tally = Tally()
            if pending and scheduler is None:
                tally = extract_rows(
                    enc, writer, pending, batch_cost=batch_seconds, batch_size=batch_size,
                    threads=threads, commit_every=commit_every, store_dtype=store_dtype, progress=progress,
                    desc=set_name,
                )
        old_failures = []
        if left_failed:
            recorded = {f.utt_id: f for f in store[set_name].failures()}
            old_failures = [(u, recorded[u].stage, recorded[u].error) for u in left_failed if u in recorded]
    if pending and scheduler is not None:
        from .cluster import extract_on_cluster

        tally = extract_on_cluster(
            scheduler, store_path, set_name, modality, encoder, prov, pending, describer=enc,
            device=device, dtype=dtype, options=options or {}, batch_cost=batch_seconds, batch_size=batch_size,
            threads=threads, commit_every=commit_every, progress=progress,
        )
        # The parts' writers leave the store unfinished (finish=False); finishing once, after
        # all of them, makes it one standard file or tree (features/FORMAT.md).
        with open_store(store_path, mode="a") as store:
            store.finish()
    else:
        tally.notes.extend(enc.notes())
    for note in tally.notes:
        log.warning(note)
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
        media_seconds=tally.media_seconds,
        encode_seconds=tally.encode_seconds,
        notes=tally.notes,
    )
    return summary if staged is None else publish_when_complete(staged, summary, rows)


class _WriteBehind:
    """Writes, failure records and commits on one thread, off the encoder's critical path.

    The store writer is used from this thread only. A store error stops the run:
    it is raised in the caller at its next call.
    """

    def __init__(self, writer: Any):
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="extract-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            op, *args = item
            try:
                getattr(self._writer, op)(*args)
            except BaseException as err:  # noqa: BLE001 - handed to the caller, which raises it
                self._error = err

    def put(self, op: str, *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((op, *args))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def default_load_threads() -> int:
    """Load threads when not told: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 2))


#: How much lower than the encoder's thread the load threads run (Linux nice levels).
LOAD_NICENESS = 10


def _lower_priority() -> None:
    """Run this load thread, and the ffmpeg processes it starts, below the encoder's thread.

    Decoding ahead only pays while it does not take CPU from the encoder's forward
    pass: on a machine with few cores (or a CPU encoder) the scheduler then hands
    the encoder a whole core and the load threads the rest. Linux sets nice values
    per thread; elsewhere ``setpriority`` would renice the whole process, so this is
    Linux only.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + LOAD_NICENESS))
    except OSError as err:  # e.g. a seccomp policy that forbids it: run at the same priority
        log.debug("could not lower the load thread's priority: %s", err)


def _load(encoder: Encoder, utt: Utterance) -> tuple[Utterance, Any, ExtractError | None]:
    try:
        return utt, encoder.load(utt), None
    except ExtractError as err:
        return utt, None, err
    except Exception as err:  # noqa: BLE001 - any other reader error is this utterance's failure, not the run's
        return utt, None, ExtractError(utt.utt_id, "decode", f"{type(err).__name__}: {err}")


def _check(encoder: Encoder, utt: Utterance, array: np.ndarray, float16: bool) -> None:
    """Refuse an output that would store something wrong."""
    layers = encoder.num_layers
    want = 2 if layers is None else 3
    if array.ndim != want or array.shape[-1] != encoder.dim or (layers is not None and array.shape[0] != layers):
        expected = f"(T, {encoder.dim})" if layers is None else f"({layers}, T, {encoder.dim})"
        raise ExtractError(utt.utt_id, "encode", f"the encoder returned shape {array.shape}, expected {expected}")
    if array.shape[-2] == 0:
        raise ExtractError(utt.utt_id, "encode", "the encoder returned no frames")
    if not np.isfinite(array).all():
        raise ExtractError(utt.utt_id, "encode", "the encoder returned non-finite values (NaN/inf)")
    if float16 and np.abs(array).max() > _FLOAT16_MAX:
        raise ExtractError(
            utt.utt_id, "encode", f"values up to {np.abs(array).max():.4g} do not fit float16; extract with --store-dtype float32"
        )


def _encode(encoder: Encoder, batch: list[tuple[Utterance, Any]]) -> list[tuple[Utterance, np.ndarray | ExtractError]]:
    """Encode a batch; if it raises, encode its items one by one so a bad item fails alone."""
    try:
        arrays = encoder.encode([item for _, item in batch])
        if len(arrays) != len(batch):
            raise RuntimeError(f"the encoder returned {len(arrays)} arrays for a batch of {len(batch)}")
        return [(utt, np.asarray(a)) for (utt, _), a in zip(batch, arrays)]
    except Exception as err:  # noqa: BLE001 - retried item by item below; single items record the reason
        if len(batch) > 1:
            return [result for pair in batch for result in _encode(encoder, [pair])]
        utt = batch[0][0]
        if isinstance(err, ExtractError):
            return [(utt, err)]
        return [(utt, ExtractError(utt.utt_id, "encode", f"{type(err).__name__}: {err}"))]


def extract_rows(
    encoder: Encoder,
    writer: Any,
    rows: Sequence[Utterance],
    *,
    batch_cost: float | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    commit_every: int = 4,
    store_dtype: str = "float16",
    progress: bool = True,
    desc: str | None = None,
) -> Tally:
    """Encode ``rows`` into ``writer`` (a store writer); returns what was done and what failed."""
    import torch
    from tqdm import tqdm

    batches = plan_batches(rows, encoder, batch_cost=batch_cost, batch_size=batch_size)
    threads = threads or default_load_threads()
    prefetch = 2
    float16 = store_dtype == "float16"
    tally = Tally()
    started = time.perf_counter()
    last_commit = started
    since_commit = 0
    bar = tqdm(total=len(rows), unit="utt", desc=desc, disable=not progress, dynamic_ncols=True)
    behind = _WriteBehind(writer)
    ahead: deque[tuple[list[Utterance], list[Future]]] = deque()
    todo = iter(batches)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="extract-load", initializer=_lower_priority) as pool:
        try:
            while True:
                while len(ahead) < prefetch:
                    batch = next(todo, None)
                    if batch is None:
                        break
                    ahead.append((batch, [pool.submit(_load, encoder, utt) for utt in batch]))
                if not ahead:
                    break
                _, futures = ahead.popleft()
                loaded: list[tuple[Utterance, Any]] = []
                for fut in futures:
                    utt, item, error = fut.result()
                    if error is not None:
                        behind.put("fail", utt.utt_id, error.stage, error.message)
                        tally.failures.append((utt.utt_id, error.stage, error.message))
                    else:
                        loaded.append((utt, item))
                if loaded:
                    items = {utt.utt_id: item for utt, item in loaded}
                    t0 = time.perf_counter()
                    with torch.inference_mode():
                        results = _encode(encoder, loaded)
                    tally.encode_seconds += time.perf_counter() - t0
                    for utt, result in results:
                        if isinstance(result, np.ndarray):
                            try:
                                _check(encoder, utt, result, float16)
                            except ExtractError as err:
                                result = err
                        if isinstance(result, ExtractError):
                            behind.put("fail", utt.utt_id, result.stage, result.message)
                            tally.failures.append((utt.utt_id, result.stage, result.message))
                        else:
                            behind.put("write", utt.utt_id, result, encoder.counts(items[utt.utt_id]))
                            tally.done += 1
                            tally.media_seconds += encoder.cost(utt)
                since_commit += 1
                if since_commit >= commit_every or time.perf_counter() - last_commit > 60:
                    behind.put("commit")
                    since_commit, last_commit = 0, time.perf_counter()
                bar.update(len(futures))
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(f"{tally.media_seconds / elapsed:.1f} {encoder.cost_unit}/s, {len(tally.failures)} failed", refresh=False)
            behind.put("commit")
        finally:
            for _, futures in ahead:
                for fut in futures:
                    fut.cancel()
            behind.close()
            bar.close()
    return tally

