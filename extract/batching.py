"""Grouping utterances into batches of similar length, so padding wastes little."""
from __future__ import annotations

from collections.abc import Sequence

from manifests import Utterance

from .base import Encoder
from .options import Batching


def plan_batches(rows: Sequence[Utterance], encoder: Encoder, batching: Batching | None = None) -> list[list[Utterance]]:
    """Split ``rows`` into batches, longest first.

    Rows are sorted by :meth:`Encoder.cost` (media seconds, tokens), longest first
    so that a batch too big for the device fails at the start, not an hour in;
    then cut into batches of at most ``batching.size`` rows, or of at most
    ``batching.cost`` total cost (the encoder's :attr:`Encoder.batch_cost` when
    neither is given). A row costlier than the budget gets a batch of its own.
    """
    batching = batching or Batching()
    size = batching.size
    budget = encoder.batch_cost if batching.cost is None and size is None else batching.cost
    costs = {row.utt_id: encoder.cost(row) for row in rows}
    ordered = sorted(rows, key=lambda r: (-costs[r.utt_id], r.utt_id))
    batches: list[list[Utterance]] = []
    current: list[Utterance] = []
    total = 0.0
    for row in ordered:
        cost = costs[row.utt_id]
        full = len(current) >= size if size is not None else total + cost > budget  # type: ignore[operator]
        if current and full:
            batches.append(current)
            current, total = [], 0.0
        current.append(row)
        total += cost
    if current:
        batches.append(current)
    return batches
