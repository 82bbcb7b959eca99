"""Dropout whose masks are a function of (member seed, step, site, element coordinates).

Why: an ensemble (:mod:`train.ensemble`) must train each member as that member would train alone.
Masks drawn from one random generator depend on which members share a call, in what order, and how
far their batches are padded, so a fold's figures would change with the other settings of a run (add
a lambda to an ablation and every fold moved). A counter-based mask depends on none of that: an
element is kept when a hash of its key and its coordinates (batch row, frame, channel, ...) falls at
or above ``p``. The coordinates of a real element are the same in a padded batch as in an unpadded
one, because padding always comes last.

The hash is SplitMix64's (Steele, Lea and Flood 2014): state ``(key + counter) * golden ratio``, then
its finaliser; the counter packs each axis's coordinate into 16 bits. On the CPU it costs less than
torch's own dropout on large tensors, and more on small ones, where its dozen operators' overhead
dominates (bench/dropout.py, bench/RESULTS.md).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_AXIS_BITS = 16
_MAX_AXES = 64 // _AXIS_BITS
_DRAWS = 4  # 16-bit draws per 64-bit hash


def _int64(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _coordinates(n: int, later: int, device: torch.device) -> Tensor:
    """An axis's part of the hash's counter, ``c << 16 * later`` for c < n, shaped (n, 1, ..., 1)
    with ``later`` ones. Kept from call to call when run eagerly: built anew at every site, its few small
    operators would cost more than the hash itself on the CPU. A compiled step builds it in its graph."""
    if torch.compiler.is_compiling():
        return _counter(n, later, device)
    return _kept_counter(n, later, device)


def _counter(n: int, later: int, device: torch.device) -> Tensor:
    return (torch.arange(n, dtype=torch.int64, device=device) << (_AXIS_BITS * later)).view((n,) + (1,) * later)


_kept_counter = functools.lru_cache(maxsize=None)(_counter)


def keep_mask(shape: Sequence[int], key: Tensor, p: float) -> Tensor:
    """bool, ``shape``: True where an element is kept (probability 1 - p, to 1/65,536).

    ``key`` (int64) covers the leading axes of ``shape``: () for one model, (K,) for K stacked members.
    Every other axis (at least one, at most four, each shorter than 65,536) enters through its
    coordinate; each 64-bit hash gives four 16-bit draws, for four neighbours on the last axis."""
    inner = tuple(shape[key.dim():])
    if not 1 <= len(inner) <= _MAX_AXES or any(n >= 1 << _AXIS_BITS for n in inner):
        raise ValueError(f"counter-based dropout takes 1 to {_MAX_AXES} axes after the member axis, each "
                         f"shorter than {1 << _AXIS_BITS}; got {tuple(shape)}")
    threshold = round(p * (1 << 16)) - (1 << 15)
    if torch.compiler.is_compiling():
        return _draws_by_element(inner, key) >= threshold
    hashed = inner[:-1] + (-(-inner[-1] // _DRAWS),)
    # The hash's four 16-bit quarters as int16 (little-endian, as on CPUs and GPUs), each uniform on
    # [-32768, 32768).
    return _finalise(_state(key, hashed)).view(torch.int16)[..., :inner[-1]] >= threshold


def _draws_by_element(inner: tuple[int, ...], key: Tensor) -> Tensor:
    """The int16 draws that :func:`keep_mask` compares, as int64, from one hash per element rather than
    one per four: its form in a compiled step, where slicing four draws a hash to an odd length would
    tie the graph to the length modulo 4 (one recompile more per dropout site)."""
    e = torch.arange(inner[-1], device=key.device)
    quarter = (_finalise(_state(key, inner, last=e // _DRAWS)) >> (_AXIS_BITS * (e % _DRAWS))) & 0xFFFF
    return quarter - ((quarter & 0x8000) << 1)  # read as int16 reads those bits


def _state(key: Tensor, counts: tuple[int, ...], last: Tensor | None = None) -> Tensor:
    """SplitMix64's state for every coordinate of axes of ``counts`` (the last one's coordinates are
    ``last`` when given): ``key`` shaped (..., *counts)."""
    z = key.reshape(key.shape + (1,) * len(counts))
    for i, n in enumerate(counts):
        later = len(counts) - 1 - i
        z = z + (last if later == 0 and last is not None else _coordinates(n, later, key.device))
    # (key + counter) * golden is SplitMix64's state at that counter for the seed key * golden.
    # (Multiplying the counter alone by golden, arange * constant, crashed inductor's CPU code, torch 2.14.)
    return z.mul_(_int64(_GOLDEN))


def _finalise(z: Tensor) -> Tensor:
    """SplitMix64's finaliser, in place on int64 ``z`` (wrapping as uint64 would); torch shifts int64
    arithmetically, so each shift is masked to a logical one."""
    shifted = torch.empty_like(z)
    for bits, mult in ((30, _MIX1), (27, _MIX2), (31, None)):
        torch.bitwise_right_shift(z, bits, out=shifted).bitwise_and_((1 << (64 - bits)) - 1)
        z.bitwise_xor_(shifted)
        if mult is not None:
            z.mul_(_int64(mult))
    return z


def dropout_keys(seeds: Sequence[int], steps: Sequence[int], sites: int) -> np.ndarray:
    """(K, sites) int64: the key of each member (its seed and how many optimiser steps it has taken) at
    each dropout site of its model. Keys of different seeds, steps or sites are unrelated numbers."""
    golden = _int64(_GOLDEN)
    z = _finalise(torch.tensor(list(seeds), dtype=torch.int64)[:, None] * golden + golden)
    z = _finalise(z + torch.tensor(list(steps), dtype=torch.int64)[:, None] * golden)
    z = _finalise(z + torch.arange(1, sites + 1, dtype=torch.int64)[None, :] * golden)
    return z.numpy()


class Dropout(nn.Module):
    """``nn.Dropout(p)`` that, once :attr:`counter_based` is set, draws its masks from :func:`keep_mask`
    with column :attr:`site` of its ``keys`` buffer instead of torch's generator.
    :class:`train.ensemble.Ensemble` numbers the sites of its model and passes every call's keys
    (:func:`dropout_keys`, (K, sites)): one table, the same tensor at every site, so a compiled step
    takes one input, not a view of it per site. The keys are not saved in checkpoints."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.counter_based = False
        self.site = 0
        self.register_buffer("keys", torch.zeros(1, dtype=torch.int64), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not self.counter_based:
            return F.dropout(x, self.p, True)
        return (x * keep_mask(x.shape, self.keys[..., self.site], self.p)).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}, counter_based={self.counter_based}, site={self.site}"
