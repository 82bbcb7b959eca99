"""The audio and text encoders on real models: tiny ones built from configs, MiniLM and openSMILE."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from extract.base import EncoderConfigError, ExtractError, create_encoder, registered
from manifests import Utterance, read_manifest


def _rows(manifest):
    return read_manifest(manifest)


def _encode_one(encoder, utt):
    with torch.inference_mode():
        return encoder.encode([encoder.load(utt)])[0]


def test_builtin_encoders_registered():
    kinds = {key for key in registered()}
    assert {("audio", "opensmile"), ("audio", "hf"), ("text", "hf"), ("text", "minilm")} <= kinds


def test_opensmile_lld_shapes_and_rate(small_corpus):
    enc = create_encoder("audio", "opensmile:eGeMAPSv02")
    assert (enc.dim, enc.frame_rate, enc.weights_sha256()) == (25, 100.0, None)
    for utt in _rows(small_corpus)[:3]:
        seconds = soundfile.info(utt.audio).duration
        out = _encode_one(enc, utt)
        assert out.dtype == np.float32 and out.shape[1] == 25
        # 10 ms hop: one frame per 10 ms, less the analysis window.
        assert abs(out.shape[0] - seconds * 100) <= 6, (out.shape, seconds)


@pytest.mark.parametrize("spec, dim", [("opensmile:eGeMAPSv02-functionals", 88), ("opensmile:ComParE_2016-functionals", 6373)])
def test_opensmile_functionals_are_one_frame_per_utterance(small_corpus, spec, dim):
    enc = create_encoder("audio", spec)
    assert (enc.dim, enc.frame_rate, enc.preprocessing()["feature_level"]) == (dim, None, "functionals")
    utt = _rows(small_corpus)[0]
    assert enc.length(utt) == 1
    out = _encode_one(enc, utt)
    assert out.dtype == np.float32 and out.shape == (1, dim) and np.isfinite(out).all()
    lld = create_encoder("audio", spec.removesuffix("-functionals"))
    assert lld.preprocessing()["feature_level"] == "lld" and lld.length(utt) is None


def test_opensmile_compare_llds_shapes_and_rate(small_corpus):
    enc = create_encoder("audio", "opensmile:ComParE_2016")
    assert (enc.dim, enc.frame_rate) == (65, 100.0)
    assert _encode_one(enc, _rows(small_corpus)[0]).shape[1] == 65


def test_opensmile_unknown_set_names_the_choices():
    with pytest.raises(EncoderConfigError, match=r"unknown openSMILE feature set 'eGeMAPS9'; choose one of \[.*'eGeMAPSv02'.*'eGeMAPSv02-functionals'"):
        create_encoder("audio", "opensmile:eGeMAPS9")


def test_opensmile_refuses_options_it_has_no_use_for():
    with pytest.raises(EncoderConfigError) as err:
        create_encoder("audio", "opensmile", options={"layers": "all"})
    assert str(err.value) == "--layers does not apply to the audio encoder 'opensmile:eGeMAPSv02' (options it takes: none)"


def test_opensmile_too_short_is_an_item_failure(tmp_path):
    path = tmp_path / "blip.wav"
    soundfile.write(path, np.zeros(200, dtype=np.float32), 16000)
    enc = create_encoder("audio", "opensmile")
    utt = Utterance(utt_id="blip", label="neu", group="1", audio=str(path))
    with pytest.raises(ExtractError) as err:
        _encode_one(enc, utt)
    assert err.value.stage == "encode" and "too short" in err.value.message


@pytest.mark.parametrize("fixture", ["tiny_w2v", "tiny_w2v_masked", "tiny_w2v_group_masked"])
def test_hf_audio_frames_and_batch_invariance(request, fixture, small_corpus):
    """A batch gives what each utterance gives alone: padding is masked where the model can mask it,
    and never happens under group norm over time, which a mask does not shield."""
    model_dir = request.getfixturevalue(fixture)
    enc = create_encoder("audio", f"hf:{model_dir}")
    rows = _rows(small_corpus)[:5]
    assert enc.dim == 32 and enc.frame_rate == 16000 / 20 and enc.layers == "last"
    items = [enc.load(r) for r in rows]
    with torch.inference_mode():
        batched = enc.encode(items)
        alone = [enc.encode([item])[0] for item in items]
    for utt, b, a in zip(rows, batched, alone):
        samples = soundfile.info(utt.audio).frames
        frames = samples
        for k, s in zip((10, 3, 3), (5, 2, 2)):
            frames = (frames - k) // s + 1
        assert b.shape == (frames, 32) == a.shape
        assert enc.length(utt) == frames
        np.testing.assert_allclose(b, a, atol=2e-5)
    # The batch really mixes lengths, so padding was exercised.
    assert len({b.shape[0] for b in batched}) > 1


@pytest.mark.parametrize("model", ["tiny_w2v", "tiny_w2v_masked"])
def test_hf_audio_layers(model, small_corpus, request):
    """The last index of `all` is the output `last` gives, also for a model with a final LayerNorm
    after its last layer (transformers 5 records the stream before it as that layer's state)."""
    model = request.getfixturevalue(model)
    utt = _rows(small_corpus)[0]
    last = _encode_one(create_encoder("audio", f"hf:{model}"), utt)
    every = create_encoder("audio", f"hf:{model}", options={"layers": "all"})
    assert (every.layers, every.num_layers) == ("all", 3)
    stacked = _encode_one(every, utt)
    assert stacked.shape == (3, last.shape[0], 32)
    np.testing.assert_allclose(stacked[-1], last, atol=1e-6)
    picked = create_encoder("audio", f"hf:{model}", options={"layers": "2,0"})
    assert picked.layers == "2,0"
    np.testing.assert_allclose(_encode_one(picked, utt), stacked[[2, 0]], atol=1e-6)


def test_hf_audio_bad_layers_and_options(tiny_w2v):
    with pytest.raises(EncoderConfigError, match=r"--layers '5': indices must be distinct and in 0..2"):
        create_encoder("audio", f"hf:{tiny_w2v}", options={"layers": "5"})
    with pytest.raises(EncoderConfigError, match=r"--layers 'top': use 'last', 'all'"):
        create_encoder("audio", f"hf:{tiny_w2v}", options={"layers": "top"})
    with pytest.raises(EncoderConfigError, match=r"^--max-tokens does not apply to the audio encoder"):
        create_encoder("audio", f"hf:{tiny_w2v}", options={"max_tokens": 8})


def test_hf_provenance_is_path_independent(tiny_w2v, tmp_path):
    import shutil

    moved = shutil.copytree(tiny_w2v, tmp_path / tiny_w2v.name)
    a = create_encoder("audio", f"hf:{tiny_w2v}")
    b = create_encoder("audio", f"hf:{moved}")
    assert a.provenance_spec == b.provenance_spec == f"hf:{tiny_w2v.name}"
    assert a.weights_sha256() == b.weights_sha256() and len(a.weights_sha256()) == 64


def test_hf_uncached_hub_id_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EncoderConfigError) as err:
        create_encoder("audio", "hf:facebook/wav2vec2-base")
    message = str(err.value)
    assert message.startswith("model 'facebook/wav2vec2-base' is not in the local Hugging Face cache")
    assert "hf download facebook/wav2vec2-base --local-dir DIR" in message and "--encoder hf:DIR" in message


def test_hf_missing_folder():
    with pytest.raises(EncoderConfigError, match=r"^no model folder at /nonexistent/model: "):
        create_encoder("audio", "hf:/nonexistent/model")


def test_hf_audio_too_short_input(tiny_w2v, tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.zeros(30, dtype=np.float32), 16000)
    enc = create_encoder("audio", f"hf:{tiny_w2v}")
    with pytest.raises(ExtractError) as err:
        enc.load(Utterance(utt_id="s", label="neu", group="1", audio=str(path)))
    assert err.value.stage == "input" and "needs at least 40" in err.value.message


def test_audio_is_resampled_to_the_model_rate(tiny_w2v, tmp_path, wav_writer):
    path = wav_writer(tmp_path / "8k.wav", 1.0, sr=8000)
    enc = create_encoder("audio", f"hf:{tiny_w2v}")
    out = _encode_one(enc, Utterance(utt_id="r", label="neu", group="1", audio=str(path)))
    # 1 s at 8 kHz becomes 16000 samples at 16 kHz.
    assert out.shape[0] == ((((16000 - 10) // 5 + 1) - 3) // 2 + 1 - 3) // 2 + 1


def test_hf_text_tokens_specials_and_batching(tiny_roberta, small_corpus):
    enc = create_encoder("text", f"hf:{tiny_roberta}")
    tok = enc._tokenizer
    rows = [r for r in _rows(small_corpus) if len(tok(r.text)["input_ids"]) <= 16][:5]
    assert enc.dim == 24 and enc.frame_rate is None and enc.max_tokens == 16
    items = [enc.load(r) for r in rows]
    for item, utt in zip(items, rows):
        ids = item.ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id  # <s> ... </s> kept
        assert enc.length(utt) == len(ids)
    with torch.inference_mode():
        batched = enc.encode(items)
        alone = [enc.encode([item])[0] for item in items]
    assert len({b.shape[0] for b in batched}) > 1
    for item, b, a in zip(items, batched, alone):
        assert b.shape == (len(item.ids), 24)
        np.testing.assert_allclose(b, a, atol=2e-5)


def test_hf_text_truncation_is_counted(tiny_roberta):
    enc = create_encoder("text", f"hf:{tiny_roberta}", options={"max_tokens": 6})
    long = Utterance(utt_id="l", label="neu", group="1", audio="x.wav", text="well that is just great " * 4)
    short = Utterance(utt_id="s", label="neu", group="1", audio="x.wav", text="okay")
    cut, whole = enc.load(long), enc.load(short)
    ids = cut.ids
    assert len(ids) == 6 and ids[-1] == enc._tokenizer.eos_token_id
    full = len(enc._tokenizer(long.text)["input_ids"])
    assert enc.counts(cut) == {"tokens_dropped": full - 6, "utterances_truncated": 1}
    assert enc.counts(whole) == {"tokens_dropped": 0, "utterances_truncated": 0}
    assert enc.notes() == ["1 transcript(s) longer than 6 tokens were truncated to their first 6 (--max-tokens)"]
    assert enc.notes() == []
    with pytest.raises(EncoderConfigError, match=r"--max-tokens 99: this model takes 3 to 16 tokens"):
        create_encoder("text", f"hf:{tiny_roberta}", options={"max_tokens": 99})


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_transcript_is_an_input_failure(tiny_roberta, text):
    enc = create_encoder("text", f"hf:{tiny_roberta}")
    with pytest.raises(ExtractError) as err:
        enc.load(Utterance(utt_id="e", label="neu", group="1", audio="x.wav", text=text))
    assert (err.value.utt_id, err.value.stage) == ("e", "input")
    assert err.value.message == "empty transcript: the manifest row has no text for this utterance"


def test_minilm_default(small_corpus):
    enc = create_encoder("text")
    assert enc.spec == enc.provenance_spec == "minilm"
    assert (enc.dim, enc.max_tokens, enc.layers) == (384, 512, "last")
    utt = _rows(small_corpus)[0]
    ids = enc.load(utt).ids
    tokens = enc._tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    out = _encode_one(enc, utt)
    assert out.shape == (len(ids), 384) and np.isfinite(out).all()
    with pytest.raises(EncoderConfigError, match=r"^minilm takes no argument"):
        create_encoder("text", "minilm:/somewhere")


def test_unknown_kind_names_the_registered_ones():
    with pytest.raises(EncoderConfigError) as err:
        create_encoder("text", "bert:base")
    assert str(err.value) == "unknown text encoder 'bert' in 'bert:base'; registered: ['hf', 'minilm']"


def test_a_model_folder_missing_weights_is_refused(tiny_w2v, tmp_path):
    import json
    import shutil

    broken = shutil.copytree(tiny_w2v, tmp_path / "w2v-3-layers")
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the checkpoint holds two: layer 2 would be random
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderConfigError, match=r"the checkpoint has no weights for \d+ parameter\(s\) of Wav2Vec2Model .*they would be random"):
        create_encoder("audio", f"hf:{broken}")


def test_other_containers_are_decoded_with_ffmpeg(tmp_path, wav_writer):
    import subprocess

    from extract.audio import read_audio
    from extract.media import ffmpeg_exe

    wav = wav_writer(tmp_path / "a.wav", 1.0, sr=22050)
    m4a = tmp_path / "a.m4a"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    via_ffmpeg = read_audio("a", str(m4a), 16000)
    direct = read_audio("a", str(wav), 16000)
    assert abs(via_ffmpeg.size - direct.size) < 0.05 * 16000  # aac adds priming samples
    (tmp_path / "bad.mp3").write_bytes(b"not audio at all" * 100)
    with pytest.raises(ExtractError) as err:
        read_audio("bad", str(tmp_path / "bad.mp3"), 16000)
    assert err.value.stage == "decode" and err.value.message.startswith(f"ffmpeg cannot decode {tmp_path / 'bad.mp3'}: ")


def test_a_container_gives_the_samples_and_the_seconds_of_the_same_wav(tmp_path):
    """Channels mixed as their mean and resampled with soxr whatever the container (ffmpeg's own
    downmix is (L+R)/sqrt 2); and its seconds known before decoding, for batch planning."""
    import subprocess

    import soundfile

    from extract.audio import audio_duration, read_audio
    from extract.media import ffmpeg_exe

    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 330 * t)], axis=1).astype(np.float32)
    wav, mkv = tmp_path / "a.wav", tmp_path / "a.mkv"
    soundfile.write(wav, stereo, 44100, subtype="FLOAT")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(wav), "-c:a", "pcm_f32le", str(mkv)], check=True)
    np.testing.assert_array_equal(read_audio("a", str(mkv), 16000), read_audio("a", str(wav), 16000))
    row = Utterance(utt_id="a", label="neu", group="1", audio=str(mkv))
    assert audio_duration(row) == pytest.approx(2.0, abs=0.01)
