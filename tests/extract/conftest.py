"""Tiny real models (built from configs, saved with save_pretrained), small corpora, and small real encoders
with bugs (registered by the tests that use them, never at import) for the extract tests."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import soundfile

from extract.audio import audio_duration, read_audio
from extract.base import Encoder
from manifests import Utterance, write_manifest

SENTENCES = [
    "i can not believe you did that",
    "well that is just great",
    "what do you mean by that",
    "oh my god this is wonderful news",
    "leave me alone please",
    "i am so tired of all of this",
    "that is the best thing that happened to me all year",
    "okay",
    "are you serious right now",
    "we will figure it out together",
]


def _tiny_wav2vec2(path: Path, *, layer_norm: bool, mask: bool | None = None) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
        vocab_size=8,
    )
    Wav2Vec2Model(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=layer_norm if mask is None else mask,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_w2v(tmp_path_factory) -> Path:
    """wav2vec2 with group norm over time and no attention mask, like wav2vec2-base (frames: 20 ms... here 20 hops of 5*2*2)."""
    return _tiny_wav2vec2(tmp_path_factory.mktemp("models") / "tiny-w2v", layer_norm=False)


@pytest.fixture(scope="session")
def tiny_w2v_masked(tmp_path_factory) -> Path:
    """wav2vec2 with layer norm and an attention mask, like wav2vec2-large-lv60 / WavLM."""
    return _tiny_wav2vec2(tmp_path_factory.mktemp("models") / "tiny-w2v-masked", layer_norm=True)


@pytest.fixture(scope="session")
def tiny_w2v_group_masked(tmp_path_factory) -> Path:
    """Group norm over time, with a feature extractor that asks for attention masks anyway (wavlm-base-plus ships so)."""
    return _tiny_wav2vec2(tmp_path_factory.mktemp("models") / "tiny-w2v-group-masked", layer_norm=False, mask=True)


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    """A RoBERTa-style model with a byte-level BPE tokenizer trained here on a few sentences."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    path = tmp_path_factory.mktemp("models") / "tiny-roberta"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 5, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=16,
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=48, max_position_embeddings=18, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    RobertaModel(config, add_pooling_layer=False).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_timm(tmp_path_factory) -> dict[str, Path]:
    """timm's small test_efficientnet (160x160 input, 256 features), random weights (seed 0), saved three ways:
    a state dict with its classifier (``pt``), ``safetensors``, and the whole pickled model (``pickle``)."""
    import timm
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("timm_weights")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False).eval()
    paths = {"pt": folder / "model.pt", "safetensors": folder / "model.safetensors", "pickle": folder / "whole.pt"}
    torch.save(model.state_dict(), paths["pt"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths["safetensors"]))
    torch.save(model, paths["pickle"])
    return paths


def write_tone(path: Path, seconds: float, sr: int = 16000, freq: float = 220.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    soundfile.write(path, wave.astype(np.float32), sr, subtype="PCM_16")
    return path


def make_corpus(root: Path, n: int = 12, *, sr: int = 16000) -> Path:
    """n utterances of 0.5 to 2.5 s with transcripts; returns the manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        seconds = 0.5 + (i * 0.37) % 2.0
        wav = write_tone(root / f"utt{i:03d}.wav", seconds, sr=sr, freq=150 + 23 * i, seed=i)
        rows.append(
            Utterance(
                utt_id=f"Ses01F_utt{i:03d}", label=("ang", "hap", "neu", "sad")[i % 4], group=str(1 + i % 2),
                audio=wav.name, text=SENTENCES[i % len(SENTENCES)],
            )
        )
    return write_manifest(rows, root / "manifest.jsonl")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """12 short synthetic utterances with transcripts: the manifest path."""
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def wav_writer():
    """``write_tone(path, seconds, sr=16000, ...)``: a short synthetic wav."""
    return write_tone


@pytest.fixture(scope="session")
def corpus_factory():
    """``make_corpus(root, n=12)``: a small corpus with transcripts; returns its manifest path."""
    return make_corpus


# -- encoders with bugs


class RmsEncoder(Encoder):
    """A real (if plain) encoder: the RMS of each 10 ms of 16 kHz audio, one value per frame."""

    modality = "audio"
    kind = "rms"
    accepted_options = frozenset()
    hop = 160

    def cost(self, utt: Utterance) -> float:
        return audio_duration(utt)

    def length(self, utt: Utterance) -> int | None:
        return None

    def load(self, utt: Utterance) -> tuple[str, np.ndarray]:
        return utt.utt_id, read_audio(utt.utt_id, utt.audio, 16000)

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        return [self._rms(wave, self.hop) for _, wave in items]

    @staticmethod
    def _rms(wave: np.ndarray, hop) -> np.ndarray:
        n = wave.size // hop
        return np.sqrt((wave[: n * hop].reshape(n, hop) ** 2).mean(axis=1, keepdims=True)).astype(np.float32)

    @property
    def dim(self) -> int:
        return 1

    @property
    def frame_rate(self) -> float:
        return 100.0


class ShortInputBugEncoder(RmsEncoder):
    """A new encoder with a bug in a branch only utterances under 1.2 s take: a float hop (TypeError when slicing)."""

    kind = "rms-buggy"

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        return [self._rms(wave, wave.size / 100 if wave.size < 1.2 * 16000 else self.hop) for _, wave in items]


class OneOffEncoder(RmsEncoder):
    """Chokes on one utterance only, the way a library can on one odd file."""

    kind = "rms-one-off"

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        if any(utt_id == "Ses01F_utt004" for utt_id, _ in items):
            raise KeyError("tempo")
        return super().encode(items)




class ShardBugEncoder(RmsEncoder):
    """Chokes on every utterance of one Dask shard (the three whose ids it names), like a worker missing a library."""

    kind = "rms-shard-bug"
    broken = ("Ses01F_utt005", "Ses01F_utt003", "Ses01F_utt001")

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        if any(utt_id in self.broken for utt_id, _ in items):
            raise ImportError("libfoo.so.1: cannot open shared object file")
        return super().encode(items)


def _register_here(cls: type[Encoder]) -> None:
    """Run on each Dask worker (``client.run``): the worker's own registry gets ``cls``."""
    from extract.base import register, registered

    if (cls.modality, cls.kind) not in registered():
        register(cls)


@pytest.fixture()
def registry(monkeypatch):
    """:mod:`extract.base` with a copy of the encoder registry: what the test registers is gone afterwards."""
    from extract import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base.registered()))
    return base


@pytest.fixture(scope="session")
def rms_encoders() -> types.SimpleNamespace:
    """The encoders above; ``register_on(client, cls)`` registers one on every Dask worker of ``client``."""
    import sys

    import cloudpickle

    def register_on(client, cls: type[Encoder]) -> None:
        # Test modules are not importable on a worker: send this module's classes by value.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        client.run(_register_here, cls)

    return types.SimpleNamespace(Rms=RmsEncoder, ShortInputBug=ShortInputBugEncoder, OneOff=OneOffEncoder,
                                 ShardBug=ShardBugEncoder, register_on=register_on)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a small shared machine more threads spin and run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
