"""The timm video encoder: real timm models with random weights saved here (tests only), on demo-corpus videos."""
from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from extract.base import EncoderConfigError, create_encoder
from extract.video import TimmVideoEncoder, VideoItem
from extract.video_weights import _TimmCompatUnpickler
from manifests import read_manifest

MODEL = "test_efficientnet"  # a small EfficientNet timm keeps for tests: 160x160 input, 256 features
FRAMES = 3


def random_model(name: str = MODEL, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


@pytest.fixture(scope="module")
def weights(tiny_timm: dict[str, Path]) -> dict[str, Path]:
    """:func:`random_model` as a state dict (.pt, with its classifier), safetensors, and a whole pickled model."""
    return tiny_timm


@pytest.fixture(scope="module")
def encoder(weights: dict[str, Path]) -> TimmVideoEncoder:
    return TimmVideoEncoder(MODEL, options={"weights": str(weights["pt"]), "frames": FRAMES})


@pytest.fixture(scope="module")
def items(encoder: TimmVideoEncoder, demo_manifest: Path) -> list[VideoItem]:
    rows = read_manifest(demo_manifest)
    left = next(r for r in rows if r.video_side == "left")
    right = next(r for r in rows if r.video_side == "right")
    return [encoder.load(left), encoder.load(right)]


def test_features_per_frame_and_weights_hash(encoder: TimmVideoEncoder, items: list[VideoItem], weights: dict[str, Path]) -> None:
    assert items[0].faces.shape == (FRAMES, 160, 160, 3)  # timm's input size for the model
    out = encoder.encode(items)
    num_features = random_model(num_classes=0).num_features
    assert encoder.dim == num_features == 256
    assert [a.shape for a in out] == [(FRAMES, num_features)] * 2 and all(a.dtype == np.float32 for a in out)
    assert np.isfinite(out[0]).all() and not np.allclose(out[0], out[1])
    assert encoder.weights_sha256() == hashlib.sha256(weights["pt"].read_bytes()).hexdigest()
    assert encoder.frame_rate is None
    pre = encoder.preprocessing()
    assert pre["frames"] == FRAMES and pre["model"] == MODEL and pre["input_size"] == 160
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406]) and pre["colour"] == "RGB" and pre["face_detector"] == "opencv-haar-cascade"
    # The file's classifier head was dropped, and the run summary says so once.
    notes = encoder.notes()
    assert any("dropped the classifier head (classifier.bias, classifier.weight)" in n for n in notes)
    assert not any("classifier" in n for n in encoder.notes())


def test_features_are_the_models_pooled_features(encoder: TimmVideoEncoder, items: list[VideoItem]) -> None:
    model = random_model()  # the weights saved in the fixture, classifier included
    x = torch.from_numpy(items[0].faces).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(encoder.encode(items[:1])[0], expected, rtol=1e-4, atol=1e-5)


def test_same_output_alone_and_in_a_batch(encoder: TimmVideoEncoder, items: list[VideoItem]) -> None:
    together = encoder.encode([items[1], items[0]])
    np.testing.assert_allclose(encoder.encode([items[0]])[0], together[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoder.encode([items[1]])[0], together[0], rtol=1e-4, atol=1e-5)


def test_safetensors_and_trusted_pickle_give_the_same_features(encoder: TimmVideoEncoder, items: list[VideoItem], weights: dict[str, Path]) -> None:
    reference = encoder.encode(items[:1])[0]
    from_safetensors = TimmVideoEncoder(MODEL, options={"weights": str(weights["safetensors"]), "frames": FRAMES})
    np.testing.assert_allclose(from_safetensors.encode(items[:1])[0], reference, rtol=1e-5, atol=1e-6)
    assert from_safetensors.weights_sha256() == hashlib.sha256(weights["safetensors"].read_bytes()).hexdigest()

    with pytest.raises(EncoderConfigError) as refused:
        TimmVideoEncoder(MODEL, options={"weights": str(weights["pickle"])})
    message = str(refused.value)
    assert str(weights["pickle"]) in message and "unpickling runs code" in message and "--trust-pickle" in message
    trusted = create_encoder("video", f"timm:{MODEL}", options={"weights": str(weights["pickle"]), "trust_pickle": True, "frames": FRAMES})
    np.testing.assert_allclose(trusted.encode(items[:1])[0], reference, rtol=1e-5, atol=1e-6)


def test_a_pickled_model_of_another_architecture_is_refused(tmp_path: Path) -> None:
    # TF-style "same" padding and eps 1e-3: the tensors fit test_efficientnet but would compute something else.
    path = tmp_path / "tf_style.pt"
    torch.save(random_model(pad_type="same", bn_eps=1e-3), path)
    with pytest.raises(EncoderConfigError) as caught:
        TimmVideoEncoder(MODEL, options={"weights": str(path), "trust_pickle": True})
    message = str(caught.value)
    assert "built differently" in message and "conv_stem" in message and "'tf-same'" in message and "tf_efficientnet_b0" in message


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    state = random_model().state_dict()
    state.pop("conv_stem.weight")
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(EncoderConfigError, match=r"do not fit timm model 'test_efficientnet': missing 1 .*conv_stem.weight.*unexpected 1 .*extra.weight"):
        TimmVideoEncoder(MODEL, options={"weights": str(path)})
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"these are not weights" * 50)
    with pytest.raises(EncoderConfigError, match="is not a PyTorch weights file"):
        TimmVideoEncoder(MODEL, options={"weights": str(garbage)})


def test_spec_and_options_errors(weights: dict[str, Path]) -> None:
    with pytest.raises(EncoderConfigError) as caught:
        create_encoder("video", "timm:efficientnet_b0")
    message = str(caught.value)
    assert "needs --weights FILE" in message and "enet_b0_8_best_afew.pt" in message and "--trust-pickle" in message
    assert "torch.save(timm.create_model('efficientnet_b0', pretrained=True).state_dict()" in message
    with pytest.raises(EncoderConfigError, match="needs a model name"):
        create_encoder("video", "timm", options={"weights": str(weights["pt"])})
    with pytest.raises(EncoderConfigError, match=r"timm has no model 'efficientnet_b99'; close names: \["):
        create_encoder("video", "timm:efficientnet_b99", options={"weights": str(weights["pt"])})
    with pytest.raises(EncoderConfigError, match="weights file .*missing.pt does not exist"):
        TimmVideoEncoder(MODEL, options={"weights": "missing.pt"})
    with pytest.raises(EncoderConfigError, match="--max-tokens does not apply"):
        TimmVideoEncoder(MODEL, options={"weights": str(weights["pt"]), "max_tokens": 5})


def test_efficientnet_b0_gives_1280_features_per_frame(tmp_path: Path, demo_manifest: Path) -> None:
    path = tmp_path / "efficientnet_b0.safetensors"
    save_file(random_model("efficientnet_b0", num_classes=0).state_dict(), str(path))
    encoder = TimmVideoEncoder("efficientnet_b0", options={"weights": str(path), "frames": 2})
    item = encoder.load(read_manifest(demo_manifest)[0])
    assert item.faces.shape == (2, 224, 224, 3)
    assert encoder.encode([item])[0].shape == (2, 1280) and encoder.dim == 1280
    assert encoder.notes() == []  # no head in this file


def test_models_pickled_by_old_timm_are_found_under_the_new_module_paths() -> None:
    # timm < 0.9 (HSEmotion's files) pickled its layers under timm.models.layers.*; protocol 0 keeps names as text.
    old = pickle.dumps(timm.layers.activations.Swish(), protocol=0).replace(b"ctimm.layers.activations\n", b"ctimm.models.layers.activations\n")
    assert b"timm.models.layers.activations" in old
    with pytest.raises(ModuleNotFoundError), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm's shim for the old package warns before failing
        pickle.loads(old)
    restored = _TimmCompatUnpickler(io.BytesIO(old)).load()
    assert isinstance(restored, timm.layers.activations.Swish)

