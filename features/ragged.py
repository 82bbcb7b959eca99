"""Ragged: many variable-length arrays held as one contiguous block plus offsets.

This is what ``FeatureSet.read_all`` returns and what the training loader keeps
in memory: one numpy array for all frames, so there is no per-utterance object
to allocate, pickle or page in. Time is axis -2 of ``data``: ``(sum_T, D)`` for
single-layer sets, ``(L, sum_T, D)`` for layered ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Ragged:
    """Utterances ``ids[i]`` occupy frames ``offsets[i]:offsets[i+1]`` of ``data`` (axis -2)."""

    ids: list[str]
    offsets: np.ndarray
    data: np.ndarray
    _position: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.offsets.shape != (len(self.ids) + 1,):
            raise ValueError(f"Ragged: {len(self.ids)} ids need {len(self.ids) + 1} offsets, got {self.offsets.shape}")
        if self.data.ndim not in (2, 3) or self.data.shape[-2] != int(self.offsets[-1]):
            raise ValueError(
                f"Ragged: data of shape {self.data.shape} does not hold the {int(self.offsets[-1])} frames the offsets describe"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        """Frames per utterance, int64 ``(n,)``."""
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        """The ``i``-th utterance as a view: ``(T, D)`` or ``(L, T, D)``."""
        if not -len(self.ids) <= i < len(self.ids):
            raise IndexError(f"Ragged index {i} out of range for {len(self.ids)} utterances")
        i %= len(self.ids)
        return self.data[..., int(self.offsets[i]) : int(self.offsets[i + 1]), :]

    def get(self, utt_id: str) -> np.ndarray:
        """The utterance ``utt_id`` as a view; KeyError naming it if absent."""
        if not self._position:
            self._position.update((u, i) for i, u in enumerate(self.ids))
        try:
            return self[self._position[utt_id]]
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} is not in this Ragged ({len(self.ids)} utterances)") from None

    def __contains__(self, utt_id: object) -> bool:
        if not self._position:
            self._position.update((u, i) for i, u in enumerate(self.ids))
        return utt_id in self._position
