"""Per-channel feature statistics of the training split, for the model's input standardisation.

Raw descriptors (openSMILE's F0 in semitones beside loudness near 1, HOG bins) differ in
scale by orders of magnitude; the head standardises each channel with the mean and std of
the TRAINING utterances' frames only, so nothing about the validation or test session
leaks into the model.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from train.data import DataError, FeatureData


def input_stats(data: FeatureData, index: Sequence[int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """modality -> (mean, std) over every frame of the utterances ``index``: (D,) or (L, D) each."""
    stats = {}
    for name, md in data.modalities.items():
        total = None
        total_sq = None
        count = 0
        for i in index:
            frames = md.data[..., md.offsets[i]:md.offsets[i + 1], :].astype(np.float64)
            s, sq = frames.sum(axis=-2), np.square(frames).sum(axis=-2)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += frames.shape[-2]
        if count == 0:
            raise DataError(f"no training frames for modality {name!r}: cannot standardise its inputs")
        mean = total / count
        var = np.maximum(total_sq / count - np.square(mean), 0.0)
        stats[name] = (torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(var)).float())
    return stats
