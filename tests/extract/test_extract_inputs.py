"""Bad input an encoder must refuse before it runs: damaged model folders (checked before transformers
is called) and audio headers no recording has (recorded as that utterance's failure)."""
from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from extract.base import EncoderConfigError, create_encoder
from extract.cli import cli
from extract.hf import check_model_dir
from extract.pipeline import run_extraction
from features import open_store
from manifests import Utterance, write_manifest

COPY = "copy the model folder again"
TOO_LONG = "an utterance lasts at most 3600 s: cut the recording into one file per utterance, or check the header"


@pytest.fixture()
def roberta_copy(tiny_roberta, tmp_path):
    """A fresh copy of the tiny RoBERTa folder, to damage."""
    return shutil.copytree(tiny_roberta, tmp_path / "model")


def _refused(folder, modality="text"):
    with pytest.raises(EncoderConfigError) as err:
        create_encoder(modality, f"hf:{folder}")
    return str(err.value)


def test_the_intact_folder_passes(tiny_roberta, tiny_w2v):
    assert check_model_dir(tiny_roberta) == tiny_roberta
    assert check_model_dir(tiny_w2v) == tiny_w2v


def test_a_folder_without_weights(roberta_copy):
    (roberta_copy / "model.safetensors").unlink()
    assert _refused(roberta_copy) == (
        f"{roberta_copy} holds no weights (model.safetensors, pytorch_model.bin, model.safetensors.index.json, "
        "pytorch_model.bin.index.json); an encoder never runs with random weights: copy the weight files too, "
        "or save the model with save_pretrained"
    )


def test_a_folder_without_config(roberta_copy, tiny_w2v, tmp_path):
    (roberta_copy / "config.json").unlink()
    assert _refused(roberta_copy) == (
        f"{roberta_copy} has no config.json, so it is not a complete model folder: "
        "copy the whole folder that save_pretrained wrote (config.json and the weights)"
    )
    w2v = shutil.copytree(tiny_w2v, tmp_path / "w2v")
    (w2v / "config.json").unlink()
    assert _refused(w2v, "audio").startswith(f"{w2v} has no config.json")


def test_a_folder_without_the_extractor_or_tokenizer(roberta_copy, tiny_w2v, tmp_path):
    w2v = shutil.copytree(tiny_w2v, tmp_path / "w2v")
    (w2v / "preprocessor_config.json").unlink()
    assert _refused(w2v, "audio") == (
        f"{w2v} has no preprocessor_config.json (the feature extractor's sampling rate and normalisation): "
        "copy it with the model, or save it there with save_pretrained"
    )
    (roberta_copy / "tokenizer_config.json").unlink()
    assert _refused(roberta_copy) == (
        f"{roberta_copy} has no tokenizer_config.json (the tokenizer's settings): "
        "copy it with the model, or save it there with save_pretrained"
    )


def test_a_damaged_tokenizer(roberta_copy):
    (roberta_copy / "tokenizer.json").write_text('{"version": ')
    assert _refused(roberta_copy) == (
        f"{roberta_copy}: cannot load its tokenizer (Expecting value: line 1 column 13 (char 12)); {COPY}"
    )


def test_a_damaged_config(roberta_copy):
    (roberta_copy / "config.json").write_bytes(b'{"model_type": "roberta", ')
    assert _refused(roberta_copy).startswith(f"{roberta_copy / 'config.json'} is not a readable JSON file (")


def test_truncated_safetensors(roberta_copy):
    weights = roberta_copy / "model.safetensors"
    data = weights.read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    weights.write_bytes(data[: len(data) // 2])
    assert _refused(roberta_copy) == (
        f"{weights} is truncated: its header describes {len(data) - 8 - header_len} bytes of tensors, "
        f"the file holds {len(data) // 2 - 8 - header_len}; {COPY}"
    )
    weights.write_bytes(data[:5])
    assert _refused(roberta_copy) == f"{weights} is truncated or damaged (5 bytes: no complete safetensors header); {COPY}"
    weights.write_bytes(data[:8] + b"\xff" * (len(data) - 8))
    assert _refused(roberta_copy).startswith(f"{weights} has a damaged safetensors header (UnicodeDecodeError")


def test_truncated_torch_zip(roberta_copy):
    import torch
    from safetensors.torch import load_file

    state = load_file(roberta_copy / "model.safetensors")
    (roberta_copy / "model.safetensors").unlink()
    weights = roberta_copy / "pytorch_model.bin"
    torch.save(state, weights)
    weights.write_bytes(weights.read_bytes()[:-200])
    assert _refused(roberta_copy) == f"{weights} is truncated or damaged (a zip archive without its directory); {COPY}"


def test_a_shard_index_naming_a_missing_shard(roberta_copy):
    (roberta_copy / "model.safetensors").rename(roberta_copy / "model-00001-of-00002.safetensors")
    (roberta_copy / "model.safetensors.index.json").write_text(
        '{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}')
    assert _refused(roberta_copy) == (
        f"{roberta_copy} lacks weight shard(s) ['model-00002-of-00002.safetensors'] that model.safetensors.index.json "
        f"lists; {COPY}"
    )


def test_extract_cli_names_the_folder(roberta_copy, small_corpus, tmp_path):
    (roberta_copy / "model.safetensors").write_bytes(b"")
    store = tmp_path / "t.h5"
    result = CliRunner().invoke(cli, ["run", "--modality", "text", "--manifest", str(small_corpus), "--store", str(store),
                                      "--encoder", f"hf:{roberta_copy}"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {roberta_copy / 'model.safetensors'} is truncated or damaged (0 bytes: no complete safetensors header); {COPY}\n"
    )


# -- audio headers


def _wav_with_rate(path, rate: int, samples: int) -> None:
    soundfile.write(path, np.zeros(samples, dtype=np.float32), rate, subtype="PCM_16")


def test_absurd_sample_rates_and_durations_are_recorded_failures(tmp_path, wav_writer):
    root = tmp_path / "c"
    root.mkdir()
    wav_writer(root / "good.wav", 1.0)
    _wav_with_rate(root / "one_hz.wav", 1, 400)
    _wav_with_rate(root / "fast.wav", 768_000, 800)
    _wav_with_rate(root / "long.wav", 1_000, 3_601_000)
    rows = [Utterance(utt_id=u, label="neu", group="1", audio=f"{u}.wav") for u in ("good", "one_hz", "fast", "long")]
    manifest = write_manifest(rows, root / "m.jsonl")
    store = tmp_path / "a.h5"

    summary = run_extraction(manifest, str(store), "audio", progress=False)

    assert (summary.done, summary.exit_code) == (1, 3)
    failures = {u: (stage, message) for u, stage, message in summary.failures}
    damaged = "the header is damaged: copy the file again or re-encode it"
    assert failures == {
        "one_hz": ("decode", f"{root / 'one_hz.wav'}: its header claims a sample rate of 1 Hz, outside 1000..384000 Hz; {damaged}"),
        "fast": ("decode", f"{root / 'fast.wav'}: its header claims a sample rate of 768000 Hz, outside 1000..384000 Hz; {damaged}"),
        "long": ("decode", f"{root / 'long.wav'}: its header claims 3601 s of audio; {TOO_LONG}"),
    }
    with open_store(str(store)) as opened:
        assert list(opened["audio"].ids) == ["good"]
        assert {f.utt_id for f in opened["audio"].failures()} == set(failures)


def test_ffmpeg_decoding_stops_past_the_bound(tmp_path):
    """Containers soundfile does not read go through ffmpeg, which decodes at most a second past the bound."""
    import subprocess

    from extract.audio import read_audio
    from extract.base import ExtractError
    from extract.media import ffmpeg_exe

    long = tmp_path / "long.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "3602",
                    "-c:a", "libmp3lame", "-b:a", "8k", str(long)], check=True)
    with pytest.raises(ExtractError) as err:
        read_audio("u1", str(long), 1000)  # 1 kHz keeps the decoded bound (3.6 M samples) small
    assert str(err.value) == f"u1: decode: {long}: it holds more than 3600 s of audio; {TOO_LONG}"


@pytest.mark.parametrize("line, message", [
    ('{"utt_id": "a\\u0000b", "label": "neu", "group": "1", "audio": "a.wav"}',
     "field 'utt_id' ('a\\x00b') holds control character(s) U+0000 (NUL, tab, newline...): remove them"),
    ('{"utt_id": "", "label": "neu", "group": "1", "audio": "a.wav"}',
     "field 'utt_id' must be an utterance id: a non-empty string, got ''"),
    ('{"utt_id": 12, "label": "neu", "group": "1", "audio": "a.wav"}',
     "field 'utt_id' must be an utterance id: a non-empty string, got 12 (a number)"),
    ('{"utt_id": "u1", "label": "neu", "group": "1", "audio": 5}',
     "utterance 'u1': field 'audio' must be a file path (a string), got 5 (a number)"),
    ('{"utt_id": "u1", "label": null, "group": "1", "audio": "a.wav"}',
     "utterance 'u1': field 'label' must be a label: a non-empty string, got null"),
    ('{"utt_id": "u1", "label": "neu", "group": "1", "audio": "a.wav", "start": "soon"}',
     "utterance 'u1': field 'start' must be a number of seconds >= 0 or null, got 'soon' (a string)"),
])
def test_extract_run_refuses_a_bad_manifest_line_before_opening_the_store(tmp_path, line, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"utt_id": "u0", "label": "neu", "group": "1", "audio": "u0.wav"}\n' + line + "\n", encoding="utf-8")
    store = tmp_path / "a.h5"
    result = CliRunner().invoke(cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", str(store)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {manifest}:2: {message}; fix this line of the manifest\n"
    assert not store.exists()
