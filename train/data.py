"""Cached features from the store, loaded once per fold and batched by length.

Each modality's set is read with one ``read_all`` into memory in its stored dtype
(float16 by default: IEMOCAP's wav2vec 2.0 audio is ~1.2 GB so) and cast to float32
one padded batch at a time. Training never touches an encoder.

Before anything is read the manifest and the store are checked against each other:
every set must have been extracted from this manifest (same content hash) and must
hold every one of its utterances.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emocache.errors import EmocacheError
from manifests import SIX_CLASSES, Utterance
from manifests.io import manifest_hash, read_manifest
from train.model import InputSpec

# How many batches' worth of utterances are length-sorted together: large enough that
# batches pad little, small enough that every epoch's batches differ.
BUCKET_BATCHES = 32


class DataError(EmocacheError, ValueError):
    """The manifest and the feature store do not fit together; the message says how to fix it."""


@dataclass
class ModalityData:
    """One modality's features for the manifest's utterances, in manifest order.

    ``data`` is (sum_T, D) or (L, sum_T, D) in the stored dtype; utterance i spans
    frames ``offsets[i]:offsets[i+1]`` (time is axis -2).
    """

    set_name: str
    data: np.ndarray
    offsets: np.ndarray
    dim: int
    layers: int | None
    provenance: dict[str, Any]
    identity: str

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def spec(self) -> InputSpec:
        return InputSpec(dim=self.dim, layers=self.layers)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records about the set it was trained on."""
        return {"set": self.set_name, "identity": self.identity, "dim": self.dim, "layers": self.layers,
                "provenance": self.provenance}


@dataclass
class FeatureData:
    """All modalities of one manifest, aligned by row index; ``labels`` index ``classes``."""

    ids: list[str]
    rows: list[Utterance] | None
    classes: tuple[str, ...]
    labels: np.ndarray | None
    modalities: dict[str, ModalityData]

    def specs(self) -> dict[str, InputSpec]:
        return {m: md.spec() for m, md in self.modalities.items()}

    def select(self, modalities) -> "FeatureData":
        """The same rows with only ``modalities`` (no copy of the arrays)."""
        missing = [m for m in modalities if m not in self.modalities]
        if missing:
            raise DataError(f"modalities {missing} were not loaded; loaded: {sorted(self.modalities)}")
        return FeatureData(self.ids, self.rows, self.classes, self.labels, {m: self.modalities[m] for m in modalities})

    def lengths(self) -> np.ndarray:
        """The length that batches are bucketed by: audio frames, else the first modality's."""
        key = "a" if "a" in self.modalities else next(iter(self.modalities))
        return self.modalities[key].lengths


def class_list(rows: Sequence[Utterance], source: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The labels present, in SIX_CLASSES order when they are IEMOCAP's, else sorted.

    Training needs two classes or more, and a label on every row: a manifest with one
    class, or with unlabelled rows (label ``""``, recordings for `train predict`), is
    refused, naming ``source``."""
    where = f"{source}" if source is not None else "the manifest"
    unlabelled = [r.utt_id for r in rows if r.label == ""]
    if unlabelled:
        raise DataError(f"{where}: {len(unlabelled)} utterance(s) have an empty label, e.g. {unlabelled[0]!r}; "
                        "training needs a label on every row (empty labels are for `train predict`)")
    present = {r.label for r in rows}
    if len(present) < 2:
        raise DataError(
            f"{where}: every one of its {len(rows)} utterances has the label {next(iter(present), '')!r} "
            "(the manifest field 'label', the --label-col of `manifests csv`); training needs at least 2 classes"
        )
    if present <= set(SIX_CLASSES):
        return tuple(c for c in SIX_CLASSES if c in present)
    return tuple(sorted(present))


def as_rows(manifest: str | os.PathLike | Sequence[Utterance], *, labelled: bool = True) -> list[Utterance]:
    """The manifest's rows; a manifest file read for training (``labelled``) must hold two classes or more."""
    if isinstance(manifest, (str, os.PathLike)):
        rows = read_manifest(manifest)
        if labelled:
            class_list(rows, manifest)
        return rows
    return list(manifest)


def store_locations(store) -> list:
    """``store`` as a list: one path/URL/open store, or a sequence of them (e.g. one store per modality)."""
    if isinstance(store, (str, os.PathLike)) or not isinstance(store, Sequence):
        return [store]
    return list(store)


def open_stores(store, stack: ExitStack) -> list[tuple[Any, str]]:
    """(open store, its location) for each of ``store_locations(store)``; paths are opened read-only."""
    opened = []
    for item in store_locations(store):
        if isinstance(item, (str, os.PathLike)):
            from features import open_store

            opened.append((stack.enter_context(open_store(str(item), mode="r")), str(item)))
        else:
            opened.append((item, str(getattr(item, "location", item))))
    return opened


def find_sets(stores: list[tuple[Any, str]], sets: dict[str, str], modalities: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """modality -> (FeatureSet, location of its store). Each set name must be in exactly one of the stores."""
    found = {}
    for m in modalities:
        name = sets[m]
        holders = [(s, where) for s, where in stores if name in s]
        if not holders:
            there = "; ".join(f"{where}: {sorted(s.set_names())}" for s, where in stores)
            raise DataError(f"no feature set {name!r} for modality {m!r} (sets there: {there}). "
                            f"Extract it, or name the set with --sets {m}=SET")
        if len(holders) > 1:
            raise DataError(f"feature set {name!r} for modality {m!r} is in several stores "
                            f"({', '.join(w for _, w in holders)}); pass only one of them")
        store, where = holders[0]
        found[m] = (store[name], where)
    return found


def _check_set(fs, rows, where, modality, name, wanted_hash) -> None:
    if wanted_hash is not None:
        have = fs.info.provenance.manifest_hash
        if have != wanted_hash:
            raise DataError(
                f"{where}: feature set {name!r} was extracted from another manifest "
                f"(set's manifest_hash {have}, this manifest's {wanted_hash}); "
                f"extract it with this manifest, or train with the manifest it was extracted from")
    present = set(fs.ids)
    missing = [r.utt_id for r in rows if r.utt_id not in present]
    if missing:
        failed = {f.utt_id for f in fs.failures()}
        n_failed = sum(1 for u in missing if u in failed)
        note = f" ({n_failed} of them recorded as failed extractions: see `features` failures)" if n_failed else ""
        raise DataError(
            f"{where}: feature set {name!r} lacks {len(missing)} of the manifest's {len(rows)} utterances{note}; "
            f"first: {', '.join(missing[:5])}. Finish the extraction (`extract run` resumes) "
            f"or train on a manifest without them")


def load_features(manifest: str | os.PathLike | Sequence[Utterance], store, sets: dict[str, str],
                  modalities: Sequence[str], *, labelled: bool = True, check_hash: bool = True) -> FeatureData:
    """Check, then read each modality's set with one ``read_all`` over the manifest's utterances.

    ``store``: a path/URL or open store, or a list of them (each set is looked up in all)."""
    rows = as_rows(manifest, labelled=labelled)
    loaded: dict[str, ModalityData] = {}
    with ExitStack() as stack:
        feature_sets = find_sets(open_stores(store, stack), sets, modalities)
        wanted = manifest_hash(rows) if check_hash else None
        for m, (fs, where) in feature_sets.items():
            _check_set(fs, rows, where, m, sets[m], wanted)
        ids = [r.utt_id for r in rows]
        for m, (fs, _) in feature_sets.items():
            loaded[m] = load_set(fs, ids, sets[m])
    classes = class_list(rows) if labelled else ()
    labels = np.array([classes.index(r.label) for r in rows], dtype=np.int64) if labelled else None
    return FeatureData(ids=[r.utt_id for r in rows], rows=rows, classes=classes, labels=labels, modalities=loaded)


def load_set(fs, ids: list[str], name: str) -> ModalityData:
    ragged = fs.read_all(ids)
    data, offsets = np.asarray(ragged.data), np.asarray(ragged.offsets, dtype=np.int64)
    if list(ragged.ids) != ids:
        # Reorder into manifest order: one gather, done once per load.
        where = {u: i for i, u in enumerate(ragged.ids)}
        order = np.array([where[u] for u in ids], dtype=np.int64)
        starts, lengths = offsets[order], np.diff(offsets)[order]
        frames = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)]) if len(ids) else np.zeros(0, np.int64)
        data = np.take(data, frames, axis=-2)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    info = fs.info
    return ModalityData(set_name=name, data=data, offsets=offsets, dim=int(info.dim), layers=info.layers,
                        provenance=info.provenance.to_json(), identity=info.identity)


@dataclass
class Batch:
    """``inputs[m] = (x float32 (B, T, D) or (B, L, T, D), mask bool (B, T), True = real frame)``."""

    index: np.ndarray
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    labels: torch.Tensor | None

    def to(self, device: str) -> "Batch":
        if device == "cpu":
            return self
        inputs = {m: (x.to(device, non_blocking=True), k.to(device, non_blocking=True)) for m, (x, k) in self.inputs.items()}
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return Batch(self.index, inputs, labels)


def pad(md: ModalityData, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the utterances ``index`` of one modality into a float32 batch and its mask."""
    starts, ends = md.offsets[index], md.offsets[index + 1]
    lengths = ends - starts
    t_max = max(int(lengths.max()), 1)
    shape = (len(index), t_max, md.dim) if md.data.ndim == 2 else (len(index), md.data.shape[0], t_max, md.dim)
    x = np.zeros(shape, dtype=np.float32)
    mask = np.zeros((len(index), t_max), dtype=bool)
    for j, (s, e) in enumerate(zip(starts, ends)):
        n = e - s
        x[j, ..., :n, :] = md.data[..., s:e, :]
        mask[j, :n] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def make_batch(data: FeatureData, index: np.ndarray) -> Batch:
    labels = None if data.labels is None else torch.from_numpy(data.labels[index])
    return Batch(index, {m: pad(md, index) for m, md in data.modalities.items()}, labels)


def batch_order(lengths: np.ndarray, index: Sequence[int], batch_size: int,
                rng: np.random.Generator | None) -> list[np.ndarray]:
    """Cut ``index`` into batches of similar length.

    With ``rng`` (training): shuffle, sort by length within buckets of
    ``BUCKET_BATCHES`` batches, cut, then shuffle the batches. Without: sorted by
    length, deterministic (evaluation)."""
    index = np.asarray(index, dtype=np.int64)
    if rng is None:
        ordered = index[np.argsort(lengths[index], kind="stable")]
        return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    shuffled = rng.permutation(index)
    batches = []
    size = batch_size * BUCKET_BATCHES
    for b in range(0, len(shuffled), size):
        bucket = shuffled[b:b + size]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches.extend(bucket[i:i + batch_size] for i in range(0, len(bucket), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def iter_batches(data: FeatureData, index: Sequence[int], batch_size: int,
                 rng: np.random.Generator | None = None) -> Iterator[Batch]:
    for chunk in batch_order(data.lengths(), index, batch_size, rng):
        yield make_batch(data, chunk)


# Utterances pooled per chunk by :func:`pool_frames`: bounds the float32 copy in flight.
_PREPARE_CHUNK = 256


def pool_frames(data: FeatureData, frame_pool: int) -> FeatureData:
    """Every utterance mean-pooled in time by ``frame_pool`` (windows from its frame 0, as
    :func:`train.layers.masked_pool_time` pools a padded batch), as float32. Fold-independent:
    done once per run, then :func:`prepare` standardises it per fold."""
    out = {}
    for name, md in data.modalities.items():
        lengths = md.lengths
        windows = -(-lengths // frame_pool)
        offsets = np.concatenate([[0], np.cumsum(windows)]).astype(np.int64)
        pooled = torch.empty(md.data.shape[:-2] + (int(offsets[-1]), md.dim))
        for c in range(0, len(lengths), _PREPARE_CHUNK):
            stop = min(c + _PREPARE_CHUNK, len(lengths))
            # torch, not numpy: numpy's float16 conversion and reduceat took 3-5x as long (bench/RESULTS.md).
            frames = torch.from_numpy(md.data[..., md.offsets[c]:md.offsets[stop], :]).float()
            # Frame j of utterance i falls in window j // frame_pool of that utterance's.
            window = np.concatenate([offsets[i] - offsets[c] + np.arange(lengths[i]) // frame_pool for i in range(c, stop)])
            counts = np.bincount(window, minlength=offsets[stop] - offsets[c]).astype(np.float32)
            part = pooled[..., offsets[c]:offsets[stop], :]
            part.zero_().index_add_(-2, torch.from_numpy(window), frames)
            part.div_(torch.from_numpy(counts)[:, None])
        out[name] = ModalityData(md.set_name, pooled.numpy(), offsets, md.dim, md.layers, md.provenance, md.identity)
    return FeatureData(data.ids, data.rows, data.classes, data.labels, out)


def prepare(pooled: FeatureData, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> FeatureData:
    """A fold's inputs, once per fold instead of every step: :func:`pool_frames`' output standardised
    with the training split's ``stats`` (float32). The model reads it with ``prepared=True``.

    Exact, up to float rounding: neither step has parameters, and the mean of standardised frames
    is the standardised mean. Channels with std ~0 are left unscaled, as
    :meth:`ModalityInput.set_stats` does."""
    out = {}
    for name, md in pooled.modalities.items():
        mean, std = (np.asarray(t, dtype=np.float32) for t in stats[name])
        std = np.where(std > 1e-6, std, np.float32(1.0))
        if md.data.ndim == 3:
            mean, std = mean.reshape(md.data.shape[0], 1, -1), std.reshape(md.data.shape[0], 1, -1)
        out[name] = ModalityData(md.set_name, (md.data - mean) / std, md.offsets, md.dim, md.layers,
                                 md.provenance, md.identity)
    return FeatureData(pooled.ids, pooled.rows, pooled.classes, pooled.labels, out)


def check_lengths(data: FeatureData) -> None:
    """Once per fold, what the model's per-batch check would ask: every utterance has a real frame."""
    for name, md in data.modalities.items():
        empty = np.flatnonzero(md.lengths == 0)
        if len(empty):
            raise DataError(f"feature set {md.set_name!r} ({name}): {len(empty)} utterance(s) have no frames, "
                            f"e.g. {data.ids[empty[0]]!r}; extract them again or leave them out of the manifest")
