"""Grouping utterances into batches of similar length, so padding wastes little."""
from __future__ import annotations

from collections.abc import Sequence

from manifests import Utterance

from .base import Encoder, EncoderConfigError


def check_batching(batch_cost: float | None, batch_size: int | None) -> None:
    """Refuse batch options that cannot work."""
    if batch_cost is not None and batch_size is not None:
        raise EncoderConfigError("give either a batch cost (--batch-seconds) or a batch size (--batch-size), not both")
    if batch_size is not None and batch_size < 1:
        raise EncoderConfigError(f"--batch-size {batch_size}: must be at least 1")
    if batch_cost is not None and batch_cost <= 0:
        raise EncoderConfigError(f"--batch-seconds {batch_cost}: must be positive")


def plan_batches(
    rows: Sequence[Utterance],
    encoder: Encoder,
    *,
    batch_cost: float | None = None,
    batch_size: int | None = None,
) -> list[list[Utterance]]:
    """Split ``rows`` into batches, longest first.

    Rows are sorted by :meth:`Encoder.cost` (media seconds, tokens), longest first
    so that a batch too big for the device fails at the start, not an hour in;
    then cut into batches of at most ``batch_size`` rows, or of at most
    ``batch_cost`` total cost (the encoder's :attr:`Encoder.batch_cost` when
    neither is given). A row costlier than the budget gets a batch of its own.
    """
    check_batching(batch_cost, batch_size)
    budget = encoder.batch_cost if batch_cost is None and batch_size is None else batch_cost
    costs = {row.utt_id: encoder.cost(row) for row in rows}
    ordered = sorted(rows, key=lambda r: (-costs[r.utt_id], r.utt_id))
    batches: list[list[Utterance]] = []
    current: list[Utterance] = []
    total = 0.0
    for row in ordered:
        cost = costs[row.utt_id]
        full = len(current) >= batch_size if batch_size is not None else total + cost > budget  # type: ignore[operator]
        if current and full:
            batches.append(current)
            current, total = [], 0.0
        current.append(row)
        total += cost
    if current:
        batches.append(current)
    return batches
