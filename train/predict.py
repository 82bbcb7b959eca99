"""Label utterances with a trained fold's checkpoint, from cached features or from recordings.

The store's sets must hold features made the same way as those the checkpoint was
trained on (encoder, weights, layers, preprocessing, dtype, dim); only the manifest
they were extracted from may differ, so that new recordings can be labelled.
Recordings never extracted are labelled through :mod:`train.media`, which makes their
features exactly so, into a cache it reuses.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emocache.atomic import write_json
from emocache.devices import device_problem
from manifests import Utterance
from train.config import TrainConfig
from train.data import DataError, FeatureData, as_rows, find_sets, iter_batches, load_features, load_set, open_stores
from train.media import DEFAULT_CACHE, EncoderSource, MediaFailure
from train.model import build_model
from train.checkpoint import Checkpoint
from train.report import write_csv

# Provenance fields that change feature values, apart from the manifest they came from.
FEATURE_FIELDS = ("encoder", "weights_sha256", "layers", "preprocessing", "dtype", "dim")


def _check_features(ckpt: Checkpoint, fs, where: str, modality: str) -> None:
    trained = ckpt.sets[modality]["provenance"]
    have = fs.info.provenance.to_json()
    for key in FEATURE_FIELDS:
        if trained.get(key) != have.get(key):
            raise DataError(
                f"{where}: feature set {fs.info.name!r} ({modality}) differs from the features the checkpoint was trained on: "
                f"{key} is {have.get(key)!r} here, {trained.get(key)!r} in the checkpoint. "
                f"Extract the recordings with the checkpoint's encoder settings (its config.json, \"sets\")")


@dataclass(frozen=True)
class Prediction:
    """One utterance's predicted class, every class's probability, and its label when the manifest gives one."""

    utt_id: str
    pred: str
    probs: Mapping[str, float]
    label: str | None = None

    def to_json(self) -> dict[str, Any]:
        row = {"utt_id": self.utt_id, "pred": self.pred, "probs": dict(self.probs)}
        if self.label is not None:
            row["label"] = self.label
        return row


@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict` and :func:`predict_media` give.

    From recordings, ``cache`` is the cache folder, ``extracted`` and ``reused`` count per
    modality the recordings extracted by this call and found in the cache, and ``failures``
    lists the recordings that could not be labelled (their features could not be made).
    """

    classes: tuple[str, ...]
    checkpoint: str
    predictions: tuple[Prediction, ...]
    cache: str | None = None
    extracted: Mapping[str, int] = field(default_factory=dict)
    reused: Mapping[str, int] = field(default_factory=dict)
    failures: tuple[MediaFailure, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {"classes": list(self.classes), "checkpoint": self.checkpoint,
                "predictions": [p.to_json() for p in self.predictions]}
        if self.cache is not None:
            data |= {"cache": self.cache, "extracted": dict(self.extracted), "reused": dict(self.reused),
                     "failures": [f.to_json() for f in self.failures]}
        return data


def _classify(ckpt: Checkpoint, data: FeatureData, labels: Sequence[str | None] | None,
              batch_size: int, device: str) -> tuple[Prediction, ...]:
    model = build_model(ckpt.model, data.specs(), len(ckpt.classes))
    model.load_state_dict(ckpt.state)
    model.to(device).eval()
    classes = ckpt.classes
    probs = np.zeros((len(data.ids), len(classes)), dtype=np.float32)
    with torch.no_grad():
        for batch in iter_batches(data, range(len(data.ids)), batch_size):
            out = model(batch.to(device).inputs)
            probs[batch.index] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
    return tuple(Prediction(utt_id=utt_id, pred=classes[int(probs[i].argmax())],
                            probs={c: float(p) for c, p in zip(classes, probs[i])},
                            label=None if labels is None else labels[i])
                 for i, utt_id in enumerate(data.ids))


def predict(checkpoint: str | os.PathLike, store=None, manifest=None, *, cache: str | os.PathLike | None = None,
            sources: Mapping[str, EncoderSource] | None = None, batch_size: int = 64, device: str = "cpu",
            progress: bool = False) -> PredictionResult:
    """Label every utterance of ``manifest`` or, without one, of the store's sets (which must then
    hold the same utterances).

    Without ``store``, the manifest's recordings are labelled from their media: see
    :func:`predict_rows` (``cache``, ``sources``)."""
    if store is None or (not isinstance(store, (str, os.PathLike)) and not store):
        if manifest is None:
            raise DataError("give the feature store(s) to label (--store), or recordings: a manifest (--manifest) "
                            "or one recording (--audio, --video, --text)")
        return predict_rows(checkpoint, as_rows(manifest, labelled=False), cache=cache, sources=sources, batch_size=batch_size,
                            device=device, progress=progress)
    if cache is not None or sources:
        raise DataError("--cache, --encoder and --weights are for labelling recordings; "
                        "with --store the features are already extracted")
    problem = device_problem(device, torch.cuda.device_count())
    if problem is not None:
        raise DataError(problem)
    ckpt = Checkpoint.load(checkpoint)
    cfg = TrainConfig.from_json(ckpt.train)
    modalities = ckpt.inputs
    with ExitStack() as stack:
        stores = open_stores(store, stack)
        found = find_sets(stores, cfg.sets, modalities)
        for m, (fs, where) in found.items():
            _check_features(ckpt, fs, where, m)
        sets = {m: fs for m, (fs, _) in found.items()}
        if manifest is not None:
            # Any manifest whose utterances the sets hold: the features were checked above, not the manifest.
            data = load_features(manifest, [s for s, _ in stores], cfg.sets, modalities, labelled=False, check_hash=False)
            labels = [r.label for r in data.rows]
        else:
            first = modalities[0]
            ids = list(sets[first].ids)
            known = set(ids)
            for m, fs in sets.items():
                if set(fs.ids) != known:
                    only = sorted(known ^ set(fs.ids))[0]
                    where = found[first][1] if only in known else found[m][1]
                    raise DataError(f"set {cfg.sets[first]!r} ({found[first][1]}) and set {cfg.sets[m]!r} ({found[m][1]}) "
                                    f"hold different utterances ({len(ids)} and {len(fs.ids)}; {only!r} is only in {where}); "
                                    "pass --manifest to choose which to label")
            data = FeatureData(ids=ids, rows=None, classes=(), labels=None,
                               modalities={m: load_set(fs, ids, cfg.sets[m]) for m, fs in sets.items()})
            labels = None
    return PredictionResult(classes=ckpt.classes, checkpoint=str(checkpoint),
                            predictions=_classify(ckpt, data, labels, batch_size, device))


def default_cache(checkpoint: str | os.PathLike) -> Path:
    """The cache folder beside a checkpoint folder, shared by the folds of one run."""
    return Path(checkpoint).resolve().parent / DEFAULT_CACHE


def predict_rows(checkpoint: str | os.PathLike, rows: Sequence[Utterance], *, cache: str | os.PathLike | None = None,
                 sources: Mapping[str, EncoderSource] | None = None, batch_size: int = 64, device: str = "cpu",
                 progress: bool = False) -> PredictionResult:
    """Label recordings never extracted: their features are made as the checkpoint's were
    (:mod:`train.media`), into ``cache`` (default :func:`default_cache`), and reused from it.

    ``sources`` gives an encoder again per modality (a, t, v) where the checkpoint names only its
    folder or weights hash. A row label that is empty counts as no label."""
    from train.media import media_features, trained_sets

    ckpt = Checkpoint.load(checkpoint)
    trained = trained_sets(ckpt)
    unknown = sorted(set(sources or {}) - set(trained))
    if unknown:
        raise DataError(f"encoders given for {unknown}: the checkpoint's inputs are {sorted(trained)}")
    problem = device_problem(device, torch.cuda.device_count())
    if problem is not None:
        raise DataError(problem)
    made = media_features(trained, rows, cache if cache is not None else default_cache(checkpoint), sources,
                          device=device, progress=progress)
    predictions: tuple[Prediction, ...] = ()
    if made.rows:
        data = FeatureData(ids=[r.utt_id for r in made.rows], rows=list(made.rows), classes=(), labels=None,
                           modalities=dict(made.modalities))
        predictions = _classify(ckpt, data, [r.label or None for r in made.rows], batch_size, device)
    return PredictionResult(classes=ckpt.classes, checkpoint=str(checkpoint), predictions=predictions,
                            cache=made.cache, extracted=made.extracted, reused=made.reused, failures=made.failures)


def predict_media(checkpoint: str | os.PathLike, *, audio: str | os.PathLike | None = None,
                  video: str | os.PathLike | None = None, text: str | None = None, utt_id: str | None = None,
                  cache: str | os.PathLike | None = None, sources: Mapping[str, EncoderSource] | None = None,
                  batch_size: int = 64, device: str = "cpu", progress: bool = False) -> PredictionResult:
    """Label one recording: give exactly the media the checkpoint was trained on (audio for a, a
    transcript for t, video for v). ``utt_id`` defaults to the audio (else video) file's stem."""
    ckpt = Checkpoint.load(checkpoint)
    needs = {"a": ("audio", audio), "t": ("text", text), "v": ("video", video)}
    inputs = [m for m in "atv" if m in ckpt.inputs]
    names = "+".join(needs[m][0] for m in inputs)
    missing = [f"--{needs[m][0]}" for m in inputs if needs[m][1] is None]
    extra = [f"--{name}" for m, (name, value) in needs.items() if value is not None and m not in inputs]
    if missing:
        raise DataError(f"the checkpoint was trained on {names}: give {', '.join(missing)} too")
    if extra:
        raise DataError(f"the checkpoint was trained on {names} only: leave out {', '.join(extra)}")
    media = Path(audio if audio is not None else video) if audio is not None or video is not None else None
    row = Utterance(utt_id=utt_id or (media.stem if media is not None else "text"), label="", group="",
                    audio=str(Path(audio).resolve()) if audio is not None else "", text=text,
                    video=str(Path(video).resolve()) if video is not None else None)
    return predict_rows(checkpoint, [row], cache=cache, sources=sources, batch_size=batch_size, device=device,
                        progress=progress)


def check_predictions_out(path: str | os.PathLike) -> None:
    """Refuse a predictions file name that is no .csv or .json, or that holds something else (a run's
    ``folds.csv``, a manifest): only earlier predictions are written over. Checked before labelling."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise DataError(f"{path}: write predictions to a .csv or a .json file")
    if not path.exists():
        return
    try:
        if path.suffix == ".csv":
            with path.open(encoding="utf-8") as f:
                ours = f.readline().startswith("utt_id,")
        else:
            ours = "predictions" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        ours = False
    if not ours:
        raise DataError(f"--out {path} exists and holds no predictions; give a new file name, or delete it first")


def write_predictions(result: PredictionResult, path: str | os.PathLike) -> Path:
    """``.json``: the whole result; ``.csv``: utt_id, [label,] pred, one probability column per class.
    Only a missing file or earlier predictions are written over (:func:`check_predictions_out`)."""
    check_predictions_out(path)
    path = Path(path)
    if path.suffix == ".json":
        return write_json(path, result.to_json())
    classes = result.classes
    has_label = any(p.label is not None for p in result.predictions)
    header = ["utt_id", *(["label"] if has_label else []), "pred", *(f"p_{c}" for c in classes)]
    rows = [[p.utt_id, *([p.label or ""] if has_label else []), p.pred,
             *(f"{p.probs[c]:.6f}" for c in classes)] for p in result.predictions]
    return write_csv(path, header, rows)
