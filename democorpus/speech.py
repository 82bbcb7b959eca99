"""Synthetic speech for the demo corpus: a voiced signal whose prosody carries an emotion.

Each emotion sets the pitch level and range, loudness, speaking rate, spectral
tilt, breathiness and jitter: the things eGeMAPS low-level descriptors (F0,
loudness, spectral slope, HNR, jitter, voiced-segment rates) measure.
"""
from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Prosody:
    pitch: float  # times the speaker's base F0
    pitch_range: float  # relative excursion of the F0 contour
    rms: float  # target RMS, full scale = 1
    rate: float  # syllables per second
    tilt: float  # harmonic k has amplitude k ** -tilt
    breath: float  # aspiration noise relative to the voiced signal
    jitter: float  # relative cycle-to-cycle F0 perturbation


PROSODY: dict[str, Prosody] = {
    "neu": Prosody(pitch=1.00, pitch_range=0.08, rms=0.05, rate=4.0, tilt=1.4, breath=0.05, jitter=0.004),
    "hap": Prosody(pitch=1.22, pitch_range=0.25, rms=0.08, rate=4.8, tilt=1.1, breath=0.05, jitter=0.006),
    "exc": Prosody(pitch=1.50, pitch_range=0.40, rms=0.12, rate=6.0, tilt=0.9, breath=0.04, jitter=0.008),
    "ang": Prosody(pitch=1.15, pitch_range=0.18, rms=0.16, rate=5.4, tilt=0.6, breath=0.10, jitter=0.02),
    "sad": Prosody(pitch=0.84, pitch_range=0.04, rms=0.02, rate=2.8, tilt=2.0, breath=0.15, jitter=0.005),
    "fru": Prosody(pitch=1.05, pitch_range=0.12, rms=0.07, rate=4.2, tilt=1.2, breath=0.30, jitter=0.03),
}

# (F1, F2) of a few vowels in Hz, for an adult male vocal tract.
_VOWELS = np.array([(730, 1090), (530, 1840), (270, 2290), (570, 840), (300, 870), (660, 1720), (490, 1350)], dtype=float)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.hanning(width)
    kernel /= kernel.sum()
    return np.convolve(x, kernel, mode="same")


def synth_speech(
    rng: np.random.Generator, n_samples: int, emotion: str, base_f0: float, tract_scale: float
) -> np.ndarray:
    """``n_samples`` of float speech in [-1, 1] at :data:`SAMPLE_RATE` expressing ``emotion``.

    ``base_f0`` is the speaker's habitual pitch (Hz); ``tract_scale`` scales the
    formants (about 1.15 for a female voice).
    """
    p = PROSODY[emotion]
    sr = SAMPLE_RATE
    t = np.arange(n_samples) / sr
    duration = n_samples / sr

    # Syllables: random lengths around 1 / rate, some silent (pauses between words).
    bounds = [0.0]
    while bounds[-1] < duration:
        bounds.append(bounds[-1] + rng.uniform(0.7, 1.3) / p.rate)
    bounds = np.array(bounds)
    syllable = np.searchsorted(bounds, t, side="right") - 1
    n_syll = len(bounds) - 1
    voiced = rng.random(n_syll) > 0.12
    voiced[0] = True
    position = (t - bounds[syllable]) / (bounds[syllable + 1] - bounds[syllable])
    envelope = np.sin(np.pi * np.clip(position, 0, 1)) ** 0.6 * voiced[syllable]
    envelope *= rng.uniform(0.7, 1.0, n_syll)[syllable]
    envelope = _smooth(envelope, int(0.01 * sr))
    # A short fade so the wav starts and ends in silence.
    fade = np.minimum(1.0, np.minimum(t, duration - t) / 0.05)
    envelope *= np.clip(fade, 0, 1)

    # F0: level, slow contour of the emotion's range, declination, per-cycle jitter.
    phases = rng.uniform(0, 2 * np.pi, 3)
    contour = (
        0.6 * np.sin(2 * np.pi * 0.7 * t + phases[0])
        + 0.3 * np.sin(2 * np.pi * 1.9 * t + phases[1])
        + 0.4 * np.sin(2 * np.pi * p.rate / 2 * t + phases[2])
    )
    declination = 1.0 - 0.06 * t / max(duration, 1e-3)
    f0 = base_f0 * p.pitch * rng.uniform(0.96, 1.04) * declination * (1.0 + p.pitch_range * contour)
    cycle = np.floor(np.cumsum(f0) / sr).astype(int)
    f0 = f0 * (1.0 + p.jitter * rng.standard_normal(cycle[-1] + 1)[cycle])
    phase = 2 * np.pi * np.cumsum(f0) / sr

    # Formants follow the vowel of each syllable, smoothed across boundaries. Harmonic
    # weights change slowly, so they are computed every 5 ms and interpolated.
    hop = sr // 200
    coarse_syllable = syllable[::hop]
    vowel = rng.integers(0, len(_VOWELS), n_syll)[coarse_syllable]
    f1 = _smooth(_VOWELS[vowel, 0] * tract_scale, 7)
    f2 = _smooth(_VOWELS[vowel, 1] * tract_scale, 7)
    f3 = 2500.0 * tract_scale
    coarse_f0 = f0[::hop]

    n_harm = int(min(32, 4000 // (f0.max() + 1)))
    k = np.arange(1, n_harm + 1)[:, None]
    fk = k * coarse_f0
    weights = k ** -p.tilt * (
        1.0 / (1 + ((fk - f1) / 90.0) ** 2)
        + 0.7 / (1 + ((fk - f2) / 120.0) ** 2)
        + 0.3 / (1 + ((fk - f3) / 160.0) ** 2)
        + 0.02
    )
    # Linear interpolation of every harmonic's weight from the 5 ms grid to each sample.
    position = np.minimum(t * sr / hop, weights.shape[1] - 1.000001)
    index = position.astype(int)
    frac = position - index
    index_next = np.minimum(index + 1, weights.shape[1] - 1)
    voice = np.zeros(n_samples)
    carrier = np.exp(1j * phase)
    harmonic = carrier.copy()
    for h in range(n_harm):
        row = weights[h]
        voice += (row[index] * (1 - frac) + row[index_next] * frac) * harmonic.imag
        harmonic *= carrier
    voice /= np.sqrt(np.mean(voice**2)) + 1e-9

    noise = rng.standard_normal(n_samples)
    noise = noise - np.concatenate([[0.0], 0.7 * noise[:-1]])  # a little brighter than white, like aspiration
    noise /= np.sqrt(np.mean(noise**2)) + 1e-9
    speech = envelope * (voice + p.breath * noise)
    speech /= np.sqrt(np.mean(speech**2)) + 1e-9
    speech *= p.rms * rng.uniform(0.8, 1.2)
    speech += 3e-4 * rng.standard_normal(n_samples)  # room noise floor
    return np.clip(speech, -0.99, 0.99)


def frame_energy(signal: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS of ``signal`` per video frame (``n_frames`` frames at ``fps``), for the talking mouth."""
    hop = SAMPLE_RATE / fps
    out = np.zeros(n_frames)
    for i in range(n_frames):
        chunk = signal[int(i * hop) : int((i + 1) * hop)]
        if chunk.size:
            out[i] = np.sqrt(np.mean(chunk**2))
    return out


def write_wav(path: Path, signal: np.ndarray) -> None:
    """16 kHz mono 16-bit PCM."""
    pcm = np.round(signal * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
