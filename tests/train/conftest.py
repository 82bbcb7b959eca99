"""Small feature stores written through the real `features` API, with a label signal we control.

Each modality carries the class in one channel (shifted by ``signal``); the rest is noise.
Three groups x three dialogs x eight utterances, four classes, improvised flags on every
other dialog: big enough for every fold to hold every class, small enough to train in seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import features
from features.provenance import Provenance
from manifests import Utterance
from manifests.io import manifest_hash, write_manifest

CLASSES = ("hap", "neu", "ang", "sad")
# modality -> (set name, dim, layers, min frames, max frames)
SHAPES = {"a": ("audio", 12, 2, 12, 40), "t": ("text", 8, None, 3, 9), "v": ("video", 10, None, 4, 5)}


def _make_rows(groups: int = 3, dialogs: int = 3, per_dialog: int = 8, seed: int = 0) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(1, groups + 1):
        for d in range(dialogs):
            dialog = f"Ses0{g}F_{'impro' if d % 2 == 0 else 'script'}0{d}"
            for k in range(per_dialog):
                speaker = "F" if k % 2 == 0 else "M"
                rows.append(Utterance(
                    utt_id=f"{dialog}_{speaker}{k:03d}", label=CLASSES[(k + d + g) % 4 if rng.random() < 0.5 else rng.integers(4)],
                    group=str(g), audio=f"/nonexistent/{dialog}_{k}.wav", corpus="test", session=g, dialog=dialog,
                    speaker=f"{g}{speaker}", improvised=d % 2 == 0))
    return rows


def _write_store(path: Path, rows: list[Utterance], *, modalities=("a", "t", "v"), signal: dict | None = None,
                seed: int = 0, skip: dict | None = None, manifest_rows: list[Utterance] | None = None,
                encoder: str = "random:test") -> Path:
    """Write one set per modality. ``signal[m]``: how strongly modality m shows the label (default 1.5);
    ``skip[m]``: utterance ids left out of that set; ``manifest_rows``: the manifest the sets claim to
    come from (default ``rows``)."""
    rng = np.random.default_rng(seed)
    signal = {"a": 1.5, "t": 1.5, "v": 1.5} | (signal or {})
    skip = skip or {}
    mhash = manifest_hash(manifest_rows if manifest_rows is not None else rows)
    classes = sorted({r.label for r in rows}, key=CLASSES.index)
    with features.open_store(str(path), mode="a") as store:
        for m in modalities:
            name, dim, layers, lo, hi = SHAPES[m]
            prov = Provenance.now(encoder=encoder, manifest_hash=mhash, dtype="float16", dim=dim,
                                  layers=None if layers is None else f"0-{layers - 1}")
            with store.writer(name, prov, frame_rate=50.0 if m == "a" else None, layers=layers) as w:
                for r in rows:
                    if r.utt_id in skip.get(m, ()):
                        continue
                    frames = int(rng.integers(lo, hi + 1))
                    shape = (frames, dim) if layers is None else (layers, frames, dim)
                    x = rng.normal(size=shape).astype(np.float32)
                    x[..., classes.index(r.label)] += signal[m]
                    w.write(r.utt_id, x)
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """(manifest path, store path, rows): three groups, all three modalities, HDF5."""
    root = tmp_path_factory.mktemp("train_small")
    rows = _make_rows()
    manifest = write_manifest(rows, root / "manifest.jsonl")
    store = _write_store(root / "features.h5", rows)
    return manifest, store, rows


@pytest.fixture
def tiny_cfg():
    """A seconds-per-fold configuration."""
    from train.presets import preset

    return preset("fast", d=8, heads=2, n_blocks=1, lvc_codewords=4, epochs=2, batch_size=8, frame_pool=2,
                  num_threads=1, seed=0)


@pytest.fixture(scope="session")
def write_store():
    """The store writer above, for tests that need a store of their own (missing utterances, other manifests)."""
    return _write_store


@pytest.fixture(scope="session")
def make_rows():
    return _make_rows


def _check_gru_operator(device: str, members: int | None) -> None:
    """``emocache::gru_direction`` (the GRU as a compiled step holds it) on ``device`` against torch's own
    autograd of the kernel (``train.layers._gru_direction``): torch's operator checks (schema, fake
    tensors, autograd), outputs, gradients, and gradients in their inputs' memory layout, with the
    weight matrices held transposed as an ensemble holds them (inductor asserts the layouts the fake
    kernel promises). ``members``: K stacked members, or None for one model's weights."""
    from train.layers import _gru_direction

    torch.manual_seed(0)
    lead = () if members is None else (members,)
    x = torch.randn(*lead, 2, 5, 3, device=device, requires_grad=True)
    weights = [torch.randn(*lead, *shape, device=device) for shape in ((12, 3), (12, 4), (12,), (12,))]
    weights = [(w.mT.contiguous().mT if w.dim() > 1 else w).requires_grad_() for w in weights]
    assert not weights[0].is_contiguous()
    torch.library.opcheck(torch.ops.emocache.gru_direction.default, (x, *weights))
    out, want = torch.ops.emocache.gru_direction(x, *weights), _gru_direction(x, *weights)
    torch.testing.assert_close(out, want)
    grads = torch.autograd.grad(out.pow(2).sum(), [x, *weights])
    for got, ref in zip(grads, torch.autograd.grad(want.pow(2).sum(), [x, *weights])):
        torch.testing.assert_close(got, ref)
    assert [g.stride() for g in grads] == [t.stride() for t in (x, *weights)]


@pytest.fixture(scope="session")
def check_gru_operator():
    """The GRU operator's checks above, for the CPU tests and the CUDA ones alike."""
    return _check_gru_operator
