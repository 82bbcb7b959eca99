"""Batches of several ensemble members at once: length bins, which members' batches run together in a
step (:func:`step_groups`, :class:`Call`), and their inputs, padded on the host (:func:`pad_members`) or
gathered from inputs held on the device (:func:`resident`, :func:`gather_members`)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from train.data import FeatureData


def length_bin(n: int) -> int:
    """The padded length of a batch whose longest utterance has ``n`` frames: 4 bins per octave
    above 8 (at most 25% padding), so a run sees a few dozen shapes, not hundreds."""
    if n <= 8:
        return max(n, 1)
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


def pad_members(datas: Sequence[FeatureData], chunks: Sequence[np.ndarray],
                device: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each member's batch padded to one length bin per modality and stacked: x (K, B, [L,] T, D), mask (K, B, T)."""
    inputs = {}
    for m in datas[0].modalities:
        mds = [d.modalities[m] for d in datas]
        lengths = [md.offsets[c + 1] - md.offsets[c] for md, c in zip(mds, chunks)]
        t = length_bin(int(max(int(n.max()) for n in lengths)))
        md0 = mds[0]
        shape = (len(chunks), len(chunks[0])) + md0.data.shape[:-2] + (t, md0.dim)
        x = np.zeros(shape, dtype=np.float32)
        mask = np.zeros((len(chunks), len(chunks[0]), t), dtype=bool)
        for k, (md, c, n) in enumerate(zip(mds, chunks, lengths)):
            for j, (s, length) in enumerate(zip(md.offsets[c], n)):
                x[k, j, ..., :length, :] = md.data[..., s:s + length, :]
                mask[k, j, :length] = True
        inputs[m] = (torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device))
    return inputs


@dataclass
class Resident:
    """One modality's cached inputs for a fold, held on the device in their stored dtype: ``data`` (sum_T, D) or
    (L, sum_T, D), utterance i at frames ``offsets[i]:offsets[i+1]``."""

    data: torch.Tensor
    offsets: np.ndarray


# Share of the GPU's memory left free beside resident inputs, for the model, its activations and its
# optimiser state (an ensemble of 25 `paper` members at batch 2 needs well under this on 40 GB).
DEVICE_HEADROOM = 0.25


def residency(datas: Sequence[FeatureData], free: int, total: int) -> str | None:
    """Whether the members' inputs (``datas``; an array several share counts once) can live on a device
    with ``free`` of ``total`` bytes free: None if they fit beside :data:`DEVICE_HEADROOM` of it, else
    the line that says why batches are padded on the host instead."""
    arrays = {id(md.data): md.data for d in datas for md in d.modalities.values()}
    need = sum(a.nbytes for a in arrays.values())
    if need <= free - DEVICE_HEADROOM * total:
        return None
    return (f"inputs of {need / 1e9:.1f} GB do not fit on the GPU beside room to train ({free / 1e9:.1f} of "
            f"{total / 1e9:.1f} GB free, {DEVICE_HEADROOM:.0%} kept): each batch is padded in host memory and "
            "copied over (slower); fewer stored layers or frame pooling would let them fit")


def free_memory(device: str) -> tuple[int, int]:
    """(free, total) bytes on a CUDA ``device``, counting memory torch holds cached but unused as free."""
    free, total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device), total


def resident(data: FeatureData, device: str, cache: dict) -> dict[str, Resident]:
    """``data``'s modalities on ``device`` in their stored dtype (float16 for most sets; float32 where
    the values exceed float16's range, e.g. ComParE), copied there once per array (members and folds
    that share an array share its copy): each step then gathers its batches on the device
    (:func:`gather_members`) instead of padding them on the host and sending them over."""
    out = {}
    for m, md in data.modalities.items():
        key = ("resident", id(md.data))
        if key not in cache:
            cache[key] = torch.from_numpy(md.data).to(device)
        out[m] = Resident(cache[key], md.offsets)
    return out


def gather_members(residents: Sequence[dict[str, Resident]], chunks: Sequence[np.ndarray],
                   device: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`pad_members` from device-resident inputs: the same shapes and padding, the values cast
    to float32 on the device."""
    inputs = {}
    for m in residents[0]:
        starts = [r[m].offsets[c] for r, c in zip(residents, chunks)]
        lengths = [r[m].offsets[c + 1] - r[m].offsets[c] for r, c in zip(residents, chunks)]
        steps = np.arange(length_bin(int(max(int(n.max()) for n in lengths))))
        # Padding frames read the utterance's last frame (any valid index), then are set to 0.
        index = np.stack([s[:, None] + np.minimum(steps, n[:, None] - 1) for s, n in zip(starts, lengths)])
        mask = torch.from_numpy(np.stack([steps < n[:, None] for n in lengths])).to(device, non_blocking=True)
        index_t = torch.from_numpy(index).to(device, non_blocking=True)
        x = torch.stack([r[m].data[..., i, :] for r, i in zip(residents, index_t)])  # (K, [L,] B, T, D)
        keep = mask[..., None]
        if x.dim() == 5:  # layered: (K, L, B, T, D) -> (K, B, L, T, D)
            x, keep = x.transpose(1, 2), keep[:, :, None]
        inputs[m] = (torch.where(keep, x.float(), 0.0).contiguous(), mask)
    return inputs


@dataclass
class Call:
    """One run of the model in a step: the batches of ``members`` (member indices, ascending).

    ``full``: every member of the ensemble runs, on the stacked weights as they are, so that no weight is
    copied; members outside ``members`` run on a stand-in batch (a copy of the first member's), with loss
    weight 0 (exactly zero gradients) and their BatchNorm statistics kept. Otherwise the members' weights
    are copied out and their gradients added back. ``rows``: where each member's outputs are.
    """

    members: list[int]
    full: bool
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    labels: torch.Tensor

    @property
    def rows(self) -> list[int]:
        return self.members if self.full else list(range(len(self.members)))


# How much padding a step may add to batch members together: the members' batches, padded to one
# length bin, may cost at most this many times their own bins. Above it they run as separate calls
# (each still batched over its members): padding is paid in compute, a call in operator overhead.
PAD_SLACK = 1.5


# How many members outside a step's largest group may run on stand-in batches so that the group runs
# on the stacked weights: each costs a batch of compute (cheap beside copying every weight when the
# weights dominate, as with ComParE's 6,373-wide projection; not when long batches do, as with the
# paper preset on frame-level features).
STAND_INS = 1


def step_groups(batches: Sequence[tuple[int, int]], members: Sequence[int]) -> list[list[int]]:
    """Members whose step batches (size, longest utterance) run as one call: same size, and padded to
    one bin costing at most :data:`PAD_SLACK` times their own bins; in order of length."""
    by_size: dict[int, list[tuple[int, int]]] = {}
    for (size, longest), m in zip(batches, members):
        by_size.setdefault(size, []).append((longest, m))
    groups = []
    for items in by_size.values():
        items.sort()
        group, own = [], 0
        for longest, m in items:
            cost = length_bin(longest)
            if group and (len(group) + 1) * cost > PAD_SLACK * (own + cost):
                groups.append(sorted(group))
                group, own = [], 0
            group.append(m)
            own += cost
        groups.append(sorted(group))  # member order: a group of all K runs on the stacked weights as they are
    return groups
