"""`train predict` from recordings never extracted: a checkpoint trained like the demo's
(the synthetic demo corpus, the default encoders, a short fold), a real cache store, exact messages."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

import features
from extract.pipeline import run_extraction
from manifests import Utterance, read_manifest, write_manifest
from train.cli import cli
from train.media import CACHE_STORE, EncoderSource, trained_sets
from train.checkpoint import Checkpoint
from train.predict import PredictionResult, predict, predict_media

TINY = ["--d", "8", "--epochs", "2", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0"]
SAID = "I can not believe you did that to me."


def tone(path: Path, seconds: float = 1.3, freq: float = 180.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.4 * np.sin(2 * np.pi * 2 * t)) + 0.01 * rng.standard_normal(t.size)
    soundfile.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")
    return path


def train_checkpoint(manifest: Path, store: Path, out: Path, modalities: str) -> Path:
    result = CliRunner().invoke(cli, ["fold", "--session", "1", "--manifest", str(manifest), "--store", str(store),
                                      "--out", str(out), "--modalities", modalities, *TINY])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def demo_store(demo_manifest, tmp_path_factory):
    """The demo corpus extracted as the demo does: the default encoders (openSMILE, MiniLM, HOG), one store."""
    store = tmp_path_factory.mktemp("demo_store") / "features.h5"
    for modality in ("audio", "text", "video"):
        assert run_extraction(demo_manifest, store, modality, options={"frames": 4} if modality == "video" else None,
                              progress=False).failed == 0
    return store


@pytest.fixture(scope="module")
def demo_checkpoint(demo_manifest, demo_store):
    """A fold trained on the demo corpus's audio and text."""
    return train_checkpoint(demo_manifest, demo_store, demo_store.parent / "at" / "fold-1", "a,t")


def invoke(*args: str):
    return CliRunner().invoke(cli, ["predict", *args], catch_exceptions=False)


def test_one_recording_never_extracted_gets_a_label_and_class_probabilities(demo_checkpoint, tmp_path):
    wav = tone(tmp_path / "one.wav")
    result = invoke("--checkpoint", str(demo_checkpoint), "--audio", str(wav), "--text", SAID)
    assert result.exit_code == 0, result.output
    classes = json.loads((demo_checkpoint / "config.json").read_text())["classes"]
    utt, pred, probs = result.stdout.strip().split("\t")
    shown = dict(pair.split(" ") for pair in probs.split("  "))
    assert utt == "one" and pred in classes and set(shown) == set(classes)
    assert pred == max(shown, key=lambda c: float(shown[c]))
    assert sum(float(p) for p in shown.values()) == pytest.approx(1, abs=0.01)
    cache = demo_checkpoint.parent / "predict-cache"
    assert (f"features: audio 1 extracted, 0 from the cache, text 1 extracted, 0 from the cache ({cache})"
            in result.stderr)

    # The features are those `extract run` makes of the same recording, so the labels are those of --store.
    manifest = write_manifest([Utterance(utt_id="one", label="", group="", audio=str(wav), text=SAID)], tmp_path / "one.jsonl")
    store = tmp_path / "one.h5"
    for modality in ("audio", "text"):
        run_extraction(manifest, store, modality, progress=False)
    by_store = predict(demo_checkpoint, store)
    assert set(by_store.to_json()) == {"classes", "checkpoint", "predictions"}, "--store output keeps its format"
    assert set(by_store.predictions[0].to_json()) == {"utt_id", "pred", "probs"}
    by_media = predict_media(demo_checkpoint, audio=wav, text=SAID)
    assert isinstance(by_media, PredictionResult) and by_media.extracted == {"audio": 0, "text": 0}
    assert by_media.predictions[0].probs == pytest.approx(by_store.predictions[0].probs, abs=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_media.cache = "elsewhere"
    with features.open_store(str(cache / CACHE_STORE)) as cached, features.open_store(str(store)) as extracted:
        for name in ("audio", "text"):
            (set_name,) = [s for s in cached.set_names() if s.startswith(name + "-")]
            (key,) = cached[set_name].ids
            np.testing.assert_array_equal(cached[set_name].read(key), extracted[name].read("one"))


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_a_device_name_torch_would_not_know_is_one_line_from_features_or_recordings(demo_checkpoint, demo_store, tmp_path, device):
    for source in (["--store", str(demo_store)], ["--audio", str(tone(tmp_path / "one.wav")), "--text", SAID]):
        result = invoke("--checkpoint", str(demo_checkpoint), *source, "--device", device)
        assert (result.exit_code, result.output) == (1, f"Error: device {device!r} is not one of cpu, cuda, cuda:N\n")


def test_stores_of_different_utterances_are_named_with_one_that_differs(demo_checkpoint, demo_manifest, tmp_path):
    rows = read_manifest(demo_manifest)
    stores = {}
    for modality, n in (("audio", 5), ("text", 4)):
        manifest = write_manifest(rows[:n], tmp_path / f"{modality}.jsonl")
        stores[modality] = tmp_path / f"{modality}.h5"
        assert run_extraction(manifest, stores[modality], modality, progress=False).failed == 0
    result = invoke("--checkpoint", str(demo_checkpoint), "--store", str(stores["audio"]), "--store", str(stores["text"]))
    assert (result.exit_code, result.output) == (1, (
        f"Error: set 'audio' ({stores['audio']}) and set 'text' ({stores['text']}) hold different utterances (5 and 4; "
        f"{rows[4].utt_id!r} is only in {stores['audio']}); pass --manifest to choose which to label\n"))


def test_an_audio_checkpoint_labels_one_wav(demo_manifest, demo_store, tmp_path):
    checkpoint = train_checkpoint(demo_manifest, demo_store, demo_store.parent / "a" / "fold-1", "a")
    result = invoke("--checkpoint", str(checkpoint), "--audio", str(tone(tmp_path / "one.wav")))
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    utt, pred, probs = line.split("\t")
    assert utt == "one" and probs.startswith(f"{pred} ") and len(probs.split("  ")) == len(Checkpoint.load(checkpoint).classes)


def test_a_manifest_through_all_three_encoders_labels_as_the_extracted_store_does(demo_manifest, demo_store, tmp_path):
    checkpoint = train_checkpoint(demo_manifest, demo_store, demo_store.parent / "atv" / "fold-1", "a,t,v")
    rows = read_manifest(demo_manifest)[:4]  # dialog videos, a span and a side each
    manifest = write_manifest(rows, tmp_path / "four.jsonl")
    from_media = predict(checkpoint, manifest=manifest, cache=tmp_path / "cache")
    assert from_media.extracted == {"audio": 4, "text": len({r.text for r in rows}), "video": 4} and not from_media.failures
    from_store = predict(checkpoint, demo_store, manifest)
    assert [p.utt_id for p in from_media.predictions] == [r.utt_id for r in rows]
    assert [p.label for p in from_media.predictions] == [r.label for r in rows]
    for media, stored in zip(from_media.predictions, from_store.predictions):
        assert media.probs == pytest.approx(stored.probs, abs=1e-6)


def test_a_second_predict_reuses_the_cache_and_a_changed_file_is_extracted_again(demo_checkpoint, tmp_path):
    cache = tmp_path / "cache"
    wav = tone(tmp_path / "two.wav", seed=4)
    args = ["--checkpoint", str(demo_checkpoint), "--text", SAID, "--cache", str(cache), "--json"]
    first = json.loads(invoke(*args, "--audio", str(wav)).stdout)
    assert first["extracted"] == {"audio": 1, "text": 1} and first["reused"] == {"audio": 0, "text": 0}
    with features.open_store(str(cache / CACHE_STORE)) as store:
        segments = {name: len(store[name].segments) for name in store.set_names()}

    moved = shutil.copy(wav, tmp_path / "renamed.wav")  # same content, other path and name: found by content
    for path in (wav, moved):
        again = json.loads(invoke(*args, "--audio", str(path)).stdout)
        assert again["extracted"] == {"audio": 0, "text": 0} and again["reused"] == {"audio": 1, "text": 1}
        assert again["predictions"][0]["probs"] == first["predictions"][0]["probs"]
    with features.open_store(str(cache / CACHE_STORE)) as store:
        assert {name: len(store[name].segments) for name in store.set_names()} == segments

    tone(wav, seed=5, freq=300.0)
    changed = json.loads(invoke(*args, "--audio", str(wav)).stdout)
    assert changed["extracted"] == {"audio": 1, "text": 0} and changed["reused"] == {"audio": 0, "text": 1}


def test_a_manifest_of_new_recordings_labels_what_it_can_and_names_what_it_cannot(demo_checkpoint, demo_manifest, tmp_path):
    rows = read_manifest(demo_manifest)[:3]
    gone = tmp_path / "gone.wav"
    rows[2] = dataclasses.replace(rows[2], audio=str(gone))
    manifest = write_manifest(rows, tmp_path / "new.jsonl")
    out = tmp_path / "p.csv"
    result = invoke("--checkpoint", str(demo_checkpoint), "--manifest", str(manifest), "--cache", str(tmp_path / "c"),
                    "--out", str(out))
    assert result.exit_code == 3
    assert f"not labelled: {rows[2].utt_id} [audio input] audio file not found: {gone}; fix the path or restore the file" in result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("utt_id,label,pred,p_")
    assert [line.split(",")[:2] for line in lines[1:]] == [[r.utt_id, r.label] for r in rows[:2]]

    # New recordings come without labels (a manifest for training would be refused).
    unlabelled = write_manifest([dataclasses.replace(r, label="") for r in rows[:2]], tmp_path / "unlabelled.jsonl")
    result = invoke("--checkpoint", str(demo_checkpoint), "--manifest", str(unlabelled), "--cache", str(tmp_path / "c"),
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("utt_id,pred,p_") and [line.split(",")[0] for line in lines[1:]] == [r.utt_id for r in rows[:2]]


def test_single_recordings_must_bring_what_the_checkpoint_was_trained_on(demo_checkpoint, tmp_path):
    wav = tone(tmp_path / "x.wav")
    result = invoke("--checkpoint", str(demo_checkpoint), "--audio", str(wav))
    assert result.exit_code == 1
    assert result.output == "Error: the checkpoint was trained on audio+text: give --text too\n"
    result = invoke("--checkpoint", str(demo_checkpoint), "--audio", str(wav), "--text", SAID, "--video", str(wav))
    assert result.output == "Error: the checkpoint was trained on audio+text only: leave out --video\n"
    result = invoke("--checkpoint", str(demo_checkpoint), "--audio", str(wav), "--text", SAID, "--store", str(wav))
    assert result.output == "Error: --audio/--video/--text label one recording: leave out --store and --manifest\n"
    result = invoke("--checkpoint", str(demo_checkpoint))
    assert result.output == ("Error: give the feature store(s) to label (--store), or recordings: a manifest (--manifest) "
                             "or one recording (--audio, --video, --text)\n")


def test_a_checkpoint_without_set_provenance_is_refused_for_recordings(demo_checkpoint, tmp_path):
    old = shutil.copytree(demo_checkpoint, tmp_path / "old")
    meta = json.loads((old / "config.json").read_text())
    for recorded in meta["sets"].values():
        del recorded["provenance"]
    (old / "config.json").write_text(json.dumps(meta))
    result = invoke("--checkpoint", str(old), "--audio", str(tone(tmp_path / "y.wav")), "--text", SAID)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {old}: the checkpoint does not record how its audio features were made (no set provenance in its "
        "config.json), so they cannot be made again from recordings. Re-train it with this version, or extract the "
        "recordings yourself and pass --store\n")


def _tiny_wav2vec2(path: Path, seed: int) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(16, 16),
        conv_kernel=(10, 3), conv_stride=(5, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="group", vocab_size=8)
    Wav2Vec2Model(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_checkpoint(demo_manifest, tmp_path_factory):
    """(checkpoint, model folder): a fold trained on the demo's audio through a tiny wav2vec2 loaded by path, all layers."""
    root = tmp_path_factory.mktemp("hf_ckpt")
    model = _tiny_wav2vec2(root / "models" / "tiny-w2v", seed=0)
    store = root / "features.h5"
    summary = run_extraction(demo_manifest, store, "audio", encoder=f"hf:{model}", options={"layers": "all"}, progress=False)
    assert summary.failed == 0
    return train_checkpoint(demo_manifest, store, root / "runs" / "fold-1", "a"), model


def test_an_hf_model_given_again_by_path_labels_a_recording(hf_checkpoint, tmp_path):
    checkpoint, model = hf_checkpoint
    wav = tone(tmp_path / "z.wav")
    result = invoke("--checkpoint", str(checkpoint), "--audio", str(wav), "--encoder", f"audio=hf:{model}",
                    "--cache", str(tmp_path / "c"), "--json")
    assert result.exit_code == 0, result.output
    (only,) = json.loads(result.stdout)["predictions"]
    assert only["utt_id"] == "z" and sum(only["probs"].values()) == pytest.approx(1, abs=1e-5)
    with features.open_store(str(tmp_path / "c" / CACHE_STORE)) as store:
        (name,) = store.set_names()
        assert store[name].info.layers == 3 and store[name].info.provenance.layers == "all"
    # The API takes the same source, typed.
    result = predict_media(checkpoint, audio=wav, cache=tmp_path / "c", sources={"a": EncoderSource(spec=f"hf:{model}")})
    assert result.reused == {"audio": 1} and result.predictions[0].probs == pytest.approx(only["probs"])


def test_an_hf_model_that_differs_or_cannot_be_found_is_refused(hf_checkpoint, tmp_path):
    checkpoint, model = hf_checkpoint
    prov = trained_sets(Checkpoint.load(checkpoint))["a"].provenance
    wav = tone(tmp_path / "w.wav")
    args = ["--checkpoint", str(checkpoint), "--audio", str(wav), "--cache", str(tmp_path / "c")]
    hint = ("Give the encoder again as `extract run` was given it: --encoder audio=SPEC (hf:DIR for a model folder), "
            f"--weights audio=FILE, --trust-pickle; the checkpoint's features were made with weights sha256 {prov.weights_sha256[:16]}...")

    other = _tiny_wav2vec2(tmp_path / "elsewhere" / "tiny-w2v", seed=1)  # same folder name, other weights
    result = invoke(*args, "--encoder", f"hf:{other}")
    assert result.exit_code == 1
    from extract.hf import model_files_sha256

    assert result.output == (
        f"Error: audio (a) encoder 'hf:tiny-w2v': the encoder loaded here ('hf:{other}') differs from the one the "
        f"checkpoint was trained with (weights_sha256: {prov.weights_sha256!r} -> {model_files_sha256(other)!r}; "
        f"checkpoint -> here). {hint}\n")

    result = invoke(*args)  # the checkpoint names only the folder: not in the HF cache, not here
    assert result.exit_code == 1
    assert result.output.startswith("Error: audio (a) encoder 'hf:tiny-w2v': cannot be loaded here ('hf:tiny-w2v'): "
                                    "model 'tiny-w2v' is not in the local Hugging Face cache")
    assert result.output.endswith(hint + "\n")

    moved = shutil.move(model, tmp_path / "moved")
    try:
        result = invoke(*args, "--encoder", f"audio=hf:{model}")
        assert result.exit_code == 1
        assert result.output == (
            f"Error: audio (a) encoder 'hf:tiny-w2v': cannot be loaded here ('hf:{model}'): no model folder at {model}: "
            f"pass a folder written by save_pretrained (hf:/path/to/model). {hint}\n")
    finally:
        shutil.move(moved, model)
    assert not (tmp_path / "c" / CACHE_STORE).exists(), "a refused encoder writes nothing"


def test_encoder_and_weights_flags_name_the_input_they_are_for(hf_checkpoint, demo_checkpoint, tmp_path):
    checkpoint, model = hf_checkpoint
    wav = str(tone(tmp_path / "v.wav"))
    result = invoke("--checkpoint", str(checkpoint), "--audio", wav, "--encoder", "video=hog")
    assert result.output == "Error: --encoder 'video=hog': the checkpoint has no video input; its inputs: audio (a) encoder 'hf:tiny-w2v'\n"
    result = invoke("--checkpoint", str(demo_checkpoint), "--audio", wav, "--text", SAID, "--weights", wav)
    assert result.output == (
        f"Error: --weights {wav!r}: say which input it is for, e.g. --weights audio={wav} (the checkpoint's inputs: "
        "audio (a) encoder 'opensmile:ComParE_2016-functionals', text (t) encoder 'minilm')\n")
    result = invoke("--checkpoint", str(demo_checkpoint), "--audio", wav, "--text", SAID, "--weights", f"t={wav}")
    assert result.exit_code == 1
    assert "--weights does not apply to the text encoder 'minilm' (options it takes: --layers, --max-tokens)" in result.output


@pytest.fixture(scope="module")
def timm_checkpoint(demo_manifest, tmp_path_factory):
    """(checkpoint, weights file): a fold trained on the demo's video through timm's small test_efficientnet."""
    import timm
    import torch

    root = tmp_path_factory.mktemp("timm_ckpt")
    torch.manual_seed(0)
    weights = root / "face.pt"
    torch.save(timm.create_model("test_efficientnet", pretrained=False).state_dict(), weights)
    store = root / "features.h5"
    summary = run_extraction(demo_manifest, store, "video", encoder="timm:test_efficientnet",
                             options={"weights": str(weights), "frames": 2}, progress=False)
    assert summary.failed == 0
    return train_checkpoint(demo_manifest, store, root / "runs" / "fold-1", "v"), weights


def test_a_weights_file_given_again_labels_video_and_other_weights_are_refused(timm_checkpoint, demo_manifest, tmp_path):
    import timm
    import torch

    checkpoint, weights = timm_checkpoint
    manifest = write_manifest(read_manifest(demo_manifest)[:2], tmp_path / "two.jsonl")
    args = ["--checkpoint", str(checkpoint), "--manifest", str(manifest), "--cache", str(tmp_path / "c"), "--json"]
    result = invoke(*args, "--weights", str(weights))  # a bare file goes to the one input that takes weights
    assert result.exit_code == 0, result.output
    labelled = json.loads(result.stdout)
    assert len(labelled["predictions"]) == 2 and labelled["extracted"] == {"video": 2}

    cached = invoke(*args)  # everything cached: no encoder is needed
    assert cached.exit_code == 0 and json.loads(cached.stdout)["reused"] == {"video": 2}
    args[args.index("--cache") + 1] = str(tmp_path / "fresh")
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: video (v) encoder 'timm:test_efficientnet': cannot be loaded here "
                                    "('timm:test_efficientnet'): timm:test_efficientnet needs --weights FILE")
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    torch.save(timm.create_model("test_efficientnet", pretrained=False).state_dict(), other)
    result = invoke(*args, "--weights", f"video={other}")
    assert result.exit_code == 1
    assert "the encoder loaded here ('timm:test_efficientnet') differs from the one the checkpoint was trained with (weights_sha256: " in result.output
    result = invoke(*args, "--trust-pickle")
    assert result.output == "Error: --trust-pickle allows a pickled --weights file: give the --weights file too\n"
