"""Speech encoders: openSMILE descriptors (low-level or functionals; the offline default) and
wav2vec 2.0 / HuBERT / WavLM through transformers.

Audio is decoded with soundfile (WAV, FLAC, OGG), or with ffmpeg for other
containers, mixed to mono and resampled to the encoder's rate with soxr (as
``librosa.resample`` does by default).
"""
from __future__ import annotations

import functools
import io
import os
import struct
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from manifests import Utterance

from .base import Encoder, EncoderConfigError, ExtractError, register, torch_dtype
from .hf import HFHiddenStates, quiet_transformers, require_file, resolve_model_dir

_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
# What a file header may claim before it is believed: telephone speech is 8 kHz, studio
# masters 384 kHz at most; an utterance, or even a whole dialog, lasts far under an hour.
SAMPLE_RATE_RANGE = (1_000, 384_000)
MAX_AUDIO_SECONDS = 3600.0
# ffmpeg decodes an hour of audio in seconds; one that runs for minutes hangs (a stalled mount).
DECODE_TIMEOUT_S = 300


@functools.lru_cache(maxsize=65536)
def _header_duration(path: str) -> float | None:
    import soundfile

    if Path(path).suffix.lower() not in _SOUNDFILE_SUFFIXES:
        # MELD's mp4 clips, RAVDESS's videos: batches are planned on these seconds, and a file
        # costed at 0 s would let one batch take a whole corpus (nothing committed until it ends).
        from extract.media import media_duration

        return media_duration(path)
    try:
        return float(soundfile.info(path).duration)
    except (OSError, RuntimeError, ValueError):
        return None


def audio_duration(utt: Utterance) -> float:
    """Seconds of audio from the file header (0.0 when the header cannot be read: load will say why)."""
    return _header_duration(utt.audio) or 0.0


def _check_wav_complete(utt_id: str, path: str) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header declares.

    libsndfile silently reads what is there, so a half-copied file would give
    plausible but wrong features.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            ident, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if ident == b"data":
                available = size - f.tell()
                if length != 0xFFFFFFFF and length > available:
                    raise ExtractError(
                        utt_id,
                        "decode",
                        f"{path} is truncated: its header declares {length} bytes of audio, the file holds {available}; "
                        "copy the file again from the corpus",
                    )
                return
            f.seek(length + (length & 1), os.SEEK_CUR)


def _check_header(utt_id: str, path: str) -> None:
    """Refuse a header whose sample rate or duration no recording has (a damaged or forged header)."""
    import soundfile

    try:
        info = soundfile.info(path)
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise ExtractError(utt_id, "decode", f"cannot decode {path}: {err}") from err
    low, high = SAMPLE_RATE_RANGE
    if not low <= info.samplerate <= high:
        raise ExtractError(
            utt_id, "decode",
            f"{path}: its header claims a sample rate of {info.samplerate} Hz, outside {low}..{high} Hz; "
            "the header is damaged: copy the file again or re-encode it",
        )
    if info.frames / info.samplerate > MAX_AUDIO_SECONDS:
        raise ExtractError(utt_id, "decode", _too_long(path, f"its header claims {info.frames / info.samplerate:.0f} s of audio"))


def _too_long(path: str, claim: str) -> str:
    return (f"{path}: {claim}; an utterance lasts at most {MAX_AUDIO_SECONDS:.0f} s: "
            "cut the recording into one file per utterance, or check the header")


def _decode_ffmpeg(utt_id: str, path: str) -> io.BytesIO:
    """``path`` (any container ffmpeg reads) as a float WAV in memory, with the file's own channels and
    rate: mixing and resampling then happen as for a WAV file (``read_audio``), not by ffmpeg's own
    rules (its mono downmix of stereo is (L+R)/sqrt 2, not the mean; its resampler is not soxr)."""
    from extract.media import ffmpeg_exe

    # -t: decode at most a second past the bound, so a file claiming days of audio cannot fill memory.
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path, "-t", str(MAX_AUDIO_SECONDS + 1),
           "-vn", "-f", "wav", "-c:a", "pcm_f32le", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=DECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExtractError(utt_id, "decode", f"ffmpeg did not finish decoding {path} in {DECODE_TIMEOUT_S} s; "
                                             "check that the file plays (a network mount that hangs?)") from None
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ExtractError(utt_id, "decode", f"ffmpeg cannot decode {path}: {reason[-1] if reason else 'unknown error'}")
    return io.BytesIO(proc.stdout)


def read_audio(utt_id: str, path: str | None, sr: int) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sr`` Hz (the mean of its channels, resampled with soxr,
    whatever the container); :class:`ExtractError` for anything unusable."""
    import soundfile

    if not path:
        raise ExtractError(utt_id, "input", "the manifest row has no audio path")
    if not os.path.isfile(path):
        raise ExtractError(utt_id, "input", f"audio file not found: {path}; fix the manifest's audio path or restore the file")
    if os.path.getsize(path) == 0:
        raise ExtractError(utt_id, "decode", f"{path} is an empty file (0 bytes); copy it again from the corpus")
    if Path(path).suffix.lower() in _SOUNDFILE_SUFFIXES:
        _check_wav_complete(utt_id, path)
        _check_header(utt_id, path)
        source: str | io.BytesIO = path
    else:
        source = _decode_ffmpeg(utt_id, path)
    try:
        wave, file_sr = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise ExtractError(utt_id, "decode", f"cannot decode {path}: {err}") from err
    if wave.shape[0] > MAX_AUDIO_SECONDS * file_sr:
        raise ExtractError(utt_id, "decode", _too_long(path, f"it holds more than {MAX_AUDIO_SECONDS:.0f} s of audio"))
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.size and file_sr != sr:
        import soxr  # what librosa.resample uses by default, without librosa's import time

        wave = soxr.resample(wave, file_sr, sr, quality="HQ").astype(np.float32)
    if wave.size == 0:
        raise ExtractError(utt_id, "decode", f"{path} holds no audio samples")
    if not np.isfinite(wave).all():
        raise ExtractError(utt_id, "decode", f"{path} holds non-finite samples (NaN/inf)")
    return np.ascontiguousarray(wave, dtype=np.float32)


@register
class OpenSmileEncoder(Encoder):
    """openSMILE descriptors: ``opensmile:<feature set>[-functionals]``.

    ``opensmile:eGeMAPSv02`` gives the 25 eGeMAPS low-level descriptors (LLDs) at 100
    frames/s; ``opensmile:ComParE_2016`` the 65 ComParE LLDs at 100 frames/s.
    ``opensmile:eGeMAPSv02-functionals`` gives the set's functionals instead (88 values
    for eGeMAPSv02, 6,373 for ComParE_2016): statistics over the whole utterance, stored
    as ONE frame per utterance, shape (1, D). Time has no rate there, so the set's
    frame_rate is None, and time pooling or attention over it is the identity.
    ``opensmile`` alone is eGeMAPSv02 LLDs; the audio default of ``extract run`` is
    ``opensmile:ComParE_2016-functionals`` (:data:`extract.base.DEFAULTS`). ComParE sets are
    stored in float32 unless asked otherwise: their values exceed float16's range.
    Audio is resampled to 16 kHz first. No weights, no torch.
    """

    modality = "audio"
    kind = "opensmile"
    accepted_options = frozenset()
    batch_cost = 60.0
    sample_rate = 16000

    def __init__(self, arg: str | None, **kwargs: Any):
        super().__init__(arg or "eGeMAPSv02", **kwargs)
        import opensmile

        name, self.level = self.arg, "lld"
        if self.arg.endswith("-functionals"):
            name, self.level = self.arg[: -len("-functionals")], "functionals"
        sets = list(opensmile.FeatureSet.__members__)
        if name not in sets:
            choices = sets + [f"{s}-functionals" for s in sets]
            raise EncoderConfigError(f"unknown openSMILE feature set {self.arg!r}; choose one of {choices}")
        level = opensmile.FeatureLevel.Functionals if self.level == "functionals" else opensmile.FeatureLevel.LowLevelDescriptors
        # ComParE's energies and spectral sums reach 1e11, far past float16's 65504.
        self.default_store_dtype = "float32" if name.startswith("ComParE") else "float16"
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet[name], feature_level=level)
        self._names = list(self._smile.feature_names)

    def cost(self, utt: Utterance) -> float:
        return audio_duration(utt)

    def length(self, utt: Utterance) -> int | None:
        # Functionals: one frame. LLDs: the count depends on each descriptor's window.
        return 1 if self.level == "functionals" else None

    def load(self, utt: Utterance) -> tuple[str, np.ndarray]:
        return utt.utt_id, read_audio(utt.utt_id, utt.audio, self.sample_rate)

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        out = []
        for utt_id, wave in items:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "Segment too short": caught as NaN below
                frames = self._smile.process_signal(wave, self.sample_rate).to_numpy(dtype=np.float32)
            if frames.shape[0] == 0 or not np.isfinite(frames).all():
                raise ExtractError(
                    utt_id, "encode", f"openSMILE gave no usable frames for {wave.size / self.sample_rate:.3f} s of audio (too short?)"
                )
            out.append(frames)
        return out

    @property
    def dim(self) -> int:
        return len(self._names)

    @property
    def frame_rate(self) -> float | None:
        return None if self.level == "functionals" else 100.0

    def preprocessing(self) -> dict[str, Any]:
        import opensmile

        return {
            "sample_rate": self.sample_rate,
            "feature_level": self.level,
            "opensmile_version": opensmile.__version__,
            "mono": "mean",
            "resampler": "soxr-hq",
        }


@register
class HFAudioEncoder(HFHiddenStates, Encoder):
    """wav2vec 2.0 / HuBERT / WavLM hidden states: ``hf:<hub id or model folder>``.

    Output ``(T, D)`` for ``--layers last`` (default) or ``(L, T, D)`` for ``all``
    or a list of hidden-state indices. A model whose feature extractor does not
    return an attention mask (wav2vec2-base: group norm over time) is run on
    utterances of equal length only, so padding never changes its outputs; one
    that does is run on zero-padded batches with the mask.
    """

    modality = "audio"
    kind = "hf"
    accepted_options = frozenset({"layers"})
    batch_cost = 120.0

    def __init__(self, arg: str | None, **kwargs: Any):
        super().__init__(arg, **kwargs)
        if not self.arg:
            raise EncoderConfigError("the hf audio encoder needs a model: --encoder hf:facebook/wav2vec2-base (cached) or hf:/path/to/model")
        from transformers import AutoConfig, AutoFeatureExtractor

        quiet_transformers()
        self.model_dir = resolve_model_dir(self.arg)
        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        if not hasattr(config, "conv_kernel") or not hasattr(config, "conv_stride"):
            raise EncoderConfigError(
                f"{self.arg}: model type {config.model_type!r} is not a wav2vec2-style speech encoder (no conv_kernel/conv_stride in its config)"
            )
        self._kernels = [int(k) for k in config.conv_kernel]
        self._strides = [int(s) for s in config.conv_stride]
        self._config = config
        require_file(self.model_dir, "preprocessor_config.json", "the feature extractor's sampling rate and normalisation")
        self._extractor = AutoFeatureExtractor.from_pretrained(self.model_dir, local_files_only=True)
        self.sample_rate = int(self._extractor.sampling_rate)
        # Pad with a mask only where the model can ignore padding: group norm over time (wav2vec2-base,
        # WavLM-base) normalises over the padded frames whatever the mask says, so its batches hold
        # equal lengths only, even when its feature extractor asks for masks.
        self._use_mask = (bool(getattr(self._extractor, "return_attention_mask", False))
                          and getattr(config, "feat_extract_norm", "layer") != "group")
        self._torch_dtype = torch_dtype(self.dtype)
        self._load_hf()

    @property
    def provenance_spec(self) -> str:
        return f"hf:{self.model_dir.name}" if Path(self.arg).expanduser().is_dir() else self.spec

    def frames_for(self, samples: int) -> int:
        """Output frames for ``samples`` input samples, from the conv stack's kernels and strides."""
        n = samples
        for kernel, stride in zip(self._kernels, self._strides):
            n = (n - kernel) // stride + 1
            if n <= 0:
                return 0
        return n

    @property
    def min_samples(self) -> int:
        n = 1
        for kernel, stride in reversed(list(zip(self._kernels, self._strides))):
            n = (n - 1) * stride + kernel
        return n

    def cost(self, utt: Utterance) -> float:
        return audio_duration(utt)

    def length(self, utt: Utterance) -> int | None:
        import soundfile

        try:
            info = soundfile.info(utt.audio)
        except (OSError, RuntimeError, ValueError):
            return None
        return self.frames_for(info.frames) if info.samplerate == self.sample_rate else None

    def load(self, utt: Utterance) -> tuple[str, np.ndarray]:
        wave = read_audio(utt.utt_id, utt.audio, self.sample_rate)
        if wave.size < self.min_samples:
            raise ExtractError(
                utt.utt_id,
                "input",
                f"{utt.audio} is too short: {wave.size} samples at {self.sample_rate} Hz, the model needs at least {self.min_samples}",
            )
        values = self._extractor(wave, sampling_rate=self.sample_rate, return_tensors="np")["input_values"][0]
        return utt.utt_id, np.ascontiguousarray(values, dtype=np.float32)

    def encode(self, items: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(items)
        if self._use_mask:
            groups = [list(range(len(items)))]
        else:
            by_len: dict[int, list[int]] = {}
            for i, (_, values) in enumerate(items):
                by_len.setdefault(values.size, []).append(i)
            groups = list(by_len.values())
        for group in groups:
            for i, features in zip(group, self._forward([items[i][1] for i in group])):
                out[i] = features
        return out  # type: ignore[return-value]

    def _forward(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        longest = max(w.size for w in waves)
        batch = np.zeros((len(waves), longest), dtype=np.float32)
        mask = np.zeros((len(waves), longest), dtype=np.int64)
        for i, w in enumerate(waves):
            batch[i, : w.size] = w
            mask[i, : w.size] = 1
        inputs = {"input_values": torch.from_numpy(batch).to(self.device, self._torch_dtype)}
        if self._use_mask:
            inputs["attention_mask"] = torch.from_numpy(mask).to(self.device)
        hidden = self._hidden_states(**inputs)
        return [np.ascontiguousarray(hidden[i, ..., : self.frames_for(w.size), :]) for i, w in enumerate(waves)]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / float(np.prod(self._strides))

    def preprocessing(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "normalize": bool(getattr(self._extractor, "do_normalize", False)),
            "attention_mask": self._use_mask,
            "mono": "mean",
            "resampler": "soxr-hq",
        }
