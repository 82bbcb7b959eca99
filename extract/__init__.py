"""Stage 1: frozen encoders over a manifest, features cached in a store.

    from extract import run_extraction
    summary = run_extraction("iemocap.jsonl", "iemocap.zarr", "audio", encoder="hf:/models/wav2vec2-base")
    summary.done, summary.skipped, summary.failed, summary.failures

``extract.base`` holds the encoder contract and registry, ``extract.pipeline`` the
loop, ``extract.cluster`` the Dask runner; ``extract.audio``, ``extract.text`` and
``extract.video`` the encoders. Importing this package loads no model and no torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExtractSummary", "run_extraction"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing extract.base (every encoder module does) stays cheap.
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'extract' has no attribute {name!r}")
