"""The extraction loop: one encoder over a list of manifest rows, into one store writer.

It keeps the encoder busy: worker threads decode the next batches
(:meth:`Encoder.load`) into a bounded queue while the encoder runs
(:meth:`Encoder.encode`, under ``torch.inference_mode()``), and one writer thread
casts, writes and commits behind it. Bad input never stops a run: an utterance
that cannot be decoded or encoded is recorded as failed with the reason, and
the run goes on. A bug does: the same unexpected exception on
:data:`REPEATS_TO_STOP` utterances in a row stops the run with its traceback.
Work is committed every few batches, so a killed run loses at most those.
"""
from __future__ import annotations

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

from emocache.errors import EmocacheError
from manifests import Utterance

from .base import Encoder, ExtractError
from .batching import plan_batches
from .options import Batching

log = logging.getLogger(__name__)

_FLOAT16_MAX = float(np.finfo(np.float16).max)


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


#: Errors that mean "this utterance's input is bad": its failure is recorded and the run goes on.
#: Encoders raise ExtractError for what they recognise; OSError is a file that cannot be read.
BAD_INPUT = (ExtractError, OSError)
#: Any other exception is unexpected: once, it is recorded too (a library can choke on one odd
#: file), but the same type on this many utterances in a row is a bug, and the run stops.
REPEATS_TO_STOP = 3


class EncoderBugError(RuntimeError):
    """The same unexpected exception on :data:`REPEATS_TO_STOP` utterances in a row; its cause keeps the traceback.

    Not an ``EmocacheError``: the CLI shows the traceback, and nothing is recorded as the
    utterances' failure, so a rerun after the fix tries them again.
    """


def _load(encoder: Encoder, utt: Utterance) -> tuple[Utterance, Any, Exception | None]:
    try:
        return utt, encoder.load(utt), None
    except Exception as err:  # noqa: BLE001 - judged by _Outcomes: bad input, or a bug when it repeats
        return utt, None, err


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


def _encode(encoder: Encoder, batch: list[tuple[Utterance, Any]]) -> list[tuple[Utterance, np.ndarray | Exception]]:
    """Encode a batch; if it raises, encode its items one by one so a bad item fails alone."""
    try:
        arrays = encoder.encode([item for _, item in batch])
        if len(arrays) != len(batch):
            raise RuntimeError(f"the encoder returned {len(arrays)} arrays for a batch of {len(batch)}")
        return [(utt, np.asarray(a)) for (utt, _), a in zip(batch, arrays)]
    except Exception as err:  # noqa: BLE001 - retried item by item; a single item's error is judged by _Outcomes
        if len(batch) > 1:
            return [result for pair in batch for result in _encode(encoder, [pair])]
        return [(batch[0][0], err)]


class _Outcomes:
    """Where each utterance's outcome goes: its features or its failure, to the writer (behind) and the tally."""

    def __init__(self, encoder: Encoder, behind: _WriteBehind, tally: Tally):
        self._encoder, self._behind, self.tally = encoder, behind, tally
        self._streak: list[tuple[str, str, Exception]] = []  # unexpected errors of one type in a row, not yet recorded

    def written(self, utt: Utterance, array: np.ndarray, item: Any) -> None:
        self.settle()
        self._behind.put("write", utt.utt_id, array, self._encoder.counts(item))
        self.tally.done += 1
        self.tally.media_seconds += self._encoder.cost(utt)

    def failed(self, utt: Utterance, stage: str, err: Exception) -> None:
        if isinstance(err, EmocacheError) and not isinstance(err, ExtractError):
            # Not this utterance's fault (no ffmpeg on this machine, a model folder that cannot
            # be used): every utterance would fail alike, so the run stops with the message.
            raise err
        if isinstance(err, BAD_INPUT):
            self.settle()
            if isinstance(err, ExtractError):
                self._record(utt.utt_id, err.stage, err.message)
            else:
                self._record(utt.utt_id, stage, f"{type(err).__name__}: {err}")
            return
        if self._streak and type(self._streak[-1][2]) is not type(err):
            self.settle()
        self._streak.append((utt.utt_id, stage, err))
        if len(self._streak) >= REPEATS_TO_STOP:
            ids = ", ".join(u for u, _, _ in self._streak)
            raise EncoderBugError(
                f"the {self._encoder.modality} encoder {self._encoder.spec!r} raised {type(err).__name__} on {len(self._streak)} "
                f"utterances in a row ({ids}): a bug in the encoder or a library it calls, not bad input, so the run stops "
                f"(what was done is committed; these utterances are not recorded as failed). Last error: {err}"
            ) from err

    def settle(self) -> None:
        """Record the unexpected errors held back: they did not repeat enough to stop the run."""
        for utt_id, stage, err in self._streak:
            log.warning("%s: %s raised on this utterance only", utt_id, type(err).__name__, exc_info=err)
            self._record(utt_id, stage, f"{type(err).__name__}: {err}")
        self._streak = []

    def _record(self, utt_id: str, stage: str, message: str) -> None:
        self._behind.put("fail", utt_id, stage, message)
        self.tally.failures.append((utt_id, stage, message))


def extract_rows(
    encoder: Encoder,
    writer: Any,
    rows: Sequence[Utterance],
    *,
    batching: Batching | None = None,
    store_dtype: str = "float16",
    progress: bool = True,
    desc: str | None = None,
) -> Tally:
    """Encode ``rows`` into ``writer`` (a store writer); returns what was done and what failed.

    Raises :class:`EncoderBugError` when an unexpected exception repeats; the writer's
    queue is drained first, so closing the writer commits what was done.
    """
    import torch
    from tqdm import tqdm

    batching = batching or Batching()
    batches = plan_batches(rows, encoder, batching)
    prefetch = 2
    float16 = store_dtype == "float16"
    started = time.perf_counter()
    last_commit = started
    since_commit = 0
    bar = tqdm(total=len(rows), unit="utt", desc=desc, disable=not progress, dynamic_ncols=True)
    behind = _WriteBehind(writer)
    outcomes = _Outcomes(encoder, behind, Tally())
    tally = outcomes.tally
    ahead: deque[tuple[list[Utterance], list[Future]]] = deque()
    todo = iter(batches)
    threads = batching.threads or default_load_threads()
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
                        outcomes.failed(utt, "decode", error)
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
                        if isinstance(result, np.ndarray):
                            outcomes.written(utt, result, items[utt.utt_id])
                        else:
                            outcomes.failed(utt, "encode", result)
                since_commit += 1
                if since_commit >= batching.commit_every or time.perf_counter() - last_commit > 60:
                    behind.put("commit")
                    since_commit, last_commit = 0, time.perf_counter()
                bar.update(len(futures))
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(f"{tally.media_seconds / elapsed:.1f} {encoder.cost_unit}/s, {len(tally.failures)} failed", refresh=False)
            outcomes.settle()
            behind.put("commit")
        finally:
            for _, futures in ahead:
                for fut in futures:
                    fut.cancel()
            behind.close()
            bar.close()
    return tally
